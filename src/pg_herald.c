/*-------------------------------------------------------------------------
 *
 * pg_herald.c
 *		Module entry point: settings, shared state, worker registration and
 *		the commit-time wake-up of the delivery workers.
 *
 * A transaction that creates deliveries calls herald_note_work().  The
 * transaction callback sets the delivery workers' latches when, and only
 * when, that transaction commits; an abort forgets the note.  The workers
 * publish their latches in HeraldShared, whose spinlock guards every field.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/syscache.h"

#include "pg_herald.h"

PG_MODULE_MAGIC;

char	   *herald_database = NULL;
int			herald_delivery_workers = 1;
int			herald_batch_size = 500;
int			herald_max_in_flight = 256;
int			herald_max_host_connections = 64;
int			herald_retention = 7 * 86400;
int			herald_dead_retention = 30 * 86400;
int			herald_purge_batch = 10000;

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

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

static void
herald_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(sizeof(HeraldShared)));
}

static void
herald_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	herald_shared = ShmemInitStruct("pg_herald", sizeof(HeraldShared), &found);
	if (!found)
	{
		memset(herald_shared, 0, sizeof(HeraldShared));
		SpinLockInit(&herald_shared->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Wake the delivery workers when a transaction that produced work commits.
 */
static void
herald_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
		herald_capture_xact_end();

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (work_pending)
				herald_wake_delivery(work_due_from);
			work_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* a prepared transaction's work is found by the idle recheck */
			work_pending = false;
			break;
		default:
			break;
	}
}

/* The current transaction created deliveries: wake the workers at commit. */
void
herald_note_work(void)
{
	work_pending = true;
	work_due_from = GetCurrentTransactionStartTimestamp();
}

bool
herald_work_pending(void)
{
	return work_pending;
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

	if (herald_shared == NULL)
		return;

	SpinLockAcquire(&herald_shared->mutex);
	/* work in a database no worker serves waits for nobody */
	if (herald_shared->database != MyDatabaseId)
	{
		SpinLockRelease(&herald_shared->mutex);
		return;
	}
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

	SpinLockAcquire(&herald_shared->mutex);
	herald_shared->latch[slot] = NULL;
	herald_shared->pid[slot] = 0;
	SpinLockRelease(&herald_shared->mutex);
}

/* Publish the calling worker's latch in its slot until it exits. */
void
herald_worker_attach(int slot)
{
	SpinLockAcquire(&herald_shared->mutex);
	herald_shared->latch[slot] = MyLatch;
	herald_shared->pid[slot] = MyProcPid;
	herald_shared->database = MyDatabaseId;
	SpinLockRelease(&herald_shared->mutex);
	before_shmem_exit(herald_worker_detach, Int32GetDatum(slot));
}

/*
 * Functions that rely on the workers refuse to run when the library was not
 * preloaded: their work would never be done.
 */
void
herald_require_preload(const char *what)
{
	if (herald_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s requires pg_herald to be loaded through shared_preload_libraries", what),
				 errhint("Add pg_herald to shared_preload_libraries and restart the server.")));
}

Oid
herald_schema_oid(bool missing_ok)
{
	return get_namespace_oid(HERALD_SCHEMA, missing_ok);
}

/*
 * The role that owns the extension's objects: the owner of its schema,
 * which CREATE EXTENSION made.  pg_herald's own statements run as this role.
 */
Oid
herald_extension_owner(void)
{
	Oid			nspid = herald_schema_oid(false);
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nspid);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

static void
herald_define_settings(void)
{
	DefineCustomStringVariable("herald.database",
							   "Database in which the pg_herald workers run.",
							   NULL,
							   &herald_database,
							   "postgres",
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

#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("herald");
#else
	EmitWarningsOnPlaceholders("herald");
#endif
}

static void
herald_register_workers(void)
{
	for (int slot = 0; slot < herald_delivery_workers; slot++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
			BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 5;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_herald");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "herald_delivery_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "pg_herald delivery worker %d", slot);
		snprintf(worker.bgw_type, BGW_MAXLEN, "pg_herald delivery");
		worker.bgw_main_arg = Int32GetDatum(slot);
		RegisterBackgroundWorker(&worker);
	}
}

void
_PG_init(void)
{
	herald_define_settings();
	RegisterXactCallback(herald_xact_callback, NULL);

	/*
	 * Loaded on demand in an ordinary backend: capture works, but there is no
	 * shared state and no worker.  Functions that need them say so.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = herald_shmem_request;
#else
	herald_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = herald_shmem_startup;

	herald_register_workers();
}
