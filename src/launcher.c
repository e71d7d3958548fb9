/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The launcher: one static worker that starts the workers of every
 *		database where pg_herald is installed, and stops them when the
 *		database or the extension goes.
 *
 * The launcher connects to no database: it reads pg_database, a shared
 * catalog, and blocks no DROP DATABASE.  For each database that allows
 * connections (only herald.database when that is set) it starts the
 * database's scheduler first: the scheduler looks whether pg_herald is
 * installed there (the probe) and ends at once when it is not.  When it
 * is, the launcher starts herald.delivery_workers delivery workers, and
 * the HTTP worker in the database herald_http_database_name() names.  All
 * of them are dynamic background workers that the launcher watches
 * (bgw_notify_pid) and starts again 5 seconds after one ends, while the
 * database and the extension are there.  With herald.database set, that
 * one database is served as before the launcher existed: its workers run
 * whether pg_herald is installed there or not, and wait for it.
 *
 * What the launcher learns, and when:
 *	- CREATE EXTENSION pg_herald (and ALTER EXTENSION) in a database: at
 *	  commit, that backend puts the database in HeraldCluster.wake and sets
 *	  the launcher's latch; the workers start within the time a worker
 *	  takes to start.  CREATE DATABASE sets the latch too (a template may
 *	  hold pg_herald).  Besides, the launcher reads pg_database every
 *	  minute, and a database it has never looked at is probed then.
 *	- DROP EXTENSION pg_herald: at commit the backend wakes the database's
 *	  workers; each finds the extension gone (herald_installation()), says
 *	  so in the slot and ends; the launcher stops the others.
 *	- DROP DATABASE, ALTER DATABASE ... RENAME or SET TABLESPACE, CREATE
 *	  DATABASE ... TEMPLATE: these fail while other sessions are connected
 *	  to the database (PostgreSQL waits 5 seconds for them to go).  A
 *	  utility hook, in the backend that runs the statement, marks the slot
 *	  paused (paused_by) and terminates the database's workers before the
 *	  statement runs, when the role running it owns the database; at the
 *	  end of its transaction it clears the mark and wakes the launcher,
 *	  which starts the workers again if the database is still there.
 *
 * Budget: the launcher, then per served database 1 scheduler, its
 * evaluators (at most herald.max_evaluators, while slow rules run) and
 * herald.delivery_workers delivery workers; one HTTP worker for the
 * cluster.  A worker that cannot start (max_worker_processes reached) is
 * logged once, tried again every 10 seconds and named in herald.status.
 * At most herald.max_databases databases are served at once.
 *
 * Locks: HeraldCluster.mutex guards the launcher's latch and the wake list;
 * each slot's own spinlock guards the slot.  Only the launcher gives a slot
 * to a database or frees it, and only while none of its workers runs;
 * backends find their database's slot by looking at each slot under its
 * spinlock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "pg_herald.h"

int			herald_max_databases = 16;
char	   *herald_http_database = NULL;
HeraldCluster *herald_cluster = NULL;

/* how often the launcher reads pg_database when nothing tells it to */
#define NAPTIME_MS 60000
/* a worker that ended is started again after this */
#define RESTART_MS 5000
/* a worker that could not start (no free worker slot) is tried again after this */
#define RETRY_MS 10000
/* databases probed at once */
#define MAX_PROBES 2
/* how long a session waits for the workers of its database to start */
#define STARTUP_WAIT_MS 10000


/* notes of the current transaction, acted on at its end */
static bool launch_at_commit = false;	/* wake the launcher for this database */
static bool scan_at_commit = false; /* wake the launcher: a database was made */
static bool wake_workers_at_commit = false; /* this database's workers look again */
static Oid	paused_database = InvalidOid;	/* the slot this backend paused */

/* in a launched worker: */
static bool launched = false;
static bool uninstalled = false;	/* herald_installation() found nothing */

/* ---------------------------------------------------------------------
 * Shared memory
 * ---------------------------------------------------------------------
 */

Size
herald_cluster_shmem_size(void)
{
	return add_size(offsetof(HeraldCluster, db),
					mul_size(sizeof(HeraldShared), herald_max_databases));
}

/* Under AddinShmemInitLock, from the shared memory start-up hook. */
void
herald_cluster_shmem_init(void)
{
	bool		found;

	herald_cluster = ShmemInitStruct("pg_herald databases", herald_cluster_shmem_size(),
									 &found);
	if (!found)
	{
		memset(herald_cluster, 0, herald_cluster_shmem_size());
		SpinLockInit(&herald_cluster->mutex);
		herald_cluster->ndatabases = herald_max_databases;
		for (int i = 0; i < herald_max_databases; i++)
			SpinLockInit(&herald_cluster->db[i].mutex);
	}
}

/*
 * The slot of database dbid, its spinlock held; NULL (nothing held) when
 * the launcher gave it none.
 */
HeraldShared *
herald_lock_database(Oid dbid)
{
	static int	last = -1;

	if (herald_cluster == NULL || !OidIsValid(dbid))
		return NULL;
	if (last >= 0)
	{
		HeraldShared *s = &herald_cluster->db[last];

		SpinLockAcquire(&s->mutex);
		if (s->database == dbid)
			return s;
		SpinLockRelease(&s->mutex);
	}
	for (int i = 0; i < herald_cluster->ndatabases; i++)
	{
		HeraldShared *s = &herald_cluster->db[i];

		SpinLockAcquire(&s->mutex);
		if (s->database == dbid)
		{
			last = i;
			return s;
		}
		SpinLockRelease(&s->mutex);
	}
	return NULL;
}

/*
 * This database's slot, or NULL; a backend keeps it in herald_shared (a
 * worker's is set once, when it connects).
 */
HeraldShared *
herald_database_shared(void)
{
	HeraldShared *s;

	if (launched)
		return herald_shared;
	s = herald_lock_database(MyDatabaseId);
	if (s != NULL)
		SpinLockRelease(&s->mutex);
	herald_shared = s;
	return s;
}

/* Does every slot serve a database already? */
bool
herald_database_full(void)
{
	int			used = 0;

	if (herald_cluster == NULL)
		return false;
	for (int i = 0; i < herald_cluster->ndatabases; i++)
	{
		HeraldShared *s = &herald_cluster->db[i];

		SpinLockAcquire(&s->mutex);
		if (OidIsValid(s->database))
			used++;
		SpinLockRelease(&s->mutex);
	}
	return used >= herald_cluster->ndatabases;
}

/*
 * Ask the launcher to look at database dbid again (InvalidOid: to read
 * pg_database again) and wake it.
 */
void
herald_request_launch(Oid dbid)
{
	Latch	   *latch;
	bool		listed = false;

	if (herald_cluster == NULL)
		return;
	SpinLockAcquire(&herald_cluster->mutex);
	if (OidIsValid(dbid))
	{
		for (int i = 0; i < herald_cluster->nwake && !listed; i++)
			listed = (herald_cluster->wake[i] == dbid);
		if (!listed && herald_cluster->nwake < HERALD_MAX_WAKE)
			herald_cluster->wake[herald_cluster->nwake++] = dbid;
		else if (!listed)
			herald_cluster->wake_all = true;
	}
	latch = herald_cluster->launcher_latch;
	SpinLockRelease(&herald_cluster->mutex);
	if (latch)
		SetLatch(latch);
}

/* The database whose decision links the HTTP worker serves. */
const char *
herald_http_database_name(void)
{
	if (herald_http_database && herald_http_database[0] != '\0')
		return herald_http_database;
	if (herald_database && herald_database[0] != '\0')
		return herald_database;
	return "postgres";
}

/*
 * Are decision links served for this database's events?  Only the HTTP
 * worker's database offers them: another's messages carry no link.
 * Catalog access: in a transaction.
 */
bool
herald_serves_links(void)
{
	char	   *name;

	if (!OidIsValid(MyDatabaseId))
		return false;
	if (launched && herald_shared != NULL)
		return strcmp(herald_shared->datname, herald_http_database_name()) == 0;
	name = get_database_name(MyDatabaseId);
	return name != NULL && strcmp(name, herald_http_database_name()) == 0;
}

/* ---------------------------------------------------------------------
 * Launched workers
 * ---------------------------------------------------------------------
 */

static void
launcher_latch_set(void)
{
	Latch	   *latch;

	SpinLockAcquire(&herald_cluster->mutex);
	latch = herald_cluster->launcher_latch;
	SpinLockRelease(&herald_cluster->mutex);
	if (latch)
		SetLatch(latch);
}

/*
 * Fill a worker's bgw_extra for this database (a launched worker starting
 * an evaluator): the same database, the same slot.
 */
void
herald_worker_extra(void *bgw_extra, uint32 generation)
{
	HeraldWorkerExtra extra;

	Assert(launched && herald_shared != NULL);
	StaticAssertStmt(sizeof(HeraldWorkerExtra) <= BGW_EXTRALEN, "bgw_extra too small");
	memset(&extra, 0, sizeof(extra));
	extra.generation = generation;
	extra.database = MyDatabaseId;
	extra.dbslot = (int32) (herald_shared - herald_cluster->db);
	memcpy(bgw_extra, &extra, sizeof(extra));
}

/*
 * A launched worker connects to its database, by oid, and takes its slot;
 * it ends when the slot went to another database meanwhile.  The probe
 * (the scheduler) also says whether pg_herald is installed there, and ends
 * when it is not.
 */
void
herald_worker_connect(bool probe)
{
	HeraldWorkerExtra extra;
	bool		mine;

	Assert(herald_cluster != NULL);
	memcpy(&extra, MyBgworkerEntry->bgw_extra, sizeof(extra));
	if (extra.dbslot < 0 || extra.dbslot >= herald_cluster->ndatabases)
		elog(ERROR, "pg_herald worker started for slot %d of %d",
			 extra.dbslot, herald_cluster->ndatabases);
	BackgroundWorkerInitializeConnectionByOid(extra.database, InvalidOid, 0);
	launched = true;
	herald_shared = &herald_cluster->db[extra.dbslot];
	SpinLockAcquire(&herald_shared->mutex);
	mine = (herald_shared->database == MyDatabaseId);
	SpinLockRelease(&herald_shared->mutex);
	if (!mine)
		proc_exit(0);

	if (probe)
	{
		bool		installed;

		/*
		 * The one database herald.database names is served whether pg_herald
		 * is there yet or not: its workers wait for CREATE EXTENSION.
		 */
		StartTransactionCommand();
		installed = herald_database[0] != '\0' ||
			OidIsValid(get_extension_oid(HERALD_EXTENSION, true));
		CommitTransactionCommand();
		SpinLockAcquire(&herald_shared->mutex);
		herald_shared->installed = installed;
		SpinLockRelease(&herald_shared->mutex);
		launcher_latch_set();
		if (!installed)
			proc_exit(0);
	}
}

static void
http_detach(int code, Datum arg)
{
	SpinLockAcquire(&herald_shared->mutex);
	herald_shared->http_pid = 0;
	SpinLockRelease(&herald_shared->mutex);
}

/* The HTTP worker publishes its pid until it exits. */
void
herald_http_attach(void)
{
	Assert(launched && herald_shared != NULL);
	SpinLockAcquire(&herald_shared->mutex);
	herald_shared->http_pid = MyProcPid;
	SpinLockRelease(&herald_shared->mutex);
	before_shmem_exit(http_detach, (Datum) 0);
}

/* herald_installation() found no pg_herald: a launched worker ends. */
void
herald_note_uninstalled(void)
{
	/* those of herald.database wait for CREATE EXTENSION, as they always did */
	uninstalled = launched && herald_database[0] == '\0';
}

/*
 * Between two steps of a worker's loop: end when pg_herald was dropped
 * from the database, after telling the launcher, which stops the others.
 */
void
herald_exit_if_uninstalled(void)
{
	if (!uninstalled)
		return;
	SpinLockAcquire(&herald_shared->mutex);
	herald_shared->installed = false;
	SpinLockRelease(&herald_shared->mutex);
	launcher_latch_set();
	ereport(LOG,
			(errmsg("%s ends: pg_herald is not installed in database \"%s\" any more",
					MyBgworkerEntry->bgw_name, herald_shared->datname)));
	proc_exit(0);
}

/* ---------------------------------------------------------------------
 * Sessions: what they tell the launcher
 * ---------------------------------------------------------------------
 */

/* Set the latch of every worker of this database. */
static void
wake_database_workers(void)
{
	Latch	   *latches[HERALD_MAX_WORKERS + 1];
	int			n = 0;
	HeraldShared *s = herald_lock_database(MyDatabaseId);

	if (s == NULL)
		return;
	for (int i = 0; i < HERALD_MAX_WORKERS; i++)
		if (s->latch[i] != NULL)
			latches[n++] = s->latch[i];
	if (s->scheduler_latch != NULL)
		latches[n++] = s->scheduler_latch;
	SpinLockRelease(&s->mutex);
	for (int i = 0; i < n; i++)
		SetLatch(latches[i]);
}

/*
 * The processes of a database's slot: its delivery workers, scheduler, HTTP
 * worker and evaluators, into pids (room for SLOT_PIDS); how many.  The
 * caller holds the slot's mutex.
 */
#define SLOT_PIDS (HERALD_MAX_WORKERS + HERALD_MAX_EVALUATORS + 2)

static int
slot_pids(HeraldShared *s, pid_t *pids)
{
	int			n = 0;

	for (int i = 0; i < HERALD_MAX_WORKERS; i++)
		if (s->pid[i] != 0)
			pids[n++] = s->pid[i];
	if (s->scheduler_pid != 0)
		pids[n++] = s->scheduler_pid;
	if (s->http_pid != 0)
		pids[n++] = s->http_pid;
	for (int i = 0; i < HERALD_MAX_EVALUATORS; i++)
		if (s->evaluator[i].generation != 0 && s->evaluator[i].pid != 0)
			pids[n++] = s->evaluator[i].pid;
	return n;
}

/*
 * Before a statement that fails while other sessions are connected to
 * database name: pause its slot and terminate its workers.  Only for the
 * database's owner (a superuser is one): another role's statement fails
 * anyway, and must not stop anybody's workers.
 */
static void
pause_database(const char *name)
{
	Oid			dbid;
	HeraldShared *s;
	pid_t		pids[SLOT_PIDS];
	int			n = 0;

	if (name == NULL || herald_cluster == NULL)
		return;
	dbid = get_database_oid(name, true);
	if (!OidIsValid(dbid) || dbid == MyDatabaseId ||
		!herald_database_ownercheck(dbid, GetUserId()))
		return;
	s = herald_lock_database(dbid);
	if (s == NULL)
		return;
	s->paused_by = MyProcPid;
	n = slot_pids(s, pids);
	SpinLockRelease(&s->mutex);
	paused_database = dbid;

	for (int i = 0; i < n; i++)
	{
		PGPROC	   *proc = BackendPidGetProc(pids[i]);

		/* still a process of that database, not a pid used again */
		if (proc != NULL && proc->databaseId == dbid)
			(void) kill(pids[i], SIGTERM);
	}
	if (n > 0)
		ereport(DEBUG1,
				(errmsg("terminated %d pg_herald workers of database \"%s\"", n, name)));
}

/* Clear this backend's pause, if it made one, and wake the launcher. */
static void
unpause_database(void)
{
	HeraldShared *s;

	if (!OidIsValid(paused_database))
		return;
	s = herald_lock_database(paused_database);
	if (s != NULL)
	{
		if (s->paused_by == MyProcPid)
			s->paused_by = 0;
		SpinLockRelease(&s->mutex);
	}
	paused_database = InvalidOid;
	herald_request_launch(InvalidOid);
}

/* From pg_herald.c's transaction callback. */
void
herald_launcher_xact_end(XactEvent event)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (wake_workers_at_commit)
				wake_database_workers();
			if (launch_at_commit)
				herald_request_launch(MyDatabaseId);
			if (scan_at_commit)
				herald_request_launch(InvalidOid);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			break;
		default:
			return;
	}
	unpause_database();
	launch_at_commit = scan_at_commit = wake_workers_at_commit = false;
}

static bool
names_herald(List *objects)
{
	ListCell   *lc;

	foreach(lc, objects)
		if (strcmp(strVal(lfirst(lc)), HERALD_EXTENSION) == 0)
			return true;
	return false;
}

static const char *
option_value(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, name) == 0 && def->arg != NULL)
			return defGetString(def);
	}
	return NULL;
}

/*
 * Before a utility statement runs (from pg_herald's ProcessUtility hook,
 * evaluate.c): what the launcher is to hear of at commit, and the database
 * to pause for a statement that needs it free of other sessions.
 */
void
herald_launcher_before_utility(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_CreateExtensionStmt:
			if (strcmp(((CreateExtensionStmt *) stmt)->extname, HERALD_EXTENSION) == 0)
				launch_at_commit = true;
			break;
		case T_AlterExtensionStmt:
			if (strcmp(((AlterExtensionStmt *) stmt)->extname, HERALD_EXTENSION) == 0)
				launch_at_commit = true;
			break;
		case T_DropStmt:
			if (((DropStmt *) stmt)->removeType == OBJECT_EXTENSION &&
				names_herald(((DropStmt *) stmt)->objects))
				wake_workers_at_commit = true;
			break;
		case T_CreatedbStmt:
			scan_at_commit = true;
			pause_database(option_value(((CreatedbStmt *) stmt)->options, "template"));
			break;
		case T_DropdbStmt:
			pause_database(((DropdbStmt *) stmt)->dbname);
			break;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_DATABASE)
				pause_database(((RenameStmt *) stmt)->subname);
			break;
		case T_AlterDatabaseStmt:
			if (option_value(((AlterDatabaseStmt *) stmt)->options, "tablespace") != NULL)
				pause_database(((AlterDatabaseStmt *) stmt)->dbname);
			break;
		default:
			break;
	}
}

/* ---------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------
 */

typedef enum DbState
{
	DB_PROBE,					/* to look at: start its scheduler */
	DB_PROBING,					/* its scheduler looks whether pg_herald is there */
	DB_SERVED,					/* pg_herald is there: its workers run */
	DB_STOPPING,				/* pg_herald is gone: its workers are stopped */
	DB_UNINSTALLED				/* no pg_herald there: nothing runs */
} DbState;

typedef struct LaunchedDb
{
	Oid			dbid;			/* hash key */
	DbState		state;
	bool		seen;			/* in pg_database at the last look */
	bool		again;			/* probe again once this state is over */
	bool		told;			/* its missing slot or worker was logged */
	int			slot;			/* its HeraldCluster.db index, -1 for none */
	char		name[NAMEDATALEN];
	TimestampTz start_at;		/* start missing workers from then on */
	BackgroundWorkerHandle *scheduler;
	BackgroundWorkerHandle *delivery[HERALD_MAX_WORKERS];
	BackgroundWorkerHandle *http;
} LaunchedDb;

static HTAB *databases = NULL;

static bool
handle_running(BackgroundWorkerHandle *h)
{
	pid_t		pid;

	return h != NULL && GetBackgroundWorkerPid(h, &pid) != BGWH_STOPPED;
}

/* Forget a handle whose worker ended; true when it did. */
static bool
handle_ended(BackgroundWorkerHandle **h)
{
	if (*h == NULL || handle_running(*h))
		return false;
	pfree(*h);
	*h = NULL;
	return true;
}

static bool
start_worker(LaunchedDb *d, const char *function, const char *name, const char *type,
			 int arg, BackgroundWorkerHandle **h)
{
	BackgroundWorker worker;
	HeraldWorkerExtra extra;
	MemoryContext old;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_herald");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", type);
	worker.bgw_main_arg = Int32GetDatum(arg);
	memset(&extra, 0, sizeof(extra));
	extra.database = d->dbid;
	extra.dbslot = d->slot;
	memcpy(worker.bgw_extra, &extra, sizeof(extra));
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, h);
	MemoryContextSwitchTo(old);
	if (!ok)
		*h = NULL;
	return ok;
}

static void
set_problem(LaunchedDb *d, const char *problem)
{
	HeraldShared *s;

	if (d->slot < 0)
		return;
	s = &herald_cluster->db[d->slot];
	SpinLockAcquire(&s->mutex);
	strlcpy(s->problem, problem, sizeof(s->problem));
	SpinLockRelease(&s->mutex);
}

/* A worker could not start: say so (once), and try again later. */
static void
start_failed(LaunchedDb *d, const char *what, TimestampTz now)
{
	char		problem[HERALD_PROBLEM_MAX];

	snprintf(problem, sizeof(problem),
			 "No background worker slot was free for the %s (max_worker_processes = %d); the launcher tries again every %d seconds.",
			 what, max_worker_processes, RETRY_MS / 1000);
	set_problem(d, problem);
	if (!d->told)
		ereport(LOG,
				(errmsg("pg_herald launcher could not start the %s of database \"%s\"",
						what, d->name),
				 errdetail_internal("%s", problem),
				 errhint("Raise max_worker_processes, or lower herald.delivery_workers.")));
	d->told = true;
	d->start_at = TimestampTzPlusMilliseconds(now, RETRY_MS);
}

static bool
slot_installed(LaunchedDb *d)
{
	HeraldShared *s = &herald_cluster->db[d->slot];
	bool		installed;

	SpinLockAcquire(&s->mutex);
	installed = s->installed;
	SpinLockRelease(&s->mutex);
	return installed;
}

/* Is a backend about to drop, rename or copy the database? */
static bool
slot_paused(LaunchedDb *d)
{
	HeraldShared *s;
	pid_t		by;

	if (d->slot < 0)
		return false;
	s = &herald_cluster->db[d->slot];
	SpinLockAcquire(&s->mutex);
	by = s->paused_by;
	SpinLockRelease(&s->mutex);
	if (by != 0 && BackendPidGetProc(by) == NULL)
	{
		/* it ended without clearing it */
		SpinLockAcquire(&s->mutex);
		if (s->paused_by == by)
			s->paused_by = 0;
		SpinLockRelease(&s->mutex);
		by = 0;
	}
	return by != 0;
}

static int
slot_take(LaunchedDb *d)
{
	for (int i = 0; i < herald_cluster->ndatabases; i++)
	{
		HeraldShared *s = &herald_cluster->db[i];
		bool		free;

		SpinLockAcquire(&s->mutex);
		free = !OidIsValid(s->database);
		if (free)
		{
			s->database = d->dbid;
			strlcpy(s->datname, d->name, sizeof(s->datname));
			s->installed = false;
			s->paused_by = 0;
			s->problem[0] = '\0';
		}
		SpinLockRelease(&s->mutex);
		if (free)
			return i;
	}
	return -1;
}

/*
 * Clear a slot whose workers all ended.  Evaluator generations keep
 * counting: an evaluator of the database before still finds its start
 * unknown.
 */
static void
slot_clear(HeraldShared *s)
{
	uint32		generation;

	SpinLockAcquire(&s->mutex);
	generation = s->evaluator_generation;
	memset((char *) s + offsetof(HeraldShared, database), 0,
		   sizeof(HeraldShared) - offsetof(HeraldShared, database));
	s->evaluator_generation = generation;
	SpinLockRelease(&s->mutex);
}

static void
slot_free(LaunchedDb *d)
{
	if (d->slot < 0)
		return;
	slot_clear(&herald_cluster->db[d->slot]);
	d->slot = -1;
}

/*
 * A database whose workers are all gone: its slot freed, it is looked at
 * again at once if something asked for it meanwhile, else left until
 * pg_herald is installed there.
 */
static void
set_unserved(LaunchedDb *d, long *timeout)
{
	slot_free(d);
	d->told = false;
	d->state = d->again ? DB_PROBE : DB_UNINSTALLED;
	d->again = false;
	if (d->state == DB_PROBE)
		*timeout = 0;
}

static void
stop_workers(LaunchedDb *d)
{
	if (d->scheduler)
		TerminateBackgroundWorker(d->scheduler);
	if (d->http)
		TerminateBackgroundWorker(d->http);
	for (int i = 0; i < HERALD_MAX_WORKERS; i++)
		if (d->delivery[i])
			TerminateBackgroundWorker(d->delivery[i]);
}

/*
 * Forget the workers that ended; true when none runs.  *ended (when not
 * NULL) says whether one had ended since the last look.
 */
static bool
workers_ended(LaunchedDb *d, bool *ended)
{
	bool		any = false;
	bool		all;

	any |= handle_ended(&d->scheduler);
	any |= handle_ended(&d->http);
	all = (d->scheduler == NULL && d->http == NULL);
	for (int i = 0; i < HERALD_MAX_WORKERS; i++)
	{
		any |= handle_ended(&d->delivery[i]);
		all = all && d->delivery[i] == NULL;
	}
	if (ended)
		*ended = any;
	return all;
}

/* The evaluators of a database, which its scheduler started, have ended too. */
static bool
evaluators_ended(LaunchedDb *d)
{
	HeraldShared *s = &herald_cluster->db[d->slot];
	pid_t		pids[HERALD_MAX_EVALUATORS];
	int			n = 0;

	SpinLockAcquire(&s->mutex);
	for (int i = 0; i < HERALD_MAX_EVALUATORS; i++)
		if (s->evaluator[i].generation != 0 && s->evaluator[i].pid != 0)
			pids[n++] = s->evaluator[i].pid;
	SpinLockRelease(&s->mutex);
	for (int i = 0; i < n; i++)
	{
		PGPROC	   *proc = BackendPidGetProc(pids[i]);

		if (proc != NULL && proc->databaseId == d->dbid)
		{
			(void) kill(pids[i], SIGTERM);
			return false;
		}
	}
	return true;
}

/*
 * Start what is missing of a served database's workers.  One that ended
 * is started again after RESTART_MS, counted from when its end is seen.
 */
static void
serve(LaunchedDb *d, TimestampTz now, long *timeout)
{
	char		name[BGW_MAXLEN];
	bool		missing = false;
	bool		ended;

	(void) workers_ended(d, &ended);
	if (slot_paused(d))
	{
		d->start_at = 0;
		return;
	}
	if (ended && d->start_at < TimestampTzPlusMilliseconds(now, RESTART_MS))
		d->start_at = TimestampTzPlusMilliseconds(now, RESTART_MS);
	if (d->start_at > now)
	{
		*timeout = Min(*timeout, (long) ((d->start_at - now) / 1000) + 1);
		return;
	}

	if (d->scheduler == NULL &&
		!start_worker(d, "herald_scheduler_main", "pg_herald scheduler",
					  "pg_herald scheduler", 0, &d->scheduler))
	{
		start_failed(d, "scheduler", now);
		missing = true;
	}
	for (int i = 0; i < herald_delivery_workers && !missing; i++)
	{
		if (d->delivery[i] != NULL)
			continue;
		snprintf(name, sizeof(name), "pg_herald delivery worker %d", i);
		if (!start_worker(d, "herald_delivery_main", name, "pg_herald delivery", i,
						  &d->delivery[i]))
		{
			start_failed(d, "delivery workers", now);
			missing = true;
		}
	}
	if (!missing && d->http == NULL && herald_http_listen && herald_http_listen[0] != '\0' &&
		strcmp(d->name, herald_http_database_name()) == 0 &&
		!start_worker(d, "herald_http_main", "pg_herald http", "pg_herald http", 0, &d->http))
	{
		start_failed(d, "HTTP worker", now);
		missing = true;
	}
	if (missing)
	{
		*timeout = Min(*timeout, RETRY_MS);
		return;
	}
	if (d->told)
		ereport(LOG,
				(errmsg("pg_herald launcher started the workers of database \"%s\"", d->name)));
	d->told = false;
	set_problem(d, "");
}

/*
 * One look at one database.  A worker that ended is started again after
 * RESTART_MS: the time the ending is seen is when the delay starts.
 */
static void
look_at(LaunchedDb *d, TimestampTz now, int *probing, long *timeout)
{
	switch (d->state)
	{
		case DB_PROBE:
			if (d->start_at > now)
			{
				*timeout = Min(*timeout, (long) ((d->start_at - now) / 1000) + 1);
				break;
			}
			if (*probing >= MAX_PROBES)
				break;			/* a probe's end sets the latch */
			if (d->slot < 0)
				d->slot = slot_take(d);
			if (d->slot < 0)
			{
				if (!d->told)
					ereport(LOG,
							(errmsg("pg_herald serves at most %d databases (herald.max_databases): database \"%s\" is not looked at",
									herald_cluster->ndatabases, d->name),
							 errhint("Raise herald.max_databases and restart the server, or drop pg_herald from a database that does not use it.")));
				d->told = true;
				/* no worker starts: looking again costs nothing */
				d->start_at = TimestampTzPlusMilliseconds(now, RETRY_MS);
				*timeout = Min(*timeout, RETRY_MS);
				break;
			}
			if (!start_worker(d, "herald_scheduler_main", "pg_herald scheduler",
							  "pg_herald scheduler", 0, &d->scheduler))
			{
				/* the slot stays, with the problem for herald.status */
				start_failed(d, "scheduler", now);
				*timeout = Min(*timeout, RETRY_MS);
				break;
			}
			d->again = false;
			d->state = DB_PROBING;
			(*probing)++;
			break;

		case DB_PROBING:
			if (slot_installed(d))
			{
				d->state = DB_SERVED;
				serve(d, now, timeout);
			}
			else if (handle_ended(&d->scheduler))
				set_unserved(d, timeout);
			else
				(*probing)++;
			break;

		case DB_SERVED:
			if (!slot_installed(d))
			{
				d->state = DB_STOPPING;
				stop_workers(d);
				*timeout = Min(*timeout, 100);
				break;
			}
			serve(d, now, timeout);
			break;

		case DB_STOPPING:
			stop_workers(d);
			if (workers_ended(d, NULL) && evaluators_ended(d))
				set_unserved(d, timeout);
			else
				*timeout = Min(*timeout, 100);
			break;

		case DB_UNINSTALLED:
			break;
	}
}

/* The launcher has read pg_database: a database it does not know yet is probed. */
static void
read_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	HASH_SEQ_STATUS seq;
	LaunchedDb *d;

	hash_seq_init(&seq, databases);
	while ((d = hash_seq_search(&seq)) != NULL)
		d->seen = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		bool		found;

		if (db->datistemplate || !db->datallowconn || database_is_invalid_form(db))
			continue;
		if (herald_database[0] != '\0' && strcmp(NameStr(db->datname), herald_database) != 0)
			continue;
		d = hash_search(databases, &db->oid, HASH_ENTER, &found);
		if (!found)
		{
			memset((char *) d + sizeof(Oid), 0, sizeof(LaunchedDb) - sizeof(Oid));
			d->state = DB_PROBE;
			d->slot = -1;
		}
		d->seen = true;
		strlcpy(d->name, NameStr(db->datname), sizeof(d->name));
		if (d->slot >= 0)
		{
			HeraldShared *s = &herald_cluster->db[d->slot];

			SpinLockAcquire(&s->mutex);
			strlcpy(s->datname, d->name, sizeof(s->datname));
			SpinLockRelease(&s->mutex);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Databases where CREATE EXTENSION committed: probe them again. */
static void
take_wakes(void)
{
	Oid			wake[HERALD_MAX_WAKE];
	int			n;
	bool		all;
	HASH_SEQ_STATUS seq;
	LaunchedDb *d;

	SpinLockAcquire(&herald_cluster->mutex);
	n = herald_cluster->nwake;
	all = herald_cluster->wake_all;
	memcpy(wake, herald_cluster->wake, sizeof(Oid) * n);
	herald_cluster->nwake = 0;
	herald_cluster->wake_all = false;
	SpinLockRelease(&herald_cluster->mutex);

	hash_seq_init(&seq, databases);
	while ((d = hash_seq_search(&seq)) != NULL)
	{
		bool		woken = all;

		for (int i = 0; i < n && !woken; i++)
			woken = (wake[i] == d->dbid);
		if (!woken)
			continue;
		if (d->state == DB_UNINSTALLED || d->state == DB_PROBE)
		{
			d->state = DB_PROBE;
			d->start_at = 0;
		}
		else if (d->state != DB_SERVED)
			d->again = true;
	}
}

/*
 * A launcher that starts again (it failed) finds the workers of the one
 * before, whose handles it does not have: it stops them, and starts anew.
 */
static void
stop_orphans(void)
{
	for (int i = 0; i < herald_cluster->ndatabases; i++)
	{
		HeraldShared *s = &herald_cluster->db[i];
		Oid			dbid;

		for (int tries = 0; tries < 100; tries++)
		{
			pid_t		pids[SLOT_PIDS];
			int			n = 0;
			int			alive = 0;

			SpinLockAcquire(&s->mutex);
			dbid = s->database;
			n = slot_pids(s, pids);
			SpinLockRelease(&s->mutex);
			if (!OidIsValid(dbid))
				break;
			for (int j = 0; j < n; j++)
			{
				PGPROC	   *proc = BackendPidGetProc(pids[j]);

				if (proc != NULL && proc->databaseId == dbid)
				{
					(void) kill(pids[j], SIGTERM);
					alive++;
				}
			}
			if (alive == 0)
				break;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 100, herald_wait_event(HERALD_WAIT_LAUNCHER));
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		slot_clear(s);
	}
}

static void
launcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&herald_cluster->mutex);
	herald_cluster->launcher_latch = NULL;
	SpinLockRelease(&herald_cluster->mutex);
}

void
herald_launcher_main(Datum arg)
{
	HASHCTL		ctl;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* no database: pg_database is a shared catalog */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("pg_herald launcher");

	stop_orphans();
	SpinLockAcquire(&herald_cluster->mutex);
	herald_cluster->launcher_latch = MyLatch;
	SpinLockRelease(&herald_cluster->mutex);
	before_shmem_exit(launcher_detach, (Datum) 0);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(LaunchedDb);
	databases = hash_create("pg_herald databases", 64, &ctl, HASH_ELEM | HASH_BLOBS);

	ereport(LOG,
			(errmsg("pg_herald launcher started, serving %s",
					herald_database[0] != '\0' ?
					psprintf("database \"%s\" (herald.database)", herald_database) :
					"every database where pg_herald is installed")));

	for (;;)
	{
		TimestampTz now;
		HASH_SEQ_STATUS seq;
		LaunchedDb *d;
		long		timeout = NAPTIME_MS;
		int			probing = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		read_databases();
		take_wakes();
		now = GetCurrentTimestamp();

		/* the probes under way first: they count against MAX_PROBES */
		hash_seq_init(&seq, databases);
		while ((d = hash_seq_search(&seq)) != NULL)
			if (d->seen && d->state == DB_PROBING)
				look_at(d, now, &probing, &timeout);
		hash_seq_init(&seq, databases);
		while ((d = hash_seq_search(&seq)) != NULL)
		{
			if (!d->seen)
			{
				/* dropped: its workers were stopped by the DROP, or are now */
				stop_workers(d);
				if (workers_ended(d, NULL) && (d->slot < 0 || evaluators_ended(d)))
				{
					slot_free(d);
					herald_events_forget(d->dbid);
					(void) hash_search(databases, &d->dbid, HASH_REMOVE, NULL);
				}
				else
					timeout = Min(timeout, 100);
				continue;
			}
			if (d->state != DB_PROBING)
				look_at(d, now, &probing, &timeout);
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout, 0), herald_wait_event(HERALD_WAIT_LAUNCHER));
		ResetLatch(MyLatch);
	}
}

/*
 * A session whose database has pg_herald but no slot yet (CREATE
 * EXTENSION just committed, or the launcher has not looked yet): ask the
 * launcher and wait, up to STARTUP_WAIT_MS, for the scheduler to run.
 * True when it runs.
 */
bool
herald_wait_for_workers(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), STARTUP_WAIT_MS);
	bool		asked = false;

	for (;;)
	{
		HeraldShared *s = herald_lock_database(MyDatabaseId);
		bool		running = false;

		if (s != NULL)
		{
			running = s->scheduler_latch != NULL && s->installed;
			SpinLockRelease(&s->mutex);
		}
		if (running)
			return true;
		if (!asked || s == NULL)
		{
			herald_request_launch(MyDatabaseId);
			asked = true;
		}
		if (GetCurrentTimestamp() >= deadline)
			return false;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 20, herald_wait_event(HERALD_WAIT_LAUNCH));
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

void
herald_define_launcher_settings(void)
{
	DefineCustomIntVariable("herald.max_databases",
							"Maximum number of databases whose workers run at once.",
							"Each takes about 4 kB of shared memory.",
							&herald_max_databases,
							16, 1, 1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("herald.http_database",
							   "Database whose decision links the HTTP worker serves.",
							   "Empty: herald.database when that is set, else postgres.",
							   &herald_http_database,
							   "",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);
}

/* The launcher; from _PG_init. */
void
herald_launcher_init(void)
{
	BackgroundWorker worker;

	/* none under pg_upgrade (see _PG_init) */
	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_herald");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "herald_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_herald launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_herald launcher");
	RegisterBackgroundWorker(&worker);
}
