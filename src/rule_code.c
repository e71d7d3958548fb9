/*-------------------------------------------------------------------------
 *
 * rule_code.c
 *		Running SQL a rule's author wrote (a condition, a metric) in a session
 *		that is not the author's: a writer's, the scheduler's.
 *
 * herald_run_limited() runs a step in a subtransaction and makes whatever
 * goes wrong in it the rule's failure, which the caller reports (a
 * rule.error event) before going on.  What the rule code could otherwise
 * do to the session:
 *
 *	- fail it.  An author can raise any SQLSTATE (RAISE ... USING ERRCODE),
 *	  so the code of an error proves nothing.  The only errors raised again
 *	  are those of interrupts this backend received: a cancel, the caller's
 *	  statement_timeout.  Those come from ProcessInterrupts() itself, which
 *	  no SQL can imitate.  A termination is FATAL and never comes back here;
 *	  resources the rule code exhausted are given back by the
 *	  subtransaction's abort; an interrupt still pending is served as soon
 *	  as the rule code is gone.
 *	- make it wait.  Past timeout_ms the rule code is cancelled, as a
 *	  statement timeout would, by a timeout of pg_herald's own
 *	  (USER_TIMEOUT), so that the cancel is known to be ours.  PL/pgSQL
 *	  code can catch a cancel (EXCEPTION WHEN query_canceled) and go on:
 *	  once the time is up, pg_herald's PL/pgSQL plugin refuses to start
 *	  any statement or function, handlers included, so the error climbs
 *	  out of every block.  Rule code nested in rule code (a condition
 *	  writing to a table another rule watches) never gets more time than
 *	  the code around it.
 *	- keep locks past the transaction.  Session-level advisory locks are
 *	  the only locks SQL can take that outlive a transaction: those the
 *	  rule code took are released, those of the session it released are
 *	  taken back, so that the session holds exactly what it held before.
 *	  While it runs, every advisory lock the session holds is also held at
 *	  transaction level ("pinned"), so that not even
 *	  pg_advisory_unlock_all() lets another session take it meanwhile.
 *	  Transaction-level locks it takes last until the caller's transaction
 *	  ends, as any lock taken by a trigger does, and waiting for them is
 *	  bounded by the time limit.
 *
 * The advisory locks of this backend are read from its PROCLOCK lists in
 * shared memory, under each lock partition's LWLock in shared mode; a
 * partition whose list is empty is skipped without the lock (only this
 * backend adds advisory locks to its lists, so one it holds is never in a
 * list that looks empty).  The counts per owner are those of the backend's
 * local lock table, reached through LockAcquireExtended() when pinning.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "plpgsql.h"

#include "compat.h"
#include "pg_herald.h"

/* The time limit: registered on first use, MAX_TIMEOUTS until then. */
static TimeoutId rule_timeout = MAX_TIMEOUTS;

/* Deadline of the innermost rule code running, 0 for none. */
static TimestampTz rule_deadline = 0;

/* Set by the timeout: the cancel it requested is ours ... */
static volatile sig_atomic_t rule_time_up = false;

/* ... and, whether it requested one or not, the time is over. */
static volatile sig_atomic_t rule_time_over = false;

/* Rule code running in this backend now (nested runs count). */
static int	rule_code_depth = 0;

/* The PL/pgSQL plugin pg_herald installs, and the one it found there. */
static PLpgSQL_plugin rule_code_plugin;
static PLpgSQL_plugin *prev_plugin = NULL;

/*
 * At the end of a transaction no rule code runs any more: an error that
 * escaped before the limit was disarmed leaves nothing behind.
 */
void
herald_rule_code_xact_end(void)
{
	if (rule_deadline != 0 && rule_timeout != MAX_TIMEOUTS)
		disable_timeout(rule_timeout, false);
	rule_deadline = 0;
	rule_time_up = false;
	rule_time_over = false;
}

/* One advisory lock (tag and mode) this backend holds. */
typedef struct HeldLock
{
	LOCKTAG		tag;
	LOCKMODE	mode;
	LOCALLOCK  *pinned;			/* held at transaction level by us, or NULL */
	int64		session;		/* session-level holds before the rule code */
} HeldLock;

/*
 * The timeout's handler, in signal context: cancel what runs, as the
 * statement timeout does.  A cancel already pending is someone else's and
 * is left to win.
 */
static void
rule_timeout_handler(void)
{
	rule_time_over = true;
	if (!QueryCancelPending)
	{
		rule_time_up = true;
		QueryCancelPending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);
}

/*
 * Arm the time limit of rule code starting now, never past the deadline of
 * the rule code it runs in (outer, 0 for none).  Returns the deadline, 0
 * for none.
 */
static TimestampTz
start_clock(int timeout_ms, TimestampTz outer)
{
	TimestampTz deadline = outer;

	if (timeout_ms > 0)
	{
		TimestampTz mine = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);

		if (deadline == 0 || mine < deadline)
			deadline = mine;
	}
	if (deadline != 0 && deadline != outer)
	{
		if (rule_timeout == MAX_TIMEOUTS)
			rule_timeout = RegisterTimeout(USER_TIMEOUT, rule_timeout_handler);
		enable_timeout_at(rule_timeout, deadline);
	}
	rule_deadline = deadline;
	return deadline;
}

/*
 * Disarm it, give the outer rule code its own deadline back, and say
 * whether the limit went off, and whether it requested a cancel (none when
 * one was pending already).  A cancel it requested and nobody served is
 * withdrawn.
 */
static bool
stop_clock(TimestampTz deadline, TimestampTz outer, bool *requested)
{
	bool		fired;

	if (deadline != 0 && deadline != outer)
		disable_timeout(rule_timeout, false);
	fired = rule_time_over;
	*requested = rule_time_up;
	if (rule_time_up && QueryCancelPending)
		QueryCancelPending = false;
	rule_time_up = false;
	rule_time_over = false;

	rule_deadline = outer;
	if (outer != 0 && deadline != outer)
		enable_timeout_at(rule_timeout, outer);
	else if (outer != 0 && fired)
		rule_timeout_handler();	/* the outer code's time is up as well */
	return fired;
}

/*
 * The PL/pgSQL plugin: rule code whose time is over starts nothing more.
 * Checked before every statement (exception handlers' included) and at
 * every function's start, so that code catching the cancel cannot go on.
 * Another plugin installed before pg_herald is called as well.
 */
static void
refuse_when_time_is_over(void)
{
	if (rule_time_over && rule_deadline != 0)
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceling statement: the rule code's time is over")));
}

static void
plugin_func_setup(PLpgSQL_execstate *estate, PLpgSQL_function *func)
{
	if (prev_plugin)
	{
		/* the callbacks PL/pgSQL just gave us are the other plugin's too */
		prev_plugin->error_callback = rule_code_plugin.error_callback;
		prev_plugin->assign_expr = rule_code_plugin.assign_expr;
		prev_plugin->assign_value = rule_code_plugin.assign_value;
		prev_plugin->eval_datum = rule_code_plugin.eval_datum;
		prev_plugin->cast_value = rule_code_plugin.cast_value;
		if (prev_plugin->func_setup)
			prev_plugin->func_setup(estate, func);
	}
}

static void
plugin_func_beg(PLpgSQL_execstate *estate, PLpgSQL_function *func)
{
	refuse_when_time_is_over();
	if (prev_plugin && prev_plugin->func_beg)
		prev_plugin->func_beg(estate, func);
}

static void
plugin_func_end(PLpgSQL_execstate *estate, PLpgSQL_function *func)
{
	if (prev_plugin && prev_plugin->func_end)
		prev_plugin->func_end(estate, func);
}

static void
plugin_stmt_beg(PLpgSQL_execstate *estate, PLpgSQL_stmt *stmt)
{
	refuse_when_time_is_over();
	if (prev_plugin && prev_plugin->stmt_beg)
		prev_plugin->stmt_beg(estate, stmt);
}

static void
plugin_stmt_end(PLpgSQL_execstate *estate, PLpgSQL_stmt *stmt)
{
	if (prev_plugin && prev_plugin->stmt_end)
		prev_plugin->stmt_end(estate, stmt);
}

/* Install the PL/pgSQL plugin, from _PG_init(). */
void
herald_rule_code_init(void)
{
	PLpgSQL_plugin **plugin_ptr = (PLpgSQL_plugin **) find_rendezvous_variable("PLpgSQL_plugin");

	prev_plugin = *plugin_ptr;
	rule_code_plugin.func_setup = plugin_func_setup;
	rule_code_plugin.func_beg = plugin_func_beg;
	rule_code_plugin.func_end = plugin_func_end;
	rule_code_plugin.stmt_beg = plugin_stmt_beg;
	rule_code_plugin.stmt_end = plugin_stmt_end;
	*plugin_ptr = &rule_code_plugin;
}

/* The advisory locks (tag and mode) this backend holds now. */
static HeldLock *
advisory_locks_held(int *nlocks)
{
	HeldLock   *locks = NULL;
	int			n = 0;
	int			max = 0;

	for (int partition = 0; partition < NUM_LOCK_PARTITIONS; partition++)
	{
		LWLock	   *partitionLock;
		PROCLOCK   *proclock;

		if (herald_proc_locks_empty(MyProc, partition))
			continue;
		partitionLock = LockHashPartitionLockByIndex(partition);
		LWLockAcquire(partitionLock, LW_SHARED);
		for (proclock = herald_proc_locks_next(MyProc, partition, NULL);
			 proclock != NULL;
			 proclock = herald_proc_locks_next(MyProc, partition, proclock))
		{
			LOCK	   *lock = proclock->tag.myLock;

			Assert(proclock->tag.myProc == MyProc);

			if (lock->tag.locktag_lockmethodid != USER_LOCKMETHOD)
				continue;
			for (LOCKMODE mode = 1; mode <= MaxLockMode; mode++)
			{
				if ((proclock->holdMask & LOCKBIT_ON(mode)) == 0)
					continue;
				if (n == max)
				{
					max = Max(8, max * 2);
					locks = locks ? repalloc(locks, sizeof(HeldLock) * max) :
						palloc(sizeof(HeldLock) * max);
				}
				locks[n].tag = lock->tag;
				locks[n].mode = mode;
				locks[n].pinned = NULL;
				locks[n].session = 0;
				n++;
			}
		}
		LWLockRelease(partitionLock);
	}
	*nlocks = n;
	return locks;
}

static int64
session_holds(LOCALLOCK *locallock)
{
	int64		n = 0;

	for (int i = 0; i < locallock->numLockOwners; i++)
		if (locallock->lockOwners[i].owner == NULL)
			n += locallock->lockOwners[i].nLocks;
	return n;
}

/*
 * Hold a lock this backend holds once more, at transaction level, in the
 * current resource owner: granted at once, locally.  Its local entry then
 * stays, and with it the count of its session-level holds.
 */
static void
pin_lock(HeldLock *lock)
{
	LOCALLOCK  *locallock;

	if (herald_lock_acquire_extended(&lock->tag, lock->mode, false, true, true,
									 &locallock) != LOCKACQUIRE_NOT_AVAIL)
	{
		lock->pinned = locallock;
		lock->session = session_holds(locallock);
	}
}

/* Bring a pinned lock's session-level holds to n, then unpin it. */
static void
settle_lock(HeldLock *lock, int64 n)
{
	int64		now;

	if (lock->pinned == NULL)
		return;
	/* while pinned, each of these only changes the local counts */
	for (now = session_holds(lock->pinned); now > n; now--)
		LockRelease(&lock->tag, lock->mode, true);
	for (; now < n; now++)
		(void) LockAcquire(&lock->tag, lock->mode, true, true);
	LockRelease(&lock->tag, lock->mode, false);
	lock->pinned = NULL;
}

static bool
same_lock(const HeldLock *a, const HeldLock *b)
{
	return a->mode == b->mode && memcmp(&a->tag, &b->tag, sizeof(LOCKTAG)) == 0;
}

/*
 * After the rule code: the session-level holds of the locks held before
 * are what they were, and those of the locks it took are gone.
 */
static void
settle_locks(HeldLock *before, int nbefore)
{
	HeldLock   *after;
	int			nafter;

	after = advisory_locks_held(&nafter);
	for (int i = 0; i < nafter; i++)
	{
		bool		known = false;

		for (int j = 0; j < nbefore && !known; j++)
			known = same_lock(&after[i], &before[j]);
		if (known)
			continue;
		pin_lock(&after[i]);
		settle_lock(&after[i], 0);
	}
	for (int j = 0; j < nbefore; j++)
		settle_lock(&before[j], before[j].session);
	if (after)
		pfree(after);
}

/*
 * Was this error raised by an interrupt this backend received?  Then it
 * came from ProcessInterrupts(), which SQL cannot make raise anything: the
 * place an error was raised from is set by the server, not by the author.
 */
static bool
raised_by_interrupt(ErrorData *edata)
{
	return edata->funcname != NULL && strcmp(edata->funcname, "ProcessInterrupts") == 0;
}

/*
 * Run step, which runs SQL its caller does not control (a rule's condition
 * or metric), in a subtransaction, for at most timeout_ms (0: no limit of
 * its own, but never past the limit of the rule code it runs in).
 * Returns NULL when it succeeded, or the error message when it failed:
 * the failure is the rule's, and the caller goes on.  *timed_out (when
 * not NULL) says whether it failed by running out of time.  A cancel this
 * backend received, or the caller's own statement timeout, is raised again.
 * While a condition runs (in_session: in a writer's session, as
 * herald_run_limited() runs it), herald_rule_code_running() says so.
 */
static char *
run_step(herald_step step, void *arg, int timeout_ms, bool *timed_out, bool in_session)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	TimestampTz outer = rule_deadline;
	TimestampTz statement_deadline = 0;
	TimestampTz deadline;
	HeldLock   *before;
	int			nbefore;
	ErrorData  *volatile edata = NULL;
	bool		fired;
	bool		requested;
	char	   *error = NULL;

	if (timed_out)
		*timed_out = false;
	if (get_timeout_active(STATEMENT_TIMEOUT))
		statement_deadline = get_timeout_finish_time(STATEMENT_TIMEOUT);

	before = advisory_locks_held(&nbefore);
	for (int i = 0; i < nbefore; i++)
		pin_lock(&before[i]);

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	/* armed only once nothing but the rule code can fail before it is stopped */
	deadline = start_clock(timeout_ms, outer);
	PG_TRY();
	{
		if (in_session)
			rule_code_depth++;
		step(arg);
		if (in_session)
			rule_code_depth--;
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		if (in_session)
			rule_code_depth--;
		Assert(rule_code_depth >= 0);
		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	CurrentResourceOwner = owner;
	fired = stop_clock(deadline, outer, &requested);
	settle_locks(before, nbefore);
	if (before)
		pfree(before);

	if (edata != NULL)
	{
		bool		interrupt = raised_by_interrupt(edata);
		bool		ours = fired && interrupt && requested &&
			edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
			(statement_deadline == 0 || GetCurrentTimestamp() < statement_deadline);

		/* lock_timeout ended a wait of the rule code's: the rule's failure */
		if (interrupt && !ours && edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		/* whatever error the rule code ended with, its time ran out */
		if (timed_out)
			*timed_out = fired;
		error = pstrdup(edata->message ? edata->message : "unknown error");
		FreeErrorData(edata);
	}

	/* a cancel or a termination that came meanwhile is served now */
	CHECK_FOR_INTERRUPTS();
	return error;
}

/* A rule's condition, in the session of the writer it runs for. */
char *
herald_run_limited(herald_step step, void *arg, int timeout_ms, bool *timed_out)
{
	return run_step(step, arg, timeout_ms, timed_out, true);
}

/*
 * The same, with no time limit of its own, for a metric (in the
 * scheduler's read-only transaction) or pg_herald's own SQL.
 */
char *
herald_run_protected(herald_step step, void *arg)
{
	return run_step(step, arg, 0, NULL, false);
}

/* Is a rule's condition running in this backend now? */
bool
herald_rule_code_running(void)
{
	return rule_code_depth > 0;
}
