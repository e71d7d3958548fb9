/*-------------------------------------------------------------------------
 *
 * delivery.c
 *		The delivery worker: claim, send, record.
 *
 * Each worker (herald.delivery_workers of them, one slot each) runs in
 * herald.database and loops:
 *
 *	1. record the attempts that completed and, when woken (its latch is set
 *	   by committing writers), when requests finished or when a retry falls
 *	   due, claim a batch of due deliveries, in one short transaction
 *	   (queue.c), and start their requests (webhook.c renders, http.c sends);
 *	2. wait on the latch, the sockets in flight and the next timer; while
 *	   requests are in flight, outcomes and wake-ups wait to be handled
 *	   together (COALESCE_MS).
 *
 * No transaction is open while requests are in flight, and requests keep
 * flowing while others wait on a slow endpoint.  An error in one step is
 * logged, its transaction aborted, and the loop goes on; claimed rows whose
 * outcome could not be recorded are retried when their lease expires.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <time.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pg_herald.h"
#include "http.h"

/* How long an idle worker sleeps before it looks at the queue anyway. */
#define IDLE_RECHECK_MS 10000
/* How often the claim scans every channel from the start of its range. */
#define FULL_SCAN_MS 10000
/* Pause after a failed transaction, so that a broken state does not spin. */
#define ERROR_PAUSE_MS 1000
/*
 * Longest backoff between two attempts (unless the channel's retry_delay
 * is longer), and longest wait before any retry: a Retry-After or a
 * retry_delay beyond it waits that long (queue.c saturates likewise).
 */
#define MAX_BACKOFF_MS (3600.0 * 1000)
#define MAX_RETRY_MS ((double) HERALD_MAX_WAIT_MS)

/* Deliveries claimed together share one memory context. */
typedef struct ClaimBatch
{
	MemoryContext cxt;
	int			remaining;		/* deliveries not yet recorded */
	Oid			installation;	/* pg_herald's extension when they were claimed */
} ClaimBatch;

typedef struct InFlight
{
	HeraldDelivery *delivery;
	ClaimBatch *batch;
	HeraldRequest *request;		/* NULL when it failed before sending */
	bool		charged;		/* counted in its channel's in_flight */
} InFlight;

static int	worker_slot = 0;

/* outcomes waiting to be recorded */
static HeraldOutcome *outcomes = NULL;
static InFlight **outcome_owner = NULL;
static int	noutcomes = 0;
static int	maxoutcomes = 0;
static MemoryContext outcome_context = NULL;	/* their strings */

/*
 * What the worker knows of a channel it has sent to: requests in flight,
 * for a rate-limited channel a token bucket holding up to one second of its
 * rate, and the last row it claimed.
 *
 * The claim resumes each channel's scan just after that row instead of at
 * the start of the channel's index range, where the entries of rows
 * already done pile up as long as some snapshot still sees them (a long
 * transaction anywhere): without the mark every claim would walk over all
 * of them.  Rows can still appear behind the mark: a committing transaction
 * reports the oldest due time it created (herald_take_rescan) and the marks
 * move back to it; anything else (a lease another worker gave back, a
 * prepared transaction) is found by a full scan every FULL_SCAN_MS.
 */
typedef struct ChannelState
{
	int32		channel_id;		/* hash key */
	int			in_flight;
	int			max_concurrency;
	double		rate;			/* messages per second, 0 for none */
	double		tokens;
	TimestampTz refilled_at;
	bool		more_due;		/* the last claim used its whole allowance */
	int			claimed;		/* scratch: rows of this channel in a claim */
	bool		marked;			/* mark_at/mark_id hold the last row claimed */
	bool		backlog;		/* it has due rows in the queue: its new
								 * events join them there */
	TimestampTz mark_at;
	int64		mark_id;
} ChannelState;

static HTAB *channel_states = NULL;

/*
 * Whether the queue may hold deliveries due now (after a spill, a failure,
 * a redelivery, an outcome of a claimed delivery), and otherwise when its
 * next one falls due: while neither, the claim of the queue is skipped,
 * and new events are all a batch reads.
 */
static bool queue_stale = true;
static TimestampTz queue_due_at = 0;
static Oid	channel_states_of = InvalidOid;	/* the installation they describe */
static TimestampTz next_full_scan = 0;

/*
 * After a failed claim, no claim before this time, whatever wakes the
 * worker meanwhile (commits set its latch): a state that makes every claim
 * fail does not spin.
 */
static TimestampTz claim_paused_until = 0;

/* --- outcomes ------------------------------------------------------------- */

/*
 * The response body as stored: its first bytes, when they are text in the
 * database encoding (an excerpt may end within a character: that character
 * is left out); otherwise a note of its size.
 */
static char *
response_excerpt(HeraldRequest *req)
{
	int			encoding = GetDatabaseEncoding();
	int			len;
	int			valid;

	if (req == NULL || req->response.len == 0)
		return NULL;
	len = req->response.len;
	valid = pg_encoding_verifymbstr(encoding, req->response.data, len);
	if (valid < len &&
		!(req->response_bytes > (size_t) len && req->response.data[valid] != '\0' &&
		  pg_encoding_mblen(encoding, req->response.data + valid) > len - valid))
		return psprintf("[binary response, %zu bytes]", req->response_bytes);
	return pnstrdup(req->response.data, valid);
}

/* Exponential backoff from the channel's retry delay, with +-20% jitter. */
static double
backoff_ms(HeraldDelivery *d)
{
	double		delay = d->retry_delay_ms;
	int			attempt = d->attempts + 1;

	for (int i = 1; i < attempt && delay < MAX_BACKOFF_MS; i++)
		delay *= 2;
	delay = Min(delay, Max(MAX_BACKOFF_MS, d->retry_delay_ms));
	delay *= 0.8 + 0.4 * ((double) random() / (double) 0x7FFFFFFF);
	return Min(delay, MAX_RETRY_MS);
}

static void fill_outcome(HeraldOutcome *o, HeraldDelivery *d,
						 HeraldRequest *req, const char *error);

/*
 * Queue the outcome of one attempt for recording, and give its channel
 * allowance back.  error describes a failure before any request was made
 * (req is NULL).
 */
static void
add_outcome(InFlight *f, HeraldRequest *req, const char *error)
{
	HeraldDelivery *d = f->delivery;
	HeraldOutcome *o;
	MemoryContext old;

	if (noutcomes == maxoutcomes)
	{
		maxoutcomes = Max(64, maxoutcomes * 2);
		outcomes = outcomes ?
			repalloc(outcomes, sizeof(HeraldOutcome) * maxoutcomes) :
			MemoryContextAlloc(TopMemoryContext, sizeof(HeraldOutcome) * maxoutcomes);
		outcome_owner = outcome_owner ?
			repalloc(outcome_owner, sizeof(InFlight *) * maxoutcomes) :
			MemoryContextAlloc(TopMemoryContext, sizeof(InFlight *) * maxoutcomes);
	}
	o = &outcomes[noutcomes];
	outcome_owner[noutcomes] = f;
	noutcomes++;
	/* a request of a dropped installation counts against no channel now */
	if (f->charged && f->batch->installation == channel_states_of)
	{
		ChannelState *cs = hash_search(channel_states, &d->channel_id,
									   HASH_FIND, NULL);

		if (cs)
		{
			Assert(cs->in_flight > 0);
			cs->in_flight--;
			/* room for its deliveries waiting in the queue: due now */
			if (cs->backlog)
				queue_stale = true;
		}
		f->charged = false;
	}
	old = MemoryContextSwitchTo(outcome_context);
	fill_outcome(o, d, req, error);
	MemoryContextSwitchTo(old);
}

/* Decide what one attempt means: delivered, retried later, or dead. */
static void
fill_outcome(HeraldOutcome *o, HeraldDelivery *d, HeraldRequest *req,
			 const char *error)
{
	bool		final = false;

	memset(o, 0, sizeof(*o));
	o->delivery_id = d->id;
	o->event_id = d->event_id;
	o->fresh = d->fresh;
	o->webhook_id = d->webhook_id;
	o->channel_id = d->channel_id;
	o->started = req ? req->started : GetCurrentTimestamp();
	o->latency_ms = req ? req->latency_ms : 0;
	o->response = response_excerpt(req);
	o->status = "pending";

	if (req == NULL && error == NULL)
	{
		/* sent without a request (notify) */
		o->status = "delivered";
		return;
	}
	if (req == NULL)
		o->error = pstrdup(error);
	else if (req->result != CURLE_OK && req->denied[0] != '\0')
	{
		/* the policy refused the connection; it will next time too */
		o->error = pstrdup(req->denied);
		final = true;
	}
	else if (req->result != CURLE_OK)
		o->error = herald_http_error(req);
	else if (req->transport == HERALD_NATS)
	{
		/* a stream acknowledged it (nats.c) */
		o->status = "delivered";
		return;
	}
	else if (req->transport == HERALD_SMTP)
	{
		/* the server accepted the message (its last reply, 250) */
		o->http_status = (int32) req->http_status;
		o->status = "delivered";
		return;
	}
	else
	{
		long		code = req->http_status;

		o->http_status = (int32) code;
		if (code >= 200 && code < 300)
		{
			o->status = "delivered";
			return;
		}
		if (code == 410)
		{
			o->error = pstrdup("endpoint answered HTTP 410 Gone; channel disabled");
			o->disable_reason = psprintf("endpoint answered HTTP 410 Gone to delivery " INT64_FORMAT,
										 d->id);
			final = true;
		}
		else if (code >= 300 && code < 400)
			o->error = psprintf("endpoint answered HTTP %ld; redirects are not followed", code);
		else
			o->error = psprintf("endpoint answered HTTP %ld", code);
	}

	if (final || !d->channel_enabled || d->attempts + 1 >= d->max_attempts)
	{
		o->status = "dead";
		return;
	}
	if (req && (req->http_status == 429 || req->http_status == 503) &&
		req->retry_after > 0)
		o->retry_in_ms = Min(req->retry_after * 1000.0, MAX_RETRY_MS);
	else
		o->retry_in_ms = backoff_ms(d);
}

/* --- channel limits ------------------------------------------------------- */

static double
bucket_size(ChannelState *cs)
{
	return Max(1.0, cs->rate);
}

static void
refill(ChannelState *cs, TimestampTz now)
{
	if (cs->rate > 0 && now > cs->refilled_at)
	{
		cs->tokens = Min(bucket_size(cs),
						 cs->tokens + cs->rate * (now - cs->refilled_at) / 1000000.0);
		cs->refilled_at = now;
	}
}

static ChannelState *
channel_state(HeraldDelivery *d)
{
	ChannelState *cs;
	bool		found;

	cs = hash_search(channel_states, &d->channel_id, HASH_ENTER, &found);
	if (!found)
	{
		cs->in_flight = 0;
		cs->more_due = false;
		cs->marked = false;
		cs->backlog = false;
	}
	cs->max_concurrency = d->max_concurrency;
	if (!found || cs->rate != d->rate_limit)
	{
		/* a new or changed rate starts from a full bucket */
		cs->rate = d->rate_limit;
		cs->tokens = bucket_size(cs);
		cs->refilled_at = GetCurrentTimestamp();
	}
	return cs;
}

/*
 * What the worker uses of every tracked channel, and where to resume each
 * channel's scan, for the claim.  full: scan every channel from its start.
 * for_log: for the read of new events, where a channel with a backlog in
 * the queue has no allowance: its new events queue up behind it.
 */
static void
build_use(HeraldChannelUse *use, MemoryContext cxt, bool full, bool for_log)
{
	HASH_SEQ_STATUS status;
	ChannelState *cs;
	TimestampTz now = GetCurrentTimestamp();
	long		n = Max(hash_get_num_entries(channel_states), 1);

	use->n = 0;
	use->channel_ids = MemoryContextAlloc(cxt, sizeof(Datum) * n);
	use->in_flight = MemoryContextAlloc(cxt, sizeof(Datum) * n);
	use->tokens = MemoryContextAlloc(cxt, sizeof(Datum) * n);
	use->tokens_null = MemoryContextAlloc(cxt, sizeof(bool) * n);
	use->after_at = MemoryContextAlloc(cxt, sizeof(Datum) * n);
	use->after_id = MemoryContextAlloc(cxt, sizeof(Datum) * n);
	use->after_null = MemoryContextAlloc(cxt, sizeof(bool) * n);
	hash_seq_init(&status, channel_states);
	while ((cs = hash_seq_search(&status)) != NULL)
	{
		refill(cs, now);
		use->channel_ids[use->n] = Int32GetDatum(cs->channel_id);
		use->in_flight[use->n] = Int32GetDatum(for_log && cs->backlog ? PG_INT32_MAX / 2 :
											   cs->in_flight);
		use->tokens[use->n] = Float8GetDatum(Max(cs->tokens, 0));
		use->tokens_null[use->n] = (cs->rate == 0);
		use->after_at[use->n] = TimestampTzGetDatum(cs->mark_at);
		use->after_id[use->n] = Int64GetDatum(cs->mark_id);
		use->after_null[use->n] = full || !cs->marked;
		use->n++;
	}
}

/* Move every mark back so that rows due from this time on are seen again. */
static void
rescan_from(TimestampTz from)
{
	HASH_SEQ_STATUS status;
	ChannelState *cs;

	hash_seq_init(&status, channel_states);
	while ((cs = hash_seq_search(&status)) != NULL)
		if (cs->marked && cs->mark_at >= from)
		{
			cs->mark_at = from - 1;
			cs->mark_id = 0;
		}
}

/* After a committed claim: resume each channel after the last row claimed. */
static void
advance_marks(HeraldDelivery *claimed, int n)
{
	for (int i = 0; i < n; i++)
	{
		HeraldDelivery *d = &claimed[i];
		ChannelState *cs;

		/* a delivery read from the event log is no row of the queue */
		if (d->fresh)
			continue;
		cs = hash_search(channel_states, &d->channel_id, HASH_FIND, NULL);
		if (cs == NULL)
			continue;
		if (!cs->marked || d->due_at > cs->mark_at ||
			(d->due_at == cs->mark_at && d->id > cs->mark_id))
		{
			cs->marked = true;
			cs->mark_at = d->due_at;
			cs->mark_id = d->id;
		}
	}
}

/*
 * Count claimed deliveries against their channels (sign 1), or give them
 * back when the claim did not commit (sign -1).
 */
static void
charge(HeraldDelivery *claimed, int n, int sign)
{
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < n; i++)
	{
		ChannelState *cs = channel_state(&claimed[i]);

		Assert(sign == 1 || sign == -1);
		refill(cs, now);
		cs->in_flight += sign;
		Assert(cs->in_flight >= 0);
		if (cs->rate > 0)
			cs->tokens -= sign;
	}
}

static void
forget_channels(void)
{
	HASH_SEQ_STATUS status;
	ChannelState *cs;

	hash_seq_init(&status, channel_states);
	while ((cs = hash_seq_search(&status)) != NULL)
		hash_search(channel_states, &cs->channel_id, HASH_REMOVE, NULL);
}

/*
 * Milliseconds until a rate-limited channel that may have more due work
 * earns its next token; -1 when no channel waits for one.
 */
static long
rate_wait_ms(void)
{
	HASH_SEQ_STATUS status;
	ChannelState *cs;
	double		wait = -1;

	hash_seq_init(&status, channel_states);
	while ((cs = hash_seq_search(&status)) != NULL)
	{
		double		w;

		if (cs->rate <= 0 || !cs->more_due || cs->tokens >= 1)
			continue;
		w = (1 - cs->tokens) / cs->rate * 1000.0;
		if (wait < 0 || w < wait)
			wait = w;
	}
	return wait < 0 ? -1 : (long) ceil(wait);
}

/* Has a rate-limited channel with more due work earned a token? */
static bool
rate_channel_ready(void)
{
	HASH_SEQ_STATUS status;
	ChannelState *cs;
	TimestampTz now = GetCurrentTimestamp();
	bool		ready = false;

	hash_seq_init(&status, channel_states);
	while ((cs = hash_seq_search(&status)) != NULL)
	{
		if (cs->rate <= 0 || !cs->more_due)
			continue;
		refill(cs, now);
		if (cs->tokens >= 1)
		{
			cs->more_due = false;
			ready = true;
		}
	}
	return ready;
}

/*
 * Record the outcomes, except those claimed from an installation of
 * pg_herald that has since been dropped: their ids may now name other
 * deliveries.
 */
static void
record_step(void *arg)
{
	Oid			installation = herald_installation();
	int			n = 0;

	for (int i = 0; i < noutcomes; i++)
		if (outcome_owner[i]->batch->installation == installation)
		{
			if (n != i)
				outcomes[n] = outcomes[i];
			n++;
		}
	if (n > 0)
		herald_queue_record(worker_slot, outcomes, n);
	for (int i = 0; i < n; i++)
	{
		if (outcomes[i].fresh)
			herald_cursor_release(outcomes[i].event_id);
		if (!outcomes[i].fresh || strcmp(outcomes[i].status, "delivered") != 0)
			queue_stale = true;
	}
	/* the position is the installation's whose events the worker read */
	if (OidIsValid(installation) && installation == channel_states_of)
		herald_cursor_persist(false);
	else
		herald_cursor_reset();
}

static void release_outcomes(void);

/* Record every pending outcome, then release what they held. */
static void
record_outcomes(void)
{
	if (noutcomes == 0)
		return;
	if (!herald_in_transaction("pg_herald: recording attempts", record_step, NULL))
	{
		ereport(LOG,
				(errmsg("pg_herald delivery worker %d could not record %d attempts; they will be retried",
						worker_slot, noutcomes),
				 errdetail("Claimed deliveries are retried when their leases expire, new ones when the worker reads the event log again from its last kept position.")));
		/* what was held is read again from the kept position */
		herald_cursor_reset();
	}
	else
		herald_cursor_publish();
	release_outcomes();
}

/* After the outcomes were recorded (or given up): free what they held. */
static void
release_outcomes(void)
{
	for (int i = 0; i < noutcomes; i++)
	{
		InFlight   *f = outcome_owner[i];
		ClaimBatch *batch = f->batch;

		if (f->request)
			herald_http_free(f->request);
		Assert(batch->remaining > 0);
		if (--batch->remaining == 0)
		{
			MemoryContextDelete(batch->cxt);
			pfree(batch);
		}
	}
	noutcomes = 0;
	MemoryContextReset(outcome_context);
}

/* --- claiming -------------------------------------------------------------- */

typedef struct ClaimStep
{
	int			limit;
	bool		ready;
	bool		released;
	bool		charged;		/* the claimed deliveries are counted */
	int			nclaimed;
	int			nfresh;			/* the first nfresh of claimed are fresh */
	bool		more_log;		/* the read of new events took all it could */
	HeraldDelivery *claimed;
	MemoryContext cxt;
	long		next_due_ms;
	Oid			installation;	/* what it claimed from */
	bool		full;			/* scan every channel from its start */
} ClaimStep;

/*
 * After a claim that was not cut short by the batch limit: a channel with a
 * backlog that could take more and got nothing from the queue has none.
 */
static void
clear_backlogs(HeraldDelivery *queued, int nqueued)
{
	HASH_SEQ_STATUS status;
	ChannelState *cs;

	hash_seq_init(&status, channel_states);
	while ((cs = hash_seq_search(&status)) != NULL)
	{
		bool		got = false;

		if (!cs->backlog || cs->in_flight >= cs->max_concurrency ||
			(cs->rate > 0 && cs->tokens < 1))
			continue;
		for (int i = 0; i < nqueued && !got; i++)
			got = (queued[i].channel_id == cs->channel_id);
		if (!got)
			cs->backlog = false;
	}
}

static void
claim_step(void *arg)
{
	ClaimStep  *c = arg;
	HeraldChannelUse use;
	HeraldDelivery *fresh = NULL;
	HeraldDelivery *queued = NULL;
	List	   *spilled = NIL;
	ListCell   *lc;
	int			nqueued;
	bool		found;
	bool		ask_queue;

	Oid			installation = herald_installation();

	c->ready = OidIsValid(installation);
	if (!c->ready)
		return;

	/* a re-created extension numbers its channels anew */
	if (c->installation != installation)
	{
		forget_channels();
		herald_cursor_reset();
		queue_stale = true;
		c->installation = installation;
		channel_states_of = installation;
	}
	if (!c->released)
	{
		herald_queue_release(worker_slot);
		c->released = true;
	}

	if (!herald_cursor_loaded())
		herald_cursor_load(worker_slot, herald_delivery_workers);

	/* new events first, from memory; then the queue, within what is left */
	build_use(&use, c->cxt, c->full, true);
	c->nfresh = herald_queue_read_log(worker_slot, herald_delivery_workers, c->limit,
									  &use, c->cxt, &fresh, &spilled, &c->more_log);
	charge(fresh, c->nfresh, 1);
	c->charged = true;
	c->claimed = fresh;
	c->nclaimed = c->nfresh;
	for (int i = 0; i < c->nfresh; i++)
		herald_cursor_hold(fresh[i].event_id);
	foreach(lc, spilled)
	{
		int32		channel_id = lfirst_int(lc);
		ChannelState *cs = hash_search(channel_states, &channel_id, HASH_ENTER, &found);

		if (!found)
		{
			cs->in_flight = 0;
			cs->more_due = false;
			cs->marked = false;
			cs->rate = 0;
			cs->tokens = 1;
			cs->max_concurrency = 1;
		}
		cs->backlog = true;
	}

	if (spilled != NIL)
		queue_stale = true;
	ask_queue = queue_stale || c->full || GetCurrentTimestamp() >= queue_due_at;
	nqueued = 0;
	if (ask_queue)
	{
		build_use(&use, c->cxt, c->full, false);
		nqueued = herald_queue_claim(worker_slot, c->limit - c->nfresh, &use, c->cxt,
									 &queued);
	}
	c->claimed = MemoryContextAlloc(c->cxt, sizeof(HeraldDelivery) * Max(c->nfresh + nqueued, 1));
	if (c->nfresh > 0)
		memcpy(c->claimed, fresh, sizeof(HeraldDelivery) * c->nfresh);
	if (nqueued > 0)
		memcpy(c->claimed + c->nfresh, queued, sizeof(HeraldDelivery) * nqueued);
	charge(queued, nqueued, 1);
	c->nclaimed = c->nfresh + nqueued;
	/* the batch is bounded by the worker's limit */
	Assert(c->nfresh <= c->limit && c->nclaimed <= c->limit);
	if (ask_queue && nqueued < c->limit - c->nfresh)
		clear_backlogs(queued, nqueued);
	herald_cursor_persist(false);
	if (!ask_queue)
		c->next_due_ms = c->nclaimed < c->limit ?
			TimestampDifferenceMilliseconds(GetCurrentTimestamp(), queue_due_at) : 0;
	else if (c->nclaimed < c->limit)
	{
		/* the next due time, for channels with an allowance left */
		build_use(&use, c->cxt, c->full, false);
		c->next_due_ms = herald_queue_next_due(&use);
		queue_stale = (nqueued > 0);
		queue_due_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												   c->next_due_ms >= 0 ?
												   Min(c->next_due_ms, IDLE_RECHECK_MS) :
												   IDLE_RECHECK_MS);
	}
	else
		c->next_due_ms = 0;
}

/*
 * Note the channels that used their whole allowance in this claim: they
 * may have more due work as soon as a request finishes or a token comes.
 */
static void
note_more_due(ClaimStep *c)
{
	ChannelState **states = palloc(sizeof(ChannelState *) * Max(c->nclaimed, 1));

	for (int i = 0; i < c->nclaimed; i++)
	{
		states[i] = hash_search(channel_states, &c->claimed[i].channel_id,
								HASH_FIND, NULL);
		if (states[i])
			states[i]->claimed = 0;
	}
	for (int i = 0; i < c->nclaimed; i++)
		if (states[i])
			states[i]->claimed++;
	for (int i = 0; i < c->nclaimed; i++)
		if (states[i])
			states[i]->more_due = (states[i]->claimed >= c->claimed[i].allowance);
	pfree(states);
}

/*
 * The outcomes recorded and the next claim made in one transaction: each
 * transaction has a fixed cost (start, snapshot, the installation's lock,
 * commit), paid once for both.
 */
static void
record_and_claim_step(void *arg)
{
	record_step(NULL);

	/*
	 * The claim's read-only queries use the transaction's snapshot: they
	 * must see the retries just recorded, or the next one due is missed and
	 * waits for the idle recheck instead of its retry_delay.
	 */
	CommandCounterIncrement();
	UpdateActiveSnapshotCommandId();
	claim_step(arg);
}

static void
keep_cursor_step(void *arg)
{
	ClaimStep  *c = arg;

	/* the installation may have been dropped since the last claim */
	if (herald_installation() != c->installation)
	{
		herald_cursor_reset();
		return;
	}
	herald_cursor_persist(true);
}

static void
purge_step(void *arg)
{
	HeraldPurge  *p = arg;

	p->purged = OidIsValid(herald_installation()) ? herald_queue_purge(herald_purge_batch) : 0;
}

/* Render and start the request of one claimed delivery. */
static void
start_delivery(InFlight *f)
{
	HeraldDelivery *d = f->delivery;
	MemoryContext old = MemoryContextSwitchTo(f->batch->cxt);
	/* in memory, not in a variable that the error path could see clobbered */
	HeraldOutgoing *out = palloc0(sizeof(HeraldOutgoing));
	char	   *error = NULL;

	if (!d->channel_enabled)
	{
		error = psprintf("channel \"%s\" is disabled", d->channel);
		MemoryContextSwitchTo(old);
		add_outcome(f, NULL, error);
		return;
	}

	PG_TRY();
	{
		herald_format(d, out);
		if (out->transport != HERALD_NOTIFY)
			f->request = herald_http_start(out, d->timeout_ms, f);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(f->batch->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		/* what a started request would have taken over */
		curl_slist_free_all(out->headers);
		curl_slist_free_all(out->rcpts);
		error = psprintf("could not prepare the request: %s", edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	if (error)
		add_outcome(f, NULL, error);
	else if (out->transport == HERALD_NOTIFY)
	{
		/* sent by the transaction that records it */
		add_outcome(f, NULL, NULL);
		old = MemoryContextSwitchTo(outcome_context);
		outcomes[noutcomes - 1].notify_channel = pstrdup(out->url);
		outcomes[noutcomes - 1].notify_payload = pstrdup(out->body);
		MemoryContextSwitchTo(old);
	}
}

/* --- main loop ------------------------------------------------------------- */

/* How often worker 0 looks for deliveries past their retention. */
#define PURGE_INTERVAL_MS 60000

/*
 * Longest time finished requests and wake-ups wait to be handled together
 * while other requests are still in flight.  Each record and claim is a
 * transaction with a fixed cost (start, snapshot, plans, commit, a kick of
 * the WAL writer): handled one by one, as they come, the outcomes of a busy
 * channel make batches of a few deliveries, and those fixed costs are most
 * of the worker's time.  The worker waits instead until half of what it
 * has in flight is done (or all of it), at most this long, so that a slow
 * request delays nothing else by more than this.
 */
#define COALESCE_MS 2

static long
ms_until(TimestampTz t)
{
	TimestampTz now = GetCurrentTimestamp();

	if (t <= now)
		return 0;
	return (long) ((t - now + 999) / 1000);
}

/*
 * Claim due deliveries within the worker's and the channels' limits, and
 * start them; with_outcomes: record the pending outcomes in the same
 * transaction first.
 */
static void
claim_and_start(ClaimStep *claim, bool *want_claim, TimestampTz *next_due_at,
				bool with_outcomes)
{
	ClaimBatch *batch = MemoryContextAllocZero(TopMemoryContext, sizeof(ClaimBatch));
	InFlight  **flights;
	TimestampTz rescan;

	batch->cxt = AllocSetContextCreate(TopMemoryContext,
									   "pg_herald claim",
									   ALLOCSET_DEFAULT_SIZES);
	claim->limit = Min(herald_batch_size,
					   herald_max_in_flight - herald_http_in_flight());
	Assert(claim->limit > 0);
	claim->cxt = batch->cxt;
	claim->nclaimed = 0;
	claim->nfresh = 0;
	claim->more_log = false;
	claim->charged = false;
	herald_cursor_save();

	/* before the claim's snapshot: rows committed up to now are then seen */
	rescan = herald_take_rescan(worker_slot);
	if (rescan != 0)
	{
		rescan_from(rescan);
		queue_stale = true;
	}
	claim->full = (GetCurrentTimestamp() >= next_full_scan);
	if (claim->full)
		next_full_scan = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), FULL_SCAN_MS);

	with_outcomes = with_outcomes && noutcomes > 0;
	if (!herald_in_transaction(with_outcomes ?
							   "pg_herald: recording attempts and claiming deliveries" :
							   "pg_herald: claiming deliveries",
							   with_outcomes ? record_and_claim_step : claim_step, claim))
	{
		if (claim->charged)
			charge(claim->claimed, claim->nclaimed, -1);
		for (int i = 0; i < claim->nfresh && i < claim->nclaimed; i++)
			herald_cursor_release(claim->claimed[i].event_id);
		herald_cursor_restore();
		claim->ready = false;
		claim->released = false;
		claim->nclaimed = 0;
		claim->next_due_ms = ERROR_PAUSE_MS;
		claim_paused_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 ERROR_PAUSE_MS);
		if (with_outcomes)
		{
			/*
			 * The recording failed with the claim, or made it fail: the
			 * cursor forgets what the recording let go of (read again from
			 * the kept position, where what is recorded is skipped), and the
			 * outcomes are recorded alone, as when there is nothing to claim.
			 */
			herald_cursor_reset();
			record_outcomes();
		}
	}
	else
	{
		if (with_outcomes)
			release_outcomes();
		if (!claim->ready)
		{
			claim->released = false;
			claim->next_due_ms = IDLE_RECHECK_MS;
		}
		else
			herald_cursor_publish();
	}

	Assert(claim->nclaimed >= 0 && claim->nclaimed <= claim->limit);
	batch->remaining = claim->nclaimed;
	batch->installation = claim->installation;
	flights = MemoryContextAlloc(batch->cxt, sizeof(InFlight *) * Max(claim->nclaimed, 1));
	for (int i = 0; i < claim->nclaimed; i++)
	{
		flights[i] = MemoryContextAllocZero(batch->cxt, sizeof(InFlight));
		flights[i]->delivery = &claim->claimed[i];
		flights[i]->batch = batch;
	}
	note_more_due(claim);
	advance_marks(claim->claimed, claim->nclaimed);
	for (int i = 0; i < claim->nclaimed; i++)
	{
		flights[i]->charged = true;
		start_delivery(flights[i]);
	}
	if (claim->nclaimed == 0)
	{
		MemoryContextDelete(batch->cxt);
		pfree(batch);
	}

	/* a full batch, or a full read of the log, means more may be due right now */
	*want_claim = (claim->nclaimed == claim->limit) || (claim->ready && claim->more_log);
	if (!*want_claim)
		*next_due_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												   claim->next_due_ms >= 0 ?
												   Min(claim->next_due_ms, IDLE_RECHECK_MS) :
												   IDLE_RECHECK_MS);
}

void
herald_delivery_main(Datum arg)
{
	ClaimStep	claim;
	bool		want_claim = true;
	TimestampTz next_due_at = 0;
	TimestampTz next_purge_at = 0;
	bool		purge_now = false;
	TimestampTz work_since = 0;	/* since when outcomes or a claim wait */
	HASHCTL		ctl;
	MemoryContext loop_context;

	worker_slot = DatumGetInt32(arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	herald_worker_connect(false);
	herald_worker_attach(worker_slot);
	pgstat_report_appname("pg_herald delivery");
	srandom((unsigned int) (MyProcPid ^ time(NULL)));

	/*
	 * A commit that is lost in a crash only repeats a delivery (the lease or
	 * the outcome is gone, the delivery is due again): at-least-once holds
	 * without waiting for the WAL flush.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* the worker runs as superuser: resolve no name through user schemas */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	ereport(LOG,
			(errmsg("pg_herald delivery worker %d started in database \"%s\"",
					worker_slot, herald_shared->datname)));

	herald_http_init();
	outcome_context = AllocSetContextCreate(TopMemoryContext,
											"pg_herald outcomes",
											ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int32);
	ctl.entrysize = sizeof(ChannelState);
	channel_states = hash_create("pg_herald channel states", 64, &ctl,
								 HASH_ELEM | HASH_BLOBS);
	memset(&claim, 0, sizeof(claim));
	loop_context = AllocSetContextCreate(TopMemoryContext,
										 "pg_herald delivery loop",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		HeraldRequest *req;
		long		timeout;
		long		rate_wait;
		bool		may_purge;
		bool		may_claim;
		bool		act;

		MemoryContextSwitchTo(loop_context);
		MemoryContextReset(loop_context);
		CHECK_FOR_INTERRUPTS();
		herald_exit_if_uninstalled();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			herald_http_configure();
			/* retention may have changed */
			purge_now = true;
		}

		while ((req = herald_http_next_completed()) != NULL)
			add_outcome((InFlight *) req->arg, req, NULL);
		if (GetCurrentTimestamp() >= next_due_at)
			want_claim = true;

		/* outcomes to record and claims to make, handled together (COALESCE_MS) */
		may_claim = want_claim && herald_http_in_flight() < herald_max_in_flight &&
			ms_until(claim_paused_until) == 0;
		if (noutcomes == 0 && !may_claim)
			work_since = 0;
		else if (work_since == 0)
			work_since = GetCurrentTimestamp();
		act = work_since != 0 &&
			(herald_http_in_flight() <= noutcomes ||
			 ms_until(TimestampTzPlusMilliseconds(work_since, COALESCE_MS)) == 0);
		if (act)
		{
			work_since = 0;
			/* finished requests free allowances */
			if (noutcomes > 0)
				want_claim = true;
			if (want_claim && herald_http_in_flight() < herald_max_in_flight &&
				ms_until(claim_paused_until) == 0)
				claim_and_start(&claim, &want_claim, &next_due_at, true);
			else
				record_outcomes();
		}

		/* worker 0 purges what is past its retention, in bounded batches */
		may_purge = (worker_slot == 0 && claim.ready);
		if (may_purge && (purge_now || GetCurrentTimestamp() >= next_purge_at))
		{
			HeraldPurge	purge = {0};

			purge_now = herald_in_transaction("pg_herald: purging", purge_step, &purge) &&
				purge.purged >= herald_purge_batch;
			next_purge_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														PURGE_INTERVAL_MS);
		}

		/* idle: keep the position, so that a restart repeats nothing */
		if (noutcomes == 0 && herald_http_in_flight() == 0 && claim.ready &&
			!want_claim && herald_cursor_unkept())
			(void) herald_in_transaction("pg_herald: keeping the delivery cursor",
										 keep_cursor_step, &claim);

		may_claim = want_claim && herald_http_in_flight() < herald_max_in_flight &&
			ms_until(claim_paused_until) == 0;
		if (may_purge && purge_now)
			timeout = 0;
		else if (noutcomes > 0 || may_claim)
		{
			/* at once when nothing else is to come; else wait a little */
			if (work_since == 0)
				work_since = GetCurrentTimestamp();
			timeout = herald_http_in_flight() <= noutcomes ? 0 :
				ms_until(TimestampTzPlusMilliseconds(work_since, COALESCE_MS));
		}
		else
		{
			timeout = ms_until(next_due_at);
			if (want_claim)
				timeout = Min(timeout, ms_until(claim_paused_until));
			rate_wait = rate_wait_ms();
			if (rate_wait >= 0 && rate_wait < timeout)
				timeout = rate_wait;
			if (may_purge)
				timeout = Min(timeout, ms_until(next_purge_at));
		}
		if (herald_http_wait(timeout, herald_wait_event(herald_http_in_flight() > 0 ?
														   HERALD_WAIT_DELIVERY_HTTP :
														   HERALD_WAIT_DELIVERY_IDLE)))
			want_claim = true;
		if (rate_channel_ready())
			want_claim = queue_stale = true;
	}
}
