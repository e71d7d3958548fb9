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
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
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

/* The version of a row of table alias: changes with every update of it */
#define ROW_VERSION(alias) alias ".xmin::text || '/' || " alias ".ctid::text"

/*
 * Each channel's allowance for this claim, from its current settings and
 * what the worker already uses of it: max_concurrency less the requests in
 * flight, and for a rate-limited channel no more than the whole tokens in
 * its bucket (a full bucket, one second's worth, when none is tracked);
 * and the version of its row (xmin and ctid), by which the read of new
 * events knows a kept channel changed.  Shared by the claim, the read and
 * the next-due query.
 */
#define CHANNEL_CAPS_CTE \
	"caps AS (" \
	"  SELECT c.id," \
	"         CASE WHEN c.rate_limit IS NULL" \
	"              THEN " CONCURRENCY_SHARE " - coalesce(s.in_flight, 0)" \
	"              ELSE least(" CONCURRENCY_SHARE " - coalesce(s.in_flight, 0)," \
	"                         floor(coalesce(s.tokens, greatest(1, " RATE_SHARE ")))::int)" \
	"         END AS cap, s.after_at, s.after_id," \
	"         " ROW_VERSION("c") " AS version" \
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

/*
 * The columns of a delivery's row, in the SELECT's order (DELIVERY_SELECT).
 * Those of its channel come in one block (CHANNEL_COLUMNS), which the read
 * of new events also keeps per channel (KeptRows).
 */
enum
{
	CLAIM_ID = 1,
	CLAIM_ATTEMPTS,
	CLAIM_EVENT_ID,
	CLAIM_EVENT_TYPE,
	CLAIM_RULE,
	CLAIM_CREATED_AT,
	CLAIM_PAYLOAD,
	CLAIM_FACT_COLUMNS,
	CLAIM_MESSAGE,
	CLAIM_CHANNEL_ID,			/* the first of CHANNEL_COLUMNS */
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
	CLAIM_PREVIOUS_SECRET,
	CLAIM_PREVIOUS_SECRET_UNTIL,
	CLAIM_RECIPIENTS,
	CLAIM_SENDER,
	CLAIM_SUBJECT,
	CLAIM_INTERACTIVE,
	CLAIM_TIMEZONE,				/* the last of CHANNEL_COLUMNS */
	CLAIM_ALLOWANCE,
	CLAIM_DUE_AT,
	CLAIM_ACTIONS,
	CLAIM_RESPONSE_URL,
	CLAIM_ABOUT_PAYLOAD,
	CLAIM_RULE_MESSAGE,
	CLAIM_MESSAGES,
	CLAIM_RULE_MESSAGES,
	CLAIM_SPILL,
	CLAIM_FACT_TABLE,
	NUM_CLAIM_COLUMNS = CLAIM_FACT_TABLE
};

#define NUM_CHANNEL_COLUMNS (CLAIM_TIMEZONE - CLAIM_CHANNEL_ID + 1)

/* What a delivery takes of its channel c, in the order of the CLAIM_* */
#define CHANNEL_COLUMNS \
	" c.id, c.name, c.kind, c.target, c.secret, c.headers," \
	" " TIMEOUT_MS "," \
	" " CLAMPED_MS("c.retry_delay") "::float8," \
	" c.max_attempts, c.enabled, " CONCURRENCY_SHARE "," \
	" coalesce(" RATE_SHARE ", 0)::float8," \
	" c.previous_secret, c.previous_secret_until," \
	" c.recipients, c.sender, c.subject," \
	" c.slack_signing_secret IS NOT NULL, c.timezone"

/* Whether a message about an event of rule r offers actions (herald._actions()) */
#define RULE_OFFERS_ACTIONS "(r.choices IS NOT NULL OR r.followup_after IS NOT NULL)"

/*
 * What a claimed delivery carries, in the order of the CLAIM_* columns,
 * from a CTE named claimed (id, attempts, event_id, channel_id, cap, due_at,
 * spill): the claim of queued deliveries and the read of new events share
 * it.  spill: not to be sent now, put in the queue (a read of new events
 * only).  A plain row event (of a rule offering no actions) needs none of
 * the joins past its rule: the read of new events makes those deliveries
 * in C (plain_delivery()), from the same columns.
 */
#define DELIVERY_SELECT \
	" SELECT cl.id, cl.attempts, e.id, e.type, e.rule, e.created_at, e.payload," \
	/* \
	 * the row's columns to show, in order (an index scan of pg_attribute), \
	 * for a row event or the Slack update of a message about one \
	 */ \
	"        CASE WHEN e.type LIKE 'row.%' OR dl.response_url IS NOT NULL" \
	"             THEN r.facts END," \
	"        CASE WHEN e.type NOT LIKE 'decision.%' THEN r.message END," \
	CHANNEL_COLUMNS "," \
	"        cl.cap, cl.due_at," \
	/* plain row events, the bulk, skip the call */ \
	"        CASE WHEN e.type NOT LIKE 'row.%' OR " RULE_OFFERS_ACTIONS \
	"             THEN herald._actions(e, r, c, k.id, k.secret) END," \
	"        dl.response_url," \
	"        CASE WHEN dl.response_url IS NOT NULL THEN" \
	"          (SELECT a.payload FROM herald.event_log a" \
	"            WHERE a.id = e.about_event_id) END," \
	"        CASE WHEN dl.response_url IS NOT NULL THEN r.message END," \
	"        CASE WHEN e.type NOT LIKE 'decision.%' THEN r.messages END," \
	"        CASE WHEN dl.response_url IS NOT NULL THEN r.messages END," \
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
 * The deliveries a claim or a read makes, in cxt: what they share (the
 * installation's id, for their webhook-ids; the default facts of the tables
 * seen) and the channels whose deliveries were put in the queue instead
 * (spilled, a list of channel ids; NULL for a claim).
 */
typedef struct DeliveryBatch
{
	MemoryContext cxt;
	HeraldDelivery *items;
	int			n;
	int			max;
	bool		fresh;			/* read from the event log */
	char	   *installation_id;
	List	   *fact_tables;
	List	  **spilled;
} DeliveryBatch;

static void
batch_start(DeliveryBatch *b, MemoryContext cxt, bool fresh, List **spilled)
{
	memset(b, 0, sizeof(DeliveryBatch));
	b->cxt = cxt;
	b->fresh = fresh;
	b->spilled = spilled;
}

/* A delivery not to be sent now, which goes to the queue: its channel is noted */
static void
batch_spill(DeliveryBatch *b, int32 channel_id)
{
	MemoryContext old = MemoryContextSwitchTo(b->cxt);

	Assert(b->spilled != NULL);
	*b->spilled = list_append_unique_int(*b->spilled, channel_id);
	MemoryContextSwitchTo(old);
}

/* ISO 8601 in UTC with microseconds, as in every payload; NULL for infinity */
static char *
iso_utc(TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(t) || timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		return NULL;
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/*
 * A channel's headers, a JSON object of strings (create_channel() checks
 * them), as "Name: value" lines; a value of another type as its JSON text,
 * a null one as an empty line (which libcurl ignores).
 */
static char **
header_lines(const ClaimRow *row, int col, int *n)
{
	Jsonb	   *headers;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	  **lines;
	char	   *key = NULL;

	*n = 0;
	if (row->nulls[col - 1])
		return NULL;
	headers = DatumGetJsonbP(row->values[col - 1]);
	if (!JB_ROOT_IS_OBJECT(headers))
		return NULL;
	lines = palloc(sizeof(char *) * Max(JB_ROOT_COUNT(headers), 1));
	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && key != NULL)
		{
			if (v.type == jbvString)
				lines[(*n)++] = psprintf("%s: %.*s", key, v.val.string.len, v.val.string.val);
			else if (v.type == jbvNull)
				lines[(*n)++] = pstrdup("");
			else
			{
				Jsonb	   *value = JsonbValueToJsonb(&v);

				lines[(*n)++] = psprintf("%s: %s", key,
										 JsonbToCString(NULL, &value->root, VARSIZE(value)));
			}
			pfree(key);
			key = NULL;
		}
	}
	return lines;
}

/* Fill the next delivery of the batch from one row (CLAIM_* columns) */
static void
fill_delivery(DeliveryBatch *b, const ClaimRow *r)
{
	HeraldDelivery *d;
	MemoryContext old;

	/* read once per batch, when it has a delivery */
	if (b->installation_id == NULL)
	{
		char	   *id = herald_installation_id();

		b->installation_id = MemoryContextStrdup(b->cxt, id);
		pfree(id);
	}
	old = MemoryContextSwitchTo(b->cxt);
	if (b->n == b->max)
	{
		b->max = Max(b->max * 2, 32);
		b->items = b->items ? repalloc(b->items, sizeof(HeraldDelivery) * b->max) :
			palloc(sizeof(HeraldDelivery) * b->max);
	}
	d = &b->items[b->n++];
	memset(d, 0, sizeof(HeraldDelivery));
	d->fresh = b->fresh;
	d->id = DatumGetInt64(claim_value(r, CLAIM_ID));
	d->attempts = DatumGetInt32(claim_value(r, CLAIM_ATTEMPTS));
	d->webhook_id = herald_format_webhook_id(b->installation_id, d->id);
	d->event_id = DatumGetInt64(claim_value(r, CLAIM_EVENT_ID));
	d->event_type = copy_text(r, CLAIM_EVENT_TYPE);
	d->rule = copy_text(r, CLAIM_RULE);
	d->created_at = iso_utc(DatumGetTimestampTz(claim_value(r, CLAIM_CREATED_AT)));
	d->payload = DatumGetJsonbPCopy(claim_value(r, CLAIM_PAYLOAD));
	d->fact_columns = copy_text_array(r, CLAIM_FACT_COLUMNS, &d->nfact_columns);
	if (d->fact_columns == NULL && !r->nulls[CLAIM_FACT_TABLE - 1])
		d->fact_columns = fact_columns(DatumGetObjectId(claim_value(r, CLAIM_FACT_TABLE)),
									   &d->nfact_columns, &b->fact_tables);
	d->message = copy_text(r, CLAIM_MESSAGE);
	d->channel_id = DatumGetInt32(claim_value(r, CLAIM_CHANNEL_ID));
	d->channel = copy_text(r, CLAIM_CHANNEL);
	d->kind = copy_text(r, CLAIM_KIND);
	d->target = copy_text(r, CLAIM_TARGET);
	d->secret = copy_text(r, CLAIM_SECRET);
	d->headers = header_lines(r, CLAIM_HEADERS, &d->nheaders);
	d->timeout_ms = DatumGetInt64(claim_value(r, CLAIM_TIMEOUT_MS));
	d->retry_delay_ms = DatumGetFloat8(claim_value(r, CLAIM_RETRY_DELAY_MS));
	d->max_attempts = DatumGetInt32(claim_value(r, CLAIM_MAX_ATTEMPTS));
	d->channel_enabled = DatumGetBool(claim_value(r, CLAIM_ENABLED));
	d->max_concurrency = DatumGetInt32(claim_value(r, CLAIM_MAX_CONCURRENCY));
	d->rate_limit = DatumGetFloat8(claim_value(r, CLAIM_RATE_LIMIT));
	d->allowance = DatumGetInt32(claim_value(r, CLAIM_ALLOWANCE));
	d->due_at = DatumGetTimestampTz(claim_value(r, CLAIM_DUE_AT));
	/* the previous secret signs too until its time is up (now(): the transaction's start) */
	if (!r->nulls[CLAIM_PREVIOUS_SECRET_UNTIL - 1] &&
		DatumGetTimestampTz(claim_value(r, CLAIM_PREVIOUS_SECRET_UNTIL)) >
		GetCurrentTransactionStartTimestamp())
		d->previous_secret = copy_text(r, CLAIM_PREVIOUS_SECRET);
	d->recipients = copy_text_array(r, CLAIM_RECIPIENTS, &d->nrecipients);
	d->sender = copy_text(r, CLAIM_SENDER);
	d->subject = copy_text(r, CLAIM_SUBJECT);
	d->actions = copy_jsonb(r, CLAIM_ACTIONS);
	d->interactive = DatumGetBool(claim_value(r, CLAIM_INTERACTIVE));
	d->response_url = copy_text(r, CLAIM_RESPONSE_URL);
	d->about_payload = copy_jsonb(r, CLAIM_ABOUT_PAYLOAD);
	d->rule_message = copy_text(r, CLAIM_RULE_MESSAGE);
	d->messages = copy_jsonb(r, CLAIM_MESSAGES);
	d->rule_messages = copy_jsonb(r, CLAIM_RULE_MESSAGES);
	d->timezone = copy_text(r, CLAIM_TIMEZONE);
	MemoryContextSwitchTo(old);
}

/*
 * Add the deliveries of the last SPI result (DELIVERY_SELECT) to the batch;
 * rows to spill are left out, their channels noted.
 */
static void
copy_deliveries(DeliveryBatch *b)
{
	SPITupleTable *result = SPI_tuptable;
	uint64		nrows = SPI_processed;
	TupleDesc	desc = result->tupdesc;
	ClaimRow	r;

	Assert(desc->natts == NUM_CLAIM_COLUMNS);
	r.values = palloc(sizeof(Datum) * desc->natts);
	r.nulls = palloc(sizeof(bool) * desc->natts);
	for (uint64 row = 0; row < nrows; row++)
	{
		heap_deform_tuple(result->vals[row], desc, r.values, r.nulls);
		if (DatumGetBool(claim_value(&r, CLAIM_SPILL)))
			batch_spill(b, DatumGetInt32(claim_value(&r, CLAIM_CHANNEL_ID)));
		else
			fill_delivery(b, &r);
	}
	pfree(r.values);
	pfree(r.nulls);
	SPI_freetuptable(result);
}

/* The deliveries of the batch (an empty array when there are none) */
static HeraldDelivery *
batch_items(DeliveryBatch *b)
{
	if (b->items == NULL)
		b->items = MemoryContextAllocZero(b->cxt, sizeof(HeraldDelivery));
	return b->items;
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
	DeliveryBatch batch;
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

	batch_start(&batch, cxt, false, NULL);
	copy_deliveries(&batch);
	Assert(batch.n <= limit);
	*out = batch_items(&batch);
	return batch.n;
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
 * What the read of new events keeps between batches, so that the bulk of
 * deliveries (plain row events) is made in C from the event's row, with no
 * join: the columns a delivery takes of each channel (CHANNEL_COLUMNS) and
 * of each rule (RULE_COLUMNS), with the version (xmin and ctid) of the row
 * they were read from.  The read statement returns the version of the row
 * of each channel and rule its events name, in its own snapshot: an entry
 * whose row has changed since is read again (and all of its kind are
 * forgotten then, which bounds their memory), one whose row is gone is not
 * used.  So a change committed before an event is seen by its delivery,
 * whatever path made it (alter_channel, alter_rule, a DBA's UPDATE).
 */
typedef struct KeptEntry
{
	int32		id;				/* hash key */
	char	   *version;
	Datum	   *values;
	bool	   *nulls;
} KeptEntry;

typedef struct KeptRows
{
	const char *name;
	const char *load;			/* SELECT version, columns ... WHERE id = ANY ($1) */
	int			ncolumns;
	SPIPlanPtr	plan;
	MemoryContext cxt;
	HTAB	   *entries;
	bool		loading;		/* a load failed half-way: forget what it left */
} KeptRows;

/* What a delivery takes of its rule r, in this order (RULE_*) */
#define RULE_COLUMNS \
	RULE_OFFERS_ACTIONS ", r.facts, r.message, r.messages, r.on_table::oid"
enum
{
	RULE_ID = 0,
	RULE_OFFERS,
	RULE_FACTS,
	RULE_MESSAGE,
	RULE_MESSAGES,
	RULE_ON_TABLE,
	NUM_RULE_COLUMNS
};

static KeptRows kept_channels = {
	"pg_herald channels",
	"SELECT " ROW_VERSION("c") "," CHANNEL_COLUMNS
	"  FROM herald.channel_defs c WHERE c.id = ANY ($1)",
	NUM_CHANNEL_COLUMNS
};
static KeptRows kept_rules = {
	"pg_herald rules",
	"SELECT " ROW_VERSION("r") ", r.id, " RULE_COLUMNS
	"  FROM herald.rule_defs r WHERE r.id = ANY ($1)",
	NUM_RULE_COLUMNS
};
static Oid	kept_installation = InvalidOid;

/*
 * A channel or a rule the events of a read name: the version of its row in
 * the read's snapshot; for a channel, its allowance and the deliveries
 * made of it so far.
 */
typedef struct SeenRow
{
	int32		id;				/* hash key */
	char	   *version;
	int32		cap;
	int			taken;
} SeenRow;

/* Forget every entry */
static void
kept_forget(KeptRows *k)
{
	HASHCTL		ctl;

	if (k->cxt == NULL)
		/* the name is a string constant, as AllocSetContextCreate() wants */
		k->cxt = AllocSetContextCreateInternal(TopMemoryContext, k->name, ALLOCSET_SMALL_SIZES);
	MemoryContextReset(k->cxt);
	ctl.keysize = sizeof(int32);
	ctl.entrysize = sizeof(KeptEntry);
	ctl.hcxt = k->cxt;
	k->entries = hash_create(k->name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	k->loading = false;
}

/*
 * Copy a datum of column att of desc into the current memory context,
 * detoasted: a kept value must not point into a table.
 */
static Datum
copy_datum(TupleDesc desc, int att, Datum value, bool isnull)
{
	Form_pg_attribute a = TupleDescAttr(desc, att);

	if (isnull)
		return (Datum) 0;
	if (a->attlen == -1)
		return PointerGetDatum(PG_DETOAST_DATUM_COPY(value));
	return datumCopy(value, a->attbyval, a->attlen);
}

/*
 * Bring the entries of the rows seen (SeenRow) up to date; an id whose row
 * the load does not find any more has no entry.
 */
static void
kept_refresh(KeptRows *k, HTAB *seen)
{
	HASH_SEQ_STATUS seq;
	SeenRow    *s;
	Datum	   *missing;
	int			nmissing = 0;
	bool		changed = false;
	Oid			argtypes[1] = {INT4ARRAYOID};
	Datum		args[1];
	int			ret;
	TupleDesc	desc;
	MemoryContext old;

	if (k->entries == NULL || k->loading)
		kept_forget(k);
	missing = palloc(sizeof(Datum) * Max(hash_get_num_entries(seen), 1));
	hash_seq_init(&seq, seen);
	while ((s = hash_seq_search(&seq)) != NULL)
	{
		KeptEntry  *e = hash_search(k->entries, &s->id, HASH_FIND, NULL);

		if (e == NULL)
			missing[nmissing++] = Int32GetDatum(s->id);
		else if (strcmp(e->version, s->version) != 0)
			changed = true;
	}
	if (changed)
	{
		kept_forget(k);
		nmissing = 0;
		hash_seq_init(&seq, seen);
		while ((s = hash_seq_search(&seq)) != NULL)
			missing[nmissing++] = Int32GetDatum(s->id);
	}
	if (nmissing == 0)
		return;

	if (k->plan == NULL)
		k->plan = herald_prepare_kept(k->load, 1, argtypes);
	args[0] = build_array(missing, NULL, nmissing, INT4OID);
	k->loading = true;
	ret = SPI_execute_plan(k->plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read %s: %s", k->name, SPI_result_code_string(ret));
	desc = SPI_tuptable->tupdesc;
	Assert(desc->natts == k->ncolumns + 1);
	old = MemoryContextSwitchTo(k->cxt);
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		Datum	   *values = palloc(sizeof(Datum) * desc->natts);
		bool	   *nulls = palloc(sizeof(bool) * desc->natts);
		int32		id;
		KeptEntry  *e;

		heap_deform_tuple(SPI_tuptable->vals[row], desc, values, nulls);
		/* the id is the first column after the version */
		id = DatumGetInt32(values[1]);
		e = hash_search(k->entries, &id, HASH_ENTER, NULL);
		e->version = TextDatumGetCString(values[0]);
		e->values = palloc(sizeof(Datum) * k->ncolumns);
		e->nulls = palloc(sizeof(bool) * k->ncolumns);
		for (int i = 0; i < k->ncolumns; i++)
		{
			e->values[i] = copy_datum(desc, i + 1, values[i + 1], nulls[i + 1]);
			e->nulls[i] = nulls[i + 1];
		}
		pfree(values);
		pfree(nulls);
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
	k->loading = false;
}

/* The entry of id, if its row was seen by this read and is still there */
static KeptEntry *
kept_find(KeptRows *k, HTAB *seen, int32 id)
{
	if (hash_search(seen, &id, HASH_FIND, NULL) == NULL)
		return NULL;
	return hash_search(k->entries, &id, HASH_FIND, NULL);
}

/* Both kinds of entries, forgotten when the installation changes */
static void
kept_open(void)
{
	Oid			installation = herald_installation();

	if (installation != kept_installation)
	{
		kept_forget(&kept_channels);
		kept_forget(&kept_rules);
		kept_installation = installation;
	}
}

/* The columns of the read of new events' result */
enum
{
	READ_WHAT = 0,				/* READ_IS_NEW, _FOUND, _CHANNEL or _RULE */
	READ_ID,					/* the event's id, the channel's or the rule's */
	READ_LIMIT,					/* new: the most it could take; channel: its cap */
	READ_TYPE,
	READ_RULE_ID,
	READ_RULE,
	READ_CREATED_AT,
	READ_PAYLOAD,
	READ_CHANNEL_IDS,
	READ_VERSION,				/* channel, rule: its row's version */
	NUM_READ_COLUMNS
};

/* What a row of the read is (READ_WHAT) */
#define READ_IS_NEW 0
#define READ_IS_FOUND 1
#define READ_IS_CHANNEL 2
#define READ_IS_RULE 3

/* An event read, and the columns of its row the deliveries take */
typedef struct ReadEvent
{
	int64		id;
	Datum	   *values;			/* READ_* columns */
	bool	   *nulls;
	int32	   *channel_ids;
	int			nchannels;
} ReadEvent;

static int
compare_read_events(const void *a, const void *b)
{
	int64		x = ((const ReadEvent *) a)->id;
	int64		y = ((const ReadEvent *) b)->id;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * Of these deliveries (ids, n, of events at or below the position recorded
 * at the last restart), those that were handled before it: an attempt or a
 * queue row records them.  Returns a hash set of their ids.
 */
static HTAB *
recorded_deliveries(Datum *ids, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		args[1];
	int			ret;
	HASHCTL		ctl;
	HTAB	   *set;

	if (plan == NULL)
		plan = herald_prepare_kept("SELECT x.id FROM unnest($1::bigint[]) AS x(id)"
								   " WHERE EXISTS (SELECT 1 FROM herald.attempt_log a"
								   "                WHERE a.delivery_id = x.id)"
								   "    OR EXISTS (SELECT 1 FROM herald.delivery_queue q"
								   "                WHERE q.id = x.id)",
								   1, argtypes);
	args[0] = build_array(ids, NULL, n, INT8OID);
	ret = SPI_execute_plan(plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read recorded deliveries: %s", SPI_result_code_string(ret));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64);
	ctl.hcxt = CurrentMemoryContext;
	set = hash_create("pg_herald recorded deliveries", Max(SPI_processed, 16), &ctl,
					  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[row],
													 SPI_tuptable->tupdesc, 1, &isnull));

		(void) hash_search(set, &id, HASH_ENTER, NULL);
	}
	SPI_freetuptable(SPI_tuptable);
	return set;
}

/*
 * The delivery of a plain row event (a rule that offers no actions) to a
 * kept channel, made from the event's row as DELIVERY_SELECT would make it.
 */
static void
plain_delivery(DeliveryBatch *b, ReadEvent *ev, SeenRow *ch, KeptEntry *channel,
			   KeptEntry *rule)
{
	Datum		values[NUM_CLAIM_COLUMNS];
	bool		nulls[NUM_CLAIM_COLUMNS];
	ClaimRow	r = {values, nulls};

	for (int i = 0; i < NUM_CLAIM_COLUMNS; i++)
		nulls[i] = true;
#define SET(col, value) (values[(col) - 1] = (value), nulls[(col) - 1] = false)
	SET(CLAIM_ID, Int64GetDatum(ev->id * 1000000 + ch->id));
	SET(CLAIM_ATTEMPTS, Int32GetDatum(0));
	SET(CLAIM_EVENT_ID, Int64GetDatum(ev->id));
	SET(CLAIM_EVENT_TYPE, ev->values[READ_TYPE]);
	if (!ev->nulls[READ_RULE])
		SET(CLAIM_RULE, ev->values[READ_RULE]);
	SET(CLAIM_CREATED_AT, ev->values[READ_CREATED_AT]);
	SET(CLAIM_PAYLOAD, ev->values[READ_PAYLOAD]);
	/* a rule gone since its event: no facts, no template, as with no rule */
	if (rule != NULL)
	{
		if (!rule->nulls[RULE_FACTS])
			SET(CLAIM_FACT_COLUMNS, rule->values[RULE_FACTS]);
		else if (!rule->nulls[RULE_ON_TABLE])
			SET(CLAIM_FACT_TABLE, rule->values[RULE_ON_TABLE]);
		if (!rule->nulls[RULE_MESSAGE])
			SET(CLAIM_MESSAGE, rule->values[RULE_MESSAGE]);
		if (!rule->nulls[RULE_MESSAGES])
			SET(CLAIM_MESSAGES, rule->values[RULE_MESSAGES]);
	}
	memcpy(&values[CLAIM_CHANNEL_ID - 1], channel->values, sizeof(Datum) * NUM_CHANNEL_COLUMNS);
	memcpy(&nulls[CLAIM_CHANNEL_ID - 1], channel->nulls, sizeof(bool) * NUM_CHANNEL_COLUMNS);
	SET(CLAIM_ALLOWANCE, Int32GetDatum(ch->cap));
	SET(CLAIM_DUE_AT, TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()));
	SET(CLAIM_SPILL, BoolGetDatum(false));
#undef SET
	fill_delivery(b, &r);
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
 *
 * One statement reads the events' rows and the allowance and row version
 * of their channels.  The deliveries of plain row events are made in C
 * (plain_delivery()) from the kept channels and rules; the others (other
 * event types, rules that offer actions: a join of decisions, link keys and
 * herald._actions()) and the queue rows of those spilled come from a second
 * statement, run only for them.
 */
int
herald_queue_read_log(int slot, int workers, int limit, HeraldChannelUse *use,
					  MemoryContext cxt, HeraldDelivery **out, List **spilled, bool *more)
{
	static SPIPlanPtr read_plan = NULL;
	static SPIPlanPtr fan_plan = NULL;
	Oid			argtypes[11] = {INT4ARRAYOID, INT4ARRAYOID, FLOAT8ARRAYOID,
		TIMESTAMPTZARRAYOID, INT8ARRAYOID, INT8OID, INT4OID, INT4OID, INT4OID,
	INT8ARRAYOID, INT8ARRAYOID};
	Oid			fan_argtypes[5] = {INT8ARRAYOID, INT8ARRAYOID, INT4ARRAYOID,
	INT4ARRAYOID, BOOLARRAYOID};
	Datum		args[11];
	int			ret;
	SPITupleTable *read;
	ReadEvent  *events;
	int			nevents = 0;
	int64	   *ids;
	int64	   *found;
	int			nids = 0;
	int			nfound = 0;
	HTAB	   *channels;
	HTAB	   *rules;
	HASHCTL		ctl;
	int64		recorded_upto;
	HTAB	   *recorded = NULL;
	DeliveryBatch batch;
	int			guc_level;
	int			nfan = 0;
	int			maxfan;
	Datum	   *fan[4];
	bool	   *fan_spill;

	Assert(herald_worker_owns(slot));
	Assert(workers >= 1 && slot < workers && limit >= 0);
	if (read_plan == NULL)
		read_plan = herald_prepare_kept(
										"WITH " CHANNEL_CAPS_CTE ","
		/* below 0: more in flight than the channel may have now */
										" lim AS (SELECT greatest(0, least($9, coalesce(max(caps.cap), 0))) AS n"
										"           FROM caps),"
										" ev AS ("
										"  (SELECT " CppAsString2(READ_IS_NEW) " AS what, e.id, e.type, e.rule_id,"
										"          e.rule, e.created_at, e.payload, e.channel_ids"
										"     FROM herald.event_log e"
										"    WHERE e.id > $6 AND e.id % $7 = $8"
										"    ORDER BY e.id"
										"    LIMIT (SELECT n FROM lim))"
										"  UNION ALL"
										"  (SELECT " CppAsString2(READ_IS_FOUND) ", x.id, x.type, x.rule_id,"
										"          x.rule, x.created_at, x.payload, x.channel_ids"
										"     FROM unnest($10, $11) AS g(lo, hi)"
										"    CROSS JOIN LATERAL (SELECT e.* FROM herald.event_log e"
										"                         WHERE e.id >= g.lo AND e.id <= g.hi"
										"                           AND e.id % $7 = $8 OFFSET 0) x))"
										" SELECT ev.what, ev.id, (SELECT n FROM lim), ev.type, ev.rule_id, ev.rule,"
										"        ev.created_at, ev.payload, ev.channel_ids, NULL::text"
										"   FROM ev"
										" UNION ALL"
										" SELECT " CppAsString2(READ_IS_CHANNEL) ", caps.id, caps.cap, NULL, NULL, NULL,"
										"        NULL, NULL, NULL, caps.version"
										"   FROM caps"
										"  WHERE caps.id IN (SELECT unnest(ev.channel_ids) FROM ev)"
										" UNION ALL"
										" SELECT " CppAsString2(READ_IS_RULE) ", r.id, 0, NULL, NULL, NULL,"
										"        NULL, NULL, NULL, " ROW_VERSION("r")
										"   FROM herald.rule_defs r"
										"  WHERE r.id IN (SELECT ev.rule_id FROM ev)",
										11, argtypes);
	if (fan_plan == NULL)
		fan_plan = herald_prepare_kept(
									   "WITH claimed AS ("
									   "  SELECT u.id, 0 AS attempts, u.event_id, u.channel_id, u.cap,"
									   "         now() AS due_at, u.spill"
									   "    FROM unnest($1, $2, $3, $4, $5)"
									   "      AS u(id, event_id, channel_id, cap, spill)),"
									   " spilled AS ("
									   "  INSERT INTO herald.delivery_queue (id, event_id, channel_id)"
									   "  SELECT cl.id, cl.event_id, cl.channel_id FROM claimed cl WHERE cl.spill"
									   "  ON CONFLICT (id) DO NOTHING)"
									   DELIVERY_SELECT,
									   5, fan_argtypes);

	use_args(use, args);
	args[5] = Int64GetDatum(herald_cursor_read_upto());
	args[6] = Int32GetDatum(workers);
	args[7] = Int32GetDatum(slot);
	args[8] = Int32GetDatum(limit);
	/* the horizon, then the snapshot of the statement */
	herald_cursor_plan(&args[9], &args[10]);
	guc_level = index_plan_settings();
	ret = SPI_execute_plan(read_plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the event log: %s", SPI_result_code_string(ret));
	read = SPI_tuptable;
	Assert(read->tupdesc->natts == NUM_READ_COLUMNS);
	*more = false;
	events = palloc(sizeof(ReadEvent) * Max(SPI_processed, 1));
	ids = palloc(sizeof(int64) * Max(SPI_processed, 1));
	found = palloc(sizeof(int64) * Max(SPI_processed, 1));
	ctl.keysize = sizeof(int32);
	ctl.entrysize = sizeof(SeenRow);
	ctl.hcxt = CurrentMemoryContext;
	channels = hash_create("pg_herald channels read", 16, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	rules = hash_create("pg_herald rules read", 16, &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum	   *values = palloc(sizeof(Datum) * NUM_READ_COLUMNS);
		bool	   *nulls = palloc(sizeof(bool) * NUM_READ_COLUMNS);
		int			what;

		heap_deform_tuple(read->vals[i], read->tupdesc, values, nulls);
		what = DatumGetInt32(values[READ_WHAT]);
		if (what == READ_IS_CHANNEL || what == READ_IS_RULE)
		{
			int32		id = (int32) DatumGetInt64(values[READ_ID]);
			SeenRow    *seen = hash_search(what == READ_IS_CHANNEL ? channels : rules,
										   &id, HASH_ENTER, NULL);

			seen->version = TextDatumGetCString(values[READ_VERSION]);
			seen->cap = DatumGetInt32(values[READ_LIMIT]);
			seen->taken = 0;
			pfree(nulls);
			pfree(values);
			continue;
		}
		events[nevents].id = DatumGetInt64(values[READ_ID]);
		events[nevents].values = values;
		events[nevents].nulls = nulls;
		{
			Datum	   *elems;
			bool	   *elem_nulls;
			int			nelems;

			deconstruct_array(DatumGetArrayTypeP(values[READ_CHANNEL_IDS]), INT4OID, 4, true,
							  TYPALIGN_INT, &elems, &elem_nulls, &nelems);
			events[nevents].channel_ids = palloc(sizeof(int32) * Max(nelems, 1));
			events[nevents].nchannels = 0;
			for (int c = 0; c < nelems; c++)
				if (!elem_nulls[c])
					events[nevents].channel_ids[events[nevents].nchannels++] =
						DatumGetInt32(elems[c]);
		}
		if (what == READ_IS_NEW)
		{
			ids[nids++] = events[nevents].id;
			/* as many as it could take: there may be more */
			*more = (nids == DatumGetInt32(values[READ_LIMIT]));
		}
		else
			found[nfound++] = events[nevents].id;
		nevents++;
	}
	/* no more new events than the limit asked for */
	Assert(nids <= limit);
	herald_cursor_read(ids, nids, found, nfound);
	if (nevents == 0)
	{
		AtEOXact_GUC(true, guc_level);
		SPI_freetuptable(read);
		*out = NULL;
		return 0;
	}

	/* the kept channels and rules, as of the rows the read saw */
	kept_open();
	kept_refresh(&kept_channels, channels);
	kept_refresh(&kept_rules, rules);

	/* read again after a restart: what is recorded is done */
	recorded_upto = herald_cursor_recorded_upto();
	{
		Datum	   *candidates = palloc(sizeof(Datum) * Max(nevents, 1));
		int			ncandidates = 0;
		int			max = nevents;

		for (int i = 0; i < nevents; i++)
		{
			if (events[i].id > recorded_upto)
				continue;
			for (int c = 0; c < events[i].nchannels; c++)
			{
				if (ncandidates == max)
				{
					max *= 2;
					candidates = repalloc(candidates, sizeof(Datum) * max);
				}
				candidates[ncandidates++] =
					Int64GetDatum(events[i].id * 1000000 + events[i].channel_ids[c]);
			}
		}
		if (ncandidates > 0)
			recorded = recorded_deliveries(candidates, ncandidates);
	}

	/* each channel's deliveries in event order, past its allowance spilled */
	qsort(events, nevents, sizeof(ReadEvent), compare_read_events);
	batch_start(&batch, cxt, true, spilled);
	maxfan = 16;
	for (int k = 0; k < 4; k++)
		fan[k] = palloc(sizeof(Datum) * maxfan);
	fan_spill = palloc(sizeof(bool) * maxfan);
	for (int i = 0; i < nevents; i++)
	{
		ReadEvent  *ev = &events[i];
		KeptEntry  *rule = NULL;
		bool		plain;

		if (!ev->nulls[READ_RULE_ID])
			rule = kept_find(&kept_rules, rules, DatumGetInt32(ev->values[READ_RULE_ID]));
		plain = strncmp(TextDatumGetCString(ev->values[READ_TYPE]), "row.", 4) == 0 &&
			(rule == NULL || rule->nulls[RULE_OFFERS] || !DatumGetBool(rule->values[RULE_OFFERS]));
		for (int c = 0; c < ev->nchannels; c++)
		{
			int32		channel_id = ev->channel_ids[c];
			int64		delivery_id = ev->id * 1000000 + channel_id;
			SeenRow    *ch = hash_search(channels, &channel_id, HASH_FIND, NULL);
			KeptEntry  *channel = kept_find(&kept_channels, channels, channel_id);
			bool		spill;

			/* a channel dropped since the event: no delivery */
			if (ch == NULL || channel == NULL)
				continue;
			if (recorded != NULL && ev->id <= recorded_upto &&
				hash_search(recorded, &delivery_id, HASH_FIND, NULL) != NULL)
				continue;
			spill = ++ch->taken > Max(ch->cap, 0);
			if (plain && !spill)
			{
				plain_delivery(&batch, ev, ch, channel, rule);
				continue;
			}
			if (nfan == maxfan)
			{
				maxfan *= 2;
				for (int k = 0; k < 4; k++)
					fan[k] = repalloc(fan[k], sizeof(Datum) * maxfan);
				fan_spill = repalloc(fan_spill, sizeof(bool) * maxfan);
			}
			fan[0][nfan] = Int64GetDatum(delivery_id);
			fan[1][nfan] = Int64GetDatum(ev->id);
			fan[2][nfan] = Int32GetDatum(channel_id);
			fan[3][nfan] = Int32GetDatum(ch->cap);
			fan_spill[nfan] = spill;
			nfan++;
		}
	}
	if (nfan > 0)
	{
		Datum	   *spills = palloc(sizeof(Datum) * nfan);

		for (int i = 0; i < nfan; i++)
			spills[i] = BoolGetDatum(fan_spill[i]);
		args[0] = build_array(fan[0], NULL, nfan, INT8OID);
		args[1] = build_array(fan[1], NULL, nfan, INT8OID);
		args[2] = build_array(fan[2], NULL, nfan, INT4OID);
		args[3] = build_array(fan[3], NULL, nfan, INT4OID);
		args[4] = build_array(spills, NULL, nfan, BOOLOID);
		ret = SPI_execute_plan(fan_plan, args, NULL, false, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read the deliveries of new events: %s",
				 SPI_result_code_string(ret));
		copy_deliveries(&batch);
	}
	AtEOXact_GUC(true, guc_level);
	SPI_freetuptable(read);
	*out = batch.n > 0 ? batch_items(&batch) : NULL;

	/*
	 * A full read whose events did not all become deliveries (already
	 * recorded, muted, of a dropped channel) left the channels room: read
	 * on at once.  Otherwise the channels are busy, and the outcomes will
	 * say when to read again.
	 */
	*more = *more && batch.n < nids;
	return batch.n;
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
