/*-------------------------------------------------------------------------
 *
 * capture.c
 *		Row rules: committed row changes become events and deliveries.
 *
 * herald.capture() is a statement-level AFTER trigger with transition
 * tables, installed on a watched table for each operation some enabled row
 * rule listens to.  For every such rule it runs two set-based statements in
 * the writer's transaction:
 *
 *	1. as the rule's owner (whatever the condition reads is read with the
 *	   owner's privileges, never the writer's), select the payload of every
 *	   transition row that satisfies the rule's condition;
 *	2. as the extension's owner, insert one event per selected row and one
 *	   delivery per event and channel.
 *
 * A statement that touches 10,000 rows therefore costs two statements per
 * rule, not 10,000.  The payloads run no code of anyone's: on a table with a
 * column of a type created after initdb, the owner's statement returns the
 * rows and herald_row_payload() renders them (payload.c).  A rule with no
 * condition, owned by the extension's owner, on a table of built-in types
 * only, runs no code on anyone else's behalf: both steps are one statement
 * (capture_directly).  Both belong to the writer's transaction: a rollback
 * leaves nothing, and the delivery workers are woken only at commit
 * (herald_note_work).
 *
 * A condition must not break, block or hold up the writer's statement: it
 * runs through herald_run_limited() (rule_code.c), for at most
 * herald.condition_timeout, and whatever it raises, its time running out
 * included, becomes a "rule.error" event sent to the rule's channels; the
 * session-level locks it took are released.  Everything runs with
 * search_path pg_catalog, pg_temp (the one conditions are checked with at
 * declaration), and settings a condition changes are undone before the
 * writer goes on.  The owner's right to read the table (USAGE on its
 * schema, SELECT on it) is checked again at every capture.
 *
 * A silenced rule's events are recorded with the silence's id and no
 * deliveries.
 *
 * The rules of each table are cached per backend with their prepared plans
 * and the silence muting each, if any.  Any change to herald.rule_defs,
 * herald.rule_channels or herald.silence_defs fires
 * herald._rules_changed(), which sends a relcache invalidation for
 * rule_defs at commit; the callback below then drops the whole cache.  So
 * does an invalidation of a watched table (renamed, altered) or of any
 * schema (renamed): the statements name the table, and are rebuilt with
 * its current name.
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
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "parser/scanner.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/plancache.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/acl.h"
#include "utils/rls.h"
#include "utils/syscache.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"

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
	SPIPlanPtr	select_plan[NUM_OPS];	/* prepared on first use */
	SPIPlanPtr	rows_plan[NUM_OPS]; /* the same, returning rows: see below */
	SPIPlanPtr	direct_plan[NUM_OPS];	/* select and insert in one, see below */
} CaptureRule;

typedef struct TableRules
{
	Oid			relid;			/* hash key */
	int			nrules;
	CaptureRule *rules;
} TableRules;

static MemoryContext capture_context = NULL;
static HTAB *table_rules = NULL;
static SPIPlanPtr insert_plan = NULL;
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

/* Forget every cached rule and plan. */
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
				{
					if (entry->rules[i].select_plan[op])
						SPI_freeplan(entry->rules[i].select_plan[op]);
					if (entry->rules[i].rows_plan[op])
						SPI_freeplan(entry->rules[i].rows_plan[op]);
					if (entry->rules[i].direct_plan[op])
						SPI_freeplan(entry->rules[i].direct_plan[op]);
				}
		}
	}
	if (insert_plan)
		SPI_freeplan(insert_plan);
	insert_plan = NULL;
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

/* A schema renamed or dropped: the statements may name it. */
static void
capture_namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	cache_stale = true;
}

static void
ensure_capture_cache(Oid rules_relid)
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
	if ((cache_stale || rules_relid != cached_rules_relid) && capture_depth == 0)
	{
		reset_capture_cache();
		cache_stale = false;
		cached_rules_relid = rules_relid;
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

/*
 * The enabled row rules of a table, loaded into the cache on first use.
 * Runs as the extension's owner, inside an SPI connection.  The rules are
 * read with the latest snapshot, not the writer's: a cache built from an
 * older snapshot would miss a rule whose invalidation has already passed.
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
	SPIPlanPtr	plan;
	MemoryContext old;

	entry = hash_search(table_rules, &relid, HASH_FIND, &found);
	if (found)
		return entry;

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
	entry->nrules = nrules;
	entry->rules = rules;
	return entry;
}

static char *
qualified_table_name(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * The owner's statement for one rule and operation: one jsonb payload per
 * transition row that satisfies the condition, or with rows, the rows
 * themselves (new, old or both, in that order), whose payloads
 * herald_row_payload() builds (see payload.c).  NEW and OLD name the rows;
 * the one an operation lacks is a row of NULLs.  UPDATE pairs old and new
 * rows by position, which is how the transition tables are filled.
 */
static char *
build_select_sql(Oid relid, int op, const char *condition, bool rows)
{
	StringInfoData sql;
	char	   *table = qualified_table_name(relid);
	char	   *table_lit = quote_literal_cstr(table);
	const char *null_row = psprintf("(SELECT (NULL::%s).*)", table);

	initStringInfo(&sql);
	if (!rows)
		appendStringInfo(&sql, "SELECT jsonb_build_object('table', %s, 'operation', '%s'",
						 table_lit, op_names[op]);
	switch (op)
	{
		case OP_INSERT:
			appendStringInfoString(&sql, rows ? "SELECT new" : ", 'new', to_jsonb(new))");
			appendStringInfoString(&sql, " FROM herald_new AS new");
			if (condition)
				appendStringInfo(&sql, ", %s AS old", null_row);
			break;
		case OP_DELETE:
			appendStringInfoString(&sql, rows ? "SELECT old" : ", 'old', to_jsonb(old))");
			appendStringInfoString(&sql, " FROM herald_old AS old");
			if (condition)
				appendStringInfo(&sql, ", %s AS new", null_row);
			break;
		case OP_UPDATE:
			appendStringInfoString(&sql,
								   rows ? "SELECT n.r, o.r"
								   : ", 'new', to_jsonb(n.r), 'old', to_jsonb(o.r))");
			appendStringInfoString(&sql,
								   " FROM (SELECT row_number() OVER () AS i, t AS r FROM herald_new t) AS n"
								   " JOIN (SELECT row_number() OVER () AS i, t AS r FROM herald_old t) AS o"
								   " USING (i)");
			if (condition)
				appendStringInfoString(&sql,
									   ", LATERAL (SELECT (n.r).*) AS new"
									   ", LATERAL (SELECT (o.r).*) AS old");
			break;
	}
	if (condition)
		appendStringInfo(&sql, " WHERE (%s\n)", condition);
	return sql.data;
}

static SPIPlanPtr
get_select_plan(CaptureRule *rule, Oid relid, int op, bool rows)
{
	SPIPlanPtr *slot = rows ? &rule->rows_plan[op] : &rule->select_plan[op];
	SPIPlanPtr	plan;

	if (*slot)
		return *slot;
	plan = SPI_prepare(build_select_sql(relid, op, rule->condition, rows), 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare the capture statement of rule \"%s\": %s",
			 rule->name, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the capture statement of rule \"%s\"", rule->name);
	*slot = plan;
	return plan;
}

/*
 * The arguments shared by the event statements: $1 type, $2 rule id,
 * $3 rule name, $4 the channels to deliver to, $5 the silence muting the
 * rule, $6 whether the events await a decision (their rule asks for
 * follow-ups).  A muted rule's events are recorded with no deliveries.
 */
#define EVENT_ARGS 6
#define EVENT_ARGTYPES TEXTOID, INT4OID, TEXTOID, INT4ARRAYOID, INT4OID, BOOLOID

static void
event_args(CaptureRule *rule, const char *type, Datum *args, char *nulls)
{
	bool		silenced = rule->silence_id != 0 &&
		GetCurrentTransactionStartTimestamp() < rule->silenced_until;

	args[0] = CStringGetTextDatum(type);
	args[1] = Int32GetDatum(rule->id);
	args[2] = CStringGetTextDatum(rule->name);
	args[3] = silenced ? PointerGetDatum(construct_empty_array(INT4OID)) : rule->channels;
	args[4] = Int32GetDatum(rule->silence_id);
	/* nobody was told of a muted event: nobody is asked about it */
	args[5] = BoolGetDatum(rule->followup && !silenced && strncmp(type, "row.", 4) == 0);
	memset(nulls, ' ', EVENT_ARGS);
	nulls[4] = silenced ? ' ' : 'n';
}

/* The statement recording events: FROM-clause selection in %s. */
#define EVENT_SQL \
	"WITH ev AS (" \
	"  INSERT INTO herald.event_log (type, rule_id, rule, payload, silenced_by, awaits_decision)" \
	"  SELECT $1, $2, $3, p.payload, $5, $6 FROM %s" \
	"  RETURNING id)" \
	" INSERT INTO herald.delivery_queue (event_id, channel_id)" \
	" SELECT ev.id, c FROM ev CROSS JOIN unnest($4) AS c"

/* Insert one event per payload and one delivery per event and channel. */
static void
insert_events(CaptureRule *rule, const char *type, Datum payloads)
{
	Oid			argtypes[EVENT_ARGS + 1] = {EVENT_ARGTYPES, JSONBARRAYOID};
	Datum		args[EVENT_ARGS + 1];
	char		nulls[EVENT_ARGS + 1];
	int			ret;

	if (insert_plan == NULL)
	{
		SPIPlanPtr	plan;

		plan = SPI_prepare(psprintf(EVENT_SQL, "unnest($7) AS p(payload)"),
						   EVENT_ARGS + 1, argtypes);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the event statement: %s",
				 SPI_result_code_string(SPI_result));
		insert_plan = plan;
	}

	event_args(rule, type, args, nulls);
	args[EVENT_ARGS] = payloads;
	nulls[EVENT_ARGS] = ' ';
	ret = SPI_execute_plan(insert_plan, args, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not record events of rule \"%s\": %s",
			 rule->name, SPI_result_code_string(ret));
	herald_note_work();
}

/*
 * Run the rule's selection as its owner; the payloads as a jsonb[], or 0
 * when no row matched.  builtin: every column of the table is of a
 * built-in type, and the statement itself renders the payloads; otherwise
 * it returns the rows, and herald_row_payload() renders them.
 */
static Datum
run_selection(CaptureRule *rule, Oid relid, int op, bool builtin, Oid ext_owner,
			  int sec_context)
{
	SPIPlanPtr	plan;
	Datum		result = (Datum) 0;
	int			ret;
	int			guc_level;

	/*
	 * Prepared, planned and run as the rule's owner.  Settings the condition
	 * changes, even without LOCAL, end with it: the statements that follow
	 * run as the extension's owner.
	 */
	guc_level = NewGUCNestLevel();
	SetUserIdAndSecContext(rule->owner, sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	plan = get_select_plan(rule, relid, op, !builtin);
	ret = SPI_execute_plan(plan, NULL, NULL, false, 0);
	SetUserIdAndSecContext(ext_owner, sec_context | SECURITY_LOCAL_USERID_CHANGE);
	AtEOXact_GUC(false, guc_level);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "unexpected result of the capture statement: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed > 0)
	{
		int			n = SPI_processed;
		Datum	   *elems = palloc(sizeof(Datum) * n);
		char	   *table = builtin ? NULL : qualified_table_name(relid);

		for (int i = 0; i < n; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;

			if (builtin)
			{
				elems[i] = SPI_getbinval(tup, desc, 1, &isnull);
				if (isnull)
					elog(ERROR, "capture statement returned a null payload");
			}
			else
			{
				Datum		first = SPI_getbinval(tup, desc, 1, &isnull);
				Datum		second = op == OP_UPDATE ?
					SPI_getbinval(tup, desc, 2, &isnull) : (Datum) 0;

				elems[i] = herald_row_payload(table, op_names[op],
											  op == OP_DELETE ? (Datum) 0 : first,
											  op == OP_DELETE ? first : second);
			}
		}
		result = PointerGetDatum(construct_array(elems, n, JSONBOID, -1,
												 false, TYPALIGN_INT));
	}
	SPI_freetuptable(SPI_tuptable);
	return result;
}

typedef struct Selection
{
	CaptureRule *rule;
	Oid			relid;
	int			op;
	bool		builtin;
	Oid			ext_owner;
	int			sec_context;
	Datum		result;
} Selection;

static void
selection_step(void *arg)
{
	Selection  *s = arg;

	s->result = run_selection(s->rule, s->relid, s->op, s->builtin, s->ext_owner,
							  s->sec_context);
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
 * The payloads of the rows that satisfy the rule.  A rule without a
 * condition runs no user code and needs no protection; a condition runs
 * through herald_run_limited(), and if it fails, *error gets the message,
 * *failure why, and the result is 0.  The subtransaction's abort restores
 * the extension owner.
 */
static Datum
select_payloads(CaptureRule *rule, Oid relid, int op, bool builtin, Oid ext_owner,
				int sec_context, OwnerBudget *budget, char **error,
				RuleFailure *failure)
{
	Selection	s = {rule, relid, op, builtin, ext_owner, sec_context, (Datum) 0};
	long		left;
	bool		shared;
	bool		timed_out;

	*error = NULL;
	/* with other types than the built-in ones, rendering runs their output functions */
	if (rule->condition == NULL && builtin)
		return run_selection(rule, relid, op, builtin, ext_owner, sec_context);
	shared = budget->started;
	budget->started = true;
	left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), budget->deadline);
	if (left <= 0)
		timed_out = true;
	else
	{
		*error = herald_run_limited(selection_step, &s, (int) left, &timed_out);
		if (*error == NULL)
			return s.result;
	}
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
	return (Datum) 0;
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
record_rule_error(CaptureRule *rule, Oid relid, int op, const char *message,
				  RuleFailure failure)
{
	StringInfoData payload;
	Datum		elem;

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
	escape_json(&payload, qualified_table_name(relid));
	appendStringInfo(&payload, ", \"operation\": \"%s\", \"error\": ", op_names[op]);
	escape_json(&payload, message);
	appendStringInfoChar(&payload, '}');
	elem = DirectFunctionCall1(jsonb_in, CStringGetDatum(payload.data));
	insert_events(rule, "rule.error",
				  PointerGetDatum(construct_array(&elem, 1, JSONBOID, -1, false,
												  TYPALIGN_INT)));
}

/*
 * A rule without a condition whose owner is the extension's owner, on a
 * table whose columns are all of built-in types, runs no code on anyone
 * else's behalf: its selection and the inserts become one statement, run as
 * that owner.  This is the cheapest capture path.
 */
static bool
can_capture_directly(CaptureRule *rule, Oid ext_owner, bool builtin)
{
	return builtin && rule->condition == NULL && rule->owner == ext_owner;
}

static void
capture_directly(CaptureRule *rule, Oid relid, int op)
{
	Oid			argtypes[EVENT_ARGS] = {EVENT_ARGTYPES};
	Datum		args[EVENT_ARGS];
	char		nulls[EVENT_ARGS];
	int			ret;

	if (rule->direct_plan[op] == NULL)
	{
		SPIPlanPtr	plan;

		plan = SPI_prepare(psprintf(EVENT_SQL,
									psprintf("(%s) AS p(payload)",
											 build_select_sql(relid, op, NULL, false))),
						   EVENT_ARGS, argtypes);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the capture statement of rule \"%s\": %s",
				 rule->name, SPI_result_code_string(SPI_result));
		rule->direct_plan[op] = plan;
	}
	event_args(rule, op_events[op], args, nulls);
	ret = SPI_execute_plan(rule->direct_plan[op], args, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not record events of rule \"%s\": %s",
			 rule->name, SPI_result_code_string(ret));
	if (SPI_processed > 0)
		herald_note_work();
}

/* herald.capture(): the statement-level trigger on watched tables */
Datum
herald_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Tuplestorestate *rows;
	Oid			relid;
	int			op;
	Oid			nspid;
	Oid			rules_relid;
	Oid			save_user;
	int			save_sec;
	Oid			ext_owner;
	TableRules *entry;
	int			guc_level;
	bool		builtin;
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
		rows = trigdata->tg_newtable;
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
	if (tuplestore_tuple_count(rows) == 0)
		return PointerGetDatum(NULL);

	relid = RelationGetRelid(trigdata->tg_relation);
	/* the writer's lock keeps the columns as they are until the statement ends */
	builtin = herald_row_is_builtin(RelationGetDescr(trigdata->tg_relation));
	nspid = herald_schema_oid(false);
	rules_relid = get_relname_relid("rule_defs", nspid);
	if (!OidIsValid(rules_relid))
		elog(ERROR, "pg_herald catalog table herald.rule_defs is missing");

	ensure_capture_cache(rules_relid);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "could not register the transition tables");

	/*
	 * pg_herald's statements and the rules' conditions run with a fixed
	 * search_path (the one conditions were checked with), and whatever
	 * settings a condition changes are undone when capture ends.
	 */
	guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);

	GetUserIdAndSecContext(&save_user, &save_sec);
	ext_owner = herald_extension_owner();
	SetUserIdAndSecContext(ext_owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	capture_depth++;

	entry = load_table_rules(relid);
	for (int i = 0; i < entry->nrules; i++)
	{
		CaptureRule *rule = &entry->rules[i];
		Datum		payloads;
		char	   *error;
		RuleFailure failure;

		if ((rule->opmask & (1 << op)) == 0)
			continue;
		if (can_capture_directly(rule, ext_owner, builtin))
		{
			capture_directly(rule, relid, op);
			continue;
		}
		/*
		 * Privileges revoked or policies enabled after the rule was declared:
		 * the transition rows would show what the owner may no longer see.
		 * Reading the table takes what SELECT takes: USAGE on its schema
		 * and SELECT on it.
		 */
		if (pg_namespace_aclcheck(get_rel_namespace(relid), rule->owner,
								  ACL_USAGE) != ACLCHECK_OK ||
			pg_class_aclcheck(relid, rule->owner, ACL_SELECT) != ACLCHECK_OK)
		{
			record_rule_error(rule, relid, op,
							  "the rule's owner may no longer read the table", OWNER_MAY_NOT_READ);
			continue;
		}
		if (check_enable_rls(relid, rule->owner, true) == RLS_ENABLED)
		{
			record_rule_error(rule, relid, op,
							  "row-level security on the table applies to the rule's owner",
							  OWNER_MAY_NOT_READ);
			continue;
		}
		payloads = select_payloads(rule, relid, op, builtin, ext_owner, save_sec,
								   owner_budget(&budgets, &nbudgets, &maxbudgets, rule->owner),
								   &error, &failure);
		if (error)
			record_rule_error(rule, relid, op, error, failure);
		else if (payloads != (Datum) 0)
			insert_events(rule, op_events[op], payloads);
	}

	capture_depth--;
	SetUserIdAndSecContext(save_user, save_sec);
	AtEOXact_GUC(false, guc_level);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
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
