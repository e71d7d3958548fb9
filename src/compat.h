/*-------------------------------------------------------------------------
 *
 * compat.h
 *		What differs between the PostgreSQL versions pg_herald builds
 *		against (15 to 18), in one place.
 *
 * Each difference is one macro or inline function named herald_*, with a
 * comment saying which version changed what; the rest of src/ calls these
 * and never tests PG_VERSION_NUM itself.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HERALD_COMPAT_H
#define HERALD_COMPAT_H

#include "postgres.h"

#include "catalog/pg_extension_d.h"
#include "catalog/pg_namespace_d.h"
#include "access/genam.h"
#include "common/base64.h"
#include "executor/executor.h"
#include "lib/ilist.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/relcache.h"
#include "utils/wait_event.h"

#if PG_VERSION_NUM < 150000
#error "pg_herald needs PostgreSQL 15 or later"
#endif

/*
 * 18: pg_b64_encode() takes its source and pg_b64_decode() its
 * destination as uint8 * (char * before).
 */
static inline int
herald_b64_encode(const uint8 *src, int len, char *dst, int dstlen)
{
#if PG_VERSION_NUM >= 180000
	return pg_b64_encode(src, len, dst, dstlen);
#else
	return pg_b64_encode((const char *) src, len, dst, dstlen);
#endif
}

static inline int
herald_b64_decode(const char *src, int len, uint8 *dst, int dstlen)
{
#if PG_VERSION_NUM >= 180000
	return pg_b64_decode(src, len, dst, dstlen);
#else
	return pg_b64_decode(src, len, (char *) dst, dstlen);
#endif
}

/*
 * 17: pgstat_fetch_stat_local_beentry(i) became
 * pgstat_get_local_beentry_by_index(i); both take 1 to
 * pgstat_fetch_stat_numbackends().
 */
#if PG_VERSION_NUM >= 170000
#define herald_local_beentry(i) pgstat_get_local_beentry_by_index(i)
#else
#define herald_local_beentry(i) pgstat_fetch_stat_local_beentry(i)
#endif

/*
 * 18: RelationGetPrimaryKeyIndex() gained deferrable_ok (false: a
 * deferrable primary key does not count, as before).
 */
#if PG_VERSION_NUM >= 180000
#define herald_primary_key_index(rel) RelationGetPrimaryKeyIndex((rel), false)
#else
#define herald_primary_key_index(rel) RelationGetPrimaryKeyIndex(rel)
#endif

/* 18: index_beginscan() gained instrument (NULL: no EXPLAIN counts). */
#if PG_VERSION_NUM >= 180000
#define herald_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define herald_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

/*
 * 18: LockAcquireExtended() gained logLockFailure (false: a lock not
 * available is not logged, as before).
 */
#if PG_VERSION_NUM >= 180000
#define herald_lock_acquire_extended(tag, mode, session, dont_wait, report, locallockp) \
	LockAcquireExtended((tag), (mode), (session), (dont_wait), (report), (locallockp), false)
#else
#define herald_lock_acquire_extended(tag, mode, session, dont_wait, report, locallockp) \
	LockAcquireExtended((tag), (mode), (session), (dont_wait), (report), (locallockp))
#endif

/* 17: PGPROC lost its pgprocno; MyProcNumber says it. */
#if PG_VERSION_NUM >= 170000
#define herald_my_proc_number() ((int) MyProcNumber)
#else
#define herald_my_proc_number() (MyProc->pgprocno)
#endif

/* 17: PGPROC's lxid moved into its vxid. */
#if PG_VERSION_NUM >= 170000
#define herald_my_lxid() (MyProc->vxid.lxid)
#else
#define herald_my_lxid() (MyProc->lxid)
#endif

/*
 * 16: ExecInsertIndexTuples() gained onlySummarizing (false: every index,
 * as for an insert).
 */
#if PG_VERSION_NUM >= 160000
#define herald_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL, false)
#else
#define herald_insert_index_tuples(rri, slot, estate) \
	ExecInsertIndexTuples((rri), (slot), (estate), false, false, NULL, NIL)
#endif

/*
 * 16: a GUC check hook's extra data is guc_malloc'd (the GUC code frees it
 * with guc_free, a pfree); plain malloc before.  NULL when out of memory.
 */
#if PG_VERSION_NUM >= 160000
#define herald_guc_malloc(size) guc_malloc(LOG, (size))
#define herald_guc_free(ptr) guc_free(ptr)
#else
#define herald_guc_malloc(size) malloc(size)
#define herald_guc_free(ptr) free(ptr)
#endif

/*
 * 16: pg_namespace_aclcheck() and pg_extension_ownercheck() became
 * object_aclcheck() and object_ownercheck() on the catalog's oid.
 */
#if PG_VERSION_NUM >= 160000
#define herald_namespace_aclcheck(nspid, roleid, mode) \
	object_aclcheck(NamespaceRelationId, (nspid), (roleid), (mode))
#define herald_extension_ownercheck(extoid, roleid) \
	object_ownercheck(ExtensionRelationId, (extoid), (roleid))
#define herald_database_ownercheck(dboid, roleid) \
	object_ownercheck(DatabaseRelationId, (dboid), (roleid))
#else
#define herald_namespace_aclcheck(nspid, roleid, mode) \
	pg_namespace_aclcheck((nspid), (roleid), (mode))
#define herald_extension_ownercheck(extoid, roleid) \
	pg_extension_ownercheck((extoid), (roleid))
#define herald_database_ownercheck(dboid, roleid) \
	pg_database_ownercheck((dboid), (roleid))
#endif

/*
 * 17: CreateWaitEventSet() takes a resource owner (NULL: none; the set is
 * in TopMemoryContext) instead of a memory context.  Either way the set
 * lives until FreeWaitEventSet().
 */
#if PG_VERSION_NUM >= 170000
#define herald_create_wait_event_set(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define herald_create_wait_event_set(nevents) \
	CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/*
 * 17: custom wait events (WaitEventExtensionNew), shown by name in
 * pg_stat_activity.wait_event; before, every extension wait is
 * "Extension".
 */
#if PG_VERSION_NUM >= 170000
#define herald_wait_event_new(name) WaitEventExtensionNew(name)
#else
#define herald_wait_event_new(name) ((void) (name), PG_WAIT_EXTENSION)
#endif

/*
 * 16: a backend's PROCLOCKs are a dlist per lock partition (a SHM_QUEUE
 * before).  herald_proc_locks_next(proc, partition, NULL) is the first of
 * them, then the one after prev; NULL past the last.  Call with the
 * partition's LWLock held.
 */
static inline bool
herald_proc_locks_empty(PGPROC *proc, int partition)
{
#if PG_VERSION_NUM >= 160000
	return dlist_is_empty(&proc->myProcLocks[partition]);
#else
	return SHMQueueEmpty(&proc->myProcLocks[partition]);
#endif
}

static inline PROCLOCK *
herald_proc_locks_next(PGPROC *proc, int partition, PROCLOCK *prev)
{
#if PG_VERSION_NUM >= 160000
	dlist_head *head = &proc->myProcLocks[partition];
	dlist_node *node;

	if (prev == NULL)
	{
		if (dlist_is_empty(head))
			return NULL;
		node = dlist_head_node(head);
	}
	else
	{
		if (!dlist_has_next(head, &prev->procLink))
			return NULL;
		node = dlist_next_node(head, &prev->procLink);
	}
	return dlist_container(PROCLOCK, procLink, node);
#else
	SHM_QUEUE  *head = &proc->myProcLocks[partition];

	return (PROCLOCK *) SHMQueueNext(head, prev ? &prev->procLink : head,
									 offsetof(PROCLOCK, procLink));
#endif
}

#endif							/* HERALD_COMPAT_H */
