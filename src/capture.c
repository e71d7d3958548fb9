/*-------------------------------------------------------------------------
 *
 * capture.c
 *		Row rules: row changes become events, in the writer's transaction.
 *
 * herald.capture() is a statement-level AFTER trigger with transition
 * tables, installed on a watched table for each operation some enabled row
 * rule listens to.  For every such rule it appends one event per captured
 * row to herald.event_log through the emitter (event_log.c), straight into
 * the heap: no SQL statement, nothing but the event row.  The event names
 * the rule's channels (none while a silence mutes the rule: it is recorded
 * with the silence's id).  All of it belongs to the writer's transaction: a
 * rollback leaves nothing, and the delivery workers are woken only at
 * commit.
 *
 * A rule without a condition (the common case) runs no SQL at all: the
 * transition rows are read here, with a read pointer of our own, and
 * herald_row_payload() (payload.c) renders each payload, whatever the
 * column types, running nothing but built-in code and casts a superuser
 * owns: what fails there fails the writer's statement, as a built-in
 * function of its own would.  UPDATE pairs old and new rows by position,
 * which is how the transition tables are filled.
 *
 * A rule with a condition runs one statement as the rule's owner: whatever
 * the condition reads is read with the owner's privileges, never the
 * writer's.  It returns the transition rows that satisfy the condition
 * (into a tuplestore, which goes to disk past work_mem), and their events
 * are appended as above, once the statement is over.  The condition
 * must not break, block or hold up the writer's statement: it runs through
 * herald_run_limited() (rule_code.c), for at most herald.condition_timeout
 * (shared by the conditions of one owner for one statement), and whatever
 * it raises, its time running out included, becomes a "rule.error" event
 * sent to the rule's channels; the session-level locks it took are
 * released.  It runs in a security-restricted operation, with search_path
 * pg_catalog, pg_temp (the one conditions are checked with at
 * declaration), and the settings it changes are undone before the writer
 * goes on.
 *
 * The owner's right to read the table (USAGE on its schema, SELECT on it,
 * no row-level security applying to it) is checked again at every capture,
 * for an owner that is not a superuser: a rule whose owner lost it
 * captures nothing and reports a rule.error event.
 *
 * A statement of many rows is streamed: the emitter writes its events in
 * chunks, and each payload is built in a memory context reset after each
 * row, so memory stays bounded however many rows the statement touched.
 *
 * The rules of each table are cached per backend, with the table's
 * qualified name, their conditions' prepared statements and the silence
 * muting each, if any.  Only loading them takes a SPI connection.  Any
 * change to herald.rule_defs, herald.rule_channels or herald.silence_defs
 * fires herald._rules_changed(), which sends a relcache invalidation for
 * rule_defs at commit; the callback below then drops the whole cache.  So
 * does an invalidation of a watched table (renamed, altered) or of any
 * schema (renamed): the payloads and statements name the table.
 *
 * herald._on_sql_drop(), an sql_drop event trigger, disables the rules of
 * a table that is dropped (with its schema or not) and records why with a
 * rule.error event: such a rule can be dropped, never enabled again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "parser/scanner.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "compat.h"
#include "pg_herald.h"

PG_FUNCTION_INFO_V1(herald_capture);
PG_FUNCTION_INFO_V1(herald_rules_changed);
PG_FUNCTION_INFO_V1(herald_check_condition);
PG_FUNCTION_INFO_V1(herald_rls_applies);
PG_FUNCTION_INFO_V1(herald_on_sql_drop);

/* herald.condition_timeout, in milliseconds */
static int	condition_timeout = 50;

/* Operations, as indexes and bits of CaptureRule.opmask */
#define OP_INSERT 0
#define OP_UPDATE 1
#define OP_DELETE 2
#define NUM_OPS 3

static const char *const op_names[NUM_OPS] = {"INSERT", "UPDATE", "DELETE"};
static const char *const op_events[NUM_OPS] = {"row.inserted", "row.updated", "row.deleted"};

typedef struct CaptureRule
{
	int32		id;
	char	   *name;
	Oid			owner;
	int			opmask;
	char	   *condition;		/* NULL when the rule has none */
	Datum		channels;		/* int4[] of channel ids */
	int32		silence_id;		/* the silence muting the rule, 0 for none */
	bool		followup;		/* its events await a decision */
	TimestampTz silenced_until; /* ... until then */
	SPIPlanPtr	select_plan[NUM_OPS];	/* the condition's statement, prepared
										 * on first use */
} CaptureRule;

typedef struct TableRules
{
	Oid			relid;			/* hash key */
	char	   *table;			/* its qualified name, as payloads give it */
	int			nrules;
	CaptureRule *rules;
} TableRules;

static MemoryContext capture_context = NULL;
static HTAB *table_rules = NULL;
static Oid	cached_rules_relid = InvalidOid;
static bool callback_registered = false;

/*
 * Capture calls under way in this backend: a condition may write to another
 * watched table.  The cache is only rebuilt by the outermost call.
 */
static int	capture_depth = 0;

/* At the end of a transaction no capture call is under way any more. */
void
herald_capture_xact_end(void)
{
	capture_depth = 0;
}

/* Forget every cached rule and statement. */
static void
reset_capture_cache(void)
{
	HASH_SEQ_STATUS status;
	TableRules *entry;

	if (table_rules != NULL)
	{
		hash_seq_init(&status, table_rules);
		while ((entry = hash_seq_search(&status)) != NULL)
		{
			for (int i = 0; i < entry->nrules; i++)
				for (int op = 0; op < NUM_OPS; op++)
					if (entry->rules[i].select_plan[op])
						SPI_freeplan(entry->rules[i].select_plan[op]);
		}
	}
	table_rules = NULL;
	if (capture_context)
		MemoryContextReset(capture_context);
}

/*
 * Relcache callback: a change to herald.rule_defs (or a full reset) only
 * marks the cache stale; it is rebuilt on next use, outside the callback.
 */
static bool cache_stale = false;

static void
capture_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == cached_rules_relid ||
		(table_rules != NULL && hash_search(table_rules, &relid, HASH_FIND, NULL) != NULL))
		cache_stale = true;
}

/* A schema renamed or dropped: the payloads and statements may name it. */
static void
capture_namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	cache_stale = true;
}

/*
 * Make the cache usable: rebuilt when stale (by the outermost capture call
 * only) or when herald.rule_defs is another table than the one it was
 * built from (the extension was made again).  A valid cache needs no
 * lookup: dropping the extension drops rule_defs, whose invalidation marks
 * the cache stale.
 */
static void
ensure_capture_cache(void)
{
	HASHCTL		ctl;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(capture_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, capture_namespace_callback, (Datum) 0);
		callback_registered = true;
	}
	if (capture_context == NULL)
		capture_context = AllocSetContextCreate(TopMemoryContext,
												"pg_herald capture",
												ALLOCSET_DEFAULT_SIZES);
	if (table_rules == NULL || cache_stale)
	{
		Oid			rules_relid = get_relname_relid("rule_defs", herald_schema_oid(false));

		if (!OidIsValid(rules_relid))
			elog(ERROR, "pg_herald catalog table herald.rule_defs is missing");
		if ((cache_stale || rules_relid != cached_rules_relid) && capture_depth == 0)
		{
			reset_capture_cache();
			cache_stale = false;
			cached_rules_relid = rules_relid;
		}
	}
	if (table_rules == NULL)
	{
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(TableRules);
		ctl.hcxt = capture_context;
		table_rules = hash_create("pg_herald table rules", 16, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
}

/*
 * Where pg_herald's statements run, entered only when one is needed (the
 * rules of a table to load, a condition to run): a SPI connection that
 * sees the transition tables, search_path pg_catalog, pg_temp, the
 * extension's owner as current user.  Left at the end of the capture call:
 * the settings are undone, the writer is the current user again.
 */
typedef struct CaptureScope
{
	TriggerData *trigdata;
	bool		entered;
	int			guc_level;
	Oid			save_user;
	int			save_sec;
	Oid			ext_owner;
} CaptureScope;

static void
scope_enter(CaptureScope *scope)
{
	if (scope->entered)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_register_trigger_data(scope->trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "could not register the transition tables");
	scope->guc_level = NewGUCNestLevel();
	GetUserIdAndSecContext(&scope->save_user, &scope->save_sec);
	scope->ext_owner = herald_extension_owner();
	SetUserIdAndSecContext(scope->ext_owner, scope->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	scope->entered = true;
}

/*
 * The search path of what runs in the scope, for the rest of the current
 * GUC nesting level.  Set only where a statement runs (loading the rules,
 * each condition) and not for the whole scope: before PostgreSQL 16 the end
 * of every nesting level goes through all settings while any setting is
 * saved on a level (AtEOXact_GUC()), and a condition ends three levels (its
 * own, its subtransaction's, the scope's).
 */
static void
scope_search_path(void)
{
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}

static void
scope_leave(CaptureScope *scope)
{
	if (!scope->entered)
		return;
	SetUserIdAndSecContext(scope->save_user, scope->save_sec);
	AtEOXact_GUC(false, scope->guc_level);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	scope->entered = false;
}

static int
opmask_from_array(Datum arr)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			mask = 0;

	deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *op;

		if (nulls[i])
			continue;
		op = TextDatumGetCString(elems[i]);
		for (int k = 0; k < NUM_OPS; k++)
			if (pg_strcasecmp(op, op_names[k]) == 0)
				mask |= 1 << k;
	}
	return mask;
}

static char *
qualified_table_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * The enabled row rules of a table, loaded into the cache on first use, in
 * the capture scope.  The rules are read with the latest snapshot, not the
 * writer's: a cache built from an older snapshot would miss a rule whose
 * invalidation has already passed.
 */
static TableRules *
load_table_rules(Oid relid)
{
	TableRules *entry;
	bool		found;
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1];
	int			ret;
	int			nrules;
	CaptureRule *rules;
	char	   *table;
	SPIPlanPtr	plan;
	MemoryContext old;

	plan = SPI_prepare("SELECT r.id, r.name, r.owner::oid, r.operations, r.condition,"
					   "       array(SELECT rc.channel_id FROM herald.rule_channels rc"
					   "             WHERE rc.rule_id = r.id ORDER BY rc.channel_id),"
					   "       (s).id, (s).until, r.followup_after IS NOT NULL"
					   "  FROM herald.rule_defs r,"
					   "       LATERAL (SELECT herald._active_silence(r.id) AS s) AS x"
					   " WHERE r.kind = 'row' AND r.enabled AND r.on_table = $1"
					   " ORDER BY r.id",
					   1, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare the rule lookup: %s",
			 SPI_result_code_string(SPI_result));
	args[0] = ObjectIdGetDatum(relid);
	ret = SPI_execute_snapshot(plan, args, NULL, GetLatestSnapshot(),
							   InvalidSnapshot, true, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not load the rules of table %u: %s",
			 relid, SPI_result_code_string(ret));

	old = MemoryContextSwitchTo(capture_context);
	table = qualified_table_name(relid);
	nrules = SPI_processed;
	rules = palloc0(sizeof(CaptureRule) * Max(nrules, 1));
	for (int i = 0; i < nrules; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		CaptureRule *rule = &rules[i];
		bool		isnull;
		Datum		d;

		rule->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		rule->name = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		rule->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		rule->opmask = opmask_from_array(SPI_getbinval(tup, desc, 4, &isnull));
		d = SPI_getbinval(tup, desc, 5, &isnull);
		rule->condition = isnull ? NULL : TextDatumGetCString(d);
		d = SPI_getbinval(tup, desc, 6, &isnull);
		rule->channels = PointerGetDatum(DatumGetArrayTypePCopy(d));
		d = SPI_getbinval(tup, desc, 7, &isnull);
		if (!isnull)
		{
			rule->silence_id = DatumGetInt32(d);
			rule->silenced_until = DatumGetTimestampTz(SPI_getbinval(tup, desc, 8, &isnull));
		}
		rule->followup = DatumGetBool(SPI_getbinval(tup, desc, 9, &isnull));
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
	SPI_freeplan(plan);

	/* entered only once complete: an error above leaves no empty entry */
	entry = hash_search(table_rules, &relid, HASH_ENTER, &found);
	entry->table = table;
	entry->nrules = nrules;
	entry->rules = rules;
	return entry;
}

/* The rules of a table, from the cache, loaded in the scope if need be. */
static TableRules *
rules_of_table(Oid relid, CaptureScope *scope)
{
	TableRules *entry;

	ensure_capture_cache();
	entry = hash_search(table_rules, &relid, HASH_FIND, NULL);
	if (entry == NULL)
	{
		scope_enter(scope);
		scope_search_path();
		entry = load_table_rules(relid);
	}
	return entry;
}

/*
 * What the rule's events share.  A muted rule's events go to no channel and
 * name the silence; nobody was told of them, so nobody is asked about them.
 */
static void
rule_meta(CaptureRule *rule, const char *type, HeraldEventMeta *meta)
{
	bool		silenced = rule->silence_id != 0 &&
		GetCurrentTransactionStartTimestamp() < rule->silenced_until;

	memset(meta, 0, sizeof(HeraldEventMeta));
	meta->type = type;
	meta->rule_id = rule->id;
	meta->rule = rule->name;
	meta->channel_ids = silenced ? (Datum) 0 : rule->channels;
	meta->silenced_by = silenced ? rule->silence_id : 0;
	meta->awaits_decision = rule->followup && !silenced && strncmp(type, "row.", 4) == 0;
	meta->about_event_id = 0;
}

/*
 * A reader of a transition table: a read pointer of our own, at its start
 * (the new pointer copies the position of pointer 0, which could be
 * anywhere), and a slot of the table's row type.
 */
typedef struct RowReader
{
	Tuplestorestate *store;
	int			ptr;
	TupleTableSlot *slot;
} RowReader;

static void
reader_open(RowReader *reader, Tuplestorestate *store, TupleDesc desc)
{
	reader->store = store;
	reader->ptr = tuplestore_alloc_read_pointer(store, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(store, reader->ptr);
	tuplestore_rescan(store);
	reader->slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
}

/* The next row, into the reader's slot. */
static void
reader_next(RowReader *reader)
{
	tuplestore_select_read_pointer(reader->store, reader->ptr);
	if (!tuplestore_gettupleslot(reader->store, true, false, reader->slot))
		elog(ERROR, "transition table ended before its count of rows");
}

static void
reader_close(RowReader *reader)
{
	ExecDropSingleTupleTableSlot(reader->slot);
}

/*
 * Append one event, its payload built in row_cxt from the rows, given as
 * composite datums (0: none) or, when slots is given, in the slots (NULL:
 * none).
 */
static void
append_row(HeraldEventWriter *w, TableRules *entry, int op, Datum new_row, Datum old_row,
		   TupleTableSlot **slots, MemoryContext row_cxt)
{
	MemoryContext old = MemoryContextSwitchTo(row_cxt);
	Datum		payload;

	if (slots != NULL)
		payload = herald_slot_payload(entry->table, op_names[op], slots[0], slots[1]);
	else
		payload = herald_row_payload(entry->table, op_names[op], new_row, old_row);
	MemoryContextSwitchTo(old);
	(void) herald_events_add(w, payload);
	MemoryContextReset(row_cxt);
}

/* Append one event per transition row, read here. */
static void
append_transition_rows(CaptureRule *rule, TableRules *entry, int op, TriggerData *trigdata,
					   MemoryContext row_cxt)
{
	TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);
	bool		has_new = op != OP_DELETE;
	bool		has_old = op != OP_INSERT;
	RowReader	new_rows = {0};
	RowReader	old_rows = {0};
	HeraldEventMeta meta;
	HeraldEventWriter *w;
	int64		n;

	n = tuplestore_tuple_count(has_new ? trigdata->tg_newtable : trigdata->tg_oldtable);
	if (has_new && has_old)
		n = Min(n, tuplestore_tuple_count(trigdata->tg_oldtable));
	if (has_new)
		reader_open(&new_rows, trigdata->tg_newtable, desc);
	if (has_old)
		reader_open(&old_rows, trigdata->tg_oldtable, desc);

	rule_meta(rule, op_events[op], &meta);
	w = herald_events_begin(&meta);
	for (int64 i = 0; i < n; i++)
	{
		TupleTableSlot *slots[2] = {NULL, NULL};

		/* read outside row_cxt: a row read from disk belongs to the slot */
		if (has_new)
		{
			reader_next(&new_rows);
			slots[0] = new_rows.slot;
		}
		if (has_old)
		{
			reader_next(&old_rows);
			slots[1] = old_rows.slot;
		}
		append_row(w, entry, op, (Datum) 0, (Datum) 0, slots, row_cxt);
	}
	(void) herald_events_end(w);

	if (has_new)
		reader_close(&new_rows);
	if (has_old)
		reader_close(&old_rows);
}

/*
 * The condition's statement for one operation: the transition rows that
 * satisfy it (new, old or both, in that order).  NEW and OLD name the rows;
 * the one an operation lacks is a row of NULLs.  UPDATE pairs old and new
 * rows by position.
 */
static char *
build_select_sql(const char *table, int op, const char *condition)
{
	StringInfoData sql;
	const char *null_row = psprintf("(SELECT (NULL::%s).*)", table);

	initStringInfo(&sql);
	switch (op)
	{
		case OP_INSERT:
			appendStringInfo(&sql, "SELECT new FROM herald_new AS new, %s AS old", null_row);
			break;
		case OP_DELETE:
			appendStringInfo(&sql, "SELECT old FROM herald_old AS old, %s AS new", null_row);
			break;
		case OP_UPDATE:
			appendStringInfoString(&sql,
								   "SELECT n.r, o.r"
								   " FROM (SELECT row_number() OVER () AS i, t AS r FROM herald_new t) AS n"
								   " JOIN (SELECT row_number() OVER () AS i, t AS r FROM herald_old t) AS o"
								   " USING (i),"
								   " LATERAL (SELECT (n.r).*) AS new, LATERAL (SELECT (o.r).*) AS old");
			break;
	}
	appendStringInfo(&sql, " WHERE (%s\n)", condition);
	return sql.data;
}

static SPIPlanPtr
get_select_plan(CaptureRule *rule, TableRules *entry, int op)
{
	SPIPlanPtr	plan;

	if (rule->select_plan[op])
		return rule->select_plan[op];
	plan = SPI_prepare(build_select_sql(entry->table, op, rule->condition), 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare the capture statement of rule \"%s\": %s",
			 rule->name, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the capture statement of rule \"%s\"", rule->name);
	rule->select_plan[op] = plan;
	return plan;
}

/*
 * Where the condition's statement sends the rows that satisfy it: a
 * tuplestore of the capture call, which outlives the subtransaction the
 * statement runs in (its files too: they belong to the capture call's
 * resource owner), and goes to disk past work_mem.
 */
typedef struct MatchReceiver
{
	DestReceiver pub;
	Tuplestorestate *store;
	ResourceOwner owner;
	MemoryContext cxt;
	TupleDesc	desc;			/* of the rows, copied in cxt */
} MatchReceiver;

static void
match_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	MatchReceiver *r = (MatchReceiver *) self;
	MemoryContext old = MemoryContextSwitchTo(r->cxt);

	r->desc = CreateTupleDescCopy(typeinfo);
	MemoryContextSwitchTo(old);
}

static bool
match_receive(TupleTableSlot *slot, DestReceiver *self)
{
	MatchReceiver *r = (MatchReceiver *) self;
	ResourceOwner save = CurrentResourceOwner;

	CurrentResourceOwner = r->owner;
	tuplestore_puttupleslot(r->store, slot);
	CurrentResourceOwner = save;
	return true;
}

static void
match_shutdown(DestReceiver *self)
{
}

static void
match_destroy(DestReceiver *self)
{
}

typedef struct Selection
{
	CaptureRule *rule;
	TableRules *entry;
	int			op;
	CaptureScope *scope;
	MatchReceiver receiver;
} Selection;

/*
 * Run the rule's condition as its owner, keeping the rows that satisfy it.
 * Prepared, planned and run as the rule's owner, in a security-restricted
 * operation.  Settings the condition changes, even without LOCAL, end with
 * it.
 */
static void
selection_step(void *arg)
{
	Selection  *s = arg;
	SPIExecuteOptions options;
	SPIPlanPtr	plan;
	int			guc_level;
	int			ret;

	guc_level = NewGUCNestLevel();
	scope_search_path();
	SetUserIdAndSecContext(s->rule->owner, s->scope->save_sec |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	plan = get_select_plan(s->rule, s->entry, s->op);
	memset(&options, 0, sizeof(options));
	options.dest = &s->receiver.pub;
	ret = SPI_execute_plan_extended(plan, &options);
	SetUserIdAndSecContext(s->scope->ext_owner, s->scope->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	AtEOXact_GUC(false, guc_level);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "unexpected result of the capture statement: %s",
			 SPI_result_code_string(ret));
}

/* Append one event per row the condition's statement returned. */
static void
append_selected_rows(CaptureRule *rule, TableRules *entry, int op, MatchReceiver *r,
					 MemoryContext row_cxt)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(r->desc, &TTSOpsMinimalTuple);
	HeraldEventMeta meta;
	HeraldEventWriter *w;

	if (r->desc->natts != (op == OP_UPDATE ? 2 : 1))
		elog(ERROR, "unexpected columns in the result of the capture statement");
	rule_meta(rule, op_events[op], &meta);
	w = herald_events_begin(&meta);
	tuplestore_rescan(r->store);
	while (tuplestore_gettupleslot(r->store, true, false, slot))
	{
		bool		isnull1;
		bool		isnull2 = false;
		Datum		first = slot_getattr(slot, 1, &isnull1);
		Datum		second = op == OP_UPDATE ? slot_getattr(slot, 2, &isnull2) : (Datum) 0;

		if (isnull1 || isnull2)
			elog(ERROR, "capture statement returned a null row");
		append_row(w, entry, op,
				   op == OP_DELETE ? (Datum) 0 : first,
				   op == OP_DELETE ? first : second, NULL, row_cxt);
	}
	(void) herald_events_end(w);
	ExecDropSingleTupleTableSlot(slot);
}

/* What is left of an owner's time for the conditions of one statement */
typedef struct OwnerBudget
{
	Oid			owner;
	int			timeout;		/* herald.condition_timeout, as armed */
	TimestampTz deadline;
	bool		started;		/* one of its conditions ran already */
} OwnerBudget;

/* Why a rule captured nothing, for record_rule_error() */
typedef enum RuleFailure
{
	CONDITION_FAILED,			/* the condition raised an error */
	CONDITION_TIMED_OUT,		/* it ran past herald.condition_timeout */
	OWNER_MAY_NOT_READ			/* the owner lost the right to read the table */
} RuleFailure;

/*
 * Run the rule's condition: the rows that satisfy it go to the receiver's
 * store (a tuplestore the caller ends).  The condition runs through
 * herald_run_limited(), and if it fails, the result is false, *error gets
 * the message and *failure why.  The subtransaction's abort restores the
 * extension's owner.
 */
static bool
select_rows(CaptureRule *rule, TableRules *entry, int op, CaptureScope *scope,
			OwnerBudget *budget, MatchReceiver *receiver, char **error,
			RuleFailure *failure)
{
	Selection	s;
	long		left;
	bool		shared;
	bool		timed_out;

	*error = NULL;
	memset(&s, 0, sizeof(s));
	s.rule = rule;
	s.entry = entry;
	s.op = op;
	s.scope = scope;
	s.receiver.pub.receiveSlot = match_receive;
	s.receiver.pub.rStartup = match_startup;
	s.receiver.pub.rShutdown = match_shutdown;
	s.receiver.pub.rDestroy = match_destroy;
	/* anything but DestNone: SPI reports a SELECT whose rows went somewhere */
	s.receiver.pub.mydest = DestTuplestore;
	s.receiver.store = tuplestore_begin_heap(false, false, work_mem);
	s.receiver.owner = CurrentResourceOwner;
	s.receiver.cxt = CurrentMemoryContext;

	shared = budget->started;
	budget->started = true;
	left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), budget->deadline);
	if (left <= 0)
		timed_out = true;
	else
	{
		*error = herald_run_limited(selection_step, &s, (int) left, &timed_out);
		if (*error == NULL)
		{
			*receiver = s.receiver;
			return true;
		}
	}
	tuplestore_end(s.receiver.store);
	*failure = CONDITION_FAILED;
	if (timed_out)
	{
		*failure = CONDITION_TIMED_OUT;
		if (shared)
			*error = psprintf("the conditions of the rule's owner used up herald.condition_timeout (%d ms) for this statement",
							  budget->timeout);
		else
			*error = psprintf("the condition ran longer than herald.condition_timeout (%d ms)",
							  budget->timeout);
	}
	return false;
}

/*
 * The time the conditions of one owner may take for one statement: they
 * share herald.condition_timeout (the writer's, as armed when the first
 * of them starts), so that however many rules an author declares on a
 * table, its writers wait at most that long per rule owner, and one
 * owner's slow conditions never use another owner's time.
 */
static OwnerBudget *
owner_budget(OwnerBudget **budgets, int *nbudgets, int *maxbudgets, Oid owner)
{
	for (int i = 0; i < *nbudgets; i++)
		if ((*budgets)[i].owner == owner)
			return &(*budgets)[i];
	if (*nbudgets == *maxbudgets)
	{
		*maxbudgets = Max(4, *maxbudgets * 2);
		*budgets = *budgets ? repalloc(*budgets, sizeof(OwnerBudget) * *maxbudgets) :
			palloc(sizeof(OwnerBudget) * *maxbudgets);
	}
	(*budgets)[*nbudgets].owner = owner;
	(*budgets)[*nbudgets].timeout = condition_timeout;
	(*budgets)[*nbudgets].started = false;
	(*budgets)[*nbudgets].deadline =
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), condition_timeout);
	return &(*budgets)[(*nbudgets)++];
}

/* A rule that captured nothing is reported as an event on its channels. */
static void
record_rule_error(CaptureRule *rule, TableRules *entry, int op, const char *message,
				  RuleFailure failure)
{
	StringInfoData payload;
	HeraldEventMeta meta;
	HeraldEventWriter *w;

	/* the writer may not see what the owner's condition saw: log the text */
	if (failure == CONDITION_FAILED)
		ereport(WARNING,
				(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
				 errmsg("condition of rule \"%s\" failed", rule->name),
				 errdetail("The statement went on; the rule's channels receive a rule.error event."),
				 errdetail_log("%s", message)));
	else if (failure == CONDITION_TIMED_OUT)
		ereport(WARNING,
				(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
				 errmsg("condition of rule \"%s\" was cancelled: %s", rule->name, message),
				 errdetail("The statement went on; the rule's channels receive a rule.error event.")));
	else
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("rule \"%s\" captured nothing: %s", rule->name, message),
				 errdetail("The statement went on; the rule's channels receive a rule.error event.")));

	initStringInfo(&payload);
	appendStringInfoString(&payload, "{\"table\": ");
	escape_json(&payload, entry->table);
	appendStringInfo(&payload, ", \"operation\": \"%s\", \"error\": ", op_names[op]);
	escape_json(&payload, message);
	appendStringInfoChar(&payload, '}');
	rule_meta(rule, "rule.error", &meta);
	w = herald_events_begin(&meta);
	(void) herald_events_add(w, DirectFunctionCall1(jsonb_in, CStringGetDatum(payload.data)));
	(void) herald_events_end(w);
	pfree(payload.data);
}

/*
 * May the rule's owner still read the table?  Privileges revoked or
 * policies enabled after the rule was declared: the transition rows would
 * show what the owner may no longer see.  Reading the table takes what
 * SELECT takes: USAGE on its schema and SELECT on it; and no row-level
 * security may apply to the owner.  A superuser may read anything.
 * Returns NULL, or why not.
 */
static const char *
owner_may_not_read(CaptureRule *rule, Oid relid)
{
	if (superuser_arg(rule->owner))
		return NULL;
	if (herald_namespace_aclcheck(get_rel_namespace(relid), rule->owner,
								  ACL_USAGE) != ACLCHECK_OK ||
		pg_class_aclcheck(relid, rule->owner, ACL_SELECT) != ACLCHECK_OK)
		return "the rule's owner may no longer read the table";
	if (check_enable_rls(relid, rule->owner, true) == RLS_ENABLED)
		return "row-level security on the table applies to the rule's owner";
	return NULL;
}

/* herald.capture(): the statement-level trigger on watched tables */
Datum
herald_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Tuplestorestate *rows;
	int64		nrows;
	Oid			relid;
	int			op;
	TableRules *entry;
	CaptureScope scope;
	MemoryContext row_cxt;
	OwnerBudget *budgets = NULL;
	int			nbudgets = 0;
	int			maxbudgets = 0;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("herald.capture() must be called as a statement-level AFTER trigger")));

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		op = OP_INSERT;
		rows = trigdata->tg_newtable;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		op = OP_UPDATE;
		rows = trigdata->tg_oldtable ? trigdata->tg_newtable : NULL;
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		op = OP_DELETE;
		rows = trigdata->tg_oldtable;
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("herald.capture() handles INSERT, UPDATE and DELETE only")));

	if (rows == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("herald.capture() needs transition tables"),
				 errhint("Declare rules with herald.on_change(), which creates the triggers.")));
	nrows = tuplestore_tuple_count(rows);
	if (nrows == 0)
		return PointerGetDatum(NULL);

	relid = RelationGetRelid(trigdata->tg_relation);
	memset(&scope, 0, sizeof(scope));
	scope.trigdata = trigdata;
	row_cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_herald captured row",
									ALLOCSET_DEFAULT_SIZES);

	entry = rules_of_table(relid, &scope);
	capture_depth++;
	for (int i = 0; i < entry->nrules; i++)
	{
		CaptureRule *rule = &entry->rules[i];
		const char *why;
		MatchReceiver selected;
		char	   *error;
		RuleFailure failure;

		if ((rule->opmask & (1 << op)) == 0)
			continue;
		why = owner_may_not_read(rule, relid);
		if (why != NULL)
		{
			record_rule_error(rule, entry, op, why, OWNER_MAY_NOT_READ);
			continue;
		}
		if (rule->condition == NULL)
		{
			append_transition_rows(rule, entry, op, trigdata, row_cxt);
			continue;
		}
		scope_enter(&scope);
		if (!select_rows(rule, entry, op, &scope,
						 owner_budget(&budgets, &nbudgets, &maxbudgets, rule->owner),
						 &selected, &error, &failure))
		{
			record_rule_error(rule, entry, op, error, failure);
			continue;
		}
		if (tuplestore_tuple_count(selected.store) > 0)
			append_selected_rows(rule, entry, op, &selected, row_cxt);
		tuplestore_end(selected.store);
	}
	capture_depth--;
	scope_leave(&scope);
	MemoryContextDelete(row_cxt);
	return PointerGetDatum(NULL);
}

/* herald._rls_applies(tbl regclass): for the role calling the API */
Datum
herald_rls_applies(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(check_enable_rls(PG_GETARG_OID(0), herald_invoker_id(), true) == RLS_ENABLED);
}

/*
 * herald._rules_changed(): statement trigger on the rule tables.  Every
 * backend drops its capture cache once the change commits.
 */
Datum
herald_rules_changed(PG_FUNCTION_ARGS)
{
	Oid			rules_relid = get_relname_relid("rule_defs", herald_schema_oid(false));

	if (OidIsValid(rules_relid))
		CacheInvalidateRelcacheByRelid(rules_relid);
	herald_note_rules_changed();
	return PointerGetDatum(NULL);
}

/* Does the text hold a token, not only blanks and comments? */
static bool
has_token(const char *text)
{
	core_yy_extra_type yyextra;
	core_yyscan_t scanner;
	core_YYSTYPE yylval;
	YYLTYPE		yylloc;
	int			token;

	scanner = scanner_init(text, &yyextra, &ScanKeywords, ScanKeywordTokens);
	token = core_yylex(&yylval, &yylloc, scanner);
	scanner_finish(scanner);
	return token != 0;
}

/*
 * herald._check_condition(on_table regclass, condition text): the condition
 * must be one boolean SQL expression over NEW and OLD, with the columns of
 * the table.  Parsed and planned as the declaring role.
 */
Datum
herald_check_condition(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *condition;
	List	   *parsed;
	SelectStmt *stmt = NULL;
	char	   *table;
	char	   *rows;
	SPIPlanPtr	plan;
	CachedPlanSource *source;
	Oid			type;
	MemoryContext caller = CurrentMemoryContext;
	Oid			save_user;
	int			save_sec;

	if (PG_ARGISNULL(1))
		PG_RETURN_VOID();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a condition needs a table")));
	condition = text_to_cstring(PG_GETARG_TEXT_PP(1));

	/*
	 * Errors are reported as errors of the condition, without a cursor
	 * position into the statement pg_herald wrapped it in.
	 */
	GetUserIdAndSecContext(&save_user, &save_sec);
	PG_TRY();
	{
		if (!has_token(condition))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("it is empty"),
					 errhint("A rule without a condition (NULL) matches every row.")));

		/* One expression, nothing around it */
		parsed = raw_parser(psprintf("SELECT (%s\n)", condition), RAW_PARSE_DEFAULT);
		if (list_length(parsed) == 1 &&
			IsA(linitial_node(RawStmt, parsed)->stmt, SelectStmt))
			stmt = (SelectStmt *) linitial_node(RawStmt, parsed)->stmt;
		if (stmt == NULL || list_length(stmt->targetList) != 1 ||
			stmt->fromClause != NIL || stmt->whereClause != NULL ||
			stmt->groupClause != NIL || stmt->havingClause != NULL ||
			stmt->windowClause != NIL || stmt->sortClause != NIL ||
			stmt->limitCount != NULL || stmt->limitOffset != NULL ||
			stmt->lockingClause != NIL || stmt->withClause != NULL ||
			stmt->distinctClause != NIL || stmt->intoClause != NULL ||
			stmt->op != SETOP_NONE)
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("it is not a single SQL expression"),
					 errhint("Write a boolean expression over NEW and OLD, such as NEW.amount > 1000.")));

		/* Columns and type, as the capture statement will see them */
		table = qualified_table_name(relid);
		rows = psprintf("FROM (SELECT (NULL::%s).*) AS new, (SELECT (NULL::%s).*) AS old",
						table, table);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");

		/*
		 * Parsed, planned and started (computing nothing) as the declaring
		 * role, in a security-restricted operation, as it will run: what it
		 * may not read is an error now, and none of its code runs as
		 * anyone else.
		 */
		SetUserIdAndSecContext(herald_invoker_id(), save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		plan = SPI_prepare(psprintf("SELECT (%s\n) %s", condition, rows), 0, NULL);
		if (plan == NULL)
			elog(ERROR, "could not prepare the condition: %s",
				 SPI_result_code_string(SPI_result));
		source = linitial(SPI_plan_get_plan_sources(plan));
		if (source->resultDesc == NULL || source->resultDesc->natts != 1)
			elog(ERROR, "unexpected result of the condition");
		type = TupleDescAttr(source->resultDesc, 0)->atttypid;
		if (type != BOOLOID)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("it must be of type boolean, not %s", format_type_be(type))));
		/* and where it stands: no aggregates, window or set-returning functions */
		if (SPI_prepare(psprintf("SELECT 1 %s WHERE (%s\n)", rows, condition),
						0, NULL) == NULL)
			elog(ERROR, "could not prepare the condition: %s",
				 SPI_result_code_string(SPI_result));
		(void) SPI_execute(psprintf("SELECT (%s\n) %s LIMIT 0", condition, rows), true, 0);
		SetUserIdAndSecContext(save_user, save_sec);
		SPI_finish();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		SetUserIdAndSecContext(save_user, save_sec);
		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("invalid condition: %s", edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0,
				 edata->hint ? errhint("%s", edata->hint) : 0));
	}
	PG_END_TRY();

	PG_RETURN_VOID();
}

/*
 * Settings of row rules.  herald.condition_timeout is the writers' bound on
 * what others' conditions cost them: only a superuser (or a role granted SET
 * on it) changes it, for a session, a role, a database or the server; a
 * rule's author cannot raise it, and a condition that changes it changes
 * nothing (the limit is armed before it runs, and its settings are undone).
 */
void
herald_define_capture_settings(void)
{
	DefineCustomIntVariable("herald.condition_timeout",
							"Longest time the conditions of one rule owner may run, together, for the rows of one statement.",
							"Past it the condition is cancelled: the statement goes on, and the rule's channels receive a rule.error event.",
							&condition_timeout,
							50, 1, 3600 * 1000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* Disable the rules of the tables this command dropped, if any. */
static void
tables_dropped_step(void *arg)
{
	int			ret;

	ret = SPI_execute("SELECT herald._tables_dropped(pg_catalog.array_agg(d.objid),"
					  "                              pg_catalog.array_agg(d.object_identity))"
					  "  FROM pg_catalog.pg_event_trigger_dropped_objects() AS d"
					  " WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
					  "   AND d.objsubid = 0"
					  " HAVING pg_catalog.count(*) > 0",
					  false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not disable the rules of dropped tables: %s",
			 SPI_result_code_string(ret));
}

/*
 * herald._on_sql_drop(): the sql_drop event trigger.  The rules of the
 * tables a command drops are disabled (herald._tables_dropped), as the
 * extension's owner: the role dropping them need not be able to change
 * rules.  Most commands drop no table a rule uses and cost one query.  No
 * command fails because of pg_herald: an error here is a warning, and the
 * rules it left are still dropped by drop_rule().
 */
Datum
herald_on_sql_drop(PG_FUNCTION_ARGS)
{
	Oid			save_user;
	int			save_sec;
	int			guc_level;
	char	   *error;
	MemoryContext caller = CurrentMemoryContext;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("herald._on_sql_drop() must be called as an sql_drop event trigger")));
	if (!OidIsValid(herald_schema_oid(true)))
		PG_RETURN_VOID();
	/* pg_herald's own scripts drop and redefine its objects, no watched table */
	if (creating_extension &&
		CurrentExtensionObject == get_extension_oid(HERALD_EXTENSION, true))
		PG_RETURN_VOID();

	guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(herald_extension_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	error = herald_run_protected(tables_dropped_step, NULL);
	/* the message is in SPI's memory, which SPI_finish() frees */
	if (error)
		error = MemoryContextStrdup(caller, error);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	SetUserIdAndSecContext(save_user, save_sec);
	AtEOXact_GUC(false, guc_level);

	if (error)
		ereport(WARNING,
				(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
				 errmsg("could not disable the rules of the dropped tables: %s", error),
				 errhint("Drop those rules with herald.drop_rule().")));
	PG_RETURN_VOID();
}
