/*-------------------------------------------------------------------------
 *
 * evaluate.c
 *		Threshold rules: watched tables, metric checks and metric runs.
 *
 * A table that threshold rules watch carries a disabled statement trigger
 * named herald_watch: a marker in the table's catalog entry, which the
 * relation cache keeps at hand.  An executor hook notes every table marked
 * so that a statement wrote to (INSERT, UPDATE, DELETE, MERGE, in SQL or in
 * functions), and a utility hook those of COPY FROM and TRUNCATE
 * (herald_note_touch); pg_herald.c hands the notes to the scheduler at
 * commit.  This costs a look at the trigger names of the tables a statement
 * wrote, where firing even an empty statement trigger costs several
 * percent of a one-row INSERT.  If the trigger is enabled (ALTER TABLE ...
 * ENABLE TRIGGER ALL), herald.touch() notes the table as well: the same
 * note twice.
 *
 * herald._check_metric() checks a metric when a rule is declared: one
 * SELECT, returning one number or a key and a number, that the declaring
 * role can run.  herald._run_metric() runs a rule's metric for the
 * scheduler and for herald.preview(): as the rule's owner (whose
 * privileges and row-level security apply), under
 * SECURITY_RESTRICTED_OPERATION, with the search_path the rule was
 * declared with, read-only, within the rule's query_timeout, in a
 * subtransaction.  A failure is returned as the result's error, so that it
 * puts the rule in state "error" and stops nothing else.  The state machine
 * itself is SQL (herald._evaluate in the install script).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "access/relation.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "pg_herald.h"

PG_FUNCTION_INFO_V1(herald_touch);
PG_FUNCTION_INFO_V1(herald_check_metric);
PG_FUNCTION_INFO_V1(herald_run_metric);

static ExecutorEnd_hook_type prev_executor_end = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;

/* Does the relation carry the herald_watch marker? */
static bool
is_watched(Relation rel)
{
	TriggerDesc *triggers = rel->trigdesc;

	if (triggers == NULL)
		return false;
	for (int i = 0; i < triggers->numtriggers; i++)
		if (strcmp(triggers->triggers[i].tgname, HERALD_WATCH_TRIGGER) == 0)
			return true;
	return false;
}

/* Note the watched tables a finished statement wrote to. */
static void
herald_executor_end(QueryDesc *query)
{
	ListCell   *lc;

	if (query->estate != NULL)
		foreach(lc, query->estate->es_opened_result_relations)
		{
			Relation	rel = ((ResultRelInfo *) lfirst(lc))->ri_RelationDesc;

			if (is_watched(rel))
				herald_note_touch(RelationGetRelid(rel));
		}
	if (prev_executor_end)
		prev_executor_end(query);
	else
		standard_ExecutorEnd(query);
}

static void
note_range_var(RangeVar *rv)
{
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);
	Relation	rel;

	if (!OidIsValid(relid))
		return;
	/* the statement holds its lock until the end of the transaction */
	rel = relation_open(relid, NoLock);
	if (is_watched(rel))
		herald_note_touch(relid);
	relation_close(rel, NoLock);
}

/*
 * DROP EXTENSION pg_herald by its owner: take its locks in an order that
 * deadlocks with nobody.  The workers lock the extension before anything
 * else (herald_installation()) and writers lock their table before the
 * capture writes pg_herald's tables; DROP EXTENSION locks the extension,
 * then pg_herald's tables, then the tables its triggers are on, which a
 * writer may hold while it waits for pg_herald's.  So lock the extension
 * first, once the evaluators have been told to cancel what they are doing
 * (a slow metric may have an hour to go), then the tables with pg_herald's
 * triggers, in OID order: the writers' transactions end first, and
 * whoever comes next waits for the DROP.
 */
static void
prepare_extension_drop(DropStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		Oid			extoid;
		Oid			argtypes[1] = {OIDOID};
		Datum		args[1];
		int			ret;

		if (strcmp(strVal(lfirst(lc)), HERALD_EXTENSION) != 0)
			continue;
		extoid = get_extension_oid(HERALD_EXTENSION, true);
		if (!OidIsValid(extoid) || !herald_extension_ownercheck(extoid, GetUserId()))
			return;				/* the DROP says why not */

		herald_cancel_evaluations();
		LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessExclusiveLock);

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		args[0] = ObjectIdGetDatum(extoid);
		ret = SPI_execute_with_args("SELECT DISTINCT t.tgrelid"
									"  FROM pg_catalog.pg_trigger t"
									"  JOIN pg_catalog.pg_depend d"
									"    ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass"
									"   AND d.objid = t.tgfoid AND d.deptype = 'e'"
									"   AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass"
									"   AND d.refobjid = $1"
									" ORDER BY 1",
									1, argtypes, args, NULL, true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not find the tables pg_herald watches: %s",
				 SPI_result_code_string(ret));
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;

			LockRelationOid(DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1,
														   &isnull)),
							AccessExclusiveLock);
		}
		SPI_finish();
		return;
	}
}

/* COPY FROM and TRUNCATE write without the executor's result relations. */
static void
herald_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					   ProcessUtilityContext context, ParamListInfo params,
					   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	/*
	 * A condition runs in a writer's session: it may read and compute,
	 * never define objects there.  An object in the session's temporary
	 * schema would outlive it: a type named like a built-in one there is
	 * what the writer's own statements would find first.  PostgreSQL
	 * refuses some of this in a security-restricted operation, not all of
	 * it on every version (18 lets a type be made in an existing temporary
	 * schema).  A metric runs read-only, where every DDL is refused.
	 */
	if (herald_rule_code_running() && GetCommandLogLevel(stmt) == LOGSTMT_DDL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a rule's condition cannot run %s", CreateCommandName(stmt)),
				 errdetail("A condition runs in the writer's session: it reads and computes, it does not define or change objects.")));

	herald_launcher_before_utility(stmt);
	if (IsA(stmt, DropStmt) && ((DropStmt *) stmt)->removeType == OBJECT_EXTENSION)
		prepare_extension_drop((DropStmt *) stmt);

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);

	if (IsA(stmt, CopyStmt) && ((CopyStmt *) stmt)->is_from &&
		((CopyStmt *) stmt)->relation != NULL)
		note_range_var(((CopyStmt *) stmt)->relation);
	else if (IsA(stmt, TruncateStmt))
	{
		ListCell   *lc;

		foreach(lc, ((TruncateStmt *) stmt)->relations)
			note_range_var(lfirst_node(RangeVar, lc));
	}
}

void
herald_install_watch_hooks(void)
{
	prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = herald_executor_end;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = herald_process_utility;
}

/* herald.touch(): statement trigger on watched tables */
Datum
herald_touch(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("herald.touch() must be called as a statement-level AFTER trigger")));
	herald_note_touch(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}

static bool
is_numeric_type(Oid type)
{
	switch (getBaseType(type))
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case NUMERICOID:
		case FLOAT4OID:
		case FLOAT8OID:
			return true;
		default:
			return false;
	}
}

/* Error unless metric is one SELECT statement (not SELECT INTO). */
static void
check_single_select(const char *metric)
{
	List	   *parsed = raw_parser(metric, RAW_PARSE_DEFAULT);
	Node	   *stmt = list_length(parsed) == 1 ? linitial_node(RawStmt, parsed)->stmt : NULL;

	if (stmt == NULL || !IsA(stmt, SelectStmt) ||
		((SelectStmt *) stmt)->intoClause != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("it is not a single SELECT statement"),
				 errhint("Write one query returning one number, or a key and a number per row.")));
}

/*
 * Make the current transaction read-only; returns what it was, for the
 * caller to put back.  The variable itself, not the setting through a GUC
 * nest level: PostgreSQL 16 and later refuse transaction_read_only there
 * ("cannot be set locally in functions").  SQL cannot turn it off again
 * meanwhile: check_transaction_read_only refuses inside a subtransaction
 * and once the transaction has a snapshot, and the callers run under both
 * or the latter.  A subtransaction's end restores it too.
 */
static bool
begin_read_only(void)
{
	bool		was = XactReadOnly;

	Assert(IsTransactionState() && (IsSubTransaction() || FirstSnapshotSet));
	XactReadOnly = true;
	return was;
}

/*
 * herald._check_metric(metric text, search_path text) RETURNS boolean:
 * error unless the metric is one SELECT returning a number, or a key and a
 * number; true for the second shape.  The metric is parsed, planned and
 * started (with LIMIT 0, so that nothing is computed) as the role that
 * declares the rule (herald_invoker_id: pg_herald's API runs as the
 * extension's owner), under SECURITY_RESTRICTED_OPERATION, with the
 * search_path it will run with: a table or function that role may not use
 * is an error now, not at the first evaluation.
 */
Datum
herald_check_metric(PG_FUNCTION_ARGS)
{
	char	   *metric = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *search_path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	MemoryContext caller = CurrentMemoryContext;
	volatile bool grouped = false;
	Oid			save_user;
	int			save_sec;
	int			guc_level;
	volatile bool was_read_only = XactReadOnly;

	GetUserIdAndSecContext(&save_user, &save_sec);
	guc_level = NewGUCNestLevel();
	PG_TRY();
	{
		TupleDesc	desc;
		int			ret;

		check_single_select(metric);
		(void) set_config_option("search_path", search_path,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
		/* what planning runs (constant folding) writes nothing either */
		was_read_only = begin_read_only();
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		SetUserIdAndSecContext(herald_invoker_id(), save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		ret = SPI_execute(psprintf("SELECT * FROM (%s\n) AS metric LIMIT 0", metric),
						  true, 0);
		SetUserIdAndSecContext(save_user, save_sec);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "unexpected result of the metric: %s", SPI_result_code_string(ret));
		desc = SPI_tuptable->tupdesc;
		if (desc->natts < 1 || desc->natts > 2)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("it returns %d columns", desc->natts),
					 errhint("Return one numeric column, or a key column and a numeric column.")));
		if (!is_numeric_type(TupleDescAttr(desc, desc->natts - 1)->atttypid))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("its %s column is of type %s, not a number",
							desc->natts == 2 ? "second" : "only",
							format_type_be(TupleDescAttr(desc, desc->natts - 1)->atttypid)),
					 errhint("Cast it to numeric, or return a count, a sum or an average.")));
		grouped = desc->natts == 2;
		SPI_finish();
		XactReadOnly = was_read_only;
		AtEOXact_GUC(false, guc_level);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* the error unwinds to the caller's subtransaction, if any: restore now */
		SetUserIdAndSecContext(save_user, save_sec);
		XactReadOnly = was_read_only;
		AtEOXact_GUC(false, guc_level);
		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("invalid metric: %s", edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0,
				 edata->hint ? errhint("%s", edata->hint) : 0));
	}
	PG_END_TRY();
	PG_RETURN_BOOL(grouped);
}

/* One run of a metric: the rule, and what it returned. */
typedef struct MetricRun
{
	char	   *metric;
	Oid			owner;
	bool		grouped;
	char	   *search_path;
	int			timeout_ms;
	TimestampTz deadline;		/* when query_timeout ends */
	MemoryContext cxt;			/* where the results go */
	int			n;
	Datum	   *keys;
	Datum	   *vals;
	bool	   *val_nulls;
} MetricRun;

/* A metric's value as numeric, whatever numeric type it has. */
static Datum
to_numeric(Datum value, Oid type)
{
	Oid			output;
	bool		varlena;

	getTypeOutputInfo(type, &output, &varlena);
	return DirectFunctionCall3(numeric_in,
							   CStringGetDatum(OidOutputFunctionCall(output, value)),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

static char *
key_text(Datum value, bool isnull, Oid type)
{
	Oid			output;
	bool		varlena;

	if (isnull)
		return "";
	getTypeOutputInfo(type, &output, &varlena);
	return OidOutputFunctionCall(output, value);
}

static int
compare_keys(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * Run the metric: inside herald_run_protected()'s subtransaction, whose
 * abort undoes the user and settings switches below when it fails.
 */
static void
metric_step(void *arg)
{
	MetricRun  *run = arg;
	Oid			save_user;
	int			save_sec;
	int			guc_level;
	bool		outer_timeout = get_timeout_active(STATEMENT_TIMEOUT);
	TimestampTz outer_deadline = outer_timeout ? get_timeout_finish_time(STATEMENT_TIMEOUT) : 0;
	int			ret;
	TupleDesc	desc;
	MemoryContext old;
	bool		was_read_only;

	guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", run->search_path,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	/*
	 * Read-only for real: no write, not even through a volatile function.
	 * Inside this subtransaction the metric cannot turn it off again; its
	 * abort, when the metric fails, turns it back.
	 */
	was_read_only = begin_read_only();
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(run->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	/* query_timeout, unless the caller's own statement timeout comes first */
	run->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), run->timeout_ms);
	if (!outer_timeout || run->deadline < outer_deadline)
		enable_timeout_at(STATEMENT_TIMEOUT, run->deadline);
	PG_TRY();
	{
		/* one row past the limit is enough to refuse: memory stays bounded */
		ret = SPI_execute(run->metric, true, run->grouped ? HERALD_KEYS_MAX + 1 : 2);
	}
	PG_FINALLY();
	{
		disable_timeout(STATEMENT_TIMEOUT, false);
		if (outer_timeout)
			enable_timeout_at(STATEMENT_TIMEOUT, outer_deadline);
	}
	PG_END_TRY();

	/*
	 * query_timeout went off just as the metric finished: the metric made it,
	 * and the cancel it requested must not abort what follows.
	 */
	if (QueryCancelPending && GetCurrentTimestamp() >= run->deadline &&
		(!outer_timeout || run->deadline < outer_deadline))
		QueryCancelPending = false;

	if (ret != SPI_OK_SELECT)
		elog(ERROR, "unexpected result of the metric: %s", SPI_result_code_string(ret));
	desc = SPI_tuptable->tupdesc;
	if (desc->natts != (run->grouped ? 2 : 1) ||
		!is_numeric_type(TupleDescAttr(desc, desc->natts - 1)->atttypid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the metric no longer returns %s",
						run->grouped ? "a key and a number" : "one number")));
	if (!run->grouped && SPI_processed > 1)
		ereport(ERROR,
				(errcode(ERRCODE_CARDINALITY_VIOLATION),
				 errmsg("the metric returned more than one row"),
				 errhint("A metric without a key column returns one row.")));

	if (run->grouped && SPI_processed > HERALD_KEYS_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the metric returned more than %d keys", HERALD_KEYS_MAX),
				 errhint("A metric returns at most %d keys: group it more coarsely, or filter it.",
						 HERALD_KEYS_MAX)));

	old = MemoryContextSwitchTo(run->cxt);
	run->n = run->grouped ? SPI_processed : 1;
	run->keys = palloc(sizeof(Datum) * Max(run->n, 1));
	run->vals = palloc(sizeof(Datum) * Max(run->n, 1));
	run->val_nulls = palloc(sizeof(bool) * Max(run->n, 1));
	if (!run->grouped)
	{
		/* no row is no data, like a NULL value */
		run->keys[0] = CStringGetTextDatum("");
		run->val_nulls[0] = true;
		if (SPI_processed == 1)
		{
			Datum		v = SPI_getbinval(SPI_tuptable->vals[0], desc, 1, &run->val_nulls[0]);

			if (!run->val_nulls[0])
				run->vals[0] = to_numeric(v, TupleDescAttr(desc, 0)->atttypid);
		}
	}
	else
	{
		char	  **sorted = palloc(sizeof(char *) * Max(run->n, 1));

		for (int i = 0; i < run->n; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			bool		isnull;
			Datum		k = SPI_getbinval(tup, desc, 1, &isnull);
			char	   *key = key_text(k, isnull, TupleDescAttr(desc, 0)->atttypid);
			Datum		v;

			if (strlen(key) > HERALD_KEY_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("the metric returned a key of %zu bytes", strlen(key)),
						 errhint("A key is at most %d bytes.", HERALD_KEY_MAX)));
			sorted[i] = key;
			run->keys[i] = CStringGetTextDatum(key);
			v = SPI_getbinval(tup, desc, 2, &run->val_nulls[i]);
			if (!run->val_nulls[i])
				run->vals[i] = to_numeric(v, TupleDescAttr(desc, 1)->atttypid);
		}
		qsort(sorted, run->n, sizeof(char *), compare_keys);
		for (int i = 1; i < run->n; i++)
			if (strcmp(sorted[i - 1], sorted[i]) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_CARDINALITY_VIOLATION),
						 errmsg("the metric returned key \"%s\" more than once", sorted[i]),
						 errhint("Group the metric by its key column.")));
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);

	SetUserIdAndSecContext(save_user, save_sec);
	XactReadOnly = was_read_only;
	/* whatever the metric set, even without LOCAL, ends with it */
	AtEOXact_GUC(false, guc_level);
}

/*
 * herald._run_metric(rule_id integer) RETURNS herald._metric_result:
 * (keys text[], vals numeric[], error text, duration_ms float8).  A metric
 * without a key column has the one key ''.
 */
Datum
herald_run_metric(PG_FUNCTION_ARGS)
{
	int32		rule_id = PG_GETARG_INT32(0);
	MetricRun	run;
	TupleDesc	result_desc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	char	   *error;
	TimestampTz start;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];
	int			ret;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	MemoryContext old;

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "herald._run_metric must return a composite type");
	result_desc = BlessTupleDesc(result_desc);

	memset(&run, 0, sizeof(run));
	run.cxt = CurrentMemoryContext;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[0] = Int32GetDatum(rule_id);
	ret = SPI_execute_with_args("SELECT metric, owner::oid, grouped, search_path,"
								"       ceil(extract(epoch FROM query_timeout) * 1000)::int4"
								"  FROM herald.rule_defs WHERE id = $1 AND kind = 'threshold'",
								1, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read rule %d: %s", rule_id, SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("threshold rule %d does not exist", rule_id)));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	old = MemoryContextSwitchTo(run.cxt);
	run.metric = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
	run.owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	run.grouped = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	run.search_path = TextDatumGetCString(SPI_getbinval(tup, desc, 4, &isnull));
	run.timeout_ms = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);

	start = GetCurrentTimestamp();
	PG_TRY();
	{
		error = herald_run_protected(metric_step, &run);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* the cancel that query_timeout caused is the rule's failure */
		if (run.deadline == 0 || GetCurrentTimestamp() < run.deadline ||
			geterrcode() != ERRCODE_QUERY_CANCELED)
			PG_RE_THROW();
		MemoryContextSwitchTo(run.cxt);
		edata = CopyErrorData();
		FlushErrorState();
		FreeErrorData(edata);
		error = psprintf("the metric ran longer than its query_timeout (%d ms)", run.timeout_ms);
	}
	PG_END_TRY();
	/* the message is in SPI's memory, which SPI_finish() frees */
	if (error)
		error = MemoryContextStrdup(run.cxt, error);
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");

	if (error)
	{
		error = herald_truncate(error, HERALD_RULE_ERROR_MAX, "...");
		ereport(LOG,
				(errmsg("metric of threshold rule %d failed: %s", rule_id, error)));
		nulls[0] = nulls[1] = true;
		values[2] = CStringGetTextDatum(error);
	}
	else
	{
		values[0] = PointerGetDatum(construct_array(run.keys, run.n, TEXTOID, -1, false,
													TYPALIGN_INT));
		values[1] = PointerGetDatum(construct_md_array(run.vals, run.val_nulls, 1, &run.n,
													   (int[]) {1}, NUMERICOID, -1, false,
													   TYPALIGN_INT));
		nulls[2] = true;
	}
	values[3] = Float8GetDatum((double) (GetCurrentTimestamp() - start) / 1000.0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc, values, nulls)));
}
