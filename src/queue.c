/*-------------------------------------------------------------------------
 *
 * queue.c
 *		The delivery queue: claim, record, release, flush.
 *
 * herald.delivery_queue holds one row per (event, channel).  A pending row
 * is due when next_attempt_at has passed.  A worker claims due rows with
 * FOR UPDATE SKIP LOCKED and leases them by moving next_attempt_at past the
 * channel's timeout and setting leased_by to its slot, then commits before
 * any request is sent.  If the worker dies, the lease simply expires and the
 * row is due again; a restarting worker releases its slot's leases at once.
 * Outcomes are recorded in batches, in a new transaction, together with one
 * herald.attempt_log row per attempt.
 *
 * Every function here except herald.flush() runs in the delivery worker,
 * inside a transaction with SPI connected; the statements are prepared once
 * per worker and kept.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/parse_relation.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/fmgroids.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "pg_herald.h"

PG_FUNCTION_INFO_V1(herald_flush);
PG_FUNCTION_INFO_V1(herald_note_work_sql);

/* Extra lease time beyond a channel's timeout. */
#define LEASE_MARGIN "interval '1 minute'"

/*
 * A channel's timeout as the worker applies it, in milliseconds: at least
 * 1 (libcurl reads 0 as no timeout at all) and at most HERALD_MAX_WAIT_MS,
 * whatever the table holds, so that the lease, now() plus the timeout,
 * never overflows a timestamp.  The retry delay likewise.
 */
#define MAX_WAIT_MS CppAsString2(HERALD_MAX_WAIT_MS)
#define CLAMPED_MS(interval) \
	"least(greatest(ceil(extract(epoch FROM " interval ") * 1000), 1), " MAX_WAIT_MS ")::bigint"
#define TIMEOUT_MS CLAMPED_MS("c.timeout")

static Datum build_array(Datum *values, bool *nulls, int n, Oid elemtype);
static int	index_plan_settings(void);

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;
static SPIPlanPtr record_plan = NULL;
static SPIPlanPtr purge_plan = NULL;
static SPIPlanPtr notify_plan = NULL;

/* The OID of extension pg_herald and its version (NULL if none), or InvalidOid. */
static Oid
find_extension(char **version)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			extoid = InvalidOid;

	*version = NULL;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum(HERALD_EXTENSION));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		extoid = ((Form_pg_extension) GETSTRUCT(tup))->oid;
		if (!isnull)
			*version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return extoid;
}

/*
 * A pg_restore session connected to this database, by its default
 * application_name: its pid, or 0.  Unless it runs with
 * --single-transaction, it loads pg_herald's history table by table, each
 * in a transaction of its own, after CREATE EXTENSION: a worker started in
 * between would find the events before their delivery positions and
 * attempts, and send them all again, and the scheduler would evaluate rules
 * whose episodes are not there yet.
 */
static int
restore_session(void)
{
	int			n = pgstat_fetch_stat_numbackends();
	int			pid = 0;

	for (int i = 1; i <= n && pid == 0; i++)
	{
		LocalPgBackendStatus *local = herald_local_beentry(i);
		PgBackendStatus *be = local ? &local->backendStatus : NULL;

		if (be != NULL && be->st_databaseid == MyDatabaseId &&
			be->st_backendType == B_BACKEND && be->st_procpid != MyProcPid &&
			strcmp(be->st_appname, "pg_restore") == 0)
			pid = be->st_procpid;
	}
	/* read again at the next look, not at the end of the transaction */
	pgstat_clear_backend_activity_snapshot();
	return pid;
}

/*
 * The installation of pg_herald the workers serve: the OID of the extension
 * in the worker's database, when it is installed at this library's version;
 * InvalidOid otherwise.  A DROP and CREATE EXTENSION makes a new
 * installation with a new OID, so what was claimed from the old one can be
 * told apart.  An installation at another version waits for ALTER EXTENSION
 * pg_herald UPDATE: the workers leave it alone, and say so once.
 *
 * It also locks the installation (the extension object, AccessShareLock,
 * until the transaction ends), so the workers call it before they touch
 * any of its objects: DROP EXTENSION locks the extension before any of its
 * objects, so it waits for a worker's transaction to end, or the worker
 * waits for the DROP and then finds nothing; the two never wait for each
 * other.  A worker that finds its installation gone says so once.
 */
Oid
herald_installation(void)
{
	static char *reported = NULL;
	static Oid	served = InvalidOid;
	static int	waited_for = 0;
	static LocalTransactionId found_in = InvalidLocalTransactionId;
	Oid			locked = InvalidOid;
	Oid			extoid;
	char	   *version;

	/* found and locked in this transaction already: it cannot have changed */
	if (MyProc != NULL && found_in != InvalidLocalTransactionId &&
		found_in == herald_my_lxid() && OidIsValid(served))
		return served;
	found_in = InvalidLocalTransactionId;

	/* lock what was found, then look again: a DROP may have committed meanwhile */
	while (OidIsValid(extoid = find_extension(&version)) && extoid != locked)
	{
		LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
		locked = extoid;
	}

	if (!OidIsValid(extoid) || !OidIsValid(herald_schema_oid(true)))
	{
		/* a launched worker ends: the launcher starts it again on CREATE EXTENSION */
		herald_note_uninstalled();
		if (OidIsValid(served))
			ereport(LOG,
					(errmsg("pg_herald was dropped from database \"%s\": %s leaves it alone until it is created again",
							get_database_name(MyDatabaseId),
							MyBgworkerEntry ? MyBgworkerEntry->bgw_name : "the pg_herald worker")));
		served = InvalidOid;
		return InvalidOid;
	}
	if (version == NULL || strcmp(version, PG_HERALD_VERSION) != 0)
	{
		if (reported == NULL || strcmp(reported, version ? version : "") != 0)
		{
			ereport(LOG,
					(errmsg("pg_herald %s is installed in database \"%s\", but the library is version %s: nothing is delivered or evaluated until it is updated",
							version ? version : "?", get_database_name(MyDatabaseId),
							PG_HERALD_VERSION),
					 errhint("Run ALTER EXTENSION pg_herald UPDATE in that database.")));
			if (reported)
				pfree(reported);
			reported = MemoryContextStrdup(TopMemoryContext, version ? version : "");
		}
		served = InvalidOid;
		return InvalidOid;
	}
	if (reported)
	{
		pfree(reported);
		reported = NULL;
	}
	if (extoid != served)
	{
		/* a new installation: is it being restored? */
		int			restoring = restore_session();

		if (restoring != 0)
		{
			if (waited_for != restoring)
				ereport(LOG,
						(errmsg("pg_restore (process %d) is connected to database \"%s\": %s waits until it ends",
								restoring, get_database_name(MyDatabaseId),
								MyBgworkerEntry ? MyBgworkerEntry->bgw_name : "the pg_herald worker"),
						 errdetail("A restore loads pg_herald's history table by table; served before it ends, restored events would be sent again.")));
			waited_for = restoring;
			return InvalidOid;
		}
		waited_for = 0;
	}
	served = extoid;
	/* the lock of a subtransaction goes with it */
	if (MyProc != NULL && GetCurrentTransactionNestLevel() == 1)
		found_in = herald_my_lxid();
	return extoid;
}

/* The version of pg_herald installed in this database, or NULL. */
char *
herald_installed_version(void)
{
	char	   *version = NULL;

	return OidIsValid(find_extension(&version)) ? version : NULL;
}

/* A restarting worker gives back the leases its previous run held. */
void
herald_queue_release(int slot)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(slot)};
	int			ret;

	/* back to the front of the queue, where they were when claimed */
	ret = SPI_execute_with_args("UPDATE herald.delivery_queue"
								"   SET next_attempt_at = least(created_at, now()), leased_by = NULL"
								" WHERE status = 'pending' AND leased_by = $1",
								1, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "could not release leases: %s", SPI_result_code_string(ret));
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("pg_herald delivery worker %d released " UINT64_FORMAT " leased deliveries",
						slot, SPI_processed)));
}

/*
 * A row of a claim's result, deformed once: SPI_getbinval() would walk the
 * tuple from its start for every column after the first variable-length
 * or null one.  Columns are numbered from 1, as the CLAIM_* are.
 */
typedef struct ClaimRow
{
	Datum	   *values;
	bool	   *nulls;
} ClaimRow;

static Datum
claim_value(const ClaimRow *row, int col)
{
	return row->values[col - 1];
}

static char *
copy_text(const ClaimRow *row, int col)
{
	return row->nulls[col - 1] ? NULL : TextDatumGetCString(row->values[col - 1]);
}

static Jsonb *
copy_jsonb(const ClaimRow *row, int col)
{
	return row->nulls[col - 1] ? NULL : DatumGetJsonbPCopy(row->values[col - 1]);
}

/* A text[] column as C strings (NULL elements as ""); NULL and 0 for NULL. */
static char **
copy_text_array(const ClaimRow *row, int col, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **result;

	*n = 0;
	if (row->nulls[col - 1])
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(row->values[col - 1]), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, n);
	result = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		result[i] = nulls[i] ? pstrdup("") : TextDatumGetCString(elems[i]);
	return result;
}

/*
 * Each delivery worker holds its share of a channel's limits, so that
 * several workers together keep within them: the rate divided by the
 * number of workers, and the concurrency too (at least one request each).
 */
#define WORKERS "current_setting('herald.delivery_workers')::int"
#define CONCURRENCY_SHARE "greatest(1, c.max_concurrency / " WORKERS ")"
#define RATE_SHARE "(c.rate_limit / " WORKERS ")"

/*
 * Each channel's allowance for this claim, from its current settings and
 * what the worker already uses of it: max_concurrency less the requests in
 * flight, and for a rate-limited channel no more than the whole tokens in
 * its bucket (a full bucket, one second's worth, when none is tracked).
 * Shared by the claim and the next-due query.
 */
#define CHANNEL_CAPS_CTE \
	"caps AS (" \
	"  SELECT c.id," \
	"         CASE WHEN c.rate_limit IS NULL" \
	"              THEN " CONCURRENCY_SHARE " - coalesce(s.in_flight, 0)" \
	"              ELSE least(" CONCURRENCY_SHARE " - coalesce(s.in_flight, 0)," \
	"                         floor(coalesce(s.tokens, greatest(1, " RATE_SHARE ")))::int)" \
	"         END AS cap, s.after_at, s.after_id" \
	"    FROM herald.channel_defs c" \
	"    LEFT JOIN unnest($1::int[], $2::int[], $3::float8[], $4::timestamptz[], $5::bigint[])" \
	"           AS s(id, in_flight, tokens, after_at, after_id) ON s.id = c.id)"

/*
 * A channel's pending rows in claim order, from just after the last row
 * the worker claimed (see delivery.c: scanning from the start of the range
 * every time would walk over the dead index entries of rows already done).
 */
#define CHANNEL_RANGE \
	" d.channel_id = caps.id AND d.status = 'pending'" \
	" AND (d.next_attempt_at, d.id) > (coalesce(caps.after_at, '-infinity'), coalesce(caps.after_id, 0))"

static void
use_args(HeraldChannelUse *use, Datum *args)
{
	int			dims[1] = {use->n};
	int			lbs[1] = {1};

	args[0] = PointerGetDatum(construct_md_array(use->channel_ids, NULL, 1, dims, lbs,
												 INT4OID, 4, true, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_md_array(use->in_flight, NULL, 1, dims, lbs,
												 INT4OID, 4, true, TYPALIGN_INT));
	args[2] = PointerGetDatum(construct_md_array(use->tokens, use->tokens_null, 1, dims, lbs,
												 FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_md_array(use->after_at, use->after_null, 1, dims, lbs,
												 TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_md_array(use->after_id, use->after_null, 1, dims, lbs,
												 INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* The columns of the claim's result, in its SELECT's order. */
enum
{
	CLAIM_ID = 1,
	CLAIM_ATTEMPTS,
	CLAIM_WEBHOOK_ID,
	CLAIM_EVENT_ID,
	CLAIM_EVENT_TYPE,
	CLAIM_RULE,
	CLAIM_CREATED_AT,
	CLAIM_PAYLOAD,
	CLAIM_FACT_COLUMNS,
	CLAIM_MESSAGE,
	CLAIM_CHANNEL_ID,
	CLAIM_CHANNEL,
	CLAIM_KIND,
	CLAIM_TARGET,
	CLAIM_SECRET,
	CLAIM_HEADERS,
	CLAIM_TIMEOUT_MS,
	CLAIM_RETRY_DELAY_MS,
	CLAIM_MAX_ATTEMPTS,
	CLAIM_ENABLED,
	CLAIM_MAX_CONCURRENCY,
	CLAIM_RATE_LIMIT,
	CLAIM_ALLOWANCE,
	CLAIM_DUE_AT,
	CLAIM_PREVIOUS_SECRET,
	CLAIM_RECIPIENTS,
	CLAIM_SENDER,
	CLAIM_SUBJECT,
	CLAIM_ACTIONS,
	CLAIM_INTERACTIVE,
	CLAIM_RESPONSE_URL,
	CLAIM_ABOUT_PAYLOAD,
	CLAIM_RULE_MESSAGE,
	CLAIM_MESSAGES,
	CLAIM_RULE_MESSAGES,
	CLAIM_TIMEZONE,
	CLAIM_SPILL,
	CLAIM_FACT_TABLE
};

/*
 * What a claimed delivery carries, in the order of the CLAIM_* columns,
 * from a CTE named claimed (id, attempts, event_id, channel_id, cap, due_at,
 * spill): the claim of queued deliveries and the read of new events share
 * it.  spill: not to be sent now, put in the queue (a read of new events
 * only).
 */
#define DELIVERY_SELECT \
	" SELECT cl.id, cl.attempts, herald.webhook_id(cl.id)," \
	"        e.id, e.type, e.rule," \
	"        to_char(e.created_at AT TIME ZONE 'UTC'," \
	"                'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')," \
	"        e.payload," \
	/* \
	 * the row's columns to show, in order (an index scan of pg_attribute), \
	 * for a row event or the Slack update of a message about one \
	 */ \
	"        CASE WHEN e.type LIKE 'row.%' OR dl.response_url IS NOT NULL" \
	"             THEN r.facts END," \
	"        CASE WHEN e.type NOT LIKE 'decision.%' THEN r.message END," \
	"        c.id, c.name, c.kind, c.target, c.secret," \
	"        ARRAY(SELECT h.key || ': ' || h.value" \
	"                FROM jsonb_each_text(c.headers) AS h)," \
	"        " TIMEOUT_MS "," \
	"        " CLAMPED_MS("c.retry_delay") "::float8," \
	"        c.max_attempts, c.enabled, " CONCURRENCY_SHARE "," \
	"        coalesce(" RATE_SHARE ", 0), cl.cap, cl.due_at," \
	"        CASE WHEN c.previous_secret_until > now() THEN c.previous_secret END," \
	"        c.recipients, c.sender, c.subject," \
	/* plain row events, the bulk, skip the call */ \
	"        CASE WHEN e.type NOT LIKE 'row.%' OR r.choices IS NOT NULL" \
	"               OR r.followup_after IS NOT NULL" \
	"             THEN herald._actions(e, r, c, k.id, k.secret) END," \
	"        c.slack_signing_secret IS NOT NULL," \
	"        dl.response_url," \
	"        CASE WHEN dl.response_url IS NOT NULL THEN" \
	"          (SELECT a.payload FROM herald.event_log a" \
	"            WHERE a.id = e.about_event_id) END," \
	"        CASE WHEN dl.response_url IS NOT NULL THEN r.message END," \
	"        CASE WHEN e.type NOT LIKE 'decision.%' THEN r.messages END," \
	"        CASE WHEN dl.response_url IS NOT NULL THEN r.messages END," \
	"        c.timezone," \
	"        cl.spill," \
	/* no facts named: the table's first columns (fact_columns()) */ \
	"        CASE WHEN (e.type LIKE 'row.%' OR dl.response_url IS NOT NULL)" \
	"              AND r.facts IS NULL THEN r.on_table::oid END" \
	"   FROM claimed cl" \
	"   JOIN herald.event_log e ON e.id = cl.event_id" \
	"   JOIN herald.channel_defs c ON c.id = cl.channel_id" \
	"   LEFT JOIN herald.rule_defs r ON r.id = e.rule_id" \
	/* a probe of decision_log for the decisions only (a null key finds nothing) */ \
	"   LEFT JOIN herald.decision_log dl" \
	"        ON dl.id = CASE WHEN e.type = 'decision.recorded'" \
	"                        THEN (e.payload ->> 'decision_id')::bigint END" \
	"        AND dl.channel_id = c.id" \
	"   LEFT JOIN (SELECT lk.id, lk.secret FROM herald.link_keys lk" \
	"               WHERE lk.retired_at IS NULL ORDER BY lk.id DESC LIMIT 1) k ON true"

/* The first columns of a table, shown as a row event's facts by default. */
#define DEFAULT_FACTS 6

/*
 * The columns a row rule without facts shows: the table's first
 * DEFAULT_FACTS columns in order, dropped ones left out, as
 * herald._fact_columns() says (NULL when there are none), read from the
 * syscache and copied into the current memory context.  The tables seen in
 * one batch are remembered in *seen (a list of FactTable), so that every
 * delivery of one table shares one array.
 */
typedef struct FactTable
{
	Oid			relid;
	char	  **columns;
	int			ncolumns;
} FactTable;

static char **
fact_columns(Oid relid, int *n, List **seen)
{
	ListCell   *lc;
	FactTable  *t;
	int			natts;

	foreach(lc, *seen)
	{
		t = lfirst(lc);
		if (t->relid == relid)
		{
			*n = t->ncolumns;
			return t->columns;
		}
	}
	t = palloc0(sizeof(FactTable));
	t->relid = relid;
	t->columns = palloc(sizeof(char *) * DEFAULT_FACTS);
	natts = 0;
	{
		HeapTuple	rel = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));

		/* a table dropped since: no columns */
		if (HeapTupleIsValid(rel))
		{
			natts = ((Form_pg_class) GETSTRUCT(rel))->relnatts;
			ReleaseSysCache(rel);
		}
	}
	for (AttrNumber a = 1; a <= natts && t->ncolumns < DEFAULT_FACTS; a++)
	{
		HeapTuple	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(a));
		Form_pg_attribute att;

		if (!HeapTupleIsValid(tup))
			continue;
		att = (Form_pg_attribute) GETSTRUCT(tup);
		if (!att->attisdropped)
			t->columns[t->ncolumns++] = pstrdup(NameStr(att->attname));
		ReleaseSysCache(tup);
	}
	if (t->ncolumns == 0)
	{
		pfree(t->columns);
		t->columns = NULL;
	}
	*seen = lappend(*seen, t);
	*n = t->ncolumns;
	return t->columns;
}

/*
 * Copy the deliveries of the last SPI result (DELIVERY_SELECT) into cxt;
 * returns how many.  Rows to spill are left out: with spilled, their
 * channels are set in *spilled (a list of channel ids, in cxt).
 */
static int
copy_deliveries(MemoryContext cxt, HeraldDelivery **out, List **spilled)
{
	int			total = SPI_processed;
	int			n = 0;
	HeraldDelivery *deliveries;
	MemoryContext old;
	List	   *fact_tables = NIL;
	TupleDesc	desc = SPI_tuptable->tupdesc;
	ClaimRow	r;

	old = MemoryContextSwitchTo(cxt);
	r.values = palloc(sizeof(Datum) * desc->natts);
	r.nulls = palloc(sizeof(bool) * desc->natts);
	deliveries = palloc0(sizeof(HeraldDelivery) * Max(total, 1));
	for (int row = 0; row < total; row++)
	{
		HeraldDelivery *d;

		heap_deform_tuple(SPI_tuptable->vals[row], desc, r.values, r.nulls);

		if (DatumGetBool(claim_value(&r, CLAIM_SPILL)))
		{
			if (spilled)
				*spilled = list_append_unique_int(*spilled,
												  DatumGetInt32(claim_value(&r, CLAIM_CHANNEL_ID)));
			continue;
		}
		d = &deliveries[n++];
		d->fresh = (spilled != NULL);
		d->id = DatumGetInt64(claim_value(&r, CLAIM_ID));
		d->attempts = DatumGetInt32(claim_value(&r, CLAIM_ATTEMPTS));
		d->webhook_id = copy_text(&r, CLAIM_WEBHOOK_ID);
		d->event_id = DatumGetInt64(claim_value(&r, CLAIM_EVENT_ID));
		d->event_type = copy_text(&r, CLAIM_EVENT_TYPE);
		d->rule = copy_text(&r, CLAIM_RULE);
		d->created_at = copy_text(&r, CLAIM_CREATED_AT);
		d->payload = DatumGetJsonbPCopy(claim_value(&r, CLAIM_PAYLOAD));
		d->fact_columns = copy_text_array(&r, CLAIM_FACT_COLUMNS,
										  &d->nfact_columns);
		if (d->fact_columns == NULL)
		{
			if (!r.nulls[CLAIM_FACT_TABLE - 1])
				d->fact_columns = fact_columns(DatumGetObjectId(claim_value(&r, CLAIM_FACT_TABLE)),
											   &d->nfact_columns, &fact_tables);
		}
		d->message = copy_text(&r, CLAIM_MESSAGE);
		d->channel_id = DatumGetInt32(claim_value(&r, CLAIM_CHANNEL_ID));
		d->channel = copy_text(&r, CLAIM_CHANNEL);
		d->kind = copy_text(&r, CLAIM_KIND);
		d->target = copy_text(&r, CLAIM_TARGET);
		d->secret = copy_text(&r, CLAIM_SECRET);
		d->headers = copy_text_array(&r, CLAIM_HEADERS, &d->nheaders);
		d->timeout_ms = DatumGetInt64(claim_value(&r, CLAIM_TIMEOUT_MS));
		d->retry_delay_ms = DatumGetFloat8(claim_value(&r, CLAIM_RETRY_DELAY_MS));
		d->max_attempts = DatumGetInt32(claim_value(&r, CLAIM_MAX_ATTEMPTS));
		d->channel_enabled = DatumGetBool(claim_value(&r, CLAIM_ENABLED));
		d->max_concurrency = DatumGetInt32(claim_value(&r, CLAIM_MAX_CONCURRENCY));
		d->rate_limit = DatumGetFloat8(claim_value(&r, CLAIM_RATE_LIMIT));
		d->allowance = DatumGetInt32(claim_value(&r, CLAIM_ALLOWANCE));
		d->due_at = DatumGetTimestampTz(claim_value(&r, CLAIM_DUE_AT));
		d->previous_secret = copy_text(&r, CLAIM_PREVIOUS_SECRET);
		d->recipients = copy_text_array(&r, CLAIM_RECIPIENTS, &d->nrecipients);
		d->sender = copy_text(&r, CLAIM_SENDER);
		d->subject = copy_text(&r, CLAIM_SUBJECT);
		d->actions = copy_jsonb(&r, CLAIM_ACTIONS);
		d->interactive = DatumGetBool(claim_value(&r, CLAIM_INTERACTIVE));
		d->response_url = copy_text(&r, CLAIM_RESPONSE_URL);
		d->about_payload = copy_jsonb(&r, CLAIM_ABOUT_PAYLOAD);
		d->rule_message = copy_text(&r, CLAIM_RULE_MESSAGE);
		d->messages = copy_jsonb(&r, CLAIM_MESSAGES);
		d->rule_messages = copy_jsonb(&r, CLAIM_RULE_MESSAGES);
		d->timezone = copy_text(&r, CLAIM_TIMEZONE);
	}
	pfree(r.values);
	pfree(r.nulls);
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
	*out = deliveries;
	return n;
}

/*
 * Claim up to limit due deliveries for this worker slot, at most each
 * channel's allowance, and copy them into cxt.  Returns how many were
 * claimed.
 */
int
herald_queue_claim(int slot, int limit, HeraldChannelUse *use,
				   MemoryContext cxt, HeraldDelivery **out)
{
	Oid			argtypes[7] = {INT4ARRAYOID, INT4ARRAYOID, FLOAT8ARRAYOID,
		TIMESTAMPTZARRAYOID, INT8ARRAYOID, INT4OID, INT4OID};
	Datum		args[7];
	int			ret;
	int			n;
	HeraldDelivery *deliveries;
	int			guc_level;

	/* the leases taken are this worker's slot's */
	Assert(herald_worker_owns(slot));
	Assert(limit >= 0);
	if (claim_plan == NULL)
		claim_plan = herald_prepare_kept(
								  "WITH " CHANNEL_CAPS_CTE ","
								  " due AS ("
								  "  SELECT q.id, q.next_attempt_at, caps.id AS channel_id, caps.cap FROM caps"
								  "   CROSS JOIN LATERAL ("
								  "     SELECT d.id, d.next_attempt_at FROM herald.delivery_queue d"
								  "      WHERE" CHANNEL_RANGE
								  "        AND d.next_attempt_at <= now()"
								  "      ORDER BY d.next_attempt_at, d.id"
								  "      LIMIT greatest(caps.cap, 0)"
								  "      FOR UPDATE SKIP LOCKED) q"
								  "   WHERE caps.cap > 0"
								  "   LIMIT $6),"
								  " claimed AS ("
								  "  UPDATE herald.delivery_queue d"
								  "     SET next_attempt_at = now() + " TIMEOUT_MS " * interval '1 millisecond'"
								  "                         + " LEASE_MARGIN ","
								  "         leased_by = $7"
								  "    FROM due JOIN herald.channel_defs c ON c.id = due.channel_id"
								  "   WHERE d.id = due.id"
								  "   RETURNING d.id, d.attempts - d.retry_base AS attempts,"
								  "             d.event_id, d.channel_id, due.cap, due.next_attempt_at AS due_at,"
								  "             false AS spill)"
								  DELIVERY_SELECT,
								  7, argtypes);

	use_args(use, args);
	args[5] = Int32GetDatum(limit);
	args[6] = Int32GetDatum(slot);
	guc_level = index_plan_settings();
	ret = SPI_execute_plan(claim_plan, args, NULL, false, 0);
	AtEOXact_GUC(true, guc_level);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not claim deliveries: %s", SPI_result_code_string(ret));

	n = copy_deliveries(cxt, &deliveries, NULL);
	Assert(n <= limit);
	*out = deliveries;
	return n;
}

/*
 * The worker's statements run with every batch, on tables whose statistics
 * are seldom current: the queue is empty most of the time and holds a
 * backlog all of a sudden, the event log grows by thousands of rows a
 * second.  Their plans are made once, generic, and walk the indexes
 * whatever the statistics say: a sort of every event past the position, or
 * a hash of the whole queue for a batch of 32 rows, would make draining a
 * backlog quadratic.  Returns the GUC nest level to pop (AtEOXact_GUC).
 */
static int
index_plan_settings(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("plan_cache_mode", "force_generic_plan", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_seqscan", "off", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* a disabled scan's cost is over jit_above_cost: each run would be compiled */
	(void) set_config_option("jit", "off", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/*
 * Read the events of this worker's share that are new to it (log_cursor.c
 * says where from, and which gaps to look at again), at most limit, and no
 * more than the channels with the largest allowance can take now.  Each
 * event gives one delivery per channel: sent from memory (fresh) within
 * the channel's allowance, otherwise put in the queue, where the claim
 * finds it (its channel is added to *spilled).  Returns how many
 * deliveries are to be sent, copied into cxt; *more says whether the read
 * took as many events as it could (more may be waiting).
 */
int
herald_queue_read_log(int slot, int workers, int limit, HeraldChannelUse *use,
					  MemoryContext cxt, HeraldDelivery **out, List **spilled, bool *more)
{
	static SPIPlanPtr ids_plan = NULL;
	static SPIPlanPtr fan_plan = NULL;
	Oid			argtypes[11] = {INT4ARRAYOID, INT4ARRAYOID, FLOAT8ARRAYOID,
		TIMESTAMPTZARRAYOID, INT8ARRAYOID, INT8OID, INT4OID, INT4OID, INT4OID,
	INT8ARRAYOID, INT8ARRAYOID};
	Oid			fan_argtypes[7] = {INT4ARRAYOID, INT4ARRAYOID, FLOAT8ARRAYOID,
	TIMESTAMPTZARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT8OID};
	Datum		args[11];
	int			ret;
	int64	   *ids;
	int64	   *found;
	int			nids = 0;
	int			nfound = 0;
	Datum	   *elems;
	int			guc_level;
	int			n;

	Assert(herald_worker_owns(slot));
	Assert(workers >= 1 && slot < workers && limit >= 0);
	if (ids_plan == NULL)
		ids_plan = herald_prepare_kept(
									   "WITH " CHANNEL_CAPS_CTE ","
									   /* below 0: more in flight than the channel may have now */
									   " lim AS (SELECT greatest(0, least($9, coalesce(max(caps.cap), 0))) AS n"
									   "           FROM caps)"
									   " (SELECT true, e.id, (SELECT n FROM lim) FROM herald.event_log e"
									   "   WHERE e.id > $6 AND e.id % $7 = $8"
									   "   ORDER BY e.id"
									   "   LIMIT (SELECT n FROM lim))"
									   " UNION ALL"
									   " (SELECT false, x.id, 0 FROM unnest($10, $11) AS g(lo, hi)"
									   "    CROSS JOIN LATERAL (SELECT e.id FROM herald.event_log e"
									   "                         WHERE e.id >= g.lo AND e.id <= g.hi"
									   "                           AND e.id % $7 = $8 OFFSET 0) x)",
									   11, argtypes);
	if (fan_plan == NULL)
		fan_plan = herald_prepare_kept(
									   "WITH " CHANNEL_CAPS_CTE ","
									   " fan AS ("
									   "  SELECT e.id AS event_id, ch.channel_id,"
									   "         row_number() OVER (PARTITION BY ch.channel_id ORDER BY e.id) AS rn"
									   "    FROM herald.event_log e CROSS JOIN LATERAL unnest(e.channel_ids) AS ch(channel_id)"
									   "   WHERE e.id = ANY ($6)"
									   /* read again after a restart: what is recorded is done */
									   "     AND (e.id > $7"
									   "          OR NOT (EXISTS (SELECT 1 FROM herald.attempt_log a"
									   "                           WHERE a.delivery_id = herald._delivery_id(e.id, ch.channel_id))"
									   "                  OR EXISTS (SELECT 1 FROM herald.delivery_queue q"
									   "                              WHERE q.id = herald._delivery_id(e.id, ch.channel_id))))),"
									   " claimed AS ("
									   "  SELECT herald._delivery_id(f.event_id, f.channel_id) AS id, 0 AS attempts,"
									   "         f.event_id, f.channel_id, caps.cap, now() AS due_at,"
									   "         f.rn > greatest(caps.cap, 0) AS spill"
									   "    FROM fan f JOIN caps ON caps.id = f.channel_id),"
									   " spilled AS ("
									   "  INSERT INTO herald.delivery_queue (id, event_id, channel_id)"
									   "  SELECT cl.id, cl.event_id, cl.channel_id FROM claimed cl WHERE cl.spill"
									   "  ON CONFLICT (id) DO NOTHING)"
									   DELIVERY_SELECT,
									   7, fan_argtypes);

	use_args(use, args);
	args[5] = Int64GetDatum(herald_cursor_read_upto());
	args[6] = Int32GetDatum(workers);
	args[7] = Int32GetDatum(slot);
	args[8] = Int32GetDatum(limit);
	/* the horizon, then the snapshot of the statement */
	herald_cursor_plan(&args[9], &args[10]);
	guc_level = index_plan_settings();
	ret = SPI_execute_plan(ids_plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the event log: %s", SPI_result_code_string(ret));
	*more = false;
	ids = palloc(sizeof(int64) * Max(SPI_processed, 1));
	found = palloc(sizeof(int64) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		bool		new = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		int64		id = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));

		if (new)
		{
			ids[nids++] = id;
			/* as many as it could take: there may be more */
			*more = (nids == DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull)));
		}
		else
			found[nfound++] = id;
	}
	SPI_freetuptable(SPI_tuptable);
	/* no more new events than the limit asked for */
	Assert(nids <= limit);
	herald_cursor_read(ids, nids, found, nfound);
	if (nids + nfound == 0)
	{
		AtEOXact_GUC(true, guc_level);
		*out = NULL;
		return 0;
	}

	elems = palloc(sizeof(Datum) * (nids + nfound));
	for (int i = 0; i < nids; i++)
		elems[i] = Int64GetDatum(ids[i]);
	for (int i = 0; i < nfound; i++)
		elems[nids + i] = Int64GetDatum(found[i]);
	args[5] = build_array(elems, NULL, nids + nfound, INT8OID);
	args[6] = Int64GetDatum(herald_cursor_recorded_upto());
	ret = SPI_execute_plan(fan_plan, args, NULL, false, 0);
	AtEOXact_GUC(true, guc_level);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the deliveries of new events: %s",
			 SPI_result_code_string(ret));
	n = copy_deliveries(cxt, out, spilled);

	/*
	 * A full read whose events did not all become deliveries (already
	 * recorded, muted, of a dropped channel) left the channels room: read
	 * on at once.  Otherwise the channels are busy, and the outcomes will
	 * say when to read again.
	 */
	*more = *more && n < nids;
	return n;
}

/*
 * Milliseconds until the next pending delivery of a channel with an
 * allowance left is due (or its lease expires); -1 when there is none.
 */
long
herald_queue_next_due(HeraldChannelUse *use)
{
	Oid			argtypes[5] = {INT4ARRAYOID, INT4ARRAYOID, FLOAT8ARRAYOID,
	TIMESTAMPTZARRAYOID, INT8ARRAYOID};
	Datum		args[5];
	int			ret;
	bool		isnull;
	Datum		d;
	int			guc_level;

	if (next_due_plan == NULL)
		next_due_plan = herald_prepare_kept(
									 "WITH " CHANNEL_CAPS_CTE
									 " SELECT ceil(extract(epoch FROM min(n.at) - clock_timestamp()) * 1000)::bigint"
									 "   FROM caps CROSS JOIN LATERAL ("
									 "     SELECT d.next_attempt_at AS at FROM herald.delivery_queue d"
									 "      WHERE" CHANNEL_RANGE
									 "      ORDER BY d.next_attempt_at, d.id LIMIT 1) n"
									 "  WHERE caps.cap > 0",
									 5, argtypes);
	use_args(use, args);
	guc_level = index_plan_settings();
	ret = SPI_execute_plan(next_due_plan, args, NULL, true, 1);
	AtEOXact_GUC(true, guc_level);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the next due delivery: %s",
			 SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return -1;
	return Max(DatumGetInt64(d), 0);
}

/*
 * The lowest position of the workers (log_cursor.c): every event up to it
 * is handled by all of them, as of their last commit.
 */
static int64
lowest_position(void)
{
	int64		pos = PG_INT64_MAX;
	int			workers;

	SpinLockAcquire(&herald_shared->mutex);
	workers = Max(herald_shared->log_workers, 1);
	for (int i = 0; i < workers && i < HERALD_MAX_WORKERS; i++)
		pos = Min(pos, herald_shared->log_position[i]);
	SpinLockRelease(&herald_shared->mutex);
	return pos;
}

/*
 * Delete the events past their retention whose deliveries are all done
 * (handled by the workers, none pending in the queue, no dead one younger
 * than herald.dead_retention), that await no decision and have none, with
 * their queue rows and attempts; oldest first, at most limit of them.
 * Silenced events, which have no deliveries, go by age likewise.  Returns
 * how many events and deliveries were deleted.
 */
int64
herald_queue_purge(int limit)
{
	Oid			argtypes[4] = {INT4OID, INT4OID, INT4OID, INT8OID};
	Datum		args[4];
	int			ret;
	bool		isnull;
	int			guc_level;
	int64		total;
	static SPIPlanPtr deliveries_purge_plan = NULL;

	if (herald_retention < 0)
		return 0;
	if (purge_plan == NULL)
		purge_plan = herald_prepare_kept(
								  "WITH gone AS ("
								  "  DELETE FROM herald.event_log e"
								  "   WHERE e.id IN (SELECT x.id FROM herald.event_log x"
								  "                   WHERE x.id <= $4"
								  "                     AND x.created_at < now() - $1 * interval '1 second'"
								  "                   ORDER BY x.id LIMIT $3)"
								  "     AND e.awaits_decision IS NOT TRUE"
								  "     AND NOT EXISTS (SELECT 1 FROM herald.delivery_queue d"
								  "                      WHERE d.event_id = e.id"
								  "                        AND (d.status = 'pending'"
								  "                             OR (d.status = 'dead' AND ($2 < 0"
								  "                                 OR d.finished_at >= now() - $2 * interval '1 second'))))"
								  "     AND NOT EXISTS (SELECT 1 FROM herald.decision_log dl"
								  "                      WHERE dl.event_id = e.id)"
								  "   RETURNING e.id),"
								  " queued AS ("
								  "  DELETE FROM herald.delivery_queue d USING gone WHERE d.event_id = gone.id),"
								  " attempts AS ("
								  "  DELETE FROM herald.attempt_log a USING gone"
								  "   WHERE a.delivery_id BETWEEN gone.id * 1000000 AND gone.id * 1000000 + 999999)"
								  " SELECT count(*) FROM gone",
								  4, argtypes);
	if (deliveries_purge_plan == NULL)
		deliveries_purge_plan = herald_prepare_kept(
								  "WITH done AS ("
								  "  DELETE FROM herald.delivery_queue d"
								  "   WHERE d.id IN (SELECT f.id FROM herald.delivery_queue f"
								  "                   WHERE f.status <> 'pending'"
								  "                     AND (f.status = 'delivered' OR $2 >= 0)"
								  "                     AND f.finished_at < now() - CASE f.status WHEN 'dead' THEN $2 ELSE $1 END"
								  "                                               * interval '1 second'"
								  "                   ORDER BY f.finished_at LIMIT $3)"
								  /* rows a read queued while their channel was being dropped */
								  "      OR d.id IN (SELECT f.id FROM herald.delivery_queue f"
								  "                   WHERE NOT EXISTS (SELECT 1 FROM herald.channel_defs c"
								  "                                      WHERE c.id = f.channel_id)"
								  "                   LIMIT $3)"
								  "   RETURNING d.id),"
								  " done_attempts AS ("
								  "  DELETE FROM herald.attempt_log a USING done WHERE a.delivery_id = done.id),"
								  " first_tries AS ("
								  "  DELETE FROM herald.attempt_log a"
								  "   WHERE a.ctid IN (SELECT t.ctid FROM herald.attempt_log t"
								  "                     WHERE t.delivery_id <= $4 * 1000000 + 999999"
								  "                       AND t.started_at < now() - $1 * interval '1 second'"
								  "                       AND NOT EXISTS (SELECT 1 FROM herald.delivery_queue q"
								  "                                        WHERE q.id = t.delivery_id)"
								  "                     ORDER BY t.delivery_id LIMIT $3)"
								  "   RETURNING 1)"
								  " SELECT (SELECT count(*) FROM done) + (SELECT count(*) FROM first_tries)",
								  4, argtypes);
	args[0] = Int32GetDatum(herald_retention);
	args[1] = Int32GetDatum(herald_dead_retention);
	args[2] = Int32GetDatum(limit);
	args[3] = Int64GetDatum(lowest_position());
	guc_level = index_plan_settings();
	ret = SPI_execute_plan(purge_plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not purge events: %s", SPI_result_code_string(ret));
	total = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	/*
	 * The deliveries done of events kept longer (a dead delivery, a
	 * decision, a follow-up awaited) go by themselves, as they did when
	 * every delivery was a row: their queue rows and attempts.
	 */
	ret = SPI_execute_plan(deliveries_purge_plan, args, NULL, false, 1);
	AtEOXact_GUC(true, guc_level);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not purge deliveries: %s", SPI_result_code_string(ret));
	total += DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return total;
}

static Datum
build_array(Datum *values, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval, typalign));
}

/*
 * notify deliveries: their notifications go out when the transaction
 * recording them commits, so that a delivery is marked delivered exactly
 * when its notification is sent.
 */
static void
send_notifications(HeraldOutcome *outcomes, int n)
{
	Oid			argtypes[2] = {TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[2];
	Datum	   *channels = palloc(sizeof(Datum) * n);
	Datum	   *payloads = palloc(sizeof(Datum) * n);
	int			k = 0;
	int			ret;

	for (int i = 0; i < n; i++)
	{
		if (outcomes[i].notify_channel == NULL)
			continue;
		channels[k] = CStringGetTextDatum(outcomes[i].notify_channel);
		payloads[k] = CStringGetTextDatum(outcomes[i].notify_payload);
		k++;
	}
	if (k == 0)
		return;
	if (notify_plan == NULL)
		notify_plan = herald_prepare_kept("SELECT pg_notify(n.c, n.p) FROM unnest($1, $2) AS n(c, p)",
								   2, argtypes);
	args[0] = build_array(channels, NULL, k, TEXTOID);
	args[1] = build_array(payloads, NULL, k, TEXTOID);
	ret = SPI_execute_plan(notify_plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not send notifications: %s", SPI_result_code_string(ret));
}

/* The columns of herald.attempt_log a first attempt sets, by name */
static const char *const attempt_columns[] = {
	"delivery_id", "channel_id", "attempt", "started_at", "latency_ms",
	"http_status", "error", "response"
};

/*
 * Append the first attempt of each fresh outcome to herald.attempt_log,
 * straight into the heap (table_multi_insert) and the table's indexes
 * (ExecInsertIndexTuples, whatever indexes a DBA added), with no SQL
 * statement: the bulk of the worker's writes is one such row per delivery.
 * A column the worker does not set (one a DBA added) is null.
 */
static void
append_first_attempts(HeraldOutcome *outcomes, int n)
{
	Oid			relid = get_relname_relid("attempt_log", herald_schema_oid(false));
	Relation	rel;
	TupleDesc	desc;
	AttrNumber	att[lengthof(attempt_columns)];
	Datum	   *values;
	bool	   *nulls;
	TupleTableSlot **slots;
	EState	   *estate;
	ResultRelInfo *rri;

	Assert(n > 0);
	if (!OidIsValid(relid))
		elog(ERROR, "pg_herald catalog table herald.attempt_log is missing");
	rel = table_open(relid, RowExclusiveLock);
	for (int c = 0; c < lengthof(attempt_columns); c++)
	{
		att[c] = attnameAttNum(rel, attempt_columns[c], false);
		if (att[c] <= 0)
			elog(ERROR, "pg_herald catalog table herald.attempt_log has no column \"%s\"",
				 attempt_columns[c]);
	}
	/* a copy: slots of the relation's own descriptor would each pin it */
	desc = CreateTupleDescCopy(RelationGetDescr(rel));
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	slots = palloc(sizeof(TupleTableSlot *) * n);
	for (int i = 0; i < n; i++)
	{
		HeraldOutcome *o = &outcomes[i];
		Datum		v[lengthof(attempt_columns)];
		bool		isnull[lengthof(attempt_columns)] = {false};

		Assert(o->fresh);
		v[0] = Int64GetDatum(o->delivery_id);
		v[1] = Int32GetDatum(o->channel_id);
		v[2] = Int32GetDatum(1);
		v[3] = TimestampTzGetDatum(o->started);
		v[4] = Float8GetDatum(o->latency_ms);
		v[5] = Int32GetDatum(o->http_status);
		isnull[5] = (o->http_status == 0);
		v[6] = o->error ? CStringGetTextDatum(o->error) : (Datum) 0;
		isnull[6] = (o->error == NULL);
		v[7] = o->response ? CStringGetTextDatum(o->response) : (Datum) 0;
		isnull[7] = (o->response == NULL);
		for (int a = 0; a < desc->natts; a++)
			nulls[a] = true;
		for (int c = 0; c < lengthof(attempt_columns); c++)
		{
			values[att[c] - 1] = v[c];
			nulls[att[c] - 1] = isnull[c];
		}
		slots[i] = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
		ExecStoreHeapTuple(heap_form_tuple(desc, values, nulls), slots[i], true);
	}
	table_multi_insert(rel, slots, n, GetCurrentCommandId(true), 0, NULL);

	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	for (int i = 0; i < n; i++)
	{
		list_free(herald_insert_index_tuples(rri, slots[i], estate));
		ResetPerTupleExprContext(estate);
		ExecDropSingleTupleTableSlot(slots[i]);
	}
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	pfree(slots);
	pfree(values);
	pfree(nulls);
	FreeTupleDesc(desc);
}

/*
 * Record a batch of outcomes and their attempts.  Fresh outcomes
 * (deliveries read from the event log, sent at their first try) are one
 * attempt row each, appended directly, and a queue row when they failed,
 * inserted by a statement run only then.  Outcomes of queued deliveries
 * update their rows and add their attempts in one statement.  A queue row
 * is updated only while its webhook-id is still the one that was sent: a
 * delivery of another installation (DROP and CREATE EXTENSION while the
 * request was in flight) that happens to have the same id is left alone.
 */
static void
record_batch(int slot, HeraldOutcome *outcomes, int n, bool fresh)
{
	static SPIPlanPtr fresh_plan = NULL;
	SPIPlanPtr	plan;
	int			guc_level;
	Oid			argtypes[11] = {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
		TEXTARRAYOID, FLOAT8ARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
	FLOAT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, INT4OID};
	Datum		args[11];
	Datum	   *v[10];
	bool	   *nulls[10];
	int			ret;

	Assert(n >= 0);
	if (n == 0)
		return;
	/* the outcomes of claimed deliveries are recorded under their lease */
	Assert(fresh || herald_worker_owns(slot));
	if (fresh)
	{
		HeraldOutcome *failed = palloc(sizeof(HeraldOutcome) * n);
		int			nfailed = 0;

		append_first_attempts(outcomes, n);
		for (int i = 0; i < n; i++)
			if (strcmp(outcomes[i].status, "delivered") != 0)
				failed[nfailed++] = outcomes[i];
		if (nfailed == 0)
			return;
		/* the queue rows of those that failed */
		outcomes = failed;
		n = nfailed;
	}
	if (fresh && fresh_plan == NULL)
		fresh_plan = herald_prepare_kept(
								  "INSERT INTO herald.delivery_queue AS d"
								  "       (id, event_id, channel_id, status, attempts, next_attempt_at,"
								  "        last_status, last_error, finished_at)"
								  " SELECT r.id, r.id / 1000000, r.channel_id, r.status, 1,"
								  "        CASE WHEN r.status = 'pending'"
								  "             THEN now() + least(greatest(r.retry_in_ms, 0), " MAX_WAIT_MS ")"
								  "                          * interval '1 millisecond'"
								  "             ELSE now() END,"
								  "        r.http_status, r.error,"
								  "        CASE WHEN r.status <> 'pending' THEN now() END"
								  "   FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
								  "     AS r(id, status, http_status, error, latency_ms, response,"
								  "          started_at, retry_in_ms, channel_id, webhook_id)"
								  " ON CONFLICT (id) DO NOTHING",
								  11, argtypes);
	if (!fresh && record_plan == NULL)
		record_plan = herald_prepare_kept(
								   "WITH r AS ("
								   "  SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
								   "    AS r(id, status, http_status, error, latency_ms, response,"
								   "         started_at, retry_in_ms, channel_id, webhook_id)),"
								   " upd AS ("
								   "  UPDATE herald.delivery_queue d"
								   "     SET status = r.status,"
								   "         attempts = d.attempts + 1,"
								   "         next_attempt_at = CASE WHEN r.status = 'pending'"
								   "              THEN now() + least(greatest(r.retry_in_ms, 0), " MAX_WAIT_MS ")"
								   "                           * interval '1 millisecond'"
								   "              ELSE d.next_attempt_at END,"
								   "         leased_by = NULL,"
								   "         last_status = r.http_status,"
								   "         last_error = r.error,"
								   "         finished_at = CASE WHEN r.status <> 'pending' THEN now() END"
								   "    FROM r WHERE d.id = r.id AND d.leased_by = $11"
								   "     AND herald.webhook_id(d.id) = r.webhook_id"
								   "   RETURNING d.id, d.attempts)"
								   " INSERT INTO herald.attempt_log"
								   "        (delivery_id, channel_id, attempt, started_at, latency_ms,"
								   "         http_status, error, response)"
								   " SELECT r.id, r.channel_id, upd.attempts, r.started_at, r.latency_ms,"
								   "        r.http_status, r.error, r.response"
								   "   FROM r JOIN upd ON upd.id = r.id",
								   11, argtypes);

	for (int c = 0; c < 10; c++)
	{
		v[c] = palloc(sizeof(Datum) * n);
		nulls[c] = palloc0(sizeof(bool) * n);
	}
	for (int i = 0; i < n; i++)
	{
		HeraldOutcome *o = &outcomes[i];

		Assert(o->fresh == fresh);
		/* a delivery's id is its event's, times a million, plus its channel */
		Assert(o->delivery_id / 1000000 == o->event_id &&
			   o->delivery_id % 1000000 == o->channel_id);
		Assert(o->webhook_id != NULL && o->status != NULL);
		v[0][i] = Int64GetDatum(o->delivery_id);
		v[1][i] = CStringGetTextDatum(o->status);
		v[2][i] = Int32GetDatum(o->http_status);
		nulls[2][i] = (o->http_status == 0);
		if (o->error)
			v[3][i] = CStringGetTextDatum(o->error);
		nulls[3][i] = (o->error == NULL);
		v[4][i] = Float8GetDatum(o->latency_ms);
		if (o->response)
			v[5][i] = CStringGetTextDatum(o->response);
		nulls[5][i] = (o->response == NULL);
		v[6][i] = TimestampTzGetDatum(o->started);
		v[7][i] = Float8GetDatum(o->retry_in_ms);
		v[8][i] = Int32GetDatum(o->channel_id);
		v[9][i] = CStringGetTextDatum(o->webhook_id);
	}
	args[0] = build_array(v[0], nulls[0], n, INT8OID);
	args[1] = build_array(v[1], nulls[1], n, TEXTOID);
	args[2] = build_array(v[2], nulls[2], n, INT4OID);
	args[3] = build_array(v[3], nulls[3], n, TEXTOID);
	args[4] = build_array(v[4], nulls[4], n, FLOAT8OID);
	args[5] = build_array(v[5], nulls[5], n, TEXTOID);
	args[6] = build_array(v[6], nulls[6], n, TIMESTAMPTZOID);
	args[7] = build_array(v[7], nulls[7], n, FLOAT8OID);
	args[8] = build_array(v[8], nulls[8], n, INT4OID);
	args[9] = build_array(v[9], nulls[9], n, TEXTOID);
	args[10] = Int32GetDatum(slot);

	plan = fresh ? fresh_plan : record_plan;
	guc_level = index_plan_settings();
	ret = SPI_execute_plan(plan, args, NULL, false, 0);
	AtEOXact_GUC(true, guc_level);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not record delivery attempts: %s",
			 SPI_result_code_string(ret));
}

/* Record a batch of outcomes: the fresh ones and the queued ones. */
void
herald_queue_record(int slot, HeraldOutcome *outcomes, int n)
{
	HeraldOutcome *sorted = palloc(sizeof(HeraldOutcome) * Max(n, 1));
	int			nfresh = 0;
	int			k;
	int			ret;

	for (int i = 0; i < n; i++)
		if (outcomes[i].fresh)
			sorted[nfresh++] = outcomes[i];
	k = nfresh;
	for (int i = 0; i < n; i++)
		if (!outcomes[i].fresh)
			sorted[k++] = outcomes[i];
	record_batch(slot, sorted, nfresh, true);
	record_batch(slot, sorted + nfresh, n - nfresh, false);
	pfree(sorted);
	send_notifications(outcomes, n);

	/* 410 Gone: the endpoint asked not to be called again */
	for (int i = 0; i < n; i++)
	{
		Oid			dargtypes[2] = {INT4OID, TEXTOID};
		Datum		dargs[2];

		if (outcomes[i].disable_reason == NULL)
			continue;
		dargs[0] = Int32GetDatum(outcomes[i].channel_id);
		dargs[1] = CStringGetTextDatum(outcomes[i].disable_reason);
		ret = SPI_execute_with_args("UPDATE herald.channel_defs"
									"   SET enabled = false, disabled_reason = $2"
									" WHERE id = $1 AND enabled",
									2, dargtypes, dargs, NULL, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "could not disable a channel: %s",
				 SPI_result_code_string(ret));
		if (SPI_processed > 0)
			ereport(LOG,
					(errmsg("pg_herald disabled channel %d: %s",
							outcomes[i].channel_id, outcomes[i].disable_reason)));
	}
}

/* herald._note_work(): wake the delivery workers when this transaction commits */
Datum
herald_note_work_sql(PG_FUNCTION_ARGS)
{
	herald_note_work();
	PG_RETURN_VOID();
}

/*
 * Wait until the scheduler has evaluated the rules that watch the tables
 * committed before the call; false when the deadline passed first.
 */
static bool
wait_for_evaluations(TimestampTz deadline)
{
	uint64		target;
	long		wait_ms = 1;

	SpinLockAcquire(&herald_shared->mutex);
	target = herald_shared->touch_seq;
	SpinLockRelease(&herald_shared->mutex);

	for (;;)
	{
		uint64		done;

		SpinLockAcquire(&herald_shared->mutex);
		done = herald_shared->evaluated_seq;
		SpinLockRelease(&herald_shared->mutex);
		if (done >= target)
			return true;
		if (GetCurrentTimestamp() >= deadline)
			return false;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, herald_wait_event(HERALD_WAIT_FLUSH_EVALUATIONS));
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		wait_ms = Min(wait_ms * 2, 50);
	}
}

/*
 * herald.flush(timeout interval): wait until the rule evaluations caused by
 * commits made before the call are done, then until every delivery of the
 * events that existed by then is delivered or dead.  True when that happened within
 * the timeout.
 */
Datum
herald_flush(PG_FUNCTION_ARGS)
{
	Interval   *timeout;
	int64		timeout_ms;
	TimestampTz deadline;
	int64		last_id;
	int			ret;
	bool		isnull;
	long		wait_ms = 1;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2];
	bool		done = false;

	herald_require_served("herald.flush() would wait in vain.");
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("herald.flush() requires the READ COMMITTED isolation level"),
				 errdetail("It must see the deliveries the workers commit while it waits.")));
	if (herald_work_pending())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("herald.flush() cannot wait for work of the current transaction"),
				 errhint("Commit the transaction first.")));

	/* within range, the deadline is too; NULL is refused, not "no answer" */
	herald_check_range("timeout", PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0),
					   PG_ARGISNULL(0), INTERVALOID, "0", "1 hour", true, NULL);
	timeout = PG_GETARG_INTERVAL_P(0);
	timeout_ms = ((int64) timeout->month * DAYS_PER_MONTH + timeout->day) *
		(USECS_PER_DAY / 1000) + timeout->time / 1000;
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

	if (!wait_for_evaluations(deadline))
		PG_RETURN_BOOL(false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute("SELECT coalesce(max(id), 0) FROM herald.event_log", false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the event log: %s", SPI_result_code_string(ret));
	last_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	args[0] = Int64GetDatum(last_id);
	herald_wake_delivery(0);

	for (;;)
	{
		/*
		 * Done when no queued delivery of those events is pending, and the
		 * workers have handled every delivery of them: up to their lowest
		 * position, and beyond it each one that has an attempt or a queue
		 * row.
		 */
		args[1] = Int64GetDatum(lowest_position());
		ret = SPI_execute_with_args("SELECT NOT EXISTS (SELECT 1 FROM herald.delivery_queue d"
									"                     JOIN herald.channel_defs c ON c.id = d.channel_id"
									"                    WHERE d.status = 'pending' AND d.event_id <= $1)"
									"   AND NOT EXISTS (SELECT 1 FROM herald.event_log e"
									"                     CROSS JOIN LATERAL unnest(e.channel_ids) AS ch(id)"
									"                     JOIN herald.channel_defs c ON c.id = ch.id"
									"                    WHERE e.id > $2 AND e.id <= $1"
									"                      AND NOT EXISTS (SELECT 1 FROM herald.delivery_queue d"
									"                                       WHERE d.id = herald._delivery_id(e.id, ch.id))"
									"                      AND NOT EXISTS (SELECT 1 FROM herald.attempt_log a"
									"                                       WHERE a.delivery_id = herald._delivery_id(e.id, ch.id)))",
									2, argtypes, args, NULL, false, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read the delivery queue: %s",
				 SPI_result_code_string(ret));
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull)))
		{
			done = true;
			break;
		}
		SPI_freetuptable(SPI_tuptable);
		if (GetCurrentTimestamp() >= deadline)
			break;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, herald_wait_event(HERALD_WAIT_FLUSH_DELIVERIES));
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		wait_ms = Min(wait_ms * 2, 50);
	}
	if (SPI_finish() != SPI_OK_FINISH)
		elog(ERROR, "SPI_finish failed");
	PG_RETURN_BOOL(done);
}
