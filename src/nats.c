/*-------------------------------------------------------------------------
 *
 * nats.c
 *		The nats channel kind: events published to NATS JetStream.
 *
 * A nats channel's target is nats://host:port[,host:port...]/SUBJECT (or
 * tls:// for TLS to every server: the certificates are verified, against
 * the first server's name, with the system's CAs and herald.ca_file's; a
 * server that requires TLS behind a nats:// target is refused), SUBJECT a
 * template such as orders.{{rule}}.{{type}}; its secret, when set, is
 * user:password, a token, or the content of a .creds file (a user JWT and
 * its nkey seed, for servers in operator mode: see "Credentials" below).
 * Each
 * delivery publishes the body of the webhook kind (webhook.c) with its
 * webhook-id and webhook-timestamp headers and Nats-Msg-Id = the webhook-id,
 * so that JetStream stores a repeated delivery once (within the stream's
 * duplicate window).  A delivery counts as delivered only when a stream
 * acknowledges it; no responders (no stream captures the subject), a
 * JetStream error, or no answer within the channel's timeout is a failed
 * attempt, retried per the channel's policy.
 *
 * How it runs.  The publish is a JetStream publish as the protocol defines
 * it: a message with a reply subject, which the stream answers with its
 * acknowledgement.  Each distinct (target, secret) has a link: one thread
 * of its own that resolves the servers' names, checks every address against
 * the network policy (a copy taken when the link was made: a reload makes
 * new links), connects through nats.c and publishes what the worker hands
 * it, each with the reply subject _INBOX.<random>.<token>.  The replies come
 * to one subscription of the link, in a thread of nats.c, which only puts
 * (token, outcome) on a list guarded by a pthread mutex and writes an
 * eventfd.  The worker's main thread waits on that eventfd in its
 * WaitEventSet with the HTTP sockets (http.c), takes the outcomes, and
 * fails the publishes whose acknowledgement is late.  So the worker never
 * blocks on a NATS server: neither on a name, a connection, a full socket
 * nor a reconnection.
 *
 * Threads: neither the links' threads nor nats.c's call any PostgreSQL
 * function (no palloc, no elog, no latch); they use malloc'd memory that
 * the worker hands over and never touches again, plus the results list.
 * They run with every signal blocked (the links' threads are started so,
 * and nats.c's inherit it), so that PostgreSQL's handlers only ever run in
 * the main thread.  The worker's own state (the links it knows, the
 * publishes waiting for an answer) is its main thread's alone.
 *
 * Credentials.  A .creds secret is parsed by parse_creds(), the same code
 * for the declaration's check (herald._check_nats_secret) and the worker.
 * The worker hands nats.c the JWT and signs the server's nonce itself
 * (ed25519 with OpenSSL's libcrypto, from the seed) through
 * natsOptions_SetUserCredentialsCallbacks: natsOptions_SetUserCredentials-
 * FromMemory is missing from Debian 12's libnats (3.4), and a file would
 * put the seed on disk.  The callbacks run in the link's thread or in
 * nats.c's reconnection thread, on the link's malloc'd copy of the JWT and
 * seed, which lives until the connection is closed and destroyed.  No
 * message, error or log line holds the secret or a part of it.
 *
 * Subjects.  The literal parts of the template are the administrator's,
 * checked at declaration (herald._check_target); each placeholder's value
 * comes from events, and so from rows and authors: it is cut to
 * NATS_VALUE_MAX bytes and every byte but ASCII letters, digits, '-' and '_'
 * becomes '_' (an empty value '_'), so that no value adds a token, a
 * wildcard, a space or a '$' system prefix.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>
#include <openssl/evp.h>

#include "fmgr.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pg_herald.h"
#include "http.h"

#define NATS_MAX_SERVERS 16
#define NATS_MAX_ADDRESSES 64	/* resolved addresses of one target */
#define NATS_SUBJECT_MAX 1024	/* bytes of a rendered subject */
#define NATS_VALUE_MAX 128		/* bytes of one placeholder's value in it */
#define NATS_ERROR_MAX 300
#define NATS_LINK_IDLE_MS 60000 /* an unused link is closed after this */
#define NATS_SECRET_MAX 4096	/* bytes of user:password or a token */
#define NATS_CREDS_MAX 16384	/* bytes of a .creds content */
#define NATS_SEED_CHARS 58		/* an nkey seed: 36 bytes in base32 */

PG_FUNCTION_INFO_V1(herald_check_nats_secret);

/* --- targets ---------------------------------------------------------------- */

typedef struct NatsTarget
{
	bool		tls;
	int			nservers;
	char		host[NATS_MAX_SERVERS][256];
	char		port[NATS_MAX_SERVERS][6];
	const char *subject;		/* the template, within the target */
} NatsTarget;

/* A character a subject's literal part may hold, besides '.' between tokens. */
static bool
subject_char(unsigned char c)
{
	return c > ' ' && c < 0x7f && c != '*' && c != '>' && c != '.';
}

/* A character a placeholder's value keeps; others become '_'. */
static bool
value_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '_';
}

/*
 * Parse a target; NULL when it is well formed, else what is wrong (and in
 * *hint how to write it).  Plain C on the text, for the declaration's check
 * and the worker alike.
 */
static const char *
parse_target(const char *target, NatsTarget *t, const char **hint)
{
	const char *p;
	const char *end;

	*hint = "Write nats://host:port/subject, several servers separated by commas (nats://h1:4222,h2:4222/orders.{{rule}}), or tls:// for TLS.";
	memset(t, 0, sizeof(*t));
	if (strncmp(target, "nats://", 7) == 0)
		p = target + 7;
	else if (strncmp(target, "tls://", 6) == 0)
	{
		t->tls = true;
		p = target + 6;
	}
	else
		return "the target of a nats channel must start with nats:// or tls://";
	end = strchr(p, '/');
	if (end == NULL || end[1] == '\0')
		return "the target of a nats channel needs a subject after its servers";
	if (memchr(p, '@', end - p) != NULL)
	{
		*hint = "Put user:password, a token or the content of a .creds file in the channel's secret.";
		return "the target of a nats channel cannot carry credentials";
	}
	while (p < end)
	{
		const char *comma = memchr(p, ',', end - p);
		const char *stop = comma ? comma : end;
		const char *host_end;
		const char *port = NULL;
		size_t		hostlen;

		if (t->nservers == NATS_MAX_SERVERS)
			return "the target of a nats channel names more than 16 servers";
		if (*p == '[')
		{
			host_end = memchr(p, ']', stop - p);
			if (host_end == NULL)
				return "malformed server address in the target of a nats channel";
			p++;
			hostlen = host_end - p;
			if (host_end + 1 < stop)
			{
				if (host_end[1] != ':')
					return "malformed server address in the target of a nats channel";
				port = host_end + 2;
			}
		}
		else
		{
			const char *colon = memchr(p, ':', stop - p);

			host_end = colon ? colon : stop;
			hostlen = host_end - p;
			if (colon)
				port = colon + 1;
		}
		if (hostlen == 0 || hostlen >= sizeof(t->host[0]))
			return "malformed server address in the target of a nats channel";
		for (size_t i = 0; i < hostlen; i++)
			if (!(value_char((unsigned char) p[i]) || p[i] == '.' || p[i] == ':'))
				return "malformed server address in the target of a nats channel";
		memcpy(t->host[t->nservers], p, hostlen);
		t->host[t->nservers][hostlen] = '\0';
		if (port)
		{
			long		n = 0;
			const char *q;

			if (port == stop || stop - port > 5)
				return "malformed server port in the target of a nats channel";
			for (q = port; q < stop; q++)
			{
				if (*q < '0' || *q > '9')
					return "malformed server port in the target of a nats channel";
				n = n * 10 + (*q - '0');
			}
			if (n < 1 || n > 65535)
				return "malformed server port in the target of a nats channel";
			snprintf(t->port[t->nservers], sizeof(t->port[0]), "%ld", n);
		}
		else
			strlcpy(t->port[t->nservers], "4222", sizeof(t->port[0]));
		t->nservers++;
		p = comma ? comma + 1 : end;
		if (comma && p == end)
			return "malformed server address in the target of a nats channel";
	}
	t->subject = end + 1;
	return NULL;
}

/*
 * Check a subject template: tokens separated by dots, none empty, each made
 * of printable ASCII but '*' and '>', or of placeholders ({{...}}, checked
 * for their names in SQL with the channel templates' rules).
 */
static bool
subject_template_valid(const char *tmpl)
{
	const char *p = tmpl;
	int			token_len = 0;

	if (strlen(tmpl) > NATS_SUBJECT_MAX)
		return false;
	while (*p)
	{
		if (p[0] == '{' && p[1] == '{')
		{
			const char *close = strstr(p + 2, "}}");

			if (close == NULL)
				return false;
			p = close + 2;
			token_len++;
		}
		else if (*p == '.')
		{
			if (token_len == 0)
				return false;
			token_len = 0;
			p++;
		}
		else if (subject_char((unsigned char) *p))
		{
			token_len++;
			p++;
		}
		else
			return false;
	}
	return token_len > 0;
}

/* herald._check_target() for a nats channel: errors unless well formed. */
void
herald_check_nats_target(const char *target)
{
	NatsTarget *t = palloc(sizeof(NatsTarget));
	const char *hint;
	const char *error = parse_target(target, t, &hint);

	if (error)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s", error),
				 errhint("%s", hint)));
	if (!subject_template_valid(t->subject))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid subject \"%s\" for a nats channel",
						herald_truncate(t->subject, 100, "...")),
				 errdetail("A subject is tokens separated by dots, of at most %d bytes: no empty token, no space, and no wildcard (* or >) in a subject that is published to.",
						   NATS_SUBJECT_MAX),
				 errhint("Placeholders such as {{rule}} and {{type}} may stand for tokens or parts of them.")));
	pfree(t);
}

/* --- credentials ---------------------------------------------------------------- */

#define CREDS_JWT_BEGIN "-----BEGIN NATS USER JWT-----"
#define CREDS_SEED_BEGIN "-----BEGIN USER NKEY SEED-----"
#define CREDS_HINT "Give the whole content of the user's .creds file: its user JWT between -----BEGIN NATS USER JWT----- and ------END NATS USER JWT------, then its nkey seed between -----BEGIN USER NKEY SEED----- and ------END USER NKEY SEED------ (nsc generate creds writes one)."

static bool
creds_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * The one word of a .creds block: after BEGIN (a marker line), up to the
 * line of dashes, END and NAME, dashes.  false when the block is missing
 * or holds anything else.
 */
static bool
creds_block(const char *secret, const char *begin, const char *name,
			const char **word, size_t *len)
{
	const char *p = strstr(secret, begin);
	const char *q;
	int			dashes = 0;

	if (p == NULL)
		return false;
	p += strlen(begin);
	while (creds_space(*p))
		p++;
	q = p;
	while (*q && !creds_space(*q))
		q++;
	*word = p;
	*len = q - p;
	while (creds_space(*q))
		q++;
	for (; *q == '-'; q++)
		dashes++;
	if (*len == 0 || dashes < 3 || strncmp(q, "END ", 4) != 0 ||
		strncmp(q + 4, name, strlen(name)) != 0)
		return false;
	q += 4 + strlen(name);
	dashes = 0;
	for (; *q == '-'; q++)
		dashes++;
	return dashes >= 3;
}

/* CRC-16/XMODEM, the checksum of an nkey (polynomial 0x1021, from 0). */
static uint16
nkey_crc16(const unsigned char *data, size_t len)
{
	uint16		crc = 0;

	for (size_t i = 0; i < len; i++)
	{
		crc ^= (uint16) data[i] << 8;
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16) ((crc << 1) ^ 0x1021) : (uint16) (crc << 1);
	}
	return crc;
}

/*
 * Decode an nkey seed (base32 of 2 prefix bytes, the 32-byte ed25519 seed
 * and the CRC-16 of those, little endian) into raw[36]; false when a
 * character is not base32 or the checksum is wrong.
 */
static bool
nkey_decode_seed(const char *text, unsigned char raw[36])
{
	uint32		bits = 0;
	int			nbits = 0;
	int			n = 0;
	uint16		crc;

	for (int i = 0; i < NATS_SEED_CHARS; i++)
	{
		char		c = text[i];
		int			v;

		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= '2' && c <= '7')
			v = c - '2' + 26;
		else
			return false;
		bits = (bits << 5) | v;
		nbits += 5;
		if (nbits >= 8)
		{
			nbits -= 8;
			if (n == 36)
				return false;
			raw[n++] = (unsigned char) (bits >> nbits);
		}
	}
	if (n != 36)
		return false;
	crc = (uint16) (raw[34] | (raw[35] << 8));
	return crc == nkey_crc16(raw, 34);
}

/*
 * Parse a .creds content: the JWT (a pointer into secret and its length)
 * and the 32 bytes of the user's ed25519 seed.  NULL when it is well
 * formed, else what is wrong (never a part of the secret).  Plain C, for
 * the declaration and the worker alike.
 */
static const char *
parse_creds(const char *secret, const char **jwt, size_t *jwtlen,
			unsigned char seed[32])
{
	const char *word;
	size_t		len;
	int			dots = 0;
	bool		empty_part = false;
	size_t		part = 0;
	unsigned char raw[36];

	if (!creds_block(secret, CREDS_JWT_BEGIN, "NATS USER JWT", &word, &len))
		return "the .creds secret of a nats channel has no well-formed user JWT block";
	for (size_t i = 0; i < len; i++)
	{
		char		c = word[i];

		if (c == '.')
		{
			empty_part |= part == 0;
			part = 0;
			dots++;
		}
		else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				 (c >= '0' && c <= '9') || c == '-' || c == '_')
			part++;
		else
			return "the user JWT in the .creds secret of a nats channel is not three base64url parts separated by dots";
	}
	if (dots != 2 || empty_part || part == 0)
		return "the user JWT in the .creds secret of a nats channel is not three base64url parts separated by dots";
	*jwt = word;
	*jwtlen = len;

	if (!creds_block(secret, CREDS_SEED_BEGIN, "USER NKEY SEED", &word, &len))
		return "the .creds secret of a nats channel has no well-formed user nkey seed block";
	if (len < 2 || word[0] != 'S' || word[1] != 'U')
		return "the nkey seed in the .creds secret of a nats channel is not a user seed (SU...)";
	if (len != NATS_SEED_CHARS || !nkey_decode_seed(word, raw))
	{
		explicit_bzero(raw, sizeof(raw));
		return "the nkey seed in the .creds secret of a nats channel is corrupt (not 58 base32 characters with a valid checksum)";
	}
	memcpy(seed, raw + 2, 32);
	explicit_bzero(raw, sizeof(raw));
	return NULL;
}

/*
 * herald._check_nats_secret(secret text): error unless the secret of a
 * nats channel is user:password or a token on one line, or a .creds
 * content.  No message quotes the secret, and the failing statement (which
 * holds it) is kept out of the server log.
 */
Datum
herald_check_nats_secret(PG_FUNCTION_ARGS)
{
	text	   *arg = PG_GETARG_TEXT_PP(0);
	char	   *secret = text_to_cstring(arg);
	size_t		len = strlen(secret);

	if (strstr(secret, CREDS_JWT_BEGIN) != NULL || strstr(secret, CREDS_SEED_BEGIN) != NULL)
	{
		const char *jwt;
		size_t		jwtlen;
		unsigned char seed[32];
		const char *error;

		if (len > NATS_CREDS_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the .creds secret of a nats channel is longer than %d bytes",
							NATS_CREDS_MAX),
					 errhidestmt(true)));
		error = parse_creds(secret, &jwt, &jwtlen, seed);
		explicit_bzero(seed, sizeof(seed));
		explicit_bzero(secret, len);
		if (error)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s", error),
					 errhint("%s", CREDS_HINT),
					 errhidestmt(true)));
		PG_RETURN_VOID();
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) secret[i] < ' ' || secret[i] == 0x7f)
		{
			len = 0;
			break;
		}
	explicit_bzero(secret, strlen(secret));
	if (len == 0 || len > NATS_SECRET_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the secret of a nats channel is user:password or a token, on one line"),
				 errdetail("A secret with a colon is a user name and its password; one without is a token; either of at most %d bytes.",
						   NATS_SECRET_MAX),
				 errhint("For a server in operator mode, give the content of the user's .creds file."),
				 errhidestmt(true)));
	PG_RETURN_VOID();
}

/* --- rendering ---------------------------------------------------------------- */

/* The delivery's subject: the template with each value sanitized. */
static char *
render_subject(HeraldDelivery *d, const char *tmpl)
{
	HeraldTemplateValues values = herald_template_values(d);
	StringInfoData buf;
	const char *p = tmpl;

	initStringInfo(&buf);
	while (*p)
	{
		if (p[0] == '{' && p[1] == '{')
		{
			const char *close = strstr(p + 2, "}}");
			char	   *one;
			char	   *value;
			size_t		len;

			if (close == NULL)
				elog(ERROR, "unterminated placeholder in a checked subject");
			one = pnstrdup(p, close + 2 - p);
			value = herald_render_template(one, &values, NATS_VALUE_MAX, NULL);
			len = Min(strlen(value), NATS_VALUE_MAX);
			if (len == 0)
				appendStringInfoChar(&buf, '_');
			for (size_t i = 0; i < len; i++)
				appendStringInfoChar(&buf, value_char((unsigned char) value[i]) ?
									 value[i] : '_');
			pfree(one);
			pfree(value);
			p = close + 2;
		}
		else
			appendStringInfoChar(&buf, *p++);
	}
	if (buf.len > NATS_SUBJECT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the rendered subject is longer than %d bytes", NATS_SUBJECT_MAX)));
	return buf.data;
}

/*
 * The nats kind's renderer: the webhook body, the webhook-id and
 * webhook-timestamp headers, Nats-Msg-Id, the channel's headers.  No
 * webhook-signature: the channel's secret is the broker's credentials, and
 * the broker authenticates the publisher.
 */
void
herald_format_nats(HeraldDelivery *d, HeraldOutgoing *out)
{
	StringInfoData body;
	NatsTarget *t = palloc(sizeof(NatsTarget));
	const char *hint;
	struct curl_slist *headers = NULL;

	if (parse_target(d->target, t, &hint) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("channel \"%s\" has a malformed target", d->channel)));
	out->subject = render_subject(d, t->subject);
	herald_webhook_body(d, &body);
	headers = herald_append_header(headers, "Content-Type: application/json");
	for (int i = 0; i < d->nheaders; i++)
		headers = herald_append_header(headers, d->headers[i]);
	headers = herald_append_header(headers, psprintf("webhook-id: %s", d->webhook_id));
	headers = herald_append_header(headers, psprintf("webhook-timestamp: " INT64_FORMAT,
													 (int64) time(NULL)));
	headers = herald_append_header(headers, psprintf("Nats-Msg-Id: %s", d->webhook_id));
	out->url = pstrdup(d->target);
	out->password = d->secret ? pstrdup(d->secret) : NULL;
	out->headers = headers;
	out->body = body.data;
	out->bodylen = body.len;
	pfree(t);
}

/* --- what the threads share ------------------------------------------------------ */

typedef enum NatsResultKind
{
	PUB_ACKED,					/* a stream stored it */
	PUB_NO_RESPONDERS,			/* no stream captures the subject */
	PUB_FAILED,				/* anything else: retried */
	PUB_DENIED					/* the network policy refused a server */
} NatsResultKind;

typedef struct NatsResult
{
	struct NatsResult *next;
	uint64		token;
	NatsResultKind kind;
	char		text[NATS_ERROR_MAX];	/* the error, or the acknowledgement */
} NatsResult;

/* guarded by results_lock; wake_fd is written after each addition */
static pthread_mutex_t results_lock = PTHREAD_MUTEX_INITIALIZER;
static NatsResult *results_head = NULL;
static NatsResult *results_tail = NULL;
static int	wake_fd = -1;

static pthread_once_t nats_once = PTHREAD_ONCE_INIT;
static natsStatus nats_open_status = NATS_OK;

/* Hand an outcome to the worker's main thread.  Any thread. */
static void
post_result(uint64 token, NatsResultKind kind, const char *text)
{
	NatsResult *r = malloc(sizeof(NatsResult));
	uint64		one = 1;

	if (r == NULL)
		return;					/* the publish times out instead */
	r->next = NULL;
	r->token = token;
	r->kind = kind;
	strlcpy(r->text, text ? text : "", sizeof(r->text));
	pthread_mutex_lock(&results_lock);
	if (results_tail)
		results_tail->next = r;
	else
		results_head = r;
	results_tail = r;
	pthread_mutex_unlock(&results_lock);
	if (write(wake_fd, &one, sizeof(one)) < 0)
	{
		/* the counter is full: the worker is awake anyway */
	}
}

/* One publish, handed from the worker to a link's thread (malloc'd). */
typedef struct NatsPub
{
	struct NatsPub *next;
	uint64		token;
	char	   *subject;
	int			nheaders;
	char	  **keys;
	char	  **values;
	char	   *body;
	int			bodylen;
	int64		due_us;			/* CLOCK_MONOTONIC: past this its wait is
								 * over, and it is not sent any more */
} NatsPub;

static int64
monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
free_pub(NatsPub *pub)
{
	for (int i = 0; i < pub->nheaders; i++)
	{
		free(pub->keys[i]);
		free(pub->values[i]);
	}
	free(pub->keys);
	free(pub->values);
	free(pub->subject);
	free(pub->body);
	free(pub);
}

/*
 * A connection to the servers of one target with one secret, and its
 * thread.  The fields above "lock" are the main thread's; the settings
 * below it are written before the thread starts and then read by it only;
 * queue and closing are guarded by lock.  Once closing is set the main
 * thread forgets the link, and its thread frees it.
 */
typedef struct NatsLink
{
	/* the worker's main thread */
	struct NatsLink *next;
	char	   *target;
	char	   *secret;			/* "" for none */
	bool		stale;			/* made before a reload: no new publishes */
	TimestampTz last_used;
	dlist_head	waiting;		/* NatsWait, oldest first */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	NatsPub    *queue_head;
	NatsPub    *queue_tail;
	bool		closing;

	/* the link's thread */
	NatsTarget	t;
	char	   *user;
	char	   *password;
	char	   *token;
	char	   *jwt;			/* a .creds secret's user JWT */
	unsigned char *seed;		/* and its 32-byte ed25519 seed */
	long		connect_timeout_ms;
	char	   *ca_file;		/* herald.ca_file when the link was made */
	HeraldNetworkPolicy *policy;
	char		inbox[64];		/* the reply subjects' prefix */
	natsConnection *conn;
	natsSubscription *sub;
} NatsLink;

/* --- the links' threads ---------------------------------------------------------- */

static void
open_nats(void)
{
	nats_open_status = nats_Open(-1);
}

/* nats.c's text for a failure: its status and its last error. */
static void
nats_error(char *buf, size_t len, const char *what, natsStatus s)
{
	const char *last = nats_GetLastError(NULL);

	/* nats.c prefixes where it failed, "(conn.c:733): ": not the reader's */
	if (last && last[0] == '(')
	{
		const char *close = strstr(last, "): ");

		if (close && close - last < 40)
			last = close + 3;
	}
	if (last && last[0] && strcmp(last, natsStatus_GetText(s)) != 0)
		snprintf(buf, len, "%s: %s (%s)", what, natsStatus_GetText(s), last);
	else
		snprintf(buf, len, "%s: %s", what, natsStatus_GetText(s));
}

/* Find "key": in a JSON text; the position after the colon, or NULL. */
static const char *
json_key(const char *json, const char *key)
{
	char		pattern[40];
	const char *p;

	snprintf(pattern, sizeof(pattern), "\"%s\"", key);
	p = strstr(json, pattern);
	if (p == NULL)
		return NULL;
	p += strlen(pattern);
	while (*p == ' ')
		p++;
	return *p == ':' ? p + 1 : NULL;
}

/*
 * A reply to one of the link's publishes, in a thread of nats.c: the
 * stream's acknowledgement ({"stream": ..., "seq": ...}), its error
 * ({"error": {"code": ..., "description": ...}}), or no responders.
 */
static void
on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	const char *subject = natsMsg_GetSubject(msg);
	const char *dot = subject ? strrchr(subject, '.') : NULL;
	uint64		token = dot ? strtoull(dot + 1, NULL, 10) : 0;
	char		json[1024];
	int			len = natsMsg_GetDataLength(msg);
	const char *p;

	if (token == 0)
	{
		natsMsg_Destroy(msg);
		return;
	}
	if (natsMsg_IsNoResponders(msg))
	{
		post_result(token, PUB_NO_RESPONDERS, NULL);
		natsMsg_Destroy(msg);
		return;
	}
	len = Min(len, (int) sizeof(json) - 1);
	memcpy(json, natsMsg_GetData(msg) ? natsMsg_GetData(msg) : "", len);
	json[len] = '\0';
	for (int i = 0; i < len; i++)
		if ((unsigned char) json[i] < ' ')
			json[i] = ' ';
	natsMsg_Destroy(msg);

	if ((p = json_key(json, "error")) != NULL)
	{
		char		text[NATS_ERROR_MAX];
		const char *desc = json_key(p, "description");
		const char *code = json_key(p, "code");
		char		description[200] = "no description";

		if (desc)
		{
			size_t		n = 0;

			while (*desc == ' ')
				desc++;
			if (*desc == '"')
				desc++;
			while (desc[n] && desc[n] != '"' && n < sizeof(description) - 1)
				n++;
			memcpy(description, desc, n);
			description[n] = '\0';
		}
		snprintf(text, sizeof(text), "JetStream refused the message: %s (code %ld)",
				 description, code ? strtol(code, NULL, 10) : 0L);
		post_result(token, PUB_FAILED, text);
	}
	else if (json_key(json, "seq") != NULL && json_key(json, "stream") != NULL)
		post_result(token, PUB_ACKED, json);
	else
	{
		char		text[NATS_ERROR_MAX];

		snprintf(text, sizeof(text),
				 "the reply to the publish is no JetStream acknowledgement: \"%.120s\"", json);
		post_result(token, PUB_FAILED, text);
	}
}

/*
 * The user JWT of a .creds secret, for nats.c at each (re)connection: a
 * copy, which nats.c frees.  Any thread: no PostgreSQL function.
 */
static natsStatus
creds_jwt(char **jwt, char **error, void *closure)
{
	NatsLink   *link = closure;

	*jwt = strdup(link->jwt);
	return *jwt ? NATS_OK : NATS_NO_MEMORY;
}

/*
 * Sign the server's nonce with the seed of a .creds secret: ed25519, 64
 * bytes malloc'd, which nats.c frees (and sends in base64url).  Any
 * thread: no PostgreSQL function, and the key is wiped by OpenSSL when it
 * is freed.
 */
static natsStatus
creds_sign(char **error, unsigned char **signature, int *length,
		   const char *nonce, void *closure)
{
	NatsLink   *link = closure;
	EVP_PKEY   *key;
	EVP_MD_CTX *ctx = NULL;
	unsigned char *sig = malloc(64);
	size_t		siglen = 64;
	bool		ok = false;

	key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, link->seed, 32);
	if (key && sig)
		ctx = EVP_MD_CTX_new();
	if (ctx &&
		EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1 &&
		EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *) nonce,
					   strlen(nonce)) == 1 && siglen == 64)
		ok = true;
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(key);
	if (!ok)
	{
		free(sig);
		*error = strdup("could not sign the server's nonce with the nkey seed of the .creds secret");
		return NATS_ERR;
	}
	*signature = sig;
	*length = 64;
	return NATS_OK;
}

/*
 * Resolve every server, check every address against the policy, connect to
 * the addresses, subscribe to the replies.  false with the reason in err
 * (*denied when the policy refused an address).
 */
static bool
link_connect(NatsLink *link, char *err, size_t errlen, bool *denied)
{
	char	   *urls[NATS_MAX_ADDRESSES];
	int			nurls = 0;
	natsOptions *opts = NULL;
	natsStatus	s;
	char		subject[80];
	bool		ok = false;

	*denied = false;
	pthread_once(&nats_once, open_nats);
	if (nats_open_status != NATS_OK)
	{
		nats_error(err, errlen, "could not initialize the NATS client", nats_open_status);
		return false;
	}
	for (int i = 0; i < link->t.nservers; i++)
	{
		struct addrinfo hints;
		struct addrinfo *res = NULL;
		int			rc;

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		rc = getaddrinfo(link->t.host[i], link->t.port[i], &hints, &res);
		if (rc != 0)
		{
			snprintf(err, errlen, "could not resolve NATS server \"%s\": %s",
					 link->t.host[i], gai_strerror(rc));
			goto done;
		}
		for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
		{
			char		text[INET6_ADDRSTRLEN];
			const void *addr;
			char		url[INET6_ADDRSTRLEN + 20];

			if (!herald_network_policy_allows(link->policy, ai->ai_addr, err, errlen))
			{
				*denied = true;
				freeaddrinfo(res);
				goto done;
			}
			if (nurls == NATS_MAX_ADDRESSES)
				continue;
			addr = ai->ai_family == AF_INET ?
				(const void *) &((struct sockaddr_in *) ai->ai_addr)->sin_addr :
				(const void *) &((struct sockaddr_in6 *) ai->ai_addr)->sin6_addr;
			if (inet_ntop(ai->ai_family, addr, text, sizeof(text)) == NULL)
				continue;
			snprintf(url, sizeof(url), ai->ai_family == AF_INET6 ? "nats://[%s]:%s" : "nats://%s:%s",
					 text, link->t.port[i]);
			urls[nurls] = strdup(url);
			if (urls[nurls])
				nurls++;
		}
		freeaddrinfo(res);
	}
	if (nurls == 0)
	{
		snprintf(err, errlen, "no address found for the NATS servers");
		goto done;
	}

	s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetServers(opts, (const char **) urls, nurls);
	/* servers the cluster announces are not checked by the policy */
	if (s == NATS_OK)
		s = natsOptions_SetIgnoreDiscoveredServers(opts, true);
	if (s == NATS_OK)
		s = natsOptions_SetName(opts, "pg_herald " PG_HERALD_VERSION);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(opts, link->connect_timeout_ms);
	if (s == NATS_OK)
		s = natsOptions_SetAllowReconnect(opts, true);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(opts, 100);
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(opts, 5000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(opts, 2);
	if (s == NATS_OK && link->t.tls)
	{
		/*
		 * The URLs hold addresses: every server's certificate is verified
		 * against the first server's name (one name for a cluster, or a
		 * certificate for every name), and against the system's CAs and
		 * those of herald.ca_file
		 */
		s = natsOptions_SetSecure(opts, true);
		if (s == NATS_OK)
			s = natsOptions_SetExpectedHostname(opts, link->t.host[0]);
		if (s == NATS_OK && link->ca_file[0] != '\0')
		{
			int			fd = open(link->ca_file, O_RDONLY | O_CLOEXEC);
			char		buf[100];

			if (fd < 0)
			{
				/* pg_strerror_r: thread-safe, and may return a constant */
				const char *why = strerror_r(errno, buf, sizeof(buf));

				snprintf(err, errlen, "could not open herald.ca_file \"%s\": %s",
						 link->ca_file, why);
				goto done;
			}
			close(fd);
			s = natsOptions_LoadCATrustedCertificates(opts, link->ca_file);
			if (s != NATS_OK)
			{
				nats_error(err, errlen, "could not load the CA certificates of herald.ca_file", s);
				goto done;
			}
		}
	}
	else if (s == NATS_OK)
	{
		/*
		 * nats:// is plain text.  nats.c switches to TLS by itself when a
		 * server requires it, verifying no host name: a name no certificate
		 * may hold (.invalid is reserved) makes that fail, reported below
		 */
		s = natsOptions_SetExpectedHostname(opts, "plain-nats-target.invalid");
	}
	if (s == NATS_OK && link->user)
		s = natsOptions_SetUserInfo(opts, link->user, link->password);
	if (s == NATS_OK && link->token)
		s = natsOptions_SetToken(opts, link->token);
	if (s == NATS_OK && link->jwt)
		s = natsOptions_SetUserCredentialsCallbacks(opts, creds_jwt, link,
													creds_sign, link);
	if (s != NATS_OK)
	{
		nats_error(err, errlen, "could not set up the NATS connection", s);
		goto done;
	}
	s = natsConnection_Connect(&link->conn, opts);
	if (s != NATS_OK)
	{
		link->conn = NULL;
		if (!link->t.tls && s == NATS_SSL_ERROR)
			snprintf(err, errlen,
					 "could not connect to NATS: the server requires TLS, and the target is nats:// (write tls:// for TLS)");
		else if (link->t.tls && s == NATS_SECURE_CONNECTION_WANTED)
			snprintf(err, errlen,
					 "could not connect to NATS: the server does not offer TLS, and the target is tls://");
		else
			nats_error(err, errlen, "could not connect to NATS", s);
		goto done;
	}
	snprintf(subject, sizeof(subject), "%s.*", link->inbox);
	s = natsConnection_Subscribe(&link->sub, link->conn, subject, on_reply, NULL);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(link->sub, -1, -1);
	if (s != NATS_OK)
	{
		nats_error(err, errlen, "could not subscribe to the acknowledgements", s);
		if (link->sub)
			natsSubscription_Destroy(link->sub);
		link->sub = NULL;
		natsConnection_Destroy(link->conn);
		link->conn = NULL;
		goto done;
	}
	ok = true;
done:
	if (opts)
		natsOptions_Destroy(opts);
	for (int i = 0; i < nurls; i++)
		free(urls[i]);
	return ok;
}

static void
link_disconnect(NatsLink *link)
{
	if (link->sub)
		natsSubscription_Destroy(link->sub);
	link->sub = NULL;
	if (link->conn)
	{
		natsConnection_Close(link->conn);
		natsConnection_Destroy(link->conn);
	}
	link->conn = NULL;
}

/* Publish one message with its reply subject; false with the reason. */
static bool
publish(NatsLink *link, NatsPub *pub, char *err, size_t errlen)
{
	natsMsg    *msg = NULL;
	char		reply[100];
	natsStatus	s;

	snprintf(reply, sizeof(reply), "%s.%llu", link->inbox, (unsigned long long) pub->token);
	s = natsMsg_Create(&msg, pub->subject, reply, pub->body, pub->bodylen);
	for (int i = 0; s == NATS_OK && i < pub->nheaders; i++)
		s = natsMsgHeader_Add(msg, pub->keys[i], pub->values[i]);
	if (s == NATS_OK)
		s = natsConnection_PublishMsg(link->conn, msg);
	if (msg)
		natsMsg_Destroy(msg);
	if (s != NATS_OK)
	{
		nats_error(err, errlen, "could not publish to NATS", s);
		return false;
	}
	return true;
}

/* free() of a string that held a part of a secret, wiped first */
static void
free_secret(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

static void
free_link(NatsLink *link)
{
	free(link->target);
	free_secret(link->secret);
	free(link->user);
	free_secret(link->password);
	free_secret(link->token);
	free_secret(link->jwt);
	if (link->seed)
		explicit_bzero(link->seed, 32);
	free(link->seed);
	free(link->ca_file);
	free(link->policy);
	pthread_mutex_destroy(&link->lock);
	pthread_cond_destroy(&link->cond);
	free(link);
}

/* A link's thread: publish what the worker queues, until it closes the link. */
static void *
link_main(void *arg)
{
	NatsLink   *link = arg;

	for (;;)
	{
		NatsPub    *batch;
		bool		closing;
		char		err[NATS_ERROR_MAX];
		bool		denied = false;
		bool		connected;

		pthread_mutex_lock(&link->lock);
		while (link->queue_head == NULL && !link->closing)
			pthread_cond_wait(&link->cond, &link->lock);
		batch = link->queue_head;
		link->queue_head = link->queue_tail = NULL;
		closing = link->closing;
		pthread_mutex_unlock(&link->lock);

		if (closing)
		{
			while (batch)
			{
				NatsPub    *next = batch->next;

				post_result(batch->token, PUB_FAILED, "the NATS connection was closed");
				free_pub(batch);
				batch = next;
			}
			break;
		}

		/* a connection nats.c gave up on is made again */
		if (link->conn && natsConnection_IsClosed(link->conn))
			link_disconnect(link);
		connected = link->conn != NULL || link_connect(link, err, sizeof(err), &denied);
		while (batch)
		{
			NatsPub    *next = batch->next;

			if (monotonic_us() > batch->due_us)
			{
				/* the worker has counted it late (a slow connect): a retry follows */
			}
			else if (!connected)
				post_result(batch->token, denied ? PUB_DENIED : PUB_FAILED, err);
			else if (natsConnection_IsReconnecting(link->conn))
			{
				/*
				 * nats.c would buffer it until a server is back; a retry
				 * later does as well, and says why meanwhile
				 */
				post_result(batch->token, PUB_FAILED,
							"not connected to NATS: the connection was lost and is being made again");
			}
			else if (!publish(link, batch, err, sizeof(err)))
				post_result(batch->token, PUB_FAILED, err);
			free_pub(batch);
			batch = next;
		}
	}
	link_disconnect(link);
	free_link(link);
	return NULL;
}

/* --- the worker's main thread ------------------------------------------------------ */

/* A publish that waits for its acknowledgement. */
typedef struct NatsWait
{
	uint64		token;			/* hash key */
	HeraldRequest *req;
	NatsLink   *link;
	char	   *subject;
	TimestampTz deadline;
	dlist_node	node;			/* in link->waiting */
} NatsWait;

static MemoryContext nats_context = NULL;
static HTAB *waits = NULL;
static NatsLink *links = NULL;
static uint64 last_token = 0;

/* Set up the main thread's side; false with errno when the eventfd fails. */
static bool
nats_init(void)
{
	HASHCTL		ctl;

	if (waits != NULL)
		return true;
	wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (wake_fd < 0)
		return false;
	nats_context = AllocSetContextCreate(TopMemoryContext, "pg_herald nats",
										 ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(NatsWait);
	ctl.hcxt = nats_context;
	waits = hash_create("pg_herald nats publishes", 1024, &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	herald_http_wait_set_changed();
	return true;
}

/* The eventfd the worker waits on, -1 before the first nats delivery. */
int
herald_nats_wait_fd(void)
{
	return waits ? wake_fd : -1;
}

static char *
strdup_or_null(const char *s, size_t n, bool *oom)
{
	char	   *copy = malloc(n + 1);

	if (copy == NULL)
	{
		*oom = true;
		return NULL;
	}
	memcpy(copy, s, n);
	copy[n] = '\0';
	return copy;
}

/*
 * The credentials of a secret: a .creds content (herald._check_nats_secret
 * checked it at declaration), user:password, or a token.
 */
static bool
parse_secret(NatsLink *link, const char *secret, bool *oom)
{
	if (secret[0] == '\0')
		return true;
	if (strstr(secret, CREDS_JWT_BEGIN) || strstr(secret, CREDS_SEED_BEGIN))
	{
		const char *jwt;
		size_t		jwtlen;
		unsigned char seed[32];

		if (parse_creds(secret, &jwt, &jwtlen, seed) != NULL)
		{
			explicit_bzero(seed, sizeof(seed));
			return false;
		}
		link->jwt = strdup_or_null(jwt, jwtlen, oom);
		link->seed = malloc(32);
		if (link->seed)
			memcpy(link->seed, seed, 32);
		else
			*oom = true;
		explicit_bzero(seed, sizeof(seed));
	}
	else
	{
		const char *colon = strchr(secret, ':');

		if (colon)
		{
			link->user = strdup_or_null(secret, colon - secret, oom);
			link->password = strdup_or_null(colon + 1, strlen(colon + 1), oom);
		}
		else
			link->token = strdup_or_null(secret, strlen(secret), oom);
	}
	return !*oom;
}

/* A new link and its thread, started with every signal blocked; NULL on failure. */
static NatsLink *
make_link(const char *target, const char *secret, long timeout_ms, char *err, size_t errlen)
{
	NatsLink   *link = calloc(1, sizeof(NatsLink));
	const char *hint;
	bool		oom = false;
	sigset_t	all;
	sigset_t	old;
	pthread_t	thread;
	pthread_attr_t attr;
	int			rc;

	if (link == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (parse_target(target, &link->t, &hint) != NULL)
	{
		snprintf(err, errlen, "the channel's target is malformed");
		free(link);
		return NULL;
	}
	pthread_mutex_init(&link->lock, NULL);
	pthread_cond_init(&link->cond, NULL);
	link->target = strdup_or_null(target, strlen(target), &oom);
	link->secret = strdup_or_null(secret, strlen(secret), &oom);
	link->ca_file = strdup_or_null(herald_ca_file ? herald_ca_file : "",
								   herald_ca_file ? strlen(herald_ca_file) : 0, &oom);
	link->policy = herald_network_policy_copy();
	if (oom || link->policy == NULL || !parse_secret(link, secret, &oom))
	{
		snprintf(err, errlen, oom || link->policy == NULL ? "out of memory" :
				 "the channel's secret is malformed (neither user:password, a token nor a .creds content)");
		link->t.subject = NULL;
		free_link(link);
		return NULL;
	}
	link->connect_timeout_ms = Max(100, Min(timeout_ms, 10000));

	/*
	 * An acknowledgement is whatever comes to the reply subject: one nobody
	 * can guess, so that another client cannot answer in the stream's name
	 * (the account's permissions on _INBOX.> do the rest)
	 */
	{
		uint64		r[2] = {0, 0};

		if (!pg_strong_random(r, sizeof(r)))
		{
			snprintf(err, errlen, "could not generate random numbers");
			free_link(link);
			return NULL;
		}
		snprintf(link->inbox, sizeof(link->inbox), "_INBOX.pg_herald.%016llx%016llx",
				 (unsigned long long) r[0], (unsigned long long) r[1]);
	}
	dlist_init(&link->waiting);

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&thread, &attr, link_main, link);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
	{
		snprintf(err, errlen, "could not start a thread for the NATS connection: %s",
				 strerror(rc));
		free_link(link);
		return NULL;
	}
	link->next = links;
	links = link;
	return link;
}

/* Ask a link's thread to end; the main thread forgets it. */
static void
close_link(NatsLink *link)
{
	NatsLink  **p;

	Assert(dlist_is_empty(&link->waiting));
	for (p = &links; *p; p = &(*p)->next)
		if (*p == link)
		{
			*p = link->next;
			break;
		}
	pthread_mutex_lock(&link->lock);
	link->closing = true;
	pthread_cond_signal(&link->cond);
	pthread_mutex_unlock(&link->lock);
}

/* Complete a request: the outcome, then back to http.c's completed list. */
static void
finish(NatsWait *w, NatsResultKind kind, const char *text)
{
	HeraldRequest *req = w->req;
	TimestampTz now = GetCurrentTimestamp();

	req->latency_ms = (now - req->started) / 1000.0;
	switch (kind)
	{
		case PUB_ACKED:
			req->result = CURLE_OK;
			appendStringInfoString(&req->response, text);
			req->response_bytes = req->response.len;
			break;
		case PUB_NO_RESPONDERS:
			req->result = CURLE_SEND_ERROR;
			snprintf(req->errbuf, sizeof(req->errbuf),
					 "no JetStream stream stores subject \"%s\" (the server answered 503, no responders)",
					 w->subject);
			break;
		case PUB_DENIED:
			req->result = CURLE_COULDNT_CONNECT;
			strlcpy(req->denied, text, sizeof(req->denied));
			strlcpy(req->errbuf, text, sizeof(req->errbuf));
			break;
		case PUB_FAILED:
			req->result = CURLE_SEND_ERROR;
			strlcpy(req->errbuf, text, sizeof(req->errbuf));
			break;
	}
	dlist_delete(&w->node);
	w->link->last_used = now;
	pfree(w->subject);
	hash_search(waits, &w->token, HASH_REMOVE, NULL);
	herald_http_finish(req);
}

/* Fail a request that could not even be handed to a link. */
static void
fail_now(HeraldRequest *req, const char *text)
{
	req->result = CURLE_SEND_ERROR;
	strlcpy(req->errbuf, text, sizeof(req->errbuf));
	herald_http_finish(req);
}

/*
 * Hand one publish to the link of its target and secret (made on first use)
 * and note the time its acknowledgement is due.  Called by
 * herald_http_start() once req counts in flight; takes out's headers.
 */
void
herald_nats_start(HeraldRequest *req, HeraldOutgoing *out, long timeout_ms)
{
	const char *secret = out->password ? out->password : "";
	NatsLink   *link;
	NatsPub    *pub;
	NatsWait   *w;
	bool		found;
	bool		oom = false;
	int			n = 0;
	char		err[NATS_ERROR_MAX];
	struct curl_slist *h;
	uint64		token;
	char	   *subject;

	if (!nats_init())
	{
		fail_now(req, "could not create an eventfd for NATS");
		curl_slist_free_all(out->headers);
		out->headers = NULL;
		return;
	}
	for (link = links; link; link = link->next)
		if (!link->stale && strcmp(link->target, out->url) == 0 &&
			strcmp(link->secret, secret) == 0)
			break;
	if (link == NULL)
		link = make_link(out->url, secret, timeout_ms, err, sizeof(err));
	if (link == NULL)
	{
		fail_now(req, err);
		curl_slist_free_all(out->headers);
		out->headers = NULL;
		return;
	}
	link->last_used = GetCurrentTimestamp();

	/* what may raise an error comes before anything malloc'd */
	token = ++last_token;
	subject = MemoryContextStrdup(nats_context, out->subject);
	w = hash_search(waits, &token, HASH_ENTER, &found);
	Assert(!found);
	w->req = req;
	w->link = link;
	w->subject = subject;
	w->deadline = TimestampTzPlusMilliseconds(req->started, Max(timeout_ms, 1));
	dlist_push_tail(&link->waiting, &w->node);

	pub = calloc(1, sizeof(NatsPub));
	for (h = out->headers; h; h = h->next)
		n++;
	if (pub)
	{
		pub->token = token;
		pub->subject = strdup_or_null(out->subject, strlen(out->subject), &oom);
		pub->body = strdup_or_null(out->body, out->bodylen, &oom);
		pub->bodylen = (int) out->bodylen;
		pub->due_us = monotonic_us() + (int64) Max(timeout_ms, 1) * 1000;
		pub->keys = calloc(Max(n, 1), sizeof(char *));
		pub->values = calloc(Max(n, 1), sizeof(char *));
		oom |= (pub->keys == NULL || pub->values == NULL);
		for (h = out->headers; h && !oom; h = h->next)
		{
			const char *colon = strchr(h->data, ':');
			const char *value;

			if (colon == NULL)
				continue;
			value = colon + 1;
			while (*value == ' ')
				value++;
			pub->keys[pub->nheaders] = strdup_or_null(h->data, colon - h->data, &oom);
			pub->values[pub->nheaders] = strdup_or_null(value, strlen(value), &oom);
			pub->nheaders++;
		}
	}
	curl_slist_free_all(out->headers);
	out->headers = NULL;
	if (pub == NULL || oom)
	{
		if (pub)
			free_pub(pub);
		finish(w, PUB_FAILED, "out of memory");
		return;
	}

	pthread_mutex_lock(&link->lock);
	if (link->queue_tail)
		link->queue_tail->next = pub;
	else
		link->queue_head = pub;
	link->queue_tail = pub;
	pthread_cond_signal(&link->cond);
	pthread_mutex_unlock(&link->lock);
}

/*
 * Take the outcomes the threads posted, fail the publishes whose
 * acknowledgement is late, close the links unused for a while.  The main
 * thread, after each wait.
 */
void
herald_nats_poll(void)
{
	NatsResult *r;
	uint64		counter;
	TimestampTz now;
	NatsLink   *link;
	NatsLink   *next;

	if (waits == NULL)
		return;
	if (read(wake_fd, &counter, sizeof(counter)) < 0)
	{
		/* EAGAIN: nothing was posted */
	}
	pthread_mutex_lock(&results_lock);
	r = results_head;
	results_head = results_tail = NULL;
	pthread_mutex_unlock(&results_lock);
	while (r)
	{
		NatsResult *rnext = r->next;
		NatsWait   *w = hash_search(waits, &r->token, HASH_FIND, NULL);

		/* an answer after the timeout finds nothing */
		if (w)
			finish(w, r->kind, r->text);
		free(r);
		r = rnext;
	}

	now = GetCurrentTimestamp();
	for (link = links; link; link = next)
	{
		next = link->next;
		while (!dlist_is_empty(&link->waiting))
		{
			NatsWait   *w = dlist_head_element(NatsWait, node, &link->waiting);
			char		text[NATS_ERROR_MAX];

			if (w->deadline > now)
				break;
			snprintf(text, sizeof(text),
					 "no acknowledgement from JetStream within %.0f ms",
					 (double) (w->deadline - w->req->started) / 1000.0);
			finish(w, PUB_FAILED, text);
		}
		if (dlist_is_empty(&link->waiting) &&
			(link->stale || now - link->last_used >= NATS_LINK_IDLE_MS * (int64) 1000))
			close_link(link);
	}
}

/* Milliseconds until the next acknowledgement is late or a link idles; -1: none. */
long
herald_nats_timeout_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz first = 0;

	for (NatsLink *link = links; link; link = link->next)
	{
		TimestampTz t;

		if (!dlist_is_empty(&link->waiting))
			t = dlist_head_element(NatsWait, node, &link->waiting)->deadline;
		else
			t = link->last_used + NATS_LINK_IDLE_MS * (int64) 1000;
		if (first == 0 || t < first)
			first = t;
	}
	if (first == 0)
		return -1;
	return first <= now ? 0 : (long) ((first - now + 999) / 1000);
}

/*
 * After a reload: the network policy or the settings may have changed, so
 * new publishes go through new links; the old ones close once their
 * publishes are answered.
 */
void
herald_nats_configure(void)
{
	for (NatsLink *link = links; link; link = link->next)
		link->stale = true;
}
