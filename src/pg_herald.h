/*-------------------------------------------------------------------------
 *
 * pg_herald.h
 *		Declarations shared by the pg_herald source files.
 *
 * The flow is capture -> event log -> deliver: capture.c turns committed
 * row changes into events, which event_log.c appends (every event is
 * appended there); for threshold rules, evaluate.c notes
 * the watched tables a transaction touched and runs metrics, scheduler.c
 * evaluates the rules after those commits and on their schedules.  queue.c
 * claims deliveries and records their outcomes,
 * delivery.c runs the background worker that sends them through http.c
 * (and nats.c, which publishes to NATS JetStream from threads of its own),
 * channel_kinds.c lists the channel kinds: each one's renderer (webhook.c,
 * format_chat.c, format_email.c, format.c, which also holds the event
 * model they share) and transport; signing.c signs webhook requests.
 * template.c renders messages for every channel kind, from the titles and
 * default messages of event_types.c.  The decision loop: links.c signs the
 * links of a message's actions; http_server.c runs the HTTP worker, which
 * serves them (decision_page.c) and Slack's clicks (slack.c).  limits.c checks the
 * ranges of declared parameter values.  rule_code.c runs a rule's condition or metric in a
 * session that is not its owner's, within bounds.  launcher.c starts the
 * workers of every database where pg_herald is installed and holds their
 * shared state, one slot per database.  pg_herald.c holds the module entry
 * point, the settings and the commit-time wake-up.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_HERALD_H
#define PG_HERALD_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#ifndef PG_HERALD_VERSION
#define PG_HERALD_VERSION "unknown"
#endif

/* Names of the catalog objects the C code relies on. */
#define HERALD_SCHEMA "herald"
#define HERALD_EXTENSION "pg_herald"

/* Settings (GUCs), defined in pg_herald.c. */
#define HERALD_MAX_WORKERS 16
#define HERALD_MAX_TOUCHED 64
extern char *herald_database;
extern int	herald_delivery_workers;
extern int	herald_batch_size;
extern int	herald_max_in_flight;
extern int	herald_max_host_connections;
extern int	herald_retention;
extern int	herald_dead_retention;
extern int	herald_purge_batch;
extern char *herald_deny_networks;
extern char *herald_allow_networks;
extern char *herald_ca_file;
extern char *herald_decision_url;

/*
 * One evaluator (scheduler.c): a worker the scheduler starts to evaluate
 * one slow threshold rule.  The scheduler sets generation, rule_id,
 * installation and time_limit_ms before it starts it; the evaluator sets
 * pid, then the result.
 */
#define HERALD_MAX_EVALUATORS 16
#define HERALD_MAX_SUSPECTS 64
#define HERALD_MAX_SLOW_KEPT 256
typedef struct HeraldEvaluatorSlot
{
	uint32		generation;		/* the start it belongs to; 0: free */
	int32		rule_id;
	Oid			installation;	/* the extension the rule belongs to */
	int64		time_limit_ms;	/* past this, the evaluator is stopped */
	pid_t		pid;			/* the evaluator's, once it runs */
	bool		done;			/* the result below is set */
	bool		ok;				/* the evaluation committed */
	bool		overran;		/* it was stopped at its time limit */
	TimestampTz timer_at;		/* the rule's next timer, 0 for none */
	int64		duration_ms;
} HeraldEvaluatorSlot;

/*
 * The state of one served database (launcher.c holds them, one slot per
 * database, herald.max_databases of them), shared by its backends and its
 * workers.  The spinlock guards every field; it comes first: a slot is
 * cleared from database on, under it.
 */
#define HERALD_PROBLEM_MAX 256
typedef struct HeraldShared
{
	slock_t		mutex;
	Oid			database;		/* the database served; InvalidOid: free */
	char		datname[NAMEDATALEN];	/* its name, as the launcher last saw it */
	bool		installed;		/* its scheduler found pg_herald there, and no
								 * worker found it dropped since */
	pid_t		paused_by;		/* a backend about to drop, rename or copy the
								 * database: no worker starts until its
								 * transaction ends */
	char		problem[HERALD_PROBLEM_MAX];	/* why a worker is missing, ""
												 * when none is */
	pid_t		scheduler_pid;	/* 0 when not running */
	pid_t		http_pid;		/* the HTTP worker, when it serves this one */
	Latch	   *latch[HERALD_MAX_WORKERS];	/* running delivery workers' latches */
	pid_t		pid[HERALD_MAX_WORKERS];	/* their pids, 0 when not running */
	TimestampTz rescan_from[HERALD_MAX_WORKERS];	/* per worker: oldest
													 * next_attempt_at committed
													 * since it last looked, 0
													 * for none */

	/*
	 * per worker: every event of its share up to here is handled
	 * (log_cursor.c), as of its last commit; the number of workers sharing
	 * the events
	 */
	int64		log_position[HERALD_MAX_WORKERS];
	int			log_workers;

	/* the scheduler (threshold rules) */
	Latch	   *scheduler_latch;	/* NULL when not running */
	uint32		rules_version;	/* bumped by each commit that changes rules */
	uint64		touch_seq;		/* commits that touched watched tables */
	uint64		evaluated_seq;	/* touch_seq whose evaluations are done */
	int			ntouched;		/* watched tables touched since the scheduler
								 * last looked */
	bool		touched_all;	/* more than HERALD_MAX_TOUCHED: all of them */
	Oid			touched[HERALD_MAX_TOUCHED];
	int			nquiet;			/* watched tables whose rules are all waiting
								 * for their min_interval already: commits to
								 * them need not wake the scheduler */
	Oid			quiet[HERALD_MAX_TOUCHED];

	/*
	 * The evaluators of slow rules; the slow rules a scheduler left when it
	 * ended (the one it was evaluating among them), for the next one; the
	 * owners of rules whose evaluation went on past its cancel (theirs run
	 * in evaluators only).
	 */
	uint32		evaluator_generation;	/* the last one given to a slot */
	HeraldEvaluatorSlot evaluator[HERALD_MAX_EVALUATORS];
	int			nslow;
	int32		slow_rule[HERALD_MAX_SLOW_KEPT];
	int			nsuspects;
	Oid			suspect[HERALD_MAX_SUSPECTS];
} HeraldShared;

/* this database's slot: a worker's own, or what a backend found last */
extern HeraldShared *herald_shared;

/*
 * launcher.c: the slots of the served databases, and what the launcher is
 * asked.  The spinlock guards the fields before db; each slot has its own.
 */
#define HERALD_MAX_WAKE 32
typedef struct HeraldCluster
{
	slock_t		mutex;
	Latch	   *launcher_latch; /* NULL when the launcher does not run */
	int			nwake;			/* databases to look at again (CREATE
								 * EXTENSION committed there) */
	bool		wake_all;		/* more than HERALD_MAX_WAKE: all of them */
	Oid			wake[HERALD_MAX_WAKE];
	int			ndatabases;		/* herald.max_databases */
	HeraldShared db[FLEXIBLE_ARRAY_MEMBER];
} HeraldCluster;

/* What a launched worker finds in bgw_extra; generation first (evaluators). */
typedef struct HeraldWorkerExtra
{
	uint32		generation;		/* an evaluator's start, 0 for the others */
	Oid			database;
	int32		dbslot;			/* its index in HeraldCluster.db */
} HeraldWorkerExtra;

extern HeraldCluster *herald_cluster;
extern int	herald_max_databases;
extern char *herald_http_database;
extern void herald_define_launcher_settings(void);
extern Size herald_cluster_shmem_size(void);
extern void herald_cluster_shmem_init(void);
extern void herald_launcher_init(void);
extern void herald_launcher_before_utility(Node *stmt);
extern void herald_launcher_xact_end(XactEvent event);
extern HeraldShared *herald_lock_database(Oid dbid);
extern HeraldShared *herald_database_shared(void);
extern bool herald_database_full(void);
extern void herald_request_launch(Oid dbid);
extern void herald_worker_connect(bool probe);
extern void herald_worker_extra(void *bgw_extra, uint32 generation);
extern void herald_http_attach(void);
extern bool herald_wait_for_workers(void);
extern void herald_note_uninstalled(void);
extern void herald_exit_if_uninstalled(void);
extern const char *herald_http_database_name(void);
extern bool herald_serves_links(void);
extern PGDLLEXPORT void herald_launcher_main(Datum arg);

/* pg_herald.c */
extern void herald_note_work(void);
extern void herald_note_events(void);

/*
 * What a pg_herald process waits for, as pg_stat_activity.wait_event names
 * it (on PostgreSQL 17 and later; "Extension" before).
 */
typedef enum HeraldWait
{
	HERALD_WAIT_DELIVERY_IDLE,	/* a delivery worker, nothing in flight */
	HERALD_WAIT_DELIVERY_HTTP,	/* a delivery worker, requests in flight */
	HERALD_WAIT_SCHEDULER_IDLE, /* the scheduler, until a rule is due */
	HERALD_WAIT_HTTP_SERVER,	/* the HTTP worker, for a request */
	HERALD_WAIT_FLUSH_EVALUATIONS,	/* herald.flush(), for the scheduler */
	HERALD_WAIT_FLUSH_DELIVERIES,	/* herald.flush(), for the workers */
	HERALD_WAIT_LAUNCHER,		/* the launcher, for a database or a worker */
	HERALD_WAIT_LAUNCH,			/* a session, for its database's workers */
	HERALD_NUM_WAITS
} HeraldWait;

extern uint32 herald_wait_event(HeraldWait wait);

/* --- event_log.c: appending events, the readers' horizon ---------------- */

/* What the events appended by one writer share. */
typedef struct HeraldEventMeta
{
	const char *type;			/* "row.inserted", "rule.fired", ... */
	int32		rule_id;		/* 0: none */
	const char *rule;			/* NULL: none */
	Datum		channel_ids;	/* int4[] of the channels; (Datum) 0: none */
	int32		silenced_by;	/* 0: none */
	int			awaits_decision;	/* -1: unknown (NULL), 0 false, 1 true */
	int64		about_event_id; /* 0: none */
} HeraldEventMeta;

typedef struct HeraldEventWriter HeraldEventWriter;

/* A transaction holding event ids, as herald_events_horizon() reports it. */
typedef struct HeraldOpenIds
{
	int			procno;
	uint64		lo;				/* the lowest id it may hold */
} HeraldOpenIds;

extern HeraldEventWriter *herald_events_begin(const HeraldEventMeta *meta);
extern int64 herald_events_add(HeraldEventWriter *w, Datum payload);
extern int	herald_events_end(HeraldEventWriter *w);
extern void herald_events_xact_event(XactEvent event);
extern int	herald_events_horizon(uint64 *next, HeraldOpenIds *open, int max);
extern Size herald_event_log_shmem_size(void);
extern void herald_events_forget(Oid dbid);

/* log_cursor.c: a delivery worker's position in the event log */
extern void herald_cursor_reset(void);
extern void herald_cursor_load(int slot, int workers);
extern bool herald_cursor_loaded(void);
extern int64 herald_cursor_read_upto(void);
extern int64 herald_cursor_recorded_upto(void);
extern void herald_cursor_save(void);
extern void herald_cursor_restore(void);
extern void herald_cursor_plan(Datum *lows, Datum *highs);
extern void herald_cursor_read(int64 *ids, int nnew, int64 *found, int nfound);
extern void herald_cursor_hold(int64 event_id);
extern void herald_cursor_release(int64 event_id);
extern int64 herald_cursor_position(void);
extern void herald_cursor_persist(bool force);
extern void herald_cursor_publish(void);
extern bool herald_cursor_unkept(void);
extern void herald_event_log_shmem_request(void);
extern void herald_event_log_shmem_init(void);
extern void herald_note_touch(Oid relid);
extern void herald_note_rules_changed(void);
extern bool herald_work_pending(void);
extern void herald_wake_delivery(TimestampTz due_from);
extern TimestampTz herald_take_rescan(int slot);
extern void herald_worker_attach(int slot);
extern bool herald_worker_owns(int slot);
extern Oid	herald_schema_oid(bool missing_ok);
extern void herald_require_served(const char *what);
extern void herald_scheduler_attach(void);

/* limits.c */
extern void herald_check_range(const char *parameter, Datum value, bool isnull,
							   Oid type, const char *low, const char *high,
							   bool required, const char *hint);

typedef void (*herald_step) (void *arg);

/* What a purge step did: how many rows it deleted. */
typedef struct HeraldPurge
{
	int64		purged;
} HeraldPurge;
extern bool herald_in_transaction(const char *activity, herald_step step, void *arg);
struct _SPI_plan;
extern struct _SPI_plan *herald_prepare_kept(const char *sql, int nargs, Oid *argtypes);
extern bool herald_try_transaction(const char *activity, herald_step step, void *arg,
								   ErrorData **error);

/* rule_code.c: running a rule's SQL in someone else's session */
extern char *herald_run_limited(herald_step step, void *arg, int timeout_ms,
								bool *timed_out);
extern char *herald_run_protected(herald_step step, void *arg);
extern void herald_rule_code_xact_end(void);
extern void herald_rule_code_init(void);
extern bool herald_rule_code_running(void);

/* api.c */
extern void herald_api_init(void);
extern Oid	herald_extension_owner(void);
extern Oid	herald_invoker_id(void);

/* evaluate.c */
#define HERALD_WATCH_TRIGGER "herald_watch"
#define HERALD_KEY_MAX 1000		/* bytes of a metric's key */
#define HERALD_KEYS_MAX 10000	/* keys (rows) of a grouped metric */
#define HERALD_RULE_ERROR_MAX 1000	/* characters of a rule's error kept */
extern void herald_install_watch_hooks(void);

/* capture.c */
extern void herald_capture_xact_end(void);
extern void herald_define_capture_settings(void);

/* payload.c */
extern Datum herald_row_payload(const char *table, const char *operation,
								Datum new_row, Datum old_row);
extern Datum herald_slot_payload(const char *table, const char *operation,
								 TupleTableSlot *new_slot, TupleTableSlot *old_slot);

/* signing.c */
#define HERALD_SIGNATURE_MAX 128
extern bool herald_secret_key(const char *secret, uint8 *key, int *keylen);
extern void herald_sign(const uint8 *key, int keylen, const char *msg_id,
						int64 timestamp, const char *body, size_t bodylen,
						char *out);

/* links.c: signed decision links */
#define HERALD_RECIPIENT_MAX 254	/* bytes of the recipient a link names */
#define HERALD_LINK_MAX_BYTES (27 + HERALD_RECIPIENT_MAX + 32)
#define HERALD_LINK_MAX_CHARS ((HERALD_LINK_MAX_BYTES * 4 + 2) / 3)
typedef struct HeraldLink
{
	int32		key_id;
	int64		event_id;		/* the episode's first event */
	int			action;			/* 1..n: the rule's choices, or 1 acknowledge,
								 * 2 record a decision */
	int32		channel_id;
	int64		expires;		/* unix seconds */
	char		recipient[HERALD_RECIPIENT_MAX + 1];	/* "" for the channel's
														 * readers */
} HeraldLink;

extern char *herald_http_listen;
extern char *herald_public_url;
extern int	herald_link_lifetime;
extern void herald_define_link_settings(void);
extern char *herald_link_base(void);
extern void herald_link_mac(const uint8 *key, int keylen, const char *domain,
							const uint8 *data, size_t len, uint8 *mac);
extern bool herald_mac_equal(const uint8 *a, const uint8 *b, size_t len);
extern char *herald_b64url_encode(const uint8 *src, size_t len);
extern int	herald_b64url_decode(const char *text, uint8 *out, int maxlen);
extern char *herald_link_token(const HeraldLink *link, const uint8 *key, int keylen);
extern bool herald_link_parse(const char *token, HeraldLink *link, uint8 *raw, int *rawlen);
extern bool herald_link_verify(const uint8 *raw, int rawlen, const uint8 *key, int keylen);
extern const char *herald_link_open(const char *token, HeraldLink *link, bytea **key);

/* event_types.c: one entry per event type */
typedef enum HeraldVariant
{
	HERALD_VARIANT_NONE,
	HERALD_VARIANT_KEY,			/* the payload has a key (grouped rule) */
	HERALD_VARIANT_ACKNOWLEDGEMENT,	/* the payload's kind is acknowledgement */
	HERALD_VARIANT_TABLE		/* the payload names a table: no metric ran */
} HeraldVariant;

typedef struct HeraldEventType
{
	const char *name;			/* NULL: any type not listed */
	bool		awaits_decision;	/* its messages offer actions */
	HeraldVariant variant;		/* what selects the variant templates */
	const char *title;			/* templates (template.c) */
	const char *message;
	const char *variant_title;
	const char *variant_message;
	const char *decide_hint;	/* ends the default message when it carries
								 * no actions: how to answer in SQL */
} HeraldEventType;

extern const HeraldEventType *herald_event_type(const char *name);
extern const char *herald_event_title(const char *type, Jsonb *payload);
extern const char *herald_event_message(const char *type, Jsonb *payload,
										bool has_actions);

/* template.c */
typedef struct HeraldTemplateValues
{
	const char *rule;
	int64		event_id;
	const char *type;
	Jsonb	   *data;			/* event payload: table, operation, new, old
								 * for row rules; key, value, thresholds,
								 * state, level for threshold rules */
	bool		has_actions;	/* the message carries actions: the default
								 * message asks nothing in SQL */
	const char *timezone;		/* the zone the time filter shows times in */
} HeraldTemplateValues;

/* filters.c: {{field | filter(argument) | ...}} */
#define HERALD_MAX_FILTERS 8

typedef enum HeraldFilterOp
{
	HERALD_FILTER_NUMBER,
	HERALD_FILTER_PERCENT,
	HERALD_FILTER_TIME,
	HERALD_FILTER_TRUNCATE,
	HERALD_FILTER_UPPER,
	HERALD_FILTER_LOWER,
	HERALD_FILTER_DEFAULT
} HeraldFilterOp;

typedef struct HeraldFilter
{
	HeraldFilterOp op;
	const char *name;
	int			number;			/* decimals, characters */
	char	   *text;			/* a time format, a default; NULL for none */
} HeraldFilter;

typedef struct HeraldPlaceholder
{
	char	   *name;			/* the field: "value", "new.amount" */
	int			nfilters;
	HeraldFilter filters[HERALD_MAX_FILTERS];
} HeraldPlaceholder;

/* what a field holds, for the filters it takes */
typedef enum HeraldValueKind
{
	HERALD_VALUE_TEXT,
	HERALD_VALUE_NUMBER,
	HERALD_VALUE_TIME
} HeraldValueKind;

extern char *herald_timezone;
extern void herald_define_filter_settings(void);
extern bool herald_parse_placeholder(const char *inner, HeraldPlaceholder *ph, bool strict);
extern void herald_check_filters(const HeraldPlaceholder *ph, HeraldValueKind kind);
extern int	herald_filter_input_limit(const HeraldPlaceholder *ph, int room);
extern bool herald_apply_filters(const HeraldPlaceholder *ph, StringInfo value, bool cut,
								 const char *zone);

/* What ends a text that was cut: "… [truncated]" */
#define HERALD_TRUNCATED "\xE2\x80\xA6 [truncated]"

extern char *herald_render_template(const char *tmpl,
									const HeraldTemplateValues *values,
									int max_bytes, bool *cut);

/* A sparkline needs this many of the metric's recent values. */
#define HERALD_SPARKLINE_MIN_VALUES 3

extern char *herald_sparkline(Jsonb *data);

/*
 * One claimed delivery, copied out of the claiming transaction so that it
 * can be rendered and sent with no transaction open.
 */
typedef struct HeraldDelivery
{
	int64		id;
	bool		fresh;			/* read from the event log, not claimed from
								 * the queue: it has no queue row */
	int32		attempts;		/* attempts before this one, since the last
								 * redelivery */
	char	   *webhook_id;		/* stable across retries */
	int64		event_id;
	char	   *event_type;
	char	   *rule;			/* NULL for events without a rule */
	char	   *created_at;		/* ISO 8601, UTC */
	Jsonb	   *payload;
	char	   *message;		/* the rule's template, NULL for the default */
	Jsonb	   *messages;		/* the rule's templates per event type, or
								 * NULL: take precedence over message */
	int32		channel_id;
	char	   *channel;
	char	   *kind;
	char	   *target;
	char	   *secret;
	char	   *previous_secret;	/* still signing during a rotation, or NULL */
	char	  **headers;		/* "Name: value" lines */
	int			nheaders;
	char	  **recipients;		/* email: addresses */
	int			nrecipients;
	char	   *sender;			/* email: From address */
	char	   *subject;		/* email: subject template, NULL for the default */
	long		timeout_ms;
	double		retry_delay_ms;
	int32		max_attempts;
	int32		max_concurrency;	/* this worker's share of the channel's */
	double		rate_limit;		/* messages per second, 0 for none: this
								 * worker's share */
	int32		allowance;		/* what the claim allowed its channel */
	TimestampTz due_at;			/* next_attempt_at when it was claimed */
	bool		channel_enabled;
	Jsonb	   *actions;		/* [{"id", "label", "url"}] the message
								 * offers, or NULL (herald._actions()) */
	bool		interactive;	/* slack: buttons post to /slack/actions */
	char	   *response_url;	/* decision.recorded to the Slack channel
								 * whose message it updates: the URL that
								 * does, or NULL */
	Jsonb	   *about_payload;	/* with response_url: the payload of the
								 * event the message was about */
	char	   *rule_message;	/* with response_url: the rule's template */
	char	  **fact_columns;	/* row events: the columns shown as facts,
								 * in order (herald._fact_columns), or NULL */
	int			nfact_columns;
	Jsonb	   *rule_messages;	/* with response_url: its templates per type */
	char	   *timezone;		/* the channel's time zone, NULL for
								 * herald.timezone */
} HeraldDelivery;

/*
 * What a worker already uses of the channels it tracks: requests in flight
 * and, for rate-limited channels, the tokens left in its bucket.  The claim
 * turns this and each channel's current settings into an allowance;
 * channels not listed get their full allowance.
 */
typedef struct HeraldChannelUse
{
	int			n;
	Datum	   *channel_ids;
	Datum	   *in_flight;
	Datum	   *tokens;
	bool	   *tokens_null;	/* no bucket tracked: a full one */
	Datum	   *after_at;		/* claim only rows after this (next_attempt_at, */
	Datum	   *after_id;		/* id): the last one claimed */
	bool	   *after_null;		/* no mark: scan the channel from its start */
} HeraldChannelUse;

/*
 * The longest a delivery worker waits for a request or before a retry,
 * whatever a channel's timeout, retry_delay or a Retry-After ask: a day.
 * Within it, no lease or retry time can overflow a timestamp.
 */
#define HERALD_MAX_WAIT_MS 86400000

/* The result of one attempt, as queue.c records it. */
typedef struct HeraldOutcome
{
	int64		delivery_id;
	int64		event_id;
	bool		fresh;			/* its delivery has no queue row yet */
	const char *webhook_id;		/* the delivery's, as sent */
	int32		channel_id;
	const char *status;			/* "pending", "delivered" or "dead" */
	int32		http_status;	/* 0 when there was no response */
	char	   *error;			/* NULL on success */
	char	   *response;		/* excerpt of the response body, or NULL */
	double		latency_ms;
	TimestampTz started;
	double		retry_in_ms;	/* when status is "pending" */
	char	   *disable_reason; /* non-NULL: disable the channel */
	char	   *notify_channel; /* notify deliveries: pg_notify() this, */
	char	   *notify_payload; /* with this payload, when recorded */
} HeraldOutcome;

/* queue.c: called inside a transaction with SPI connected */
extern Oid	herald_installation(void);
extern char *herald_installed_version(void);
extern void herald_queue_release(int slot);
extern int	herald_queue_claim(int slot, int limit, HeraldChannelUse *caps,
							   MemoryContext cxt, HeraldDelivery **out);
extern long herald_queue_next_due(HeraldChannelUse *caps);
extern int	herald_queue_read_log(int slot, int workers, int limit, HeraldChannelUse *use,
								  MemoryContext cxt, HeraldDelivery **out, List **spilled,
								  bool *more);
extern void herald_queue_record(int slot, HeraldOutcome *outcomes, int n);
extern int64 herald_queue_purge(int limit);

/*
 * What a channel format builds from one delivery, for the transport to
 * send with no transaction open.  Everything is palloc'd in the current
 * memory context, except the curl lists, which the sender frees.
 */
typedef enum HeraldTransport
{
	HERALD_HTTP,				/* POST body to url with headers */
	HERALD_SMTP,				/* send body (an RFC 5322 message) to url */
	HERALD_NOTIFY,				/* pg_notify(url, body) in the worker */
	HERALD_NATS					/* JetStream publish of body with headers to
								 * subject, on the servers of url (nats.c) */
} HeraldTransport;

struct curl_slist;

typedef struct HeraldOutgoing
{
	HeraldTransport transport;
	char	   *url;			/* HTTP or SMTP URL; NOTIFY: the channel name */
	struct curl_slist *headers; /* HTTP headers */
	char	   *body;
	size_t		bodylen;
	char	   *mail_from;		/* SMTP envelope sender */
	struct curl_slist *rcpts;	/* SMTP envelope recipients */
	char	   *password;		/* SMTP login (user from the URL), or NULL;
								 * NATS: the credentials, or NULL */
	char	   *subject;		/* NATS: the rendered subject */
} HeraldOutgoing;

/*
 * format.c: the event model every format shares, and the dispatch.  All
 * strings are plain text (UTF-8 in the database encoding); each format
 * escapes them for its target.
 */
typedef struct HeraldFact
{
	const char *name;
	char	   *value;
} HeraldFact;

/* One action a message offers: a signed link (links.c). */
typedef struct HeraldAction
{
	char	   *id;				/* "acknowledge", "decide", "choice-N" */
	char	   *label;
	char	   *url;			/* http(s), {public_url}/d/{token} */
	char	   *token;			/* the URL's last path segment */
} HeraldAction;

#define HERALD_MAX_FACTS 10
#define HERALD_MAX_LINKS 5
#define HERALD_MAX_ACTIONS 10	/* a rule offers 1 to 10 choices */
#define HERALD_ACTION_URL_MAX 3000	/* Slack's limit for a button's URL */

extern int	herald_max_message_size;
extern void herald_define_format_settings(void);
extern int	herald_chars_bytes(int chars);
extern void herald_format(HeraldDelivery *d, HeraldOutgoing *out);
extern HeraldTemplateValues herald_template_values(HeraldDelivery *d);
extern char *herald_message(HeraldDelivery *d, int max_bytes, bool *cut);
extern char *herald_title(HeraldDelivery *d, int max_bytes);
extern char *herald_context_line(HeraldDelivery *d);
extern int	herald_facts(HeraldDelivery *d, HeraldFact *facts);
extern const char *herald_message_body(const char *title, const char *message);
extern char *herald_title_and_message(const char *title, const char *message,
									  const char *separator);
extern int	herald_links(const char *message, char **links);
extern int	herald_actions(HeraldDelivery *d, HeraldAction *actions);
extern void herald_append_actions_json(StringInfo buf, HeraldAction *actions, int n);
extern char *herald_utc_time(const char *iso, bool with_date);
extern void herald_about_delivery(HeraldDelivery *d, HeraldDelivery *about);
extern char *herald_thread_key(HeraldDelivery *d);
extern int64 herald_episode_event(HeraldDelivery *d);
extern char *herald_episode_webhook_id(HeraldDelivery *d);
extern char *herald_installation_id(void);
extern char *herald_format_webhook_id(const char *installation_id, int64 delivery_id);
extern char *herald_truncate(const char *text, int max_chars, const char *marker);
extern int	herald_char_length(const char *text);
extern const char *herald_entity(char c, bool quotes);
extern struct curl_slist *herald_append_header(struct curl_slist *list, const char *line);

/* webhook.c */
extern void herald_webhook_body(HeraldDelivery *d, StringInfo buf);
extern void herald_format_webhook(HeraldDelivery *d, HeraldOutgoing *out);

/* nats.c: the nats kind's renderer (its transport is in nats.c too) */
extern void herald_format_nats(HeraldDelivery *d, HeraldOutgoing *out);
extern void herald_check_nats_target(const char *target);

/* format_chat.c */
extern void herald_format_slack(HeraldDelivery *d, HeraldOutgoing *out);
extern void herald_format_teams(HeraldDelivery *d, HeraldOutgoing *out);
extern void herald_format_google_chat(HeraldDelivery *d, HeraldOutgoing *out);

/* format_email.c */
extern void herald_format_email(HeraldDelivery *d, HeraldOutgoing *out);

/* format.c */
extern void herald_format_notify(HeraldDelivery *d, HeraldOutgoing *out);

/*
 * channel_kinds.c: one entry per channel kind.  herald_format() sets out's
 * transport to the kind's, then render fills in the rest.  The transport
 * also fixes what the target is: an http(s) URL, an smtp(s) URL or a
 * notification channel name.
 */
typedef struct HeraldChannelKind
{
	const char *name;			/* herald.channel_defs.kind */
	void		(*render) (HeraldDelivery *d, HeraldOutgoing *out);
	HeraldTransport transport;	/* how what render built is sent */
} HeraldChannelKind;

extern const HeraldChannelKind *herald_channel_kind(const char *name);

/* network.c */
struct sockaddr;
extern void herald_define_network_settings(void);
extern bool herald_network_allowed(const struct sockaddr *sa, char *why, size_t whylen);

/* a copy of the policy, for threads that are not the worker's own */
typedef struct HeraldNetworkPolicy HeraldNetworkPolicy;
extern HeraldNetworkPolicy *herald_network_policy_copy(void);
extern bool herald_network_policy_allows(const HeraldNetworkPolicy *policy,
										 const struct sockaddr *sa,
										 char *why, size_t whylen);

/* delivery.c */
extern PGDLLEXPORT void herald_delivery_main(Datum arg);

/* scheduler.c */
extern int	herald_evaluation_slice;
extern int	herald_max_evaluators;
extern void herald_define_scheduler_settings(void);
extern PGDLLEXPORT void herald_scheduler_main(Datum arg);
extern PGDLLEXPORT void herald_evaluator_main(Datum arg);
extern void herald_cancel_evaluations(void);

#endif							/* PG_HERALD_H */
