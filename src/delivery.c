/*-------------------------------------------------------------------------
 *
 * delivery.c
 *		The delivery worker: claim, send, record.
 *
 * Each worker (herald.delivery_workers of them, one slot each) runs in
 * herald.database and loops:
 *
 *	1. record the attempts that completed, in one transaction;
 *	2. when woken (its latch is set by committing writers) or when a retry
 *	   falls due, claim a batch of due deliveries in a short transaction
 *	   (queue.c) and start their requests (webhook.c renders, http.c sends);
 *	3. wait on the latch, the sockets in flight and the next timer.
 *
 * No transaction is open while requests are in flight, and requests keep
 * flowing while others wait on a slow endpoint.  An error in one step is
 * logged, its transaction aborted, and the loop goes on; claimed rows whose
 * outcome could not be recorded are retried when their lease expires.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

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
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pg_herald.h"
#include "http.h"

/* How long an idle worker sleeps before it looks at the queue anyway. */
#define IDLE_RECHECK_MS 10000
/* Pause after a failed transaction, so that a broken state does not spin. */
#define ERROR_PAUSE_MS 1000
/* Longest backoff between two attempts, and longest Retry-After honoured. */
#define MAX_BACKOFF_MS (3600.0 * 1000)
#define MAX_RETRY_AFTER_MS (86400.0 * 1000)

/* Deliveries claimed together share one memory context. */
typedef struct ClaimBatch
{
	MemoryContext cxt;
	int			remaining;		/* deliveries not yet recorded */
} ClaimBatch;

typedef struct InFlight
{
	HeraldDelivery *delivery;
	ClaimBatch *batch;
	HeraldRequest *request;		/* NULL when it failed before sending */
} InFlight;

static int	worker_slot = 0;

/* outcomes waiting to be recorded */
static HeraldOutcome *outcomes = NULL;
static InFlight **outcome_owner = NULL;
static int	noutcomes = 0;
static int	maxoutcomes = 0;
static MemoryContext outcome_context = NULL;	/* their strings */

/* --- transactions --------------------------------------------------------- */

typedef void (*txn_step) (void *arg);

/*
 * Run step in its own transaction with SPI connected.  On error, log it,
 * abort, and return false.
 */
static bool
in_transaction(const char *activity, txn_step step, void *arg)
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
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/* --- outcomes ------------------------------------------------------------- */

/* The response body as stored: valid text in the database encoding. */
static char *
response_excerpt(HeraldRequest *req)
{
	int			len;

	if (req == NULL || req->response.len == 0)
		return NULL;
	len = strnlen(req->response.data, req->response.len);
	len = pg_encoding_verifymbstr(GetDatabaseEncoding(), req->response.data, len);
	return pnstrdup(req->response.data, len);
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
	return delay * (0.8 + 0.4 * ((double) random() / (double) 0x7FFFFFFF));
}

/*
 * Decide what one attempt means: delivered, retried later, or dead.
 * error describes a failure before any request was made (req is NULL).
 */
static void fill_outcome(HeraldOutcome *o, HeraldDelivery *d,
						 HeraldRequest *req, const char *error);

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
	old = MemoryContextSwitchTo(outcome_context);
	fill_outcome(o, d, req, error);
	MemoryContextSwitchTo(old);
}

static void
fill_outcome(HeraldOutcome *o, HeraldDelivery *d, HeraldRequest *req,
			 const char *error)
{
	bool		final = false;

	memset(o, 0, sizeof(*o));
	o->delivery_id = d->id;
	o->channel_id = d->channel_id;
	o->started = req ? req->started : GetCurrentTimestamp();
	o->latency_ms = req ? req->latency_ms : 0;
	o->response = response_excerpt(req);
	o->status = "pending";

	if (req == NULL)
		o->error = pstrdup(error);
	else if (req->result != CURLE_OK)
		o->error = herald_http_error(req);
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
		o->retry_in_ms = Min(req->retry_after * 1000.0, MAX_RETRY_AFTER_MS);
	else
		o->retry_in_ms = backoff_ms(d);
}

static void
record_step(void *arg)
{
	herald_queue_record(worker_slot, outcomes, noutcomes);
}

/* Record every pending outcome, then release what they held. */
static void
record_outcomes(void)
{
	if (noutcomes == 0)
		return;
	if (!in_transaction("pg_herald: recording attempts", record_step, NULL))
		ereport(LOG,
				(errmsg("pg_herald delivery worker %d could not record %d attempts; they will be retried when their leases expire",
						worker_slot, noutcomes)));

	for (int i = 0; i < noutcomes; i++)
	{
		InFlight   *f = outcome_owner[i];
		ClaimBatch *batch = f->batch;

		if (f->request)
			herald_http_free(f->request);
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
	int			nclaimed;
	HeraldDelivery *claimed;
	MemoryContext cxt;
	long		next_due_ms;
} ClaimStep;

static void
claim_step(void *arg)
{
	ClaimStep  *c = arg;

	c->ready = herald_queue_ready();
	if (!c->ready)
		return;
	if (!c->released)
	{
		herald_queue_release(worker_slot);
		c->released = true;
	}
	c->nclaimed = herald_queue_claim(worker_slot, c->limit, c->cxt, &c->claimed);
	c->next_due_ms = c->nclaimed < c->limit ? herald_queue_next_due() : 0;
}

/* Render and start the request of one claimed delivery. */
static void
start_delivery(InFlight *f)
{
	HeraldDelivery *d = f->delivery;
	MemoryContext old = MemoryContextSwitchTo(f->batch->cxt);
	char	   *body;
	size_t		bodylen;
	struct curl_slist *headers;
	char	   *error = NULL;

	if (!d->channel_enabled)
	{
		MemoryContextSwitchTo(old);
		add_outcome(f, NULL, psprintf("channel \"%s\" is disabled", d->channel));
		return;
	}

	PG_TRY();
	{
		headers = herald_webhook_request(d, &body, &bodylen);
		f->request = herald_http_start(d->target, headers, body, bodylen,
									   d->timeout_ms, f);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(f->batch->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		error = psprintf("could not prepare the request: %s", edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	if (error)
		add_outcome(f, NULL, error);
}

/* --- main loop ------------------------------------------------------------- */

void
herald_delivery_main(Datum arg)
{
	ClaimStep	claim;
	bool		want_claim = true;
	TimestampTz next_due_at = 0;

	worker_slot = DatumGetInt32(arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(herald_database, NULL, 0);
	herald_worker_attach(worker_slot);
	pgstat_report_appname("pg_herald delivery");
	srandom((unsigned int) (MyProcPid ^ time(NULL)));

	ereport(LOG,
			(errmsg("pg_herald delivery worker %d started in database \"%s\"",
					worker_slot, herald_database)));

	herald_http_init();
	outcome_context = AllocSetContextCreate(TopMemoryContext,
											"pg_herald outcomes",
											ALLOCSET_DEFAULT_SIZES);
	memset(&claim, 0, sizeof(claim));

	for (;;)
	{
		HeraldRequest *req;
		long		timeout;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			herald_http_configure();
		}

		while ((req = herald_http_next_completed()) != NULL)
			add_outcome((InFlight *) req->arg, req, NULL);
		record_outcomes();

		now = GetCurrentTimestamp();
		if (now >= next_due_at)
			want_claim = true;
		if (want_claim && herald_http_in_flight() < herald_max_in_flight)
		{
			ClaimBatch *batch = MemoryContextAllocZero(TopMemoryContext, sizeof(ClaimBatch));

			batch->cxt = AllocSetContextCreate(TopMemoryContext,
											   "pg_herald claim",
											   ALLOCSET_DEFAULT_SIZES);
			claim.limit = Min(herald_batch_size,
							  herald_max_in_flight - herald_http_in_flight());
			claim.cxt = batch->cxt;
			claim.nclaimed = 0;
			if (!in_transaction("pg_herald: claiming deliveries", claim_step, &claim))
			{
				claim.ready = false;
				claim.nclaimed = 0;
				claim.next_due_ms = ERROR_PAUSE_MS;
			}
			else if (!claim.ready)
			{
				claim.released = false;
				claim.next_due_ms = IDLE_RECHECK_MS;
			}

			batch->remaining = claim.nclaimed;
			for (int i = 0; i < claim.nclaimed; i++)
			{
				InFlight   *f = MemoryContextAllocZero(batch->cxt, sizeof(InFlight));

				f->delivery = &claim.claimed[i];
				f->batch = batch;
				start_delivery(f);
			}
			if (claim.nclaimed == 0)
			{
				MemoryContextDelete(batch->cxt);
				pfree(batch);
			}

			/* a full batch means more may be due right now */
			want_claim = (claim.nclaimed == claim.limit);
			if (!want_claim)
				next_due_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														  claim.next_due_ms >= 0 ?
														  Min(claim.next_due_ms, IDLE_RECHECK_MS) :
														  IDLE_RECHECK_MS);
		}

		if (noutcomes > 0 ||
			(want_claim && herald_http_in_flight() < herald_max_in_flight))
			timeout = 0;
		else
		{
			long		secs;
			int			usecs;

			TimestampDifference(GetCurrentTimestamp(), next_due_at, &secs, &usecs);
			timeout = secs * 1000 + usecs / 1000;
			if (GetCurrentTimestamp() >= next_due_at)
				timeout = 0;
		}
		if (herald_http_wait(timeout, PG_WAIT_EXTENSION))
			want_claim = true;
	}
}
