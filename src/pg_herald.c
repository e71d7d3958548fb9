/*-------------------------------------------------------------------------
 *
 * pg_herald.c
 *		Module entry point: settings, shared state, worker registration and
 *		the commit-time wake-up of the delivery workers.
 *
 * A transaction that creates deliveries calls herald_note_work(); one that
 * writes to a table a threshold rule watches calls herald_note_touch(); one
 * that changes rules calls herald_note_rules_changed().  The transaction
 * callback passes these notes to the workers (the delivery workers, the
 * scheduler) and sets their latches when, and only when, that transaction
 * commits; an abort forgets them.  The workers publish their latches in
 * their database's HeraldShared (launcher.c), whose spinlock guards every
 * field.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "executor/spi.h"
#include "catalog/pg_namespace.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "compat.h"
#include "pg_herald.h"
#include "http_server.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(herald_warn_unserved);
PG_FUNCTION_INFO_V1(herald_status);

char	   *herald_database = NULL;
int			herald_delivery_workers = 1;
int			herald_batch_size = 500;
int			herald_max_in_flight = 256;
int			herald_max_host_connections = 64;
int			herald_retention = 7 * 86400;
int			herald_dead_retention = 30 * 86400;
int			herald_purge_batch = 10000;
char	   *herald_deny_networks = NULL;
char	   *herald_decision_url = NULL;
char	   *herald_allow_networks = NULL;

HeraldShared *herald_shared = NULL;

/* true while the current transaction has created deliveries */
static bool work_pending = false;

/*
 * The start of that transaction: its deliveries are due from then on
 * (next_attempt_at defaults to now()).  The workers resume their scan of
 * the queue from there, since these rows may sort before rows they have
 * already claimed.
 */
static TimestampTz work_due_from = 0;

/*
 * Watched tables the current transaction wrote to, for the scheduler; past
 * LOCAL_TOUCHED of them, all of them.  And whether it changed rules.
 */
#define LOCAL_TOUCHED 16
static Oid	local_touched[LOCAL_TOUCHED];
static int	nlocal_touched = 0;
static bool local_touched_all = false;
static bool rules_changed = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);
static void wake_scheduler(void);
static bool lock_for_this_database(void);
static bool oid_in(Oid oid, const Oid *list, int n);

static void
herald_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(herald_cluster_shmem_size()));
	herald_event_log_shmem_request();
}

static void
herald_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	herald_cluster_shmem_init();
	herald_event_log_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/* The names of the HeraldWait values, in their order. */
static const char *const wait_names[HERALD_NUM_WAITS] = {
	[HERALD_WAIT_DELIVERY_IDLE] = "HeraldDeliveryIdle",
	[HERALD_WAIT_DELIVERY_HTTP] = "HeraldDeliveryHttp",
	[HERALD_WAIT_SCHEDULER_IDLE] = "HeraldSchedulerIdle",
	[HERALD_WAIT_HTTP_SERVER] = "HeraldHttpServer",
	[HERALD_WAIT_FLUSH_EVALUATIONS] = "HeraldFlushEvaluations",
	[HERALD_WAIT_FLUSH_DELIVERIES] = "HeraldFlushDeliveries",
	[HERALD_WAIT_LAUNCHER] = "HeraldLauncher",
	[HERALD_WAIT_LAUNCH] = "HeraldLaunch",
};

/*
 * The wait event to report for this wait: a custom one where the server
 * has them, registered (in shared memory, once per cluster) by the first
 * process that waits so and remembered by each process.
 */
uint32
herald_wait_event(HeraldWait wait)
{
	static uint32 events[HERALD_NUM_WAITS];

	Assert(wait >= 0 && wait < HERALD_NUM_WAITS);
	Assert(wait_names[wait] != NULL);
	if (events[wait] == 0)
		events[wait] = herald_wait_event_new(wait_names[wait]);
	return events[wait];
}

/*
 * Wake the delivery workers when a transaction that produced work commits.
 */
static void
herald_xact_callback(XactEvent event, void *arg)
{
	/* first: a woken worker must find this transaction's ids settled */
	herald_events_xact_event(event);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		herald_capture_xact_end();
		herald_rule_code_xact_end();
		herald_launcher_xact_end(event);
	}

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (work_pending)
				herald_wake_delivery(work_due_from);
			if (nlocal_touched > 0 || local_touched_all || rules_changed)
				wake_scheduler();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/*
			 * A prepared transaction's deliveries are found by the idle
			 * recheck, its touches by the next evaluation of the rules.
			 */
			break;
		default:
			return;
	}
	work_pending = false;
	work_due_from = 0;
	nlocal_touched = 0;
	local_touched_all = false;
	rules_changed = false;
}

/*
 * Take the spinlock when the workers serve this database; false (and not
 * locked) when they do not, or when there is no shared state: work in a
 * database no worker serves waits for nobody.
 */
static bool
lock_for_this_database(void)
{
	HeraldShared *s = herald_lock_database(MyDatabaseId);

	if (s == NULL)
		return false;
	herald_shared = s;
	return true;
}

/* The current transaction wrote to a table that threshold rules watch. */
void
herald_note_touch(Oid relid)
{
	for (int i = 0; i < nlocal_touched; i++)
		if (local_touched[i] == relid)
			return;
	if (nlocal_touched < LOCAL_TOUCHED)
		local_touched[nlocal_touched++] = relid;
	else
		local_touched_all = true;
}

/* The current transaction changed rules: the scheduler reloads them. */
void
herald_note_rules_changed(void)
{
	rules_changed = true;
}

/*
 * At commit: hand the touched tables and the rule change to the scheduler
 * and wake it.  Touches accumulate until it takes them; past
 * HERALD_MAX_TOUCHED tables it evaluates every watching rule.  A table it
 * declared quiet (every rule watching it already waits for its
 * min_interval) only counts in touch_seq: no wake-up per commit.
 */
static void
wake_scheduler(void)
{
	Latch	   *latch;
	bool		news = false;	/* something the scheduler does not know yet */

	if (!lock_for_this_database())
		return;
	Assert(herald_shared->ntouched >= 0 && herald_shared->ntouched <= HERALD_MAX_TOUCHED);
	Assert(herald_shared->nquiet >= 0 && herald_shared->nquiet <= HERALD_MAX_TOUCHED);
	if (rules_changed)
		herald_shared->rules_version++;
	/* a new or changed rule is evaluated at once: herald.flush() waits */
	if (nlocal_touched > 0 || local_touched_all || rules_changed)
		herald_shared->touch_seq++;
	if (local_touched_all)
	{
		herald_shared->touched_all = true;
		news = true;
	}
	for (int i = 0; i < nlocal_touched && !herald_shared->touched_all; i++)
	{
		if (oid_in(local_touched[i], herald_shared->quiet, herald_shared->nquiet) ||
			oid_in(local_touched[i], herald_shared->touched, herald_shared->ntouched))
			continue;
		if (herald_shared->ntouched < HERALD_MAX_TOUCHED)
			herald_shared->touched[herald_shared->ntouched++] = local_touched[i];
		else
			herald_shared->touched_all = true;
		news = true;
	}
	latch = herald_shared->scheduler_latch;
	SpinLockRelease(&herald_shared->mutex);
	if (latch && (news || rules_changed))
		SetLatch(latch);
}

static bool
oid_in(Oid oid, const Oid *list, int n)
{
	for (int i = 0; i < n; i++)
		if (list[i] == oid)
			return true;
	return false;
}

/* The current transaction created deliveries: wake the workers at commit. */
void
herald_note_work(void)
{
	work_pending = true;
	work_due_from = GetCurrentTransactionStartTimestamp();
}

/*
 * The current transaction appended events to channels: wake the workers at
 * commit.  Events are read from the log, not from the queue: unlike
 * herald_note_work(), this asks for no new look at the queue.
 */
void
herald_note_events(void)
{
	work_pending = true;
}

/* Has the current transaction work the workers will see only at commit? */
bool
herald_work_pending(void)
{
	return work_pending || nlocal_touched > 0 || local_touched_all;
}

/*
 * Set the latch of every running delivery worker; due_from, when not 0, is
 * the oldest due time of the deliveries that just committed.
 */
void
herald_wake_delivery(TimestampTz due_from)
{
	Latch	   *latches[HERALD_MAX_WORKERS];
	int			n = 0;

	if (!lock_for_this_database())
		return;
	for (int i = 0; i < HERALD_MAX_WORKERS; i++)
		if (due_from != 0 &&
			(herald_shared->rescan_from[i] == 0 || due_from < herald_shared->rescan_from[i]))
			herald_shared->rescan_from[i] = due_from;
	for (int i = 0; i < HERALD_MAX_WORKERS; i++)
		if (herald_shared->latch[i] != NULL)
			latches[n++] = herald_shared->latch[i];
	SpinLockRelease(&herald_shared->mutex);

	for (int i = 0; i < n; i++)
		SetLatch(latches[i]);
}

/*
 * The oldest due time committed since this worker last asked, 0 for none:
 * the worker resumes its scans of the queue from there.
 */
TimestampTz
herald_take_rescan(int slot)
{
	TimestampTz from;

	Assert(herald_worker_owns(slot));
	SpinLockAcquire(&herald_shared->mutex);
	from = herald_shared->rescan_from[slot];
	herald_shared->rescan_from[slot] = 0;
	SpinLockRelease(&herald_shared->mutex);
	return from;
}

static void
herald_worker_detach(int code, Datum arg)
{
	int			slot = DatumGetInt32(arg);

	Assert(herald_worker_owns(slot));
	SpinLockAcquire(&herald_shared->mutex);
	herald_shared->latch[slot] = NULL;
	herald_shared->pid[slot] = 0;
	SpinLockRelease(&herald_shared->mutex);
}

/*
 * Whether the calling process is the delivery worker of this slot: the
 * leases of the slot (delivery_queue.leased_by) and its place in the event
 * log are its own.
 */
bool
herald_worker_owns(int slot)
{
	bool		owns;

	if (herald_shared == NULL || slot < 0 || slot >= HERALD_MAX_WORKERS)
		return false;
	SpinLockAcquire(&herald_shared->mutex);
	owns = (herald_shared->pid[slot] == MyProcPid &&
			herald_shared->latch[slot] == MyLatch);
	SpinLockRelease(&herald_shared->mutex);
	return owns;
}

/* Publish the calling worker's latch in its slot until it exits. */
void
herald_worker_attach(int slot)
{
	Assert(herald_shared != NULL);
	Assert(slot >= 0 && slot < herald_delivery_workers &&
		   herald_delivery_workers <= HERALD_MAX_WORKERS);
	SpinLockAcquire(&herald_shared->mutex);
	/* one worker per slot: the one before it detached as it exited */
	Assert(herald_shared->pid[slot] == 0 && herald_shared->latch[slot] == NULL);
	herald_shared->latch[slot] = MyLatch;
	herald_shared->pid[slot] = MyProcPid;
	SpinLockRelease(&herald_shared->mutex);
	before_shmem_exit(herald_worker_detach, Int32GetDatum(slot));
}

static void
herald_scheduler_detach(int code, Datum arg)
{
	SpinLockAcquire(&herald_shared->mutex);
	herald_shared->scheduler_latch = NULL;
	herald_shared->scheduler_pid = 0;
	SpinLockRelease(&herald_shared->mutex);
}

/* Publish the scheduler's latch until it exits. */
void
herald_scheduler_attach(void)
{
	Assert(herald_shared != NULL);
	SpinLockAcquire(&herald_shared->mutex);
	/* one scheduler: the one before it detached as it exited */
	Assert(herald_shared->scheduler_latch == NULL);
	herald_shared->scheduler_latch = MyLatch;
	herald_shared->scheduler_pid = MyProcPid;
	SpinLockRelease(&herald_shared->mutex);
	before_shmem_exit(herald_scheduler_detach, (Datum) 0);
}

/*
 * A statement the workers run again and again: prepared once, kept for the
 * life of the process.  SPI must be connected.
 */
SPIPlanPtr
herald_prepare_kept(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep \"%s\"", sql);
	return plan;
}

/*
 * Run step in its own transaction with SPI connected and a snapshot; for
 * the workers.  On error, log it, abort, and return false.
 */
bool
herald_in_transaction(const char *activity, herald_step step, void *arg)
{
	return herald_try_transaction(activity, step, arg, NULL);
}

/*
 * The same; but when error is not NULL, an error is not logged: *error gets
 * a copy of it, in the caller's memory context, for the caller to judge.
 * Either way the worker shows as idle, with no statement, once it is done:
 * pg_stat_activity does not show a step that is over.
 */
bool
herald_try_transaction(const char *activity, herald_step step, void *arg, ErrorData **error)
{
	MemoryContext caller = CurrentMemoryContext;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);
		step(arg);
		if (SPI_finish() != SPI_OK_FINISH)
			elog(ERROR, "SPI_finish failed");
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		if (error)
			*error = CopyErrorData();
		else
			EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, "");
	return ok;
}

/*
 * Why pg_herald's workers do not serve the current database (a sentence, for
 * a message's detail), or NULL when they do, or will as soon as the
 * launcher has started them.
 */
static char *
not_served_reason(void)
{
	char	   *db = get_database_name(MyDatabaseId);
	HeraldShared *s;
	char	   *problem = NULL;

	if (herald_cluster == NULL)
		return pstrdup("pg_herald is not loaded through shared_preload_libraries, so no worker runs.");
	if (herald_database[0] != '\0' && (db == NULL || strcmp(db, herald_database) != 0))
		return psprintf("The workers serve database \"%s\" (herald.database), not \"%s\".",
						herald_database, db ? db : "?");
	/* they start once recovery ends (BgWorkerStart_RecoveryFinished) */
	if (RecoveryInProgress())
		return pstrdup("The server is a standby: the workers start when it is promoted.");
	s = herald_lock_database(MyDatabaseId);
	if (s != NULL)
	{
		if (s->problem[0] != '\0')
			problem = pstrdup(s->problem);
		SpinLockRelease(&s->mutex);
		return problem;
	}
	if (herald_database_full())
		return psprintf("The workers serve at most %d databases (herald.max_databases), and serve that many others.",
						herald_max_databases);
	return NULL;
}

/* Report, at elevel, that the workers do not serve this database, and what follows. */
static void
not_served_report(int elevel, const char *consequence, const char *reason)
{
	if (reason == NULL)
		reason = not_served_reason();
	if (reason == NULL)
		return;
	ereport(elevel,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("pg_herald's workers do not serve database \"%s\"",
					get_database_name(MyDatabaseId)),
			 errdetail_internal("%s %s", reason, consequence),
			 herald_cluster == NULL ?
			 errhint("Add pg_herald to shared_preload_libraries and restart the server.") :
			 RecoveryInProgress() ?
			 errhint("Run it on the primary.") :
			 herald_database[0] != '\0' ?
			 errhint("Set herald.database to this database, or to '' for every database, and restart the server; or use pg_herald in database \"%s\".",
					 herald_database) :
			 errhint("See herald.status, and the server log of the pg_herald launcher.")));
}

/*
 * Functions that wait for the workers refuse to run where no worker serves
 * the database: their wait would never end.  Where the workers are about
 * to start (CREATE EXTENSION just committed), they wait for them, a while.
 * Once this returns, herald_shared is the database's slot.
 */
void
herald_require_served(const char *consequence)
{
	not_served_report(ERROR, consequence, NULL);
	if (!herald_wait_for_workers())
		not_served_report(ERROR, consequence,
						  "The workers of this database did not start within 10 seconds.");
	if (herald_database_shared() == NULL)
		not_served_report(ERROR, consequence,
						  "The workers of this database stopped.");
}

/*
 * herald._warn_unserved(consequence text) RETURNS void: a WARNING when the
 * workers do not serve this database, saying what follows.  CREATE
 * EXTENSION and every declaration call it, so that nothing is queued there
 * silently.
 */
Datum
herald_warn_unserved(PG_FUNCTION_ARGS)
{
	not_served_report(WARNING, text_to_cstring(PG_GETARG_TEXT_PP(0)), NULL);
	PG_RETURN_VOID();
}

/*
 * herald._status(): one row saying whether the workers serve this
 * database, why not, how many of them run, and the versions of the
 * library and of the installation.
 */
Datum
herald_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[7];
	bool		nulls[7] = {false};
	char	   *reason = not_served_reason();
	int			delivery = 0;
	bool		scheduler = false;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "herald._status() must return a row");
	if (reason == NULL)
	{
		HeraldShared *s = herald_lock_database(MyDatabaseId);

		if (s != NULL)
		{
			for (int i = 0; i < HERALD_MAX_WORKERS; i++)
				if (s->pid[i] != 0)
					delivery++;
			scheduler = s->scheduler_latch != NULL;
			SpinLockRelease(&s->mutex);
		}
	}
	values[0] = CStringGetTextDatum(get_database_name(MyDatabaseId));
	values[1] = BoolGetDatum(reason == NULL);
	values[2] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[2] = reason == NULL;
	values[3] = CStringGetTextDatum(herald_database);
	values[4] = Int32GetDatum(delivery);
	values[5] = BoolGetDatum(scheduler);
	values[6] = CStringGetTextDatum(PG_HERALD_VERSION);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

Oid
herald_schema_oid(bool missing_ok)
{
	return get_namespace_oid(HERALD_SCHEMA, missing_ok);
}

/*
 * herald.decision_url: empty, or an http(s) URL, in one piece, with
 * {{event_id}} where each follow-up's event goes.
 */
static bool
check_decision_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;

	if (url == NULL || url[0] == '\0')
		return true;
	if (pg_strncasecmp(url, "http://", 7) != 0 && pg_strncasecmp(url, "https://", 8) != 0)
	{
		GUC_check_errdetail("The decision URL must start with http:// or https://.");
		return false;
	}
	for (const char *c = url; *c; c++)
		if ((unsigned char) *c <= ' ' || *c == 0x7f)
		{
			GUC_check_errdetail("The decision URL must not contain spaces or control characters.");
			return false;
		}
	if (strstr(url, "{{event_id}}") == NULL)
	{
		GUC_check_errdetail("The decision URL must contain {{event_id}}, replaced by each follow-up's event id.");
		return false;
	}
	return true;
}

static void
herald_define_settings(void)
{
	DefineCustomStringVariable("herald.database",
							   "The one database pg_herald serves; empty for every database where it is installed.",
							   NULL,
							   &herald_database,
							   "",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("herald.delivery_workers",
							"Number of delivery workers.",
							NULL,
							&herald_delivery_workers,
							1, 1, HERALD_MAX_WORKERS,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("herald.batch_size",
							"Maximum number of deliveries a worker claims in one transaction.",
							NULL,
							&herald_batch_size,
							500, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("herald.max_in_flight",
							"Maximum number of requests one delivery worker has in flight.",
							NULL,
							&herald_max_in_flight,
							256, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("herald.max_host_connections",
							"Maximum number of connections one delivery worker opens to one host.",
							NULL,
							&herald_max_host_connections,
							64, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("herald.retention",
							"How long delivered deliveries, their attempts and events are kept.",
							"-1 keeps them forever.",
							&herald_retention,
							7 * 86400, -1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("herald.dead_retention",
							"How long dead deliveries, their attempts and events are kept.",
							"-1 keeps them forever.",
							&herald_dead_retention,
							30 * 86400, -1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("herald.purge_batch",
							"Maximum number of deliveries purged in one transaction.",
							NULL,
							&herald_purge_batch,
							10000, 1, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("herald.decision_url",
							   "Link offered by follow-up questions, with {{event_id}} in it.",
							   "For example https://intranet.example/decide?event={{event_id}}; empty for none.",
							   &herald_decision_url,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_decision_url, NULL, NULL);

	herald_define_network_settings();
	herald_define_link_settings();
	herald_define_http_settings();
	herald_define_format_settings();
	herald_define_filter_settings();
	herald_define_capture_settings();
	herald_define_scheduler_settings();
	herald_define_launcher_settings();

	MarkGUCPrefixReserved("herald");
}

void
_PG_init(void)
{
	herald_define_settings();
	RegisterXactCallback(herald_xact_callback, NULL);
	herald_api_init();
	herald_install_watch_hooks();
	herald_rule_code_init();
	herald_launcher_init();

	/*
	 * Loaded on demand in an ordinary backend: capture works, but there is no
	 * shared state and no worker.  Functions that need them say so.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = herald_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = herald_shmem_startup;

	/*
	 * herald_launcher_init() registers the launcher, which starts the
	 * workers.  pg_upgrade starts both servers in binary-upgrade mode (-b)
	 * to move the schema: no launcher then.  On the old one the workers
	 * would deliver while its files are about to be copied; on the new one
	 * they would serve a database that is being restored.  Its first
	 * ordinary start runs them.
	 */
}
