-- Everything pg_herald's installation consists of, one line per fact, in a
-- stable order: test/t/006_upgrade.pl compares the output of a fresh install
-- with that of an install of the oldest release updated to this version.
WITH members AS (
    SELECT d.classid, d.objid
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
     WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass
       AND d.deptype = 'e' AND e.extname = 'pg_herald'
), facts(fact) AS (
    -- every member, with its comment
    SELECT pg_catalog.pg_describe_object(m.classid, m.objid, 0) || ' | comment: '
           || coalesce(pg_catalog.obj_description(m.objid, c.relname), '')
      FROM members m JOIN pg_catalog.pg_class c ON c.oid = m.classid
    UNION ALL
    -- functions: definition, privileges
    SELECT 'function ' || p.oid::regprocedure || E'\n' || pg_catalog.pg_get_functiondef(p.oid)
           || ' | acl: ' || coalesce(p.proacl::text, '')
      FROM members m JOIN pg_catalog.pg_proc p ON p.oid = m.objid
     WHERE m.classid = 'pg_catalog.pg_proc'::regclass
    UNION ALL
    -- relations: kind, options, privileges, view definitions
    SELECT 'relation ' || c.oid::regclass || ' | ' || c.relkind::text || ' ' || c.relpersistence::text
           || ' | options: ' || coalesce(c.reloptions::text, '')
           || ' | acl: ' || coalesce(c.relacl::text, '')
           || ' | rls: ' || c.relrowsecurity || ' ' || c.relforcerowsecurity
           || coalesce(E'\n' || pg_catalog.pg_get_viewdef(c.oid), '')
      FROM members m JOIN pg_catalog.pg_class c ON c.oid = m.objid
     WHERE m.classid = 'pg_catalog.pg_class'::regclass
    UNION ALL
    -- columns, in order, with types, defaults, nullability, comments
    SELECT 'column ' || c.oid::regclass || ' #'
           || (SELECT count(*) FROM pg_catalog.pg_attribute b
                WHERE b.attrelid = a.attrelid AND b.attnum > 0 AND NOT b.attisdropped
                  AND b.attnum <= a.attnum)
           || ' ' || a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
           || coalesce(' identity ' || nullif(a.attidentity::text, ''), '')
           || coalesce(' | comment: ' || pg_catalog.col_description(c.oid, a.attnum), '')
      FROM members m JOIN pg_catalog.pg_class c ON c.oid = m.objid
      JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
     WHERE m.classid = 'pg_catalog.pg_class'::regclass
    UNION ALL
    -- constraints
    SELECT 'constraint ' || c.oid::regclass || ' ' || k.conname || ' '
           || pg_catalog.pg_get_constraintdef(k.oid)
      FROM members m JOIN pg_catalog.pg_class c ON c.oid = m.objid
      JOIN pg_catalog.pg_constraint k ON k.conrelid = c.oid
     WHERE m.classid = 'pg_catalog.pg_class'::regclass
    UNION ALL
    -- indexes (not members themselves: they belong to their tables)
    SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid)
           || ' | options: ' || coalesce(ic.reloptions::text, '')
      FROM members m JOIN pg_catalog.pg_index i ON i.indrelid = m.objid
      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
     WHERE m.classid = 'pg_catalog.pg_class'::regclass
    UNION ALL
    -- triggers and policies on pg_herald's tables
    SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
      FROM members m JOIN pg_catalog.pg_trigger t ON t.tgrelid = m.objid
     WHERE m.classid = 'pg_catalog.pg_class'::regclass AND NOT t.tgisinternal
    UNION ALL
    SELECT 'policy ' || pol.polrelid::regclass || ' ' || pol.polname || ' ' || pol.polcmd::text || ' '
           || coalesce(pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), '') || ' '
           || coalesce(pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid), '')
      FROM members m JOIN pg_catalog.pg_policy pol ON pol.polrelid = m.objid
     WHERE m.classid = 'pg_catalog.pg_class'::regclass
    UNION ALL
    -- what pg_dump keeps of the configuration tables
    SELECT 'config ' || cfg.rel::regclass || ' ' || coalesce(cond.c, '')
      FROM pg_catalog.pg_extension e,
           unnest(e.extconfig, e.extcondition) AS cfg(rel, c0)
           LEFT JOIN LATERAL (SELECT cfg.c0 AS c) cond ON true
     WHERE e.extname = 'pg_herald'
    UNION ALL
    -- the schema and the extension itself
    SELECT 'schema ' || n.nspname || ' | acl: ' || coalesce(n.nspacl::text, '')
      FROM pg_catalog.pg_namespace n WHERE n.nspname = 'herald'
    UNION ALL
    SELECT 'extension ' || e.extname || ' ' || e.extversion || ' ' || e.extrelocatable
      FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_herald'
)
SELECT fact FROM facts ORDER BY fact COLLATE "C";
