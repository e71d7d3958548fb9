/*-------------------------------------------------------------------------
 *
 * log_cursor.c
 *		A delivery worker's position in the event log.
 *
 * Worker k of n delivers the events whose id % n = k.  It reads them from
 * herald.event_log in id order (queue.c), and keeps here what it has read:
 *
 *	read_upto	every event of its share up to here that its reads could see
 *				was read;
 *	gaps		the ids up to read_upto its reads did not see: transactions
 *				still open took them (or ones that aborted);
 *	holds		events read whose deliveries are still in flight.
 *
 * A gap fills when its transaction commits.  Before each read the worker
 * takes the horizon (event_log.c: the id counter and the transactions that
 * hold ids), then its snapshot; each read looks at the gaps found by the
 * read before (their transaction may have committed since, unseen) and at
 * the older gaps at or above the lowest id of a transaction that was open
 * at the read before and is not any more.  A gap below the horizon that the
 * snapshot does not show was aborted: it is forgotten.  So an open
 * transaction, however long, holds nothing back: events committed after it
 * are read and delivered; its own are read once it commits.
 *
 * The position, every event of the share up to which is handled (read and
 * recorded, or put in the queue), is the lowest gap or hold less one, or
 * read_upto.  It is kept in herald.delivery_cursors, at most once a second
 * (after a crash the worker reads again from there: at-least-once), and in
 * shared memory for herald.flush().
 *
 * Everything here is the worker's memory; the functions that read or write
 * tables run inside the worker's transactions with SPI connected.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pg_herald.h"

/* Transactions holding ids remembered from one read to the next */
#define MAX_OPEN 1024

/* How often the position is written to herald.delivery_cursors */
#define PERSIST_MS 1000

typedef struct Gap
{
	int64		lo;
	int64		hi;
	bool		fresh;			/* found by the last read */
} Gap;

typedef struct CursorState
{
	int64		read_upto;
	Gap		   *gaps;
	int			ngaps;
	int			maxgaps;
	HeraldOpenIds open[MAX_OPEN];
	int			nopen;			/* as counted: more than MAX_OPEN means "many" */
} CursorState;

typedef struct Hold
{
	int64		event_id;		/* hash key */
	int			count;
} Hold;

static CursorState cur;
static CursorState saved;
static HTAB *holds = NULL;
static bool loaded = false;
static int	my_slot = 0;
static int	my_workers = 1;
static int64 persisted = -1;
static int64 recorded_upto = 0;	/* see herald_cursor_recorded_upto() */
static TimestampTz persisted_at = 0;

/* the gaps the current read asks for, and its horizon */
static uint64 plan_next;
static int	plan_nopen;
static HeraldOpenIds plan_open[MAX_OPEN];

static MemoryContext
cursor_context(void)
{
	static MemoryContext cxt = NULL;

	if (cxt == NULL)
		cxt = AllocSetContextCreate(TopMemoryContext, "pg_herald log cursor",
									ALLOCSET_SMALL_SIZES);
	return cxt;
}

static void
add_gap(CursorState *s, int64 lo, int64 hi, bool fresh)
{
	if (lo > hi)
		return;
	/* gaps are kept in id order, apart */
	Assert(s->ngaps == 0 || s->gaps[s->ngaps - 1].hi < lo);
	if (s->ngaps == s->maxgaps)
	{
		s->maxgaps = Max(64, s->maxgaps * 2);
		s->gaps = s->gaps ?
			repalloc(s->gaps, sizeof(Gap) * s->maxgaps) :
			MemoryContextAlloc(cursor_context(), sizeof(Gap) * s->maxgaps);
	}
	s->gaps[s->ngaps].lo = lo;
	s->gaps[s->ngaps].hi = hi;
	s->gaps[s->ngaps].fresh = fresh;
	s->ngaps++;
}

/* Forget everything: the next read starts from the persisted position. */
void
herald_cursor_reset(void)
{
	cur.ngaps = 0;
	cur.nopen = 0;
	cur.read_upto = 0;
	loaded = false;
	persisted = -1;
	if (holds)
		hash_destroy(holds);
	holds = NULL;
}

/* The first id of the share above id. */
static int64
next_of_share(int64 id)
{
	int64		r = (id + 1) % my_workers;
	int64		next;

	Assert(my_workers >= 1 && my_slot >= 0 && my_slot < my_workers);
	next = id + 1 + ((my_slot - r) % my_workers + my_workers) % my_workers;
	Assert(next > id && next - id <= my_workers);
	Assert(id < 0 || next % my_workers == my_slot);
	return next;
}

/*
 * Load the position of worker slot of workers from herald.delivery_cursors.
 * A worker whose row is missing, or was kept for another number of workers,
 * starts at the lowest position of any: it may deliver again what another
 * share already did, never skip.
 */
void
herald_cursor_load(int slot, int workers)
{
	Oid			argtypes[2] = {INT4OID, INT4OID};
	Datum		args[2] = {Int32GetDatum(slot), Int32GetDatum(workers)};
	int			ret;
	bool		isnull;
	Datum		d;
	HASHCTL		ctl;

	Assert(workers >= 1 && workers <= HERALD_MAX_WORKERS);
	Assert(slot >= 0 && slot < workers);
	herald_cursor_reset();
	my_slot = slot;
	my_workers = Max(workers, 1);
	ret = SPI_execute_with_args("SELECT coalesce((SELECT c.position FROM herald.delivery_cursors c"
								"                  WHERE c.slot = $1 AND c.workers = $2),"
								"                (SELECT min(c.position) FROM herald.delivery_cursors c), 0)",
								2, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the delivery cursor: %s", SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	cur.read_upto = DatumGetInt64(d);
	persisted = cur.read_upto;

	/*
	 * The position is kept at most once a second: past it, some events may
	 * have been delivered, or queued, since.  Up to the last event with an
	 * attempt or a queue row, the read leaves out what is recorded.
	 */
	ret = SPI_execute("SELECT greatest((SELECT max(a.delivery_id) / 1000000 FROM herald.attempt_log a),"
					  "                (SELECT max(q.event_id) FROM herald.delivery_queue q), 0)",
					  true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the last recorded delivery: %s", SPI_result_code_string(ret));
	recorded_upto = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull));
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(Hold);
	ctl.hcxt = cursor_context();
	holds = hash_create("pg_herald holds", 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	loaded = true;
}

/*
 * Events up to here may have recorded deliveries the position does not
 * cover yet (it was kept before they were): the read skips those.
 */
int64
herald_cursor_recorded_upto(void)
{
	return recorded_upto;
}

bool
herald_cursor_loaded(void)
{
	return loaded;
}

int64
herald_cursor_read_upto(void)
{
	return cur.read_upto;
}

/* Keep a copy of the state, for herald_cursor_restore() if the read fails. */
void
herald_cursor_save(void)
{
	Gap		   *g = saved.gaps;
	int			maxg = saved.maxgaps;

	if (maxg < cur.ngaps)
	{
		maxg = Max(64, cur.maxgaps);
		g = g ? repalloc(g, sizeof(Gap) * maxg) :
			MemoryContextAlloc(cursor_context(), sizeof(Gap) * maxg);
	}
	memcpy(&saved, &cur, offsetof(CursorState, gaps));
	saved.gaps = g;
	saved.maxgaps = maxg;
	saved.ngaps = cur.ngaps;
	if (cur.ngaps > 0)
		memcpy(saved.gaps, cur.gaps, sizeof(Gap) * cur.ngaps);
	saved.nopen = Min(cur.nopen, MAX_OPEN + 1);
	memcpy(saved.open, cur.open, sizeof(HeraldOpenIds) * Min(cur.nopen, MAX_OPEN));
}

void
herald_cursor_restore(void)
{
	Gap		   *g = cur.gaps;
	int			maxg = cur.maxgaps;

	if (maxg < saved.ngaps)
	{
		maxg = saved.ngaps;
		g = g ? repalloc(g, sizeof(Gap) * maxg) :
			MemoryContextAlloc(cursor_context(), sizeof(Gap) * maxg);
	}
	cur.read_upto = saved.read_upto;
	cur.gaps = g;
	cur.maxgaps = maxg;
	cur.ngaps = saved.ngaps;
	if (saved.ngaps > 0)
		memcpy(cur.gaps, saved.gaps, sizeof(Gap) * saved.ngaps);
	cur.nopen = saved.nopen;
	memcpy(cur.open, saved.open, sizeof(HeraldOpenIds) * Min(saved.nopen, MAX_OPEN));
}

static bool
still_open(const HeraldOpenIds *o)
{
	if (plan_nopen > MAX_OPEN)
		return true;			/* cannot tell: as if still open */
	for (int i = 0; i < plan_nopen; i++)
		if (plan_open[i].procno == o->procno && plan_open[i].lo == o->lo)
			return true;
	return false;
}

/*
 * Before a read, in its transaction, before its snapshot: take the horizon
 * and say which gaps the read looks at (as two bigint[] of bounds).
 */
void
herald_cursor_plan(Datum *lows, Datum *highs)
{
	int64		since = PG_INT64_MAX;	/* the lowest id of a transaction gone */
	Datum	   *lo;
	Datum	   *hi;
	int			n = 0;

	plan_nopen = herald_events_horizon(&plan_next, plan_open, MAX_OPEN);
	if (cur.nopen > MAX_OPEN)
		since = PG_INT64_MIN;
	else
		for (int i = 0; i < cur.nopen; i++)
			if (!still_open(&cur.open[i]) && (int64) cur.open[i].lo < since)
				since = (int64) cur.open[i].lo;

	lo = palloc(sizeof(Datum) * Max(cur.ngaps, 1));
	hi = palloc(sizeof(Datum) * Max(cur.ngaps, 1));
	for (int i = 0; i < cur.ngaps; i++)
		if (cur.gaps[i].fresh || cur.gaps[i].hi >= since)
		{
			lo[n] = Int64GetDatum(cur.gaps[i].lo);
			hi[n] = Int64GetDatum(cur.gaps[i].hi);
			n++;
		}
	*lows = PointerGetDatum(construct_array(lo, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	*highs = PointerGetDatum(construct_array(hi, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/*
 * After a read: ids[0..nnew) are the events above read_upto it returned, in
 * id order (full: as many as it asked for, so there may be more),
 * found[0..nfound) those it found in gaps.
 */
void
herald_cursor_read(int64 *ids, int nnew, int64 *found, int nfound)
{
	Gap		   *old = cur.gaps;
	int			nold = cur.ngaps;
	int64		prev = cur.read_upto;
	int64		horizon;
	CursorState next;

	Assert(loaded);
	Assert(nnew >= 0 && nfound >= 0);
	memset(&next, 0, sizeof(next));
	if (nfound > 1)
		qsort(found, nfound, sizeof(int64), cmp_int64);

	/* the old gaps (in id order), less what was found in them, no longer new */
	for (int i = 0, j = 0; i < nold; i++)
	{
		int64		lo = old[i].lo;

		while (j < nfound && found[j] < lo)
			j++;
		for (; j < nfound && found[j] <= old[i].hi; j++)
		{
			add_gap(&next, lo, found[j] - 1, false);
			lo = found[j] + 1;
		}
		add_gap(&next, lo, old[i].hi, false);
	}
	/* new gaps: ids of the share between those read */
	for (int i = 0; i < nnew; i++)
	{
		/* the read returns its share only, above read_upto, in id order */
		Assert(ids[i] > prev);
		Assert(ids[i] % my_workers == my_slot);
		add_gap(&next, next_of_share(prev), ids[i] - 1, true);
		prev = ids[i];
	}
	next.read_upto = prev;

	/*
	 * Below the horizon, what the snapshot did not show was aborted.  With
	 * more transactions holding ids than could be listed, nothing is known.
	 */
	horizon = plan_next == 0 ? PG_INT64_MAX : (int64) plan_next;
	if (plan_nopen > MAX_OPEN)
		horizon = PG_INT64_MIN;
	else
		for (int i = 0; i < plan_nopen; i++)
			if ((int64) plan_open[i].lo < horizon)
				horizon = (int64) plan_open[i].lo;
	cur.ngaps = 0;
	cur.gaps = old;
	for (int i = 0; i < next.ngaps; i++)
	{
		if (next.gaps[i].hi < horizon)
			continue;
		add_gap(&cur, Max(next.gaps[i].lo, horizon), next.gaps[i].hi, next.gaps[i].fresh);
	}
	if (next.gaps)
		pfree(next.gaps);
	Assert(next.read_upto >= cur.read_upto);
	Assert(cur.ngaps == 0 || cur.gaps[cur.ngaps - 1].hi <= next.read_upto);
	cur.read_upto = next.read_upto;
	cur.nopen = plan_nopen;
	memcpy(cur.open, plan_open, sizeof(HeraldOpenIds) * Min(plan_nopen, MAX_OPEN));
}

/* A fresh delivery of this event is in flight. */
void
herald_cursor_hold(int64 event_id)
{
	bool		found;
	Hold	   *h;

	/* an event this worker read: of its share, up to where it read */
	Assert(loaded && holds != NULL);
	Assert(event_id % my_workers == my_slot);
	Assert(event_id > 0 && event_id <= cur.read_upto);
	h = hash_search(holds, &event_id, HASH_ENTER, &found);
	if (!found)
		h->count = 0;
	h->count++;
}

/* ... and its outcome is recorded (or it was given up). */
void
herald_cursor_release(int64 event_id)
{
	Hold	   *h;

	if (holds == NULL)
		return;
	h = hash_search(holds, &event_id, HASH_FIND, NULL);
	Assert(h == NULL || h->count > 0);
	if (h != NULL && --h->count <= 0)
		hash_search(holds, &event_id, HASH_REMOVE, NULL);
}

/* Every event of the share up to the result is handled. */
int64
herald_cursor_position(void)
{
	int64		pos = cur.read_upto;
	HASH_SEQ_STATUS status;
	Hold	   *h;

	for (int i = 0; i < cur.ngaps; i++)
		pos = Min(pos, cur.gaps[i].lo - 1);
	if (holds)
	{
		hash_seq_init(&status, holds);
		while ((h = hash_seq_search(&status)) != NULL)
			pos = Min(pos, h->event_id - 1);
	}
	return pos;
}

/* Write the position to herald.delivery_cursors, at most once a second unless forced. */
void
herald_cursor_persist(bool force)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {INT4OID, INT4OID, INT8OID};
	Datum		args[3];
	int64		pos;
	int			ret;
	TimestampTz now = GetCurrentTimestamp();

	if (!loaded)
		return;
	pos = herald_cursor_position();
	if (pos == persisted ||
		(!force && !TimestampDifferenceExceeds(persisted_at, now, PERSIST_MS)))
		return;
	if (plan == NULL)
		plan = herald_prepare_kept("INSERT INTO herald.delivery_cursors AS c (slot, workers, position)"
								   " VALUES ($1, $2, $3)"
								   " ON CONFLICT (slot) DO UPDATE"
								   "   SET workers = excluded.workers, position = excluded.position,"
								   "       updated_at = now()",
								   3, argtypes);
	args[0] = Int32GetDatum(my_slot);
	args[1] = Int32GetDatum(my_workers);
	args[2] = Int64GetDatum(pos);
	ret = SPI_execute_plan(plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not keep the delivery cursor: %s", SPI_result_code_string(ret));
	persisted = pos;
	persisted_at = now;
}

/* Has the position moved since it was last kept? */
bool
herald_cursor_unkept(void)
{
	return loaded && herald_cursor_position() != persisted;
}

/* Tell herald.flush() how far this worker has come: after a commit. */
void
herald_cursor_publish(void)
{
	if (!loaded || herald_shared == NULL)
		return;
	Assert(my_slot >= 0 && my_slot < HERALD_MAX_WORKERS);
	SpinLockAcquire(&herald_shared->mutex);
	herald_shared->log_position[my_slot] = herald_cursor_position();
	herald_shared->log_workers = my_workers;
	SpinLockRelease(&herald_shared->mutex);
}
