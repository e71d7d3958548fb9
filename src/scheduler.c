/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *		The scheduler worker: evaluates threshold rules when their data
 *		changes and when their timers fall due; evaluators: the workers it
 *		starts for slow rules.
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
 *	   for) and sleep on its latch until the next deadline.  Every deadline
 *	   is computed with saturating arithmetic, and one that is past is only
 *	   slept on for work that is done when it comes: whatever a rule's
 *	   parameters or state, the scheduler never loops without sleeping.
 *
 * One slow metric must not hold up every other rule.  An evaluation in the
 * scheduler gets at most herald.evaluation_slice: past it, it is cancelled
 * (its transaction leaves no trace) and the rule becomes "slow": from then
 * on an evaluator evaluates it, a background worker started for one
 * evaluation, with the whole query_timeout of the rule.  At most
 * herald.max_evaluators run at once, at most one per rule owner, the rule
 * waiting longest first; a slow rule whose evaluation takes less than half
 * the slice comes back to the scheduler.  A metric that ignores the cancel
 * (it catches query_canceled) is stopped one second later by ending the
 * process, the scheduler or the evaluator, which no handler can catch: the
 * restarted scheduler hands that rule to an evaluator.  So each
 * evaluation in the scheduler delays the next by at most the slice (plus
 * one second and a restart for a metric that fights it); slow rules only
 * wait for each other.  Evaluators report in their slot of HeraldShared
 * (guarded by its spinlock) and set the scheduler's latch.
 *
 * An evaluation that fails outside its metric (its state could not be
 * stored, say) is recorded in a new transaction as the metric's failures
 * are: state error, a rule.error event.  A cancel or a shutdown is nobody's
 * failure and is only logged.
 *
 * It also sends the follow-up questions of the decision loop
 * (herald._send_followups(), at most once a second while some rule asks
 * for them) and purges the evaluation log.
 *
 * Every transaction of the scheduler and of the evaluators starts with
 * herald_installation(), which locks the extension: DROP EXTENSION waits
 * for it, or it waits for DROP EXTENSION and then leaves the dropped
 * installation alone.
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
#include "common/int.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "pg_herald.h"

/* Longest sleep: the extension may have been created meanwhile. */
#define IDLE_RECHECK_MS 10000
/* How often the evaluation log is purged. */
#define PURGE_INTERVAL_MS 60000
/* How often, at most, events awaiting a decision are looked at. */
#define FOLLOWUP_CHECK_MS 1000
/* How long after its cancel an evaluation that goes on is stopped. */
#define OVERRUN_GRACE_MS 1000
/* When no evaluator could be started, the next try. */
#define EVALUATOR_RETRY_MS 1000

int			herald_evaluation_slice = 1000;
int			herald_max_evaluators = 2;

typedef struct SchedRule
{
	int32		id;
	TimestampTz created_at;		/* with id, tells a re-created rule apart */
	Oid			owner;
	int			nwatch;
	Oid		   *watch;
	int64		every_ms;		/* 0: no schedule */
	int64		min_interval_ms;
	int64		query_timeout_ms;
	TimestampTz last_eval;		/* 0: not since the scheduler started */
	TimestampTz timer_at;		/* 0: no timer */
	TimestampTz altered_at;		/* the last herald.alter_rule(), 0: none */
	bool		dirty;			/* a watched table changed since last_eval */
	bool		slow;			/* evaluated by evaluators */
} SchedRule;

/* An evaluator the scheduler started, until it reports or stops. */
typedef struct Evaluator
{
	int32		rule_id;		/* 0: none */
	TimestampTz created_at;
	Oid			owner;
	uint32		generation;
	BackgroundWorkerHandle *handle;
} Evaluator;

static MemoryContext rules_cxt = NULL;
static MemoryContext loading_cxt = NULL;	/* a load under way, or one that failed */
static SchedRule *rules = NULL;
static int	nrules = 0;
static bool rules_loaded = false;
static uint32 loaded_version = 0;
static Oid	installation = InvalidOid;	/* what the rules were loaded from */
static bool installation_changed = false;	/* an evaluation found another */
static SPIPlanPtr evaluate_plan = NULL;
static SPIPlanPtr failed_plan = NULL;
static bool followups_wanted = false;	/* some rule asks for follow-ups */

static Evaluator evaluators[HERALD_MAX_EVALUATORS];
static TimestampTz evaluator_retry_at = 0;	/* none could start: try again then */

/* The rule being evaluated in this process, 0 for none; and whether it overran. */
static int32 evaluating_rule = 0;
static Oid	evaluating_owner = InvalidOid;
static volatile sig_atomic_t overran = false;
static TimeoutId overrun_timeout = USER_TIMEOUT;	/* which runs overrun_handler */
static int	evaluator_slot = -1;	/* in an evaluator: its slot */
static uint32 evaluator_generation = 0;

/* --- time ------------------------------------------------------------------ */

/* t + ms, saturated at +infinity: no schedule, however long, wraps round. */
static TimestampTz
time_plus_ms(TimestampTz t, int64 ms)
{
	int64		us;
	TimestampTz sum;

	if (pg_mul_s64_overflow(ms, 1000, &us) || pg_add_s64_overflow(t, us, &sum))
		return ms > 0 ? DT_NOEND : DT_NOBEGIN;
	return sum;
}

static long
ms_until(TimestampTz t)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		us;

	if (t <= now)
		return 0;
	if (pg_sub_s64_overflow(t, now, &us))
		return IDLE_RECHECK_MS;
	return (long) Min((us + 999) / 1000, (int64) IDLE_RECHECK_MS);
}

/*
 * An evaluation overran its cancel: its code catches query_canceled.  End
 * the process, as die() would; that no handler catches.
 */
static void
overrun_handler(void)
{
	overran = true;
	if (!proc_exit_inprogress)
	{
		InterruptPending = true;
		ProcDiePending = true;
	}
	SetLatch(MyLatch);
}

/* --- the rules ------------------------------------------------------------ */

static SchedRule *
find_rule(SchedRule *list, int n, int32 id, TimestampTz created_at)
{
	for (int i = 0; i < n; i++)
		if (list[i].id == id && list[i].created_at == created_at)
			return &list[i];
	return NULL;
}

/* Was the rule slow for the scheduler that ran before this one? */
static bool
was_slow(int32 rule_id)
{
	bool		found = false;

	SpinLockAcquire(&herald_shared->mutex);
	for (int i = 0; i < herald_shared->nslow && !found; i++)
		found = (herald_shared->slow_rule[i] == rule_id);
	SpinLockRelease(&herald_shared->mutex);
	return found;
}

/* Did a rule of this owner go on past its cancel? */
static bool
is_suspect(Oid owner)
{
	bool		found = false;

	SpinLockAcquire(&herald_shared->mutex);
	for (int i = 0; i < herald_shared->nsuspects && !found; i++)
		found = (herald_shared->suspect[i] == owner);
	SpinLockRelease(&herald_shared->mutex);
	return found;
}

/* Forget the plans: they name the functions of another installation. */
static void
forget_plans(void)
{
	if (evaluate_plan)
		SPI_freeplan(evaluate_plan);
	if (failed_plan)
		SPI_freeplan(failed_plan);
	evaluate_plan = failed_plan = NULL;
}

/*
 * Load the enabled threshold rules.  A rule already known keeps its
 * timing; a new one is dirty, so that it is evaluated at once, and so is
 * one altered since the last load.
 */
static void
load_step(void *arg)
{
	MemoryContext new_cxt;
	SchedRule  *loaded;
	int			n;
	int			ret;
	bool		isnull_any;
	Oid			found = herald_installation();

	if (found != installation)
	{
		/* none of the old rules, plans or evaluations apply */
		forget_plans();
		nrules = 0;
		installation = found;
	}
	if (!OidIsValid(found))
	{
		nrules = 0;
		followups_wanted = false;
		return;
	}
	ret = SPI_execute("SELECT r.id, r.watch::oid[],"
					  "       least(extract(epoch FROM r.every) * 1000, 9e18)::int8,"
					  "       least(extract(epoch FROM r.min_interval) * 1000, 9e18)::int8,"
					  "       (SELECT min(i.next_check_at) FROM herald.rule_instances i"
					  "         WHERE i.rule_id = r.id),"
					  "       r.created_at, r.owner::oid,"
					  "       least(ceil(extract(epoch FROM r.query_timeout) * 1000), 9e15)::int8,"
					  "       r.altered_at"
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
		r->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 7, &isnull));
		r->query_timeout_ms = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
		d = SPI_getbinval(tup, desc, 9, &isnull);
		r->altered_at = isnull ? 0 : DatumGetTimestampTz(d);

		known = find_rule(rules, nrules, r->id, r->created_at);
		if (known)
		{
			r->last_eval = known->last_eval;
			/* altered (herald.alter_rule): evaluated again, as if touched */
			r->dirty = known->dirty || r->altered_at != known->altered_at;
			r->slow = known->slow;
		}
		else
		{
			r->dirty = true;
			/* slow for the previous scheduler, or the one it ended during */
			r->slow = was_slow(r->id);
		}
		/* an owner whose code fought a cancel has the evaluators only */
		r->slow |= is_suspect(r->owner);
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
		due = time_plus_ms(r->last_eval, r->min_interval_ms);
	if (r->every_ms > 0)
	{
		TimestampTz scheduled = time_plus_ms(r->last_eval, r->every_ms);

		if (due == 0 || scheduled < due)
			due = scheduled;
	}
	/* a timer at or before the last evaluation has been served */
	if (r->timer_at != 0 && r->timer_at > r->last_eval &&
		(due == 0 || r->timer_at < due))
		due = r->timer_at;
	/* one that never comes is none */
	return due == DT_NOEND ? 0 : due;
}

/* --- evaluation ------------------------------------------------------------ */

typedef struct EvalStep
{
	int32		rule_id;
	Oid			installation;	/* the one the rule belongs to */
	char	   *error;			/* for failed_step: what failed */
	TimestampTz timer_at;
	bool		skipped;		/* the installation is not that one */
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

	e->timer_at = 0;
	if (herald_installation() != e->installation)
	{
		e->skipped = true;
		return;
	}
	if (evaluate_plan == NULL)
		evaluate_plan = herald_prepare_kept("SELECT herald._evaluate($1)", 1, argtypes);
	args[0] = Int32GetDatum(e->rule_id);
	e->timer_at = next_time_result(SPI_execute_plan(evaluate_plan, args, NULL, false, 1),
								   psprintf("evaluate threshold rule %d", e->rule_id));
}

/* Record that an evaluation failed: the rule's state becomes error. */
static void
failed_step(void *arg)
{
	EvalStep   *e = arg;
	Oid			argtypes[2] = {INT4OID, TEXTOID};
	Datum		args[2];

	e->timer_at = 0;
	if (herald_installation() != e->installation)
	{
		e->skipped = true;
		return;
	}
	if (failed_plan == NULL)
		failed_plan = herald_prepare_kept("SELECT herald._evaluate($1, $2)", 2, argtypes);
	args[0] = Int32GetDatum(e->rule_id);
	args[1] = CStringGetTextDatum(e->error);
	e->timer_at = next_time_result(SPI_execute_plan(failed_plan, args, NULL, false, 1),
								   psprintf("record the failure of threshold rule %d", e->rule_id));
}

/* Is the error nobody's failure: a cancel, a shutdown? */
static bool
is_interruption(ErrorData *edata)
{
	return edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
		ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION;
}

/*
 * Run one transaction of an evaluation: cancelled at cancel_at (0: never),
 * the process ended at stop_at (0: never).  Returns false, with *edata set,
 * when it failed.
 */
static bool
timed_transaction(const char *activity, herald_step step, EvalStep *e,
				  TimestampTz cancel_at, TimestampTz stop_at, ErrorData **edata)
{
	bool		ok;

	*edata = NULL;
	if (stop_at != 0)
		enable_timeout_at(overrun_timeout, stop_at);
	if (cancel_at != 0)
		enable_timeout_at(STATEMENT_TIMEOUT, cancel_at);
	ok = herald_try_transaction(activity, step, e, edata);
	if (cancel_at != 0)
	{
		disable_timeout(STATEMENT_TIMEOUT, true);
		/* it went off once nothing was left to cancel: nothing is */
		if (get_timeout_indicator(STATEMENT_TIMEOUT, true))
			QueryCancelPending = false;
	}
	if (stop_at != 0)
		disable_timeout(overrun_timeout, false);
	return ok;
}

typedef struct EvalResult
{
	bool		ok;				/* committed, the failure recorded or not */
	bool		deferred;		/* ran past the slice: for an evaluator */
	bool		skipped;		/* another installation */
	TimestampTz timer_at;
	int64		duration_ms;
} EvalResult;

/*
 * Evaluate rule_id of the installation: with a slice (in the scheduler),
 * cancel it at the end of the slice and defer it.  A failure that is not
 * an interruption is recorded as the rule's, within a slice too.
 */
static void
evaluate_rule(int32 rule_id, Oid owner, Oid inst, int64 slice_ms, int64 stop_after_ms,
			  EvalResult *res)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz cancel_at = slice_ms > 0 ? time_plus_ms(start, slice_ms) : 0;
	TimestampTz stop_at = time_plus_ms(start, stop_after_ms);
	EvalStep	e = {rule_id, inst, NULL, 0, false};
	ErrorData  *edata;
	char		activity[64];

	memset(res, 0, sizeof(*res));
	snprintf(activity, sizeof(activity), "pg_herald: evaluating rule %d", rule_id);
	evaluating_rule = rule_id;
	evaluating_owner = owner;
	res->ok = timed_transaction(activity, evaluate_step, &e, cancel_at, stop_at, &edata);
	res->duration_ms = (GetCurrentTimestamp() - start) / 1000;
	if (res->ok)
		res->timer_at = e.timer_at;
	else if (cancel_at != 0 && edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
			 GetCurrentTimestamp() >= cancel_at)
		res->deferred = true;
	else if (is_interruption(edata))
		ereport(LOG,
				(errmsg("evaluation of threshold rule %d was interrupted: %s",
						rule_id, edata->message)));
	else
	{
		/* the evaluation's own failure: the rule's state says so */
		ereport(LOG,
				(errmsg("evaluation of threshold rule %d failed: %s", rule_id, edata->message)));
		e.error = herald_truncate(psprintf("the evaluation failed: %s", edata->message),
								  HERALD_RULE_ERROR_MAX, "...");
		FreeErrorData(edata);
		start = GetCurrentTimestamp();
		res->ok = timed_transaction("pg_herald: recording a failed evaluation", failed_step, &e,
									slice_ms > 0 ? time_plus_ms(start, slice_ms) : 0,
									time_plus_ms(start, herald_evaluation_slice + OVERRUN_GRACE_MS),
									&edata);
		if (res->ok)
			res->timer_at = e.timer_at;
		else
			ereport(LOG,
					(errmsg("could not record the failure of threshold rule %d: %s",
							rule_id, edata->message)));
	}
	evaluating_rule = 0;
	res->skipped = e.skipped;
	if (edata)
		FreeErrorData(edata);
}

/* --- evaluators ------------------------------------------------------------ */

static Evaluator *
evaluator_of(int32 rule_id)
{
	for (int i = 0; i < HERALD_MAX_EVALUATORS; i++)
		if (evaluators[i].rule_id == rule_id)
			return &evaluators[i];
	return NULL;
}

static bool
owner_has_evaluator(Oid owner)
{
	for (int i = 0; i < HERALD_MAX_EVALUATORS; i++)
		if (evaluators[i].rule_id != 0 && evaluators[i].owner == owner)
			return true;
	return false;
}

/* Start an evaluator for the slow rule r; false when none can start now. */
static bool
start_evaluator(SchedRule *r, TimestampTz now)
{
	BackgroundWorker worker;
	Evaluator  *ev = NULL;
	int			slot;
	uint32		generation;
	MemoryContext old;
	bool		started;

	for (slot = 0; slot < herald_max_evaluators; slot++)
		if (evaluators[slot].rule_id == 0)
		{
			ev = &evaluators[slot];
			break;
		}
	if (ev == NULL || now < evaluator_retry_at)
		return false;

	Assert(slot < HERALD_MAX_EVALUATORS);
	SpinLockAcquire(&herald_shared->mutex);
	/* a slot this scheduler has no evaluator in is free */
	Assert(herald_shared->evaluator[slot].generation == 0);
	generation = ++herald_shared->evaluator_generation;
	if (generation == 0)
		generation = ++herald_shared->evaluator_generation;
	herald_shared->evaluator[slot].generation = generation;
	herald_shared->evaluator[slot].rule_id = r->id;
	herald_shared->evaluator[slot].installation = installation;
	herald_shared->evaluator[slot].time_limit_ms =
		r->query_timeout_ms + herald_evaluation_slice + OVERRUN_GRACE_MS;
	herald_shared->evaluator[slot].pid = 0;
	herald_shared->evaluator[slot].done = false;
	herald_shared->evaluator[slot].ok = false;
	herald_shared->evaluator[slot].overran = false;
	SpinLockRelease(&herald_shared->mutex);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_herald");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "herald_evaluator_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_herald evaluator of rule %d", r->id);
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_herald evaluator");
	worker.bgw_main_arg = Int32GetDatum(slot);
	herald_worker_extra(worker.bgw_extra, generation);
	worker.bgw_notify_pid = MyProcPid;
	/* the handle outlives the loop's memory */
	old = MemoryContextSwitchTo(TopMemoryContext);
	started = RegisterDynamicBackgroundWorker(&worker, &ev->handle);
	MemoryContextSwitchTo(old);
	if (!started)
	{
		SpinLockAcquire(&herald_shared->mutex);
		herald_shared->evaluator[slot].generation = 0;
		SpinLockRelease(&herald_shared->mutex);
		/* said once, until one starts again */
		if (evaluator_retry_at == 0)
			ereport(LOG,
					(errmsg("pg_herald scheduler could not start an evaluator for threshold rule %d: slow rules wait",
							r->id),
					 errhint("Raise max_worker_processes.")));
		evaluator_retry_at = time_plus_ms(now, EVALUATOR_RETRY_MS);
		return false;
	}
	evaluator_retry_at = 0;
	ev->rule_id = r->id;
	ev->created_at = r->created_at;
	ev->owner = r->owner;
	ev->generation = generation;
	r->dirty = false;
	r->last_eval = now;
	return true;
}

/*
 * Start evaluators for the slow rules that are due, the one due longest
 * first, at most one per owner; true when some due rule still waits.
 */
static bool
start_evaluators(void)
{
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		SchedRule  *next = NULL;
		TimestampTz next_at = 0;
		bool		waiting = false;

		for (int i = 0; i < nrules; i++)
		{
			SchedRule  *r = &rules[i];
			TimestampTz due = next_due(r);

			if (!r->slow || evaluator_of(r->id) || due == 0 || due > now)
				continue;
			waiting = true;
			if (owner_has_evaluator(r->owner))
				continue;
			if (next == NULL || due < next_at)
			{
				next = r;
				next_at = due;
			}
		}
		if (next == NULL)
			return waiting;
		if (!start_evaluator(next, now))
			return true;
	}
}

/* Take the results of the evaluators that ended. */
static void
collect_evaluators(void)
{
	for (int i = 0; i < HERALD_MAX_EVALUATORS; i++)
	{
		Evaluator  *ev = &evaluators[i];
		HeraldEvaluatorSlot result;
		pid_t		pid;
		SchedRule  *r;

		bool		stopped;

		if (ev->rule_id == 0)
			continue;
		/* whether it stopped first: a result it writes just before exiting is seen */
		stopped = GetBackgroundWorkerPid(ev->handle, &pid) == BGWH_STOPPED;
		SpinLockAcquire(&herald_shared->mutex);
		result = herald_shared->evaluator[i];
		SpinLockRelease(&herald_shared->mutex);
		if (!result.done && !stopped)
			continue;

		r = find_rule(rules, nrules, ev->rule_id, ev->created_at);
		if (result.done && result.ok && !result.overran)
		{
			if (r)
			{
				r->timer_at = result.timer_at;
				r->slow = (result.duration_ms * 2 >= herald_evaluation_slice) ||
					is_suspect(r->owner);
			}
		}
		else if (result.overran)
		{
			EvalStep	e = {ev->rule_id, installation, NULL, 0, false};
			ErrorData  *edata;
			TimestampTz now = GetCurrentTimestamp();

			/* the metric would not stop: that is its failure */
			e.error = psprintf("the evaluation ran past its time limit (query_timeout + %d ms) and was stopped",
							   herald_evaluation_slice + OVERRUN_GRACE_MS);
			if (!timed_transaction("pg_herald: recording a failed evaluation", failed_step, &e,
								   time_plus_ms(now, herald_evaluation_slice),
								   time_plus_ms(now, herald_evaluation_slice + OVERRUN_GRACE_MS),
								   &edata))
			{
				ereport(LOG,
						(errmsg("could not record the failure of threshold rule %d: %s",
								ev->rule_id, edata->message)));
				FreeErrorData(edata);
			}
			if (r)
				r->timer_at = 0;
		}
		else if (r)
			r->timer_at = 0;	/* logged by the evaluator; the next touch or schedule retries */

		SpinLockAcquire(&herald_shared->mutex);
		if (herald_shared->evaluator[i].generation == ev->generation)
			herald_shared->evaluator[i].generation = 0;
		SpinLockRelease(&herald_shared->mutex);
		pfree(ev->handle);
		memset(ev, 0, sizeof(*ev));
	}
}

/* Stop the evaluators this scheduler started: no other is to run rules. */
static void
stop_evaluators(int code, Datum arg)
{
	for (int i = 0; i < HERALD_MAX_EVALUATORS; i++)
		if (evaluators[i].rule_id != 0)
			TerminateBackgroundWorker(evaluators[i].handle);
}

/* The scheduler's time one owner's rules took in this round, in ms. */
typedef struct OwnerTime
{
	Oid			owner;
	int64		used_ms;
} OwnerTime;

static OwnerTime *
owner_time(OwnerTime **times, int *ntimes, int *maxtimes, Oid owner)
{
	for (int i = 0; i < *ntimes; i++)
		if ((*times)[i].owner == owner)
			return &(*times)[i];
	if (*ntimes == *maxtimes)
	{
		*maxtimes = Max(8, *maxtimes * 2);
		*times = *times ? repalloc(*times, sizeof(OwnerTime) * *maxtimes) :
			palloc(sizeof(OwnerTime) * *maxtimes);
	}
	(*times)[*ntimes].owner = owner;
	(*times)[*ntimes].used_ms = 0;
	return &(*times)[(*ntimes)++];
}

/*
 * Evaluate every rule that is due, slow rules in evaluators; true when none
 * is left dirty or under evaluation.  The rules of one owner share one
 * herald.evaluation_slice per round in the scheduler: many rules each just
 * under the slice would otherwise hold up every other owner's rules by the
 * sum of their times.  Past it, the owner's rules due in this round are
 * handed to an evaluator (one per owner), as a rule that ran past the
 * slice alone is.
 */
static bool
evaluate_due(void)
{
	bool		all_clean = true;
	OwnerTime  *times = NULL;
	int			ntimes = 0;
	int			maxtimes = 0;

	for (int i = 0; i < nrules; i++)
	{
		SchedRule  *r = &rules[i];
		TimestampTz due = next_due(r);
		TimestampTz now = GetCurrentTimestamp();
		TimestampTz was_eval = r->last_eval;
		bool		was_dirty = r->dirty;
		EvalResult	res;
		OwnerTime  *spent;
		int64		left_ms;

		CHECK_FOR_INTERRUPTS();
		if (evaluator_of(r->id))
		{
			all_clean = false;
			continue;
		}
		if (due == 0 || due > now)
		{
			all_clean &= !r->dirty;
			continue;
		}
		if (r->slow)
		{
			all_clean = false;	/* started below */
			continue;
		}
		spent = owner_time(&times, &ntimes, &maxtimes, r->owner);
		left_ms = herald_evaluation_slice - spent->used_ms;
		if (left_ms <= 0)
		{
			/* its owner's share of this round is used: due as it is, for an evaluator */
			r->slow = true;
			all_clean = false;
			continue;
		}
		r->dirty = false;
		r->last_eval = now;
		evaluate_rule(r->id, r->owner, installation, left_ms,
					  left_ms + OVERRUN_GRACE_MS, &res);
		spent->used_ms += Max(res.duration_ms, 1);
		if (res.skipped)
		{
			installation_changed = true;
			if (times)
				pfree(times);
			return false;
		}
		if (res.deferred)
		{
			/* due as before, for an evaluator */
			if (left_ms == herald_evaluation_slice)
				ereport(LOG,
						(errmsg("threshold rule %d took longer than herald.evaluation_slice (%d ms): an evaluator evaluates it from now on",
								r->id, herald_evaluation_slice)));
			else
				ereport(LOG,
						(errmsg("threshold rule %d and other rules of its owner took longer than herald.evaluation_slice (%d ms) in one round: an evaluator evaluates it from now on",
								r->id, herald_evaluation_slice)));
			r->slow = true;
			r->dirty = was_dirty;
			r->last_eval = was_eval;
			all_clean = false;
		}
		else
			r->timer_at = res.timer_at;

		/*
		 * A rule change committed meanwhile reloads the list first (an
		 * unlocked read: a stale value only delays the reload to the next
		 * loop, which the latch causes).
		 */
		if (rules_loaded && herald_shared->rules_version != loaded_version)
		{
			if (times)
				pfree(times);
			return false;
		}
	}
	if (times)
		pfree(times);
	if (start_evaluators())
		all_clean = false;
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

	/* the changes of rules (herald.alter_rule), as old */
	ret = SPI_execute_with_args("DELETE FROM herald.rule_change_log WHERE id IN ("
								" SELECT id FROM herald.rule_change_log"
								"  WHERE changed_at < now() - make_interval(secs => $1)"
								"  ORDER BY changed_at LIMIT $2)",
								2, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not purge rule changes: %s", SPI_result_code_string(ret));
	p->purged += SPI_processed;

	/*
	 * Once the evaluations and changes are purged, the rules dropped longer
	 * ago than retention whose events are gone too: nothing of theirs is
	 * left to show.  (Events kept for their decisions keep their rule.)
	 */
	if (p->purged == 0)
	{
		ret = SPI_execute_with_args("DELETE FROM herald.dropped_rules d WHERE d.id IN ("
									" SELECT x.id FROM herald.dropped_rules x"
									"  WHERE x.dropped_at < now() - make_interval(secs => $1)"
									"    AND NOT EXISTS (SELECT 1 FROM herald.evaluation_log l WHERE l.rule_id = x.id)"
									"    AND NOT EXISTS (SELECT 1 FROM herald.rule_change_log c WHERE c.rule_id = x.id)"
									"    AND NOT EXISTS (SELECT 1 FROM herald.event_log e WHERE e.rule_id = x.id)"
									"  ORDER BY x.dropped_at LIMIT $2)",
									2, argtypes, args, NULL, false, 0);
		if (ret != SPI_OK_DELETE)
			elog(ERROR, "could not purge dropped rules: %s", SPI_result_code_string(ret));
	}
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

/* --- the workers ------------------------------------------------------------ */

void
herald_define_scheduler_settings(void)
{
	DefineCustomIntVariable("herald.evaluation_slice",
							"Longest time the scheduler gives one evaluation of a threshold rule.",
							"An evaluation that takes longer is cancelled and the rule is "
							"evaluated by an evaluator worker, with its whole query_timeout.",
							&herald_evaluation_slice,
							1000, 100, 60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("herald.max_evaluators",
							"Maximum number of evaluator workers, which evaluate slow threshold rules.",
							"At most one per rule owner runs at a time; they count against max_worker_processes.",
							&herald_max_evaluators,
							2, 1, HERALD_MAX_EVALUATORS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}

/*
 * The scheduler ends (or is ended, if an evaluation ignored its cancel):
 * the next one knows the slow rules, and the rule this one was evaluating
 * among them, without a slice spent on each; the evaluators it started
 * stop.
 */
static void
scheduler_exit(int code, Datum arg)
{
	SpinLockAcquire(&herald_shared->mutex);
	herald_shared->nslow = 0;
	if (evaluating_rule != 0)
		herald_shared->slow_rule[herald_shared->nslow++] = evaluating_rule;
	for (int i = 0; i < nrules && herald_shared->nslow < HERALD_MAX_SLOW_KEPT; i++)
		if (rules[i].slow)
			herald_shared->slow_rule[herald_shared->nslow++] = rules[i].id;
	if (evaluating_rule != 0 && overran && herald_shared->nsuspects < HERALD_MAX_SUSPECTS)
		herald_shared->suspect[herald_shared->nsuspects++] = evaluating_owner;
	SpinLockRelease(&herald_shared->mutex);

	if (evaluating_rule != 0)
	{
		if (overran)
			ereport(LOG,
					(errmsg("the evaluation of threshold rule %d went on past its cancel: the pg_herald scheduler restarts, and evaluators evaluate the rules of its owner from then on",
							evaluating_rule)));
	}
	stop_evaluators(code, arg);
}

/* An evaluator ends; at its time limit, it says so in its slot. */
static void
evaluator_exit(int code, Datum arg)
{
	SpinLockAcquire(&herald_shared->mutex);
	if (herald_shared->evaluator[evaluator_slot].generation == evaluator_generation)
	{
		herald_shared->evaluator[evaluator_slot].pid = 0;
		herald_shared->evaluator[evaluator_slot].overran = overran;
	}
	SpinLockRelease(&herald_shared->mutex);
	if (overran)
		ereport(LOG,
				(errmsg("the evaluation of threshold rule %d went on past its time limit: its evaluator stops",
						evaluating_rule)));
}

/*
 * DROP EXTENSION pg_herald is coming: cancel the evaluations in progress in
 * evaluators (a slow metric may have an hour to go), so that it need not
 * wait for them.  The scheduler's own ends within its slice.
 */
void
herald_cancel_evaluations(void)
{
	pid_t		pids[HERALD_MAX_EVALUATORS];
	int			n = 0;

	if (herald_database_shared() == NULL)
		return;
	SpinLockAcquire(&herald_shared->mutex);
	if (herald_shared->database == MyDatabaseId)
		for (int i = 0; i < HERALD_MAX_EVALUATORS; i++)
			if (herald_shared->evaluator[i].generation != 0 && herald_shared->evaluator[i].pid != 0)
				pids[n++] = herald_shared->evaluator[i].pid;
	SpinLockRelease(&herald_shared->mutex);
	for (int i = 0; i < n; i++)
		if (BackendPidGetProc(pids[i]) != NULL)
			(void) kill(pids[i], SIGINT);
}

/* What every pg_herald session that runs rules sets. */
static void
worker_settings(void)
{
	/*
	 * A commit lost in a crash is an evaluation lost: the scheduler
	 * evaluates every rule when it starts again, so the transition it
	 * recorded is detected again.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * An evaluator: evaluates the one rule its slot names, with the rule's
 * whole query_timeout, reports in the slot and ends.
 */
void
herald_evaluator_main(Datum arg)
{
	HeraldEvaluatorSlot job;
	EvalResult	res;
	Latch	   *latch;

	evaluator_slot = DatumGetInt32(arg);
	Assert(evaluator_slot >= 0 && evaluator_slot < HERALD_MAX_EVALUATORS);
	memcpy(&evaluator_generation, MyBgworkerEntry->bgw_extra, sizeof(evaluator_generation));
	Assert(evaluator_generation != 0);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	herald_worker_connect(false);
	pgstat_report_appname("pg_herald evaluator");
	worker_settings();

	SpinLockAcquire(&herald_shared->mutex);
	job = herald_shared->evaluator[evaluator_slot];
	if (job.generation == evaluator_generation)
		herald_shared->evaluator[evaluator_slot].pid = MyProcPid;
	SpinLockRelease(&herald_shared->mutex);
	if (job.generation != evaluator_generation)
		return;					/* its scheduler is gone */

	overrun_timeout = RegisterTimeout(USER_TIMEOUT, overrun_handler);
	before_shmem_exit(evaluator_exit, (Datum) 0);
	evaluate_rule(job.rule_id, InvalidOid, job.installation, 0, job.time_limit_ms, &res);

	SpinLockAcquire(&herald_shared->mutex);
	if (herald_shared->evaluator[evaluator_slot].generation == evaluator_generation)
	{
		HeraldEvaluatorSlot *slot = &herald_shared->evaluator[evaluator_slot];

		slot->done = true;
		slot->ok = res.ok && !res.skipped;
		slot->timer_at = res.timer_at;
		slot->duration_ms = res.duration_ms;
	}
	latch = herald_shared->scheduler_latch;
	SpinLockRelease(&herald_shared->mutex);
	if (latch)
		SetLatch(latch);
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
	/* the scheduler is the launcher's probe: it ends where pg_herald is not */
	herald_worker_connect(true);
	herald_scheduler_attach();
	pgstat_report_appname("pg_herald scheduler");
	worker_settings();

	/* the evaluators of a previous scheduler report to nobody */
	SpinLockAcquire(&herald_shared->mutex);
	for (int i = 0; i < HERALD_MAX_EVALUATORS; i++)
		herald_shared->evaluator[i].generation = 0;
	SpinLockRelease(&herald_shared->mutex);
	overrun_timeout = RegisterTimeout(USER_TIMEOUT, overrun_handler);
	before_shmem_exit(scheduler_exit, (Datum) 0);

	ereport(LOG,
			(errmsg("pg_herald scheduler started in database \"%s\"", herald_shared->datname)));

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
		TimestampTz now;

		MemoryContextSwitchTo(loop_context);
		MemoryContextReset(loop_context);
		CHECK_FOR_INTERRUPTS();
		herald_exit_if_uninstalled();
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

		if (installation_changed)
		{
			installation_changed = false;
			rules_loaded = false;
		}
		if (!rules_loaded || version != loaded_version)
		{
			if (herald_in_transaction("pg_herald: loading rules", load_step, NULL))
			{
				rules_loaded = true;
				loaded_version = version;
				/* known from now on */
				SpinLockAcquire(&herald_shared->mutex);
				herald_shared->nslow = 0;
				SpinLockRelease(&herald_shared->mutex);
			}
			else
			{
				/* every rule is evaluated once the list loads */
				rules_loaded = false;
				all = true;
			}
		}
		mark_touched(touched, ntouched, all);

		collect_evaluators();
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

			/*
			 * New events awaiting a decision appear without telling: look
			 * again soon.  Sooner only for a follow-up that will be sent
			 * then: one due already is one that could not be (its event is
			 * locked, say), and looking again at once would only spin.
			 */
			now = GetCurrentTimestamp();
			next_followup_at = time_plus_ms(now, FOLLOWUP_CHECK_MS);
			if (due > now && due < next_followup_at)
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
			next_purge_at = time_plus_ms(GetCurrentTimestamp(), more ? 0 : PURGE_INTERVAL_MS);
		}
		timeout = Min(timeout, ms_until(next_purge_at));

		if (!rules_loaded)
			timeout = Min(timeout, 1000);
		now = GetCurrentTimestamp();
		for (int i = 0; i < nrules; i++)
		{
			SchedRule  *r = &rules[i];
			TimestampTz due;

			/* an evaluator's end sets the latch */
			if (evaluator_of(r->id))
				continue;
			due = next_due(r);
			if (due == 0)
				continue;
			/* a slow rule due waits for an evaluator to end, or for the retry */
			if (r->slow && due <= now)
			{
				if (evaluator_retry_at > now)
					timeout = Min(timeout, ms_until(evaluator_retry_at));
				continue;
			}
			timeout = Min(timeout, ms_until(due));
		}
		/* a failed load is retried within a second, not in a loop */
		if ((rules_loaded && herald_shared->rules_version != loaded_version) ||
			installation_changed)
			timeout = 0;
		publish_quiet_tables();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, herald_wait_event(HERALD_WAIT_SCHEDULER_IDLE));
		ResetLatch(MyLatch);
	}
}
