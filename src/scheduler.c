/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *		The scheduler worker: evaluates threshold rules when their data
 *		changes and when their timers fall due.
 *
 * One scheduler runs in herald.database.  It keeps the enabled threshold
 * rules in memory, each with its watched tables, its schedule (every), its
 * min_interval, the time of its last evaluation and its next timer (the end
 * of a pending period, a reminder).  It loops:
 *
 *	1. take the watched tables that committing writers touched since it
 *	   last looked (HeraldShared, filled by pg_herald.c at commit) and mark
 *	   the rules watching them dirty; reload the rules when a commit changed
 *	   them (rules_version);
 *	2. evaluate every rule that is dirty and past its min_interval, whose
 *	   timer fell due, or whose schedule came round, each in its own
 *	   transaction (herald._evaluate(), which runs the metric as the rule's
 *	   owner);
 *	3. publish how far it got (evaluated_seq, which herald.flush() waits
 *	   for) and sleep on its latch until the next timer.
 *
 * It also sends the follow-up questions of the decision loop
 * (herald._send_followups(), at most once a second while some rule asks
 * for them) and purges the evaluation log.
 *
 * Touches that arrive during a round wait for the next one: a burst of
 * commits costs one evaluation per rule and round, not one per commit.  At
 * start every rule is evaluated once, so that commits made while no
 * scheduler ran are not missed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pg_herald.h"

/* Longest sleep: the extension may have been created meanwhile. */
#define IDLE_RECHECK_MS 10000
/* How often the evaluation log is purged. */
#define PURGE_INTERVAL_MS 60000
/* How often, at most, events awaiting a decision are looked at. */
#define FOLLOWUP_CHECK_MS 1000

typedef struct SchedRule
{
	int32		id;
	TimestampTz created_at;		/* with id, tells a re-created rule apart */
	int			nwatch;
	Oid		   *watch;
	int64		every_ms;		/* 0: no schedule */
	int64		min_interval_ms;
	TimestampTz last_eval;		/* 0: not since the scheduler started */
	TimestampTz timer_at;		/* 0: no timer */
	bool		dirty;			/* a watched table changed since last_eval */
} SchedRule;

static MemoryContext rules_cxt = NULL;
static MemoryContext loading_cxt = NULL;	/* a load under way, or one that failed */
static SchedRule *rules = NULL;
static int	nrules = 0;
static bool rules_loaded = false;
static uint32 loaded_version = 0;
static SPIPlanPtr evaluate_plan = NULL;
static bool followups_wanted = false;	/* some rule asks for follow-ups */

/* --- the rules ------------------------------------------------------------ */

static SchedRule *
find_rule(SchedRule *list, int n, int32 id, TimestampTz created_at)
{
	for (int i = 0; i < n; i++)
		if (list[i].id == id && list[i].created_at == created_at)
			return &list[i];
	return NULL;
}

/*
 * Load the enabled threshold rules.  A rule already known keeps its
 * timing; a new one is dirty, so that it is evaluated at once.
 */
static void
load_step(void *arg)
{
	MemoryContext new_cxt;
	SchedRule  *loaded;
	int			n;
	int			ret;
	bool		isnull_any;

	if (!OidIsValid(herald_installation()))
	{
		nrules = 0;
		return;
	}
	ret = SPI_execute("SELECT r.id, r.watch::oid[],"
					  "       (extract(epoch FROM r.every) * 1000)::int8,"
					  "       (extract(epoch FROM r.min_interval) * 1000)::int8,"
					  "       (SELECT min(i.next_check_at) FROM herald.rule_instances i"
					  "         WHERE i.rule_id = r.id),"
					  "       r.created_at"
					  "  FROM herald.rule_defs r"
					  " WHERE r.kind = 'threshold' AND r.enabled ORDER BY r.id",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not load the threshold rules: %s", SPI_result_code_string(ret));

	if (loading_cxt)
		MemoryContextDelete(loading_cxt);
	loading_cxt = new_cxt = AllocSetContextCreate(TopMemoryContext, "pg_herald scheduler rules",
												  ALLOCSET_SMALL_SIZES);
	n = SPI_processed;
	loaded = MemoryContextAllocZero(new_cxt, sizeof(SchedRule) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		SchedRule  *r = &loaded[i];
		SchedRule  *known;
		bool		isnull;
		Datum		d;

		r->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		d = SPI_getbinval(tup, desc, 2, &isnull);
		if (!isnull)
		{
			Datum	   *elems;
			bool	   *nulls;

			deconstruct_array(DatumGetArrayTypeP(d), OIDOID, sizeof(Oid), true,
							  TYPALIGN_INT, &elems, &nulls, &r->nwatch);
			r->watch = MemoryContextAlloc(new_cxt, sizeof(Oid) * Max(r->nwatch, 1));
			for (int k = 0; k < r->nwatch; k++)
				r->watch[k] = DatumGetObjectId(elems[k]);
		}
		d = SPI_getbinval(tup, desc, 3, &isnull);
		r->every_ms = isnull ? 0 : DatumGetInt64(d);
		r->min_interval_ms = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		d = SPI_getbinval(tup, desc, 5, &isnull);
		r->timer_at = isnull ? 0 : DatumGetTimestampTz(d);

		r->created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
		known = find_rule(rules, nrules, r->id, r->created_at);
		if (known)
		{
			r->last_eval = known->last_eval;
			r->dirty = known->dirty;
		}
		else
			r->dirty = true;
	}
	SPI_freetuptable(SPI_tuptable);

	ret = SPI_execute("SELECT EXISTS (SELECT 1 FROM herald.rule_defs"
					  "                WHERE enabled AND followup_after IS NOT NULL)"
					  "    OR EXISTS (SELECT 1 FROM herald.event_log WHERE awaits_decision)",
					  true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look for follow-ups: %s", SPI_result_code_string(ret));
	followups_wanted = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull_any));
	SPI_freetuptable(SPI_tuptable);

	if (rules_cxt)
		MemoryContextDelete(rules_cxt);
	rules_cxt = new_cxt;
	loading_cxt = NULL;
	rules = loaded;
	nrules = n;
}

/* Mark the rules that watch the touched tables (all: every one) dirty. */
static void
mark_touched(Oid *touched, int ntouched, bool all)
{
	for (int i = 0; i < nrules; i++)
	{
		SchedRule  *r = &rules[i];

		for (int k = 0; k < r->nwatch && !r->dirty; k++)
		{
			if (all)
				r->dirty = true;
			for (int t = 0; t < ntouched && !r->dirty; t++)
				if (r->watch[k] == touched[t])
					r->dirty = true;
		}
	}
}

/* When the rule wants its next evaluation; 0 for never (until touched). */
static TimestampTz
next_due(SchedRule *r)
{
	TimestampTz due = 0;

	if (r->last_eval == 0 && (r->dirty || r->every_ms > 0))
		return 1;
	if (r->dirty)
		due = TimestampTzPlusMilliseconds(r->last_eval, r->min_interval_ms);
	if (r->every_ms > 0)
	{
		TimestampTz scheduled = TimestampTzPlusMilliseconds(r->last_eval, r->every_ms);

		if (due == 0 || scheduled < due)
			due = scheduled;
	}
	/* a timer at or before the last evaluation has been served */
	if (r->timer_at != 0 && r->timer_at > r->last_eval &&
		(due == 0 || r->timer_at < due))
		due = r->timer_at;
	return due;
}

/* --- evaluation ------------------------------------------------------------ */

typedef struct EvalStep
{
	int32		rule_id;
	TimestampTz timer_at;
} EvalStep;

/*
 * The one timestamptz a statement just returned ("when next"), 0 for NULL;
 * error, saying what failed, when the statement did not return one row.
 */
static TimestampTz
next_time_result(int ret, const char *what)
{
	bool		isnull;
	Datum		d;

	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not %s: %s", what, SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetTimestampTz(d);
}

static void
evaluate_step(void *arg)
{
	EvalStep   *e = arg;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];

	if (evaluate_plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare("SELECT herald._evaluate($1)", 1, argtypes);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the evaluation: %s",
				 SPI_result_code_string(SPI_result));
		evaluate_plan = plan;
	}
	args[0] = Int32GetDatum(e->rule_id);
	e->timer_at = next_time_result(SPI_execute_plan(evaluate_plan, args, NULL, false, 1),
								   psprintf("evaluate threshold rule %d", e->rule_id));
}

/* Evaluate every rule that is due; true when none is left dirty. */
static bool
evaluate_due(void)
{
	bool		all_clean = true;

	for (int i = 0; i < nrules; i++)
	{
		SchedRule  *r = &rules[i];
		TimestampTz due = next_due(r);
		TimestampTz now = GetCurrentTimestamp();
		EvalStep	e = {r->id, 0};
		char		activity[64];

		CHECK_FOR_INTERRUPTS();
		if (due == 0 || due > now)
		{
			all_clean &= !r->dirty;
			continue;
		}
		snprintf(activity, sizeof(activity), "pg_herald: evaluating rule %d", r->id);
		r->dirty = false;
		r->last_eval = now;
		if (herald_in_transaction(activity, evaluate_step, &e))
			r->timer_at = e.timer_at;
		else
			r->timer_at = 0;	/* logged; the next touch or schedule retries */
		/*
		 * A rule change committed meanwhile reloads the list first (an
		 * unlocked read: a stale value only delays the reload to the next
		 * loop, which the latch causes).
		 */
		if (rules_loaded && herald_shared->rules_version != loaded_version)
			return false;
	}
	return all_clean;
}

/* Send the follow-ups that are due; note when the next one is. */
static void
followup_step(void *arg)
{
	TimestampTz *next = arg;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];

	*next = 0;
	if (!OidIsValid(herald_installation()))
		return;
	args[0] = CStringGetTextDatum(herald_decision_url ? herald_decision_url : "");
	*next = next_time_result(SPI_execute_with_args("SELECT herald._send_followups($1)",
												   1, argtypes, args, NULL, false, 1),
							 "send follow-ups");
}

/* Purge evaluations past herald.retention, one bounded batch. */
static void
purge_step(void *arg)
{
	HeraldPurge  *p = arg;
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2];
	int			ret;

	p->purged = 0;
	if (herald_retention < 0 || !OidIsValid(herald_installation()))
		return;
	args[0] = Int32GetDatum(herald_retention);
	args[1] = Int32GetDatum(herald_purge_batch);
	ret = SPI_execute_with_args("DELETE FROM herald.evaluation_log WHERE id IN ("
								" SELECT id FROM herald.evaluation_log"
								"  WHERE evaluated_at < now() - make_interval(secs => $1)"
								"  ORDER BY evaluated_at LIMIT $2)",
								2, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not purge evaluations: %s", SPI_result_code_string(ret));
	p->purged = SPI_processed;
}

/* One (watched table, rule) pair, for publish_quiet_tables() */
typedef struct WatchEntry
{
	Oid			table;
	bool		dirty;			/* the rule watching it is */
} WatchEntry;

static int
compare_watch(const void *a, const void *b)
{
	Oid			x = ((const WatchEntry *) a)->table;
	Oid			y = ((const WatchEntry *) b)->table;

	return (x > y) - (x < y);
}

/*
 * The watched tables whose every rule is dirty already (waiting for its
 * min_interval): commits to them tell the scheduler nothing new, so they
 * need not wake it.  Cleared at the start of each loop, before any
 * evaluation, so that a commit made after an evaluation started always
 * wakes it.
 */
static void
publish_quiet_tables(void)
{
	Oid			quiet[HERALD_MAX_TOUCHED];
	int			nquiet = 0;
	int			n = 0;
	WatchEntry *entries;

	for (int i = 0; i < nrules; i++)
		n += rules[i].nwatch;
	entries = palloc(sizeof(WatchEntry) * Max(n, 1));
	n = 0;
	for (int i = 0; i < nrules; i++)
		for (int k = 0; k < rules[i].nwatch; k++)
		{
			entries[n].table = rules[i].watch[k];
			entries[n].dirty = rules[i].dirty;
			n++;
		}
	/* one group per table: quiet when every rule in it is dirty */
	qsort(entries, n, sizeof(WatchEntry), compare_watch);
	for (int i = 0; i < n;)
	{
		int			j = i;
		bool		all_dirty = true;

		for (; j < n && entries[j].table == entries[i].table; j++)
			all_dirty &= entries[j].dirty;
		if (all_dirty && nquiet < HERALD_MAX_TOUCHED)
			quiet[nquiet++] = entries[i].table;
		i = j;
	}
	pfree(entries);

	SpinLockAcquire(&herald_shared->mutex);
	memcpy(herald_shared->quiet, quiet, sizeof(Oid) * nquiet);
	herald_shared->nquiet = nquiet;
	SpinLockRelease(&herald_shared->mutex);
}

static long
ms_until(TimestampTz t)
{
	TimestampTz now = GetCurrentTimestamp();

	if (t <= now)
		return 0;
	return (long) Min((t - now + 999) / 1000, (TimestampTz) IDLE_RECHECK_MS);
}

void
herald_scheduler_main(Datum arg)
{
	TimestampTz next_purge_at = 0;
	TimestampTz next_followup_at = 0;
	MemoryContext loop_context;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(herald_database, NULL, 0);
	herald_scheduler_attach();
	pgstat_report_appname("pg_herald scheduler");

	/*
	 * A commit lost in a crash is an evaluation lost: the scheduler
	 * evaluates every rule when it starts again, so the transition it
	 * recorded is detected again.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	ereport(LOG,
			(errmsg("pg_herald scheduler started in database \"%s\"", herald_database)));

	loop_context = AllocSetContextCreate(TopMemoryContext, "pg_herald scheduler loop",
										 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		Oid			touched[HERALD_MAX_TOUCHED];
		int			ntouched;
		bool		all;
		uint64		seq;
		uint32		version;
		long		timeout = IDLE_RECHECK_MS;

		MemoryContextSwitchTo(loop_context);
		MemoryContextReset(loop_context);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		SpinLockAcquire(&herald_shared->mutex);
		version = herald_shared->rules_version;
		seq = herald_shared->touch_seq;
		ntouched = herald_shared->ntouched;
		all = herald_shared->touched_all;
		memcpy(touched, herald_shared->touched, sizeof(Oid) * ntouched);
		herald_shared->ntouched = 0;
		herald_shared->touched_all = false;
		/* commits from now on wake the scheduler again, until it says */
		herald_shared->nquiet = 0;
		SpinLockRelease(&herald_shared->mutex);

		if (!rules_loaded || version != loaded_version)
		{
			if (herald_in_transaction("pg_herald: loading rules", load_step, NULL))
			{
				rules_loaded = true;
				loaded_version = version;
			}
			else
			{
				/* every rule is evaluated once the list loads */
				rules_loaded = false;
				all = true;
			}
		}
		mark_touched(touched, ntouched, all);

		if (evaluate_due())
		{
			SpinLockAcquire(&herald_shared->mutex);
			if (herald_shared->evaluated_seq < seq)
				herald_shared->evaluated_seq = seq;
			SpinLockRelease(&herald_shared->mutex);
		}

		if (followups_wanted && GetCurrentTimestamp() >= next_followup_at)
		{
			TimestampTz due = 0;

			(void) herald_in_transaction("pg_herald: sending follow-ups", followup_step, &due);
			/* new events awaiting a decision appear without telling: look again soon */
			next_followup_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), FOLLOWUP_CHECK_MS);
			if (due != 0 && due < next_followup_at)
				next_followup_at = due;
		}
		if (followups_wanted)
			timeout = Min(timeout, ms_until(next_followup_at));

		if (GetCurrentTimestamp() >= next_purge_at)
		{
			HeraldPurge	purge = {0};
			bool		more;

			more = herald_in_transaction("pg_herald: purging evaluations", purge_step, &purge) &&
				purge.purged >= herald_purge_batch;
			next_purge_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														more ? 0 : PURGE_INTERVAL_MS);
		}
		timeout = Min(timeout, ms_until(next_purge_at));

		if (!rules_loaded)
			timeout = Min(timeout, 1000);
		for (int i = 0; i < nrules; i++)
		{
			TimestampTz due = next_due(&rules[i]);

			if (due != 0)
				timeout = Min(timeout, ms_until(due));
		}
		/* a failed load is retried within a second, not in a loop */
		if (rules_loaded && herald_shared->rules_version != loaded_version)
			timeout = 0;
		publish_quiet_tables();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
