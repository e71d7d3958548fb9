/*-------------------------------------------------------------------------
 *
 * event_log.c
 *		The event log: one function appends every event; the readers'
 *		horizon.
 *
 * Every event of pg_herald (a captured row, a threshold transition, a
 * follow-up, a decision, a test message) is one row of herald.event_log,
 * appended here and nowhere else: herald_events_begin/add/end in C (the
 * capture trigger, many rows at a time), herald._append_event() for the
 * plpgsql callers.  The row names the channels it goes to (channel_ids);
 * the writer writes nothing else: the delivery workers read the log in id
 * order and keep their own progress (queue.c).
 *
 * Rows go straight into the heap (table_multi_insert, in chunks) and into
 * the table's indexes, with no SQL statement and no executor start-up: the
 * btrees of schema.sql by index_insert() itself, any other index a DBA
 * adds through ExecInsertIndexTuples().
 * What every writer needs of the table (its oid, the positions of its
 * columns, its indexes and their predicates) is cached per backend
 * (LogShape below) and rebuilt after a relcache invalidation of the table
 * or of one of its indexes.  A partial index whose predicate reads only
 * columns a writer sets once for all its rows (all but id and payload) is
 * opened only by the writers whose rows it indexes: most events are not
 * awaiting a decision and are about no other event.
 *
 * Ids and the horizon.  A reader that walks the log in id order must not
 * skip the events of a transaction that took its ids early and commits
 * late.  With pg_herald in shared_preload_libraries, ids come from a
 * counter in shared memory (one per database), and each backend's slot
 * says, while its transaction holds ids, the lowest id it may hold (lo):
 * a writer publishes lo (the counter's value) before it takes its first id,
 * and clears it at commit or abort, after the transaction's end is visible
 * to new snapshots.  A reader that reads the counter, then every slot,
 * then takes its snapshot, knows that an id below both the counter and
 * every published lo that its snapshot does not show belongs to a
 * transaction that aborted: it will never appear (herald_events_horizon).
 *
 * The counter starts, in each life of the server, above the highest id in
 * the table (seen with SnapshotAny: rows being restored count too).
 * Without shared memory (pg_herald loaded on demand, no workers), ids come
 * from the sequence herald.event_log_id_seq, which each backend first moves
 * past the highest id in the table.
 *
 * A transaction that appended events cannot be prepared: its slot would
 * outlive it and hold every reader back.
 *
 * Locks: the LWLock of tranche "pg_herald events" guards the list of
 * counters (which database has one, for which table); the counters and
 * the slots are atomics, each slot written only by its backend.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/sysattr.h"
#include "access/tableam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "optimizer/optimizer.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "port/atomics.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "compat.h"
#include "pg_herald.h"

PG_FUNCTION_INFO_V1(herald_append_event_sql);

/* Databases that may have a counter at once */
#define MAX_COUNTERS 64

/* Rows per heap_multi_insert */
#define CHUNK_ROWS 1000

/* Slots a kept writer keeps between statements (see LogShape) */
#define KEPT_SLOTS 64

typedef struct EventCounter
{
	Oid			dbid;			/* InvalidOid: free entry */
	Oid			relid;			/* the herald.event_log it numbers */
	pg_atomic_uint64 next;		/* the next id; 0 until initialized */
} EventCounter;

typedef struct EventSlot
{
	pg_atomic_uint64 lo;		/* 0: holds no ids */
	Oid			dbid;			/* the database of that transaction */
} EventSlot;

typedef struct EventShared
{
	LWLock	   *lock;
	EventCounter counters[MAX_COUNTERS];
	int			nslots;
	EventSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} EventShared;

static EventShared *event_shared = NULL;

/* this backend's counter, once found, and whether its slot is set */
static EventCounter *my_counter = NULL;
static bool holding_ids = false;

typedef struct LogShape LogShape;

static void release_shapes(void);

/* without shared memory: has this backend moved the sequence past the table? */
static Oid	sequence_checked_for = InvalidOid;

static int
total_slots(void)
{
	/* every PGPROC: backends, auxiliary processes, prepared transactions */
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

Size
herald_event_log_shmem_size(void)
{
	return add_size(offsetof(EventShared, slots),
					mul_size(sizeof(EventSlot), total_slots()));
}

void
herald_event_log_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(herald_event_log_shmem_size()));
	RequestNamedLWLockTranche("pg_herald events", 1);
}

/* Called with AddinShmemInitLock held. */
void
herald_event_log_shmem_init(void)
{
	bool		found;

	event_shared = ShmemInitStruct("pg_herald events", herald_event_log_shmem_size(), &found);
	if (!found)
	{
		event_shared->lock = &(GetNamedLWLockTranche("pg_herald events"))->lock;
		for (int i = 0; i < MAX_COUNTERS; i++)
		{
			event_shared->counters[i].dbid = InvalidOid;
			event_shared->counters[i].relid = InvalidOid;
			pg_atomic_init_u64(&event_shared->counters[i].next, 0);
		}
		event_shared->nslots = total_slots();
		for (int i = 0; i < event_shared->nslots; i++)
		{
			pg_atomic_init_u64(&event_shared->slots[i].lo, 0);
			event_shared->slots[i].dbid = InvalidOid;
		}
	}
}

static EventSlot *
my_slot(void)
{
	int			procno = herald_my_proc_number();

	Assert(event_shared != NULL && MyProc != NULL);
	Assert(procno >= 0 && procno < event_shared->nslots);
	return &event_shared->slots[procno];
}

/*
 * At the end of a transaction, once its end is visible: its ids are
 * settled.  Before PREPARE: refuse, the slot cannot follow the prepared
 * transaction.
 */
void
herald_events_xact_event(XactEvent event)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (holding_ids)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that recorded pg_herald events")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (holding_ids)
			{
				pg_atomic_write_u64(&my_slot()->lo, 0);
				holding_ids = false;
			}
			release_shapes();
			break;
		default:
			break;
	}
}

/* The highest id in the table, whoever wrote it and whether it committed; 0 if none. */
static int64
highest_id(Relation rel)
{
	Oid			indexoid = herald_primary_key_index(rel);
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		result = 0;

	if (!OidIsValid(indexoid))
		elog(ERROR, "herald.event_log has no primary key");
	index = index_open(indexoid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = herald_index_beginscan(rel, index, SnapshotAny, 0, 0);
	index_rescan(scan, NULL, 0, NULL, 0);
	while (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, 1, &isnull);

		if (!isnull)
		{
			result = DatumGetInt64(d);
			break;
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	return result;
}

/* This database's counter for this table, initialized; NULL without shared memory. */
static EventCounter *
find_counter(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	EventCounter *c = my_counter;

	if (event_shared == NULL)
		return NULL;
	if (c == NULL || c->relid != relid)
	{
		LWLockAcquire(event_shared->lock, LW_EXCLUSIVE);
		c = NULL;
		for (int i = 0; i < MAX_COUNTERS && c == NULL; i++)
			if (event_shared->counters[i].dbid == MyDatabaseId)
				c = &event_shared->counters[i];
		for (int i = 0; i < MAX_COUNTERS && c == NULL; i++)
			if (event_shared->counters[i].dbid == InvalidOid)
			{
				c = &event_shared->counters[i];
				c->dbid = MyDatabaseId;
			}
		if (c != NULL && c->relid != relid)
		{
			/* the extension was made again: a new table, numbered anew */
			c->relid = relid;
			pg_atomic_write_u64(&c->next, 0);
		}
		LWLockRelease(event_shared->lock);
		if (c == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("pg_herald records events in at most %d databases of a cluster",
							MAX_COUNTERS)));
		my_counter = c;
	}
	if (pg_atomic_read_u64(&c->next) == 0)
	{
		uint64		expected = 0;

		/* whoever gets there first sets it; the others find it set */
		(void) pg_atomic_compare_exchange_u64(&c->next, &expected,
											  (uint64) highest_id(rel) + 1);
	}
	return c;
}

/*
 * Without shared memory: the sequence, moved once per backend past the
 * highest id in the table (a life of the server with shared memory numbered
 * rows without it).
 */
static int64
next_id_from_sequence(Relation rel)
{
	Oid			seqoid = get_relname_relid("event_log_id_seq", RelationGetNamespace(rel));

	if (!OidIsValid(seqoid))
		elog(ERROR, "pg_herald catalog sequence herald.event_log_id_seq is missing");
	if (sequence_checked_for != seqoid)
	{
		Oid			save_user;
		int			save_sec;
		int64		high;

		/* no nextval meanwhile: none can hand out an id the table has */
		LockRelationOid(seqoid, ExclusiveLock);
		high = highest_id(rel);
		GetUserIdAndSecContext(&save_user, &save_sec);
		SetUserIdAndSecContext(herald_extension_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
		if (nextval_internal(seqoid, false) <= high)
			DirectFunctionCall2(setval_oid, ObjectIdGetDatum(seqoid), Int64GetDatum(high));
		SetUserIdAndSecContext(save_user, save_sec);
		UnlockRelationOid(seqoid, ExclusiveLock);
		sequence_checked_for = seqoid;
	}
	return nextval_internal(seqoid, false);
}

struct HeraldEventWriter
{
	Relation	rel;
	LogShape   *shape;			/* held until herald_events_end() */
	EventCounter *counter;
	int			nindexes;		/* the indexes its rows go into */
	Relation   *indexes;
	IndexInfo **index_infos;
	ResultRelInfo *rri;			/* NULL: they are all direct (LogIndex) */
	EState	   *estate;
	bool		kept;			/* the shape's spare writer: see LogShape */
	MemoryContext cxt;			/* where its slots and arrays are */
	MemoryContext rows_cxt;		/* the tuples of the chunk being filled */
	TupleTableSlot **slots;		/* maxslots of them, nslots made so far */
	int			maxslots;
	int			nslots;
	int			n;				/* rows in the chunk */
	int			total;
	Datum	   *values;
	bool	   *nulls;
	bool		deliver;		/* the events go to channels */
	SPIPlanPtr	legacy_plan;	/* the tables of 0.1.0: see below */
	Datum		legacy_args[8];
	char		legacy_nulls[8];
};

/* A column of herald.event_log by name, 0-based; -1 if it has none. */
static int
find_column(TupleDesc desc, const char *name)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i;
	}
	return -1;
}

static int
column_index(TupleDesc desc, const char *name)
{
	int			i = find_column(desc, name);

	if (i < 0)
		elog(ERROR, "herald.event_log has no column \"%s\"", name);
	return i;
}

/* The columns of herald.event_log a writer sets, as 0-based indexes */
typedef enum LogColumn
{
	COL_ID,
	COL_TYPE,
	COL_RULE_ID,
	COL_RULE,
	COL_CREATED_AT,
	COL_CHANNEL_IDS,
	COL_SILENCED_BY,
	COL_AWAITS_DECISION,
	COL_ABOUT_EVENT_ID,
	COL_PAYLOAD,
	NUM_LOG_COLUMNS
} LogColumn;

static const char *const log_column_names[NUM_LOG_COLUMNS] = {
	"id", "type", "rule_id", "rule", "created_at", "channel_ids", "silenced_by",
	"awaits_decision", "about_event_id", "payload"
};

typedef struct LogIndex
{
	Oid			indexoid;
	ExprState  *predicate;		/* NULL: every writer inserts into it */
	IndexInfo  *info;			/* built once, in the shape's context */
	bool		direct;			/* a writer inserts into it by index_insert() */
} LogIndex;

/*
 * What every writer needs of herald.event_log, in its own memory context.
 * A writer holds the shape it began with (refcount) even if an
 * invalidation retires it meanwhile; retired shapes are freed when no
 * writer holds them, at the latest at the end of the transaction (writers
 * do not outlive it).
 */
struct LogShape
{
	MemoryContext cxt;
	Oid			relid;
	bool		valid;			/* cleared by an invalidation */
	bool		legacy;			/* the tables of 0.1.0: no channel_ids */
	int			refcount;
	TupleDesc	desc;			/* a copy, not reference-counted: see below */
	int			att[NUM_LOG_COLUMNS];
	int			nindexes;
	LogIndex   *indexes;
	List	   *indexlist;		/* the table's index oids, as the relcache had them */
	ExprContext *pred_econtext; /* where the predicates above are evaluated */
	TupleTableSlot *pred_slot;	/* ... on the values a writer sets once */

	/*
	 * A writer kept between statements, with its slots, arrays and memory
	 * for rows, in the shape's context: the next writer on this shape
	 * takes it, unless it is busy (writers nest, rarely), so that a
	 * statement of one row does not make and free them every time.  Not
	 * busy any more at the end of the transaction, however it ended.
	 */
	HeraldEventWriter *spare;
	bool		spare_busy;
	LogShape   *next_retired;
};

static LogShape *log_shape = NULL;
static LogShape *retired_shapes = NULL;
static bool log_callback_registered = false;

static void
log_relcache_callback(Datum arg, Oid relid)
{
	LogShape   *shape = log_shape;

	if (shape == NULL || !shape->valid)
		return;
	if (relid == InvalidOid || relid == shape->relid)
		shape->valid = false;
	else
		for (int i = 0; i < shape->nindexes; i++)
			if (shape->indexes[i].indexoid == relid)
				shape->valid = false;
}

/* A schema renamed or dropped: herald may now name another one. */
static void
log_namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	if (log_shape != NULL)
		log_shape->valid = false;
}

static void
free_shape_if_unused(LogShape *shape)
{
	LogShape  **p;

	if (shape->refcount > 0 || shape == log_shape)
		return;
	for (p = &retired_shapes; *p != NULL; p = &(*p)->next_retired)
		if (*p == shape)
		{
			*p = shape->next_retired;
			break;
		}
	MemoryContextDelete(shape->cxt);
}

static void
retire_shape(void)
{
	LogShape   *shape = log_shape;

	if (shape == NULL)
		return;
	log_shape = NULL;
	if (shape->refcount > 0)
	{
		shape->next_retired = retired_shapes;
		retired_shapes = shape;
	}
	else
		MemoryContextDelete(shape->cxt);
}

/* At the end of a transaction, no writer is left: free what they held. */
static void
release_shapes(void)
{
	if (log_shape != NULL)
	{
		log_shape->refcount = 0;
		log_shape->spare_busy = false;
	}
	while (retired_shapes != NULL)
	{
		LogShape   *shape = retired_shapes;

		retired_shapes = shape->next_retired;
		MemoryContextDelete(shape->cxt);
	}
}

/*
 * The shape of the open herald.event_log, built from the relation and its
 * indexes (opened and closed here; the writer opens those it inserts into).
 */
static LogShape *
build_shape(Relation rel)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "pg_herald event log",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	LogShape   *shape = palloc0(sizeof(LogShape));
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *indexlist;
	ListCell   *lc;
	int			i;

	shape->cxt = cxt;
	shape->relid = RelationGetRelid(rel);
	shape->valid = true;
	shape->legacy = find_column(desc, "channel_ids") < 0;
	shape->desc = CreateTupleDescCopy(desc);
	for (i = 0; i < NUM_LOG_COLUMNS; i++)
		shape->att[i] = shape->legacy ? -1 : column_index(desc, log_column_names[i]);

	indexlist = RelationGetIndexList(rel);
	shape->indexlist = list_copy(indexlist);
	shape->indexes = palloc0(sizeof(LogIndex) * Max(list_length(indexlist), 1));
	foreach(lc, indexlist)
	{
		Oid			indexoid = lfirst_oid(lc);
		Relation	index = index_open(indexoid, RowExclusiveLock);
		List	   *pred = RelationGetIndexPredicate(index);
		LogIndex   *li = &shape->indexes[shape->nindexes++];

		li->indexoid = indexoid;
		li->predicate = NULL;
		if (pred != NIL && !shape->legacy)
		{
			Bitmapset  *atts = NULL;

			pull_varattnos((Node *) pred, 1, &atts);
			/* read from the values a writer sets once: evaluated once per writer */
			if (!bms_is_member(shape->att[COL_ID] + 1 - FirstLowInvalidHeapAttributeNumber, atts) &&
				!bms_is_member(shape->att[COL_PAYLOAD] + 1 - FirstLowInvalidHeapAttributeNumber, atts) &&
				!bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, atts))
				li->predicate = ExecInitQual(pred, NULL);
		}

		/*
		 * A btree on columns (the primary key, the partial indexes of
		 * schema.sql), whose predicate, if any, is settled per writer: the
		 * writer inserts into it without the executor's machinery, by
		 * index_insert() as ExecInsertIndexTuples() would.  Any other index
		 * (an expression, a predicate on the id or the payload, an exclusion
		 * or deferred constraint, another access method, whose insert may
		 * keep state in the IndexInfo) goes through ExecInsertIndexTuples().
		 */
		li->info = BuildIndexInfo(index);
		li->direct = index->rd_rel->relam == BTREE_AM_OID &&
			li->info->ii_Expressions == NIL &&
			(pred == NIL || li->predicate != NULL) &&
			li->info->ii_ExclusionOps == NULL &&
			(!index->rd_index->indisunique || index->rd_index->indimmediate);
		if (li->predicate != NULL && shape->pred_econtext == NULL)
		{
			shape->pred_econtext = CreateStandaloneExprContext();
			shape->pred_slot = MakeSingleTupleTableSlot(shape->desc, &TTSOpsVirtual);
		}
		index_close(index, NoLock);
	}
	list_free(indexlist);
	MemoryContextSwitchTo(old);
	return shape;
}

/* The shape of the open herald.event_log, up to date. */
static LogShape *
current_shape(Relation rel)
{
	if (log_shape != NULL && log_shape->valid && log_shape->relid == RelationGetRelid(rel))
	{
		List	   *indexlist = RelationGetIndexList(rel);
		bool		same = equal(indexlist, log_shape->indexlist);

		list_free(indexlist);
		if (same)
			return log_shape;
	}
	retire_shape();
	log_shape = build_shape(rel);
	return log_shape;
}

/*
 * The oid of herald.event_log: the cached shape's while it is valid (an
 * invalidation of the table, a dropped or renamed schema clear it).
 */
static Oid
event_log_relid(void)
{
	Oid			relid;

	if (!log_callback_registered)
	{
		CacheRegisterRelcacheCallback(log_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, log_namespace_callback, (Datum) 0);
		log_callback_registered = true;
	}
	if (log_shape != NULL && log_shape->valid)
		return log_shape->relid;
	relid = get_relname_relid("event_log", herald_schema_oid(false));
	if (!OidIsValid(relid))
		elog(ERROR, "pg_herald catalog table herald.event_log is missing");
	return relid;
}

static void
set_column(HeraldEventWriter *w, LogColumn col, Datum value, bool isnull)
{
	int			i = w->shape->att[col];

	w->values[i] = value;
	w->nulls[i] = isnull;
}

/*
 * The tables of 0.1.0, installed in a database that this library serves
 * until ALTER EXTENSION pg_herald UPDATE: writers go on capturing, as 0.1.0
 * did, one event row and one delivery row per channel, through SQL, as the
 * extension's owner (the writer may not write pg_herald's tables).  The
 * update then numbers those deliveries and serves them.
 */
static void
legacy_begin(HeraldEventWriter *w, const HeraldEventMeta *meta, Datum channels)
{
	Oid			argtypes[8] = {TEXTOID, INT4OID, TEXTOID, JSONBOID, INT4OID, BOOLOID,
	INT8OID, INT4ARRAYOID};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	w->legacy_plan = SPI_prepare("WITH ev AS ("
								 "  INSERT INTO herald.event_log (type, rule_id, rule, payload, silenced_by,"
								 "                                awaits_decision, about_event_id)"
								 "  VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id),"
								 " d AS ("
								 "  INSERT INTO herald.delivery_queue (event_id, channel_id)"
								 "  SELECT ev.id, c FROM ev CROSS JOIN pg_catalog.unnest($8) AS c)"
								 " SELECT id FROM ev",
								 8, argtypes);
	if (w->legacy_plan == NULL)
		elog(ERROR, "could not prepare the event statement: %s",
			 SPI_result_code_string(SPI_result));
	memset(w->legacy_nulls, ' ', sizeof(w->legacy_nulls));
	w->legacy_args[0] = CStringGetTextDatum(meta->type);
	w->legacy_args[1] = Int32GetDatum(meta->rule_id);
	w->legacy_nulls[1] = meta->rule_id == 0 ? 'n' : ' ';
	w->legacy_args[2] = meta->rule ? CStringGetTextDatum(meta->rule) : (Datum) 0;
	w->legacy_nulls[2] = meta->rule == NULL ? 'n' : ' ';
	w->legacy_args[4] = Int32GetDatum(meta->silenced_by);
	w->legacy_nulls[4] = meta->silenced_by == 0 ? 'n' : ' ';
	w->legacy_args[5] = BoolGetDatum(meta->awaits_decision > 0);
	w->legacy_nulls[5] = meta->awaits_decision < 0 ? 'n' : ' ';
	w->legacy_args[6] = Int64GetDatum(meta->about_event_id);
	w->legacy_nulls[6] = meta->about_event_id == 0 ? 'n' : ' ';
	w->legacy_args[7] = channels;
	w->deliver = ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(channels)),
								ARR_DIMS(DatumGetArrayTypeP(channels))) > 0;
}

static int64
legacy_add(HeraldEventWriter *w, Datum payload)
{
	Oid			save_user;
	int			save_sec;
	int			ret;
	bool		isnull;

	w->legacy_args[3] = payload;
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(herald_extension_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	ret = SPI_execute_plan(w->legacy_plan, w->legacy_args, w->legacy_nulls, false, 1);
	SetUserIdAndSecContext(save_user, save_sec);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not record an event: %s", SPI_result_code_string(ret));
	w->total++;
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Start appending events that share their type, rule and channels.  The
 * rows are appended by herald_events_add() and the last of them by
 * herald_events_end(), in the current transaction.
 */
HeraldEventWriter *
herald_events_begin(const HeraldEventMeta *meta)
{
	HeraldEventWriter *w = palloc0(sizeof(HeraldEventWriter));
	Oid			relid = event_log_relid();
	LogShape   *shape;
	Datum		channels = meta->channel_ids;
	bool		direct = true;
	int			natts;

	if (RecoveryInProgress() || XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot record pg_herald events in a read-only transaction")));
	if (IsInParallelMode())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot record pg_herald events during a parallel operation")));

	w->rel = table_open(relid, RowExclusiveLock);
	if (channels == (Datum) 0)
		channels = PointerGetDatum(construct_empty_array(INT4OID));
	shape = current_shape(w->rel);
	if (shape->legacy)
	{
		legacy_begin(w, meta, channels);
		return w;
	}
	if (shape->spare != NULL && !shape->spare_busy)
	{
		/* the kept writer: its slots, arrays and rows' memory as they were */
		HeraldEventWriter *spare = shape->spare;
		Relation	rel = w->rel;

		pfree(w);
		w = spare;
		Assert(w->kept);
		/* a statement that failed may have left rows of a chunk */
		for (int i = 0; i < w->n; i++)
			ExecClearTuple(w->slots[i]);
		w->n = 0;
		MemoryContextReset(w->rows_cxt);
		w->rel = rel;
		w->nindexes = 0;
		w->rri = NULL;
		w->estate = NULL;
		w->total = 0;
	}
	else
	{
		bool		kept = shape->spare == NULL;

		w->kept = kept;
		w->cxt = kept ? shape->cxt : CurrentMemoryContext;
		w->rows_cxt = AllocSetContextCreate(w->cxt, "pg_herald event rows",
											ALLOCSET_DEFAULT_SIZES);
		w->values = MemoryContextAllocZero(w->cxt, sizeof(Datum) * shape->desc->natts);
		w->nulls = MemoryContextAlloc(w->cxt, sizeof(bool) * shape->desc->natts);
		w->indexes = MemoryContextAlloc(w->cxt, sizeof(Relation) * Max(shape->nindexes, 1));
		w->index_infos = MemoryContextAlloc(w->cxt,
											sizeof(IndexInfo *) * Max(shape->nindexes, 1));
		if (kept)
		{
			/* the shape's from now on: a copy of the struct in its context */
			HeraldEventWriter *copy = MemoryContextAlloc(shape->cxt, sizeof(HeraldEventWriter));

			memcpy(copy, w, sizeof(HeraldEventWriter));
			pfree(w);
			w = copy;
			shape->spare = w;
		}
	}
	if (w->kept)
		shape->spare_busy = true;
	w->shape = shape;
	shape->refcount++;

	w->counter = find_counter(w->rel);

	w->deliver = ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(channels)),
								ARR_DIMS(DatumGetArrayTypeP(channels))) > 0;

	natts = shape->desc->natts;
	for (int i = 0; i < natts; i++)
		w->nulls[i] = true;
	set_column(w, COL_TYPE, CStringGetTextDatum(meta->type), false);
	set_column(w, COL_RULE_ID, Int32GetDatum(meta->rule_id), meta->rule_id == 0);
	set_column(w, COL_RULE, meta->rule ? CStringGetTextDatum(meta->rule) : (Datum) 0,
			   meta->rule == NULL);
	set_column(w, COL_CREATED_AT,
			   TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()), false);
	set_column(w, COL_CHANNEL_IDS, channels, false);
	set_column(w, COL_SILENCED_BY, Int32GetDatum(meta->silenced_by), meta->silenced_by == 0);
	set_column(w, COL_AWAITS_DECISION, BoolGetDatum(meta->awaits_decision > 0),
			   meta->awaits_decision < 0);
	set_column(w, COL_ABOUT_EVENT_ID, Int64GetDatum(meta->about_event_id),
			   meta->about_event_id == 0);

	/*
	 * The indexes the rows go into: a partial index whose predicate reads
	 * only the values set above is skipped when they do not satisfy it.
	 * The slot of those values has the id and the payload null, which such a
	 * predicate does not read.
	 */
	if (shape->pred_econtext != NULL)
	{
		ExecClearTuple(shape->pred_slot);
		memcpy(shape->pred_slot->tts_values, w->values, sizeof(Datum) * natts);
		memcpy(shape->pred_slot->tts_isnull, w->nulls, sizeof(bool) * natts);
		ExecStoreVirtualTuple(shape->pred_slot);
		shape->pred_econtext->ecxt_scantuple = shape->pred_slot;
	}
	for (int i = 0; i < shape->nindexes; i++)
	{
		LogIndex   *li = &shape->indexes[i];
		bool		skip;

		if (li->predicate != NULL)
		{
			skip = !ExecQual(li->predicate, shape->pred_econtext);
			ResetExprContext(shape->pred_econtext);
			if (skip)
				continue;
		}
		w->indexes[w->nindexes] = index_open(li->indexoid, RowExclusiveLock);
		w->index_infos[w->nindexes] = li->info;
		if (!li->direct)
			direct = false;
		w->nindexes++;
	}
	if (shape->pred_econtext != NULL)
		ExecClearTuple(shape->pred_slot);

	/* some index needs the executor: ExecInsertIndexTuples() inserts into them all */
	if (!direct)
	{
		w->estate = CreateExecutorState();
		w->rri = makeNode(ResultRelInfo);
		InitResultRelInfo(w->rri, w->rel, 1, NULL, 0);
		w->rri->ri_IndexRelationDescs = w->indexes;
		w->rri->ri_IndexRelationInfo = palloc(sizeof(IndexInfo *) * Max(w->nindexes, 1));
		for (int i = 0; i < w->nindexes; i++)
			w->rri->ri_IndexRelationInfo[i] = BuildIndexInfo(w->indexes[i]);
		w->rri->ri_NumIndices = w->nindexes;
	}
	return w;
}

/*
 * Insert one row into the direct indexes, as ExecInsertIndexTuples() would:
 * an index not ready for inserts yet (being built concurrently) is left
 * out, a unique one checks the row's key (an error if taken).
 */
static void
insert_index_entries(HeraldEventWriter *w, TupleTableSlot *slot)
{
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];

	for (int i = 0; i < w->nindexes; i++)
	{
		Relation	index = w->indexes[i];
		IndexInfo  *info = w->index_infos[i];

		if (!info->ii_ReadyForInserts)
			continue;
		Assert(info->ii_NumIndexAttrs <= INDEX_MAX_KEYS);
		for (int k = 0; k < info->ii_NumIndexAttrs; k++)
		{
			Assert(info->ii_IndexAttrNumbers[k] > 0);
			values[k] = slot_getattr(slot, info->ii_IndexAttrNumbers[k], &isnull[k]);
		}
		(void) index_insert(index, values, isnull, &slot->tts_tid, w->rel,
							index->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
							false, info);
	}
}

/* Insert the rows of the chunk into the heap and the indexes. */
static void
flush_chunk(HeraldEventWriter *w)
{
	CommandId	cid = GetCurrentCommandId(true);

	if (w->n == 0)
		return;
	if (w->n == 1)
		table_tuple_insert(w->rel, w->slots[0], cid, 0, NULL);
	else
		table_multi_insert(w->rel, w->slots, w->n, cid, 0, NULL);
	for (int i = 0; i < w->n; i++)
	{
		if (w->rri == NULL)
			insert_index_entries(w, w->slots[i]);
		else
		{
			List	   *conflicts;

			conflicts = herald_insert_index_tuples(w->rri, w->slots[i], w->estate);
			list_free(conflicts);
			ResetPerTupleExprContext(w->estate);
		}
		ExecClearTuple(w->slots[i]);
	}
	w->total += w->n;
	w->n = 0;
	MemoryContextReset(w->rows_cxt);
}

/*
 * Database dbid was dropped (the launcher saw it go): its counter is free
 * for another one.
 */
void
herald_events_forget(Oid dbid)
{
	if (event_shared == NULL || !OidIsValid(dbid))
		return;
	LWLockAcquire(event_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < MAX_COUNTERS; i++)
		if (event_shared->counters[i].dbid == dbid)
		{
			event_shared->counters[i].dbid = InvalidOid;
			event_shared->counters[i].relid = InvalidOid;
			pg_atomic_write_u64(&event_shared->counters[i].next, 0);
		}
	LWLockRelease(event_shared->lock);
}

/* The next event id of this database. */
static int64
take_id(HeraldEventWriter *w)
{
	if (w->counter == NULL)
		return next_id_from_sequence(w->rel);
	Assert(pg_atomic_read_u64(&w->counter->next) != 0);
	if (!holding_ids)
	{
		EventSlot  *slot = my_slot();

		/* the slot is this backend's alone, clear between its transactions */
		Assert(pg_atomic_read_u64(&slot->lo) == 0);

		/* published before the first id is taken: see the file header */
		slot->dbid = MyDatabaseId;
		pg_write_barrier();
		pg_atomic_write_u64(&slot->lo, pg_atomic_read_u64(&w->counter->next));
		pg_memory_barrier();
		holding_ids = true;
	}
	return (int64) pg_atomic_fetch_add_u64(&w->counter->next, 1);
}

/* Append one event with this payload (jsonb); returns its id. */
int64
herald_events_add(HeraldEventWriter *w, Datum payload)
{
	MemoryContext old;
	HeapTuple	tuple;
	int64		id;

	if (w->legacy_plan)
		return legacy_add(w, payload);
	Assert(w->n >= 0 && w->n <= CHUNK_ROWS && w->nslots <= CHUNK_ROWS);
	if (w->n == CHUNK_ROWS)
		flush_chunk(w);
	id = take_id(w);
	Assert(id > 0);
	old = MemoryContextSwitchTo(w->rows_cxt);
	set_column(w, COL_ID, Int64GetDatum(id), false);
	set_column(w, COL_PAYLOAD, payload, false);
	tuple = heap_form_tuple(RelationGetDescr(w->rel), w->values, w->nulls);
	MemoryContextSwitchTo(old);
	if (w->n == w->nslots)
	{
		/*
		 * A slot made with the relation's own descriptor pins it in the
		 * resource owner, once per slot: a chunk of them would crowd the
		 * owner's table of descriptors, which every lookup_rowtype_tupdesc()
		 * of the statement (one per payload rendered) then probes through.
		 * The shape's copy is not reference-counted.
		 */
		if (w->nslots == w->maxslots)
		{
			w->maxslots = w->maxslots == 0 ? 4 : Min(w->maxslots * 2, CHUNK_ROWS);
			w->slots = w->slots == NULL ?
				MemoryContextAlloc(w->cxt, sizeof(TupleTableSlot *) * w->maxslots) :
				repalloc(w->slots, sizeof(TupleTableSlot *) * w->maxslots);
		}
		old = MemoryContextSwitchTo(w->cxt);
		w->slots[w->nslots++] = MakeSingleTupleTableSlot(w->shape->desc,
														 &TTSOpsHeapTuple);
		MemoryContextSwitchTo(old);
	}
	ExecStoreHeapTuple(tuple, w->slots[w->n], false);
	w->n++;
	return id;
}

/* Append what is left, release the writer; returns how many events it appended. */
int
herald_events_end(HeraldEventWriter *w)
{
	int			total;
	LogShape   *shape;

	if (w->legacy_plan)
	{
		total = w->total;
		SPI_freeplan(w->legacy_plan);
		if (SPI_finish() != SPI_OK_FINISH)
			elog(ERROR, "SPI_finish failed");
		table_close(w->rel, NoLock);
		if (total > 0 && w->deliver)
			herald_note_work();	/* 0.1.0: delivery rows */
		pfree(w);
		return total;
	}
	flush_chunk(w);
	total = w->total;
	if (w->rri != NULL)
	{
		ExecCloseIndices(w->rri);
		FreeExecutorState(w->estate);
	}
	else
		for (int i = 0; i < w->nindexes; i++)
			index_close(w->indexes[i], NoLock);
	table_close(w->rel, NoLock);
	if (total > 0 && w->deliver)
		herald_note_events();
	shape = w->shape;
	Assert(shape->refcount > 0);
	if (w->kept)
	{
		/*
		 * Kept for the next writer, with the slots a statement of a few rows
		 * needs (a bulk statement's chunk of them would stay in the backend
		 * for nothing); the shape frees it with itself.
		 */
		Assert(shape->spare == w && shape->spare_busy);
		while (w->nslots > KEPT_SLOTS)
			ExecDropSingleTupleTableSlot(w->slots[--w->nslots]);
		shape->spare_busy = false;
	}
	else
	{
		for (int i = 0; i < w->nslots; i++)
			ExecDropSingleTupleTableSlot(w->slots[i]);
		if (w->slots)
			pfree(w->slots);
		pfree(w->indexes);
		pfree(w->index_infos);
		MemoryContextDelete(w->rows_cxt);
		pfree(w->values);
		pfree(w->nulls);
		pfree(w);
	}
	shape->refcount--;
	free_shape_if_unused(shape);
	return total;
}

/*
 * herald._append_event(type, rule_id, rule, payload, channel_ids,
 * silenced_by, awaits_decision, about_event_id): append one event, return
 * its id.  NULL arguments mean none.
 */
Datum
herald_append_event_sql(PG_FUNCTION_ARGS)
{
	HeraldEventMeta meta;
	HeraldEventWriter *w;
	int64		id;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("an event needs a type and a payload")));
	memset(&meta, 0, sizeof(meta));
	meta.type = text_to_cstring(PG_GETARG_TEXT_PP(0));
	meta.rule_id = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1);
	meta.rule = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	meta.channel_ids = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	meta.silenced_by = PG_ARGISNULL(5) ? 0 : PG_GETARG_INT32(5);
	meta.awaits_decision = PG_ARGISNULL(6) ? -1 : (PG_GETARG_BOOL(6) ? 1 : 0);
	meta.about_event_id = PG_ARGISNULL(7) ? 0 : PG_GETARG_INT64(7);

	if (meta.channel_ids != (Datum) 0)
	{
		ArrayType  *a = PG_GETARG_ARRAYTYPE_P(4);

		if (ARR_NDIM(a) > 1 || ARR_HASNULL(a) || ARR_ELEMTYPE(a) != INT4OID)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("channel_ids must be a one-dimensional array of channel ids without nulls")));
		meta.channel_ids = PointerGetDatum(a);
	}

	w = herald_events_begin(&meta);
	id = herald_events_add(w, PG_GETARG_DATUM(3));
	(void) herald_events_end(w);
	PG_RETURN_INT64(id);
}

/*
 * The horizon of this database's events, read before the caller takes
 * its snapshot: *next is the counter (ids from it on were not handed out
 * yet; 0 when no id was handed out in this life of the server), and the
 * open transactions holding ids, up to max of them, in open[] (their
 * procno and lo).  Returns how many there are (possibly more than max).
 * An id below *next and below every returned lo that the caller's
 * snapshot does not show will never appear.
 */
int
herald_events_horizon(uint64 *next, HeraldOpenIds *open, int max)
{
	EventCounter *c = NULL;
	int			n = 0;

	*next = 0;
	if (event_shared == NULL)
		return 0;
	for (int i = 0; i < MAX_COUNTERS && c == NULL; i++)
		if (event_shared->counters[i].dbid == MyDatabaseId)
			c = &event_shared->counters[i];
	if (c != NULL)
		*next = pg_atomic_read_u64(&c->next);
	pg_memory_barrier();
	for (int i = 0; i < event_shared->nslots; i++)
	{
		uint64		lo = pg_atomic_read_u64(&event_shared->slots[i].lo);

		if (lo == 0)
			continue;
		pg_read_barrier();
		if (event_shared->slots[i].dbid != MyDatabaseId)
			continue;
		if (n < max)
		{
			open[n].procno = i;
			open[n].lo = lo;
		}
		n++;
	}
	return n;
}
