/*-------------------------------------------------------------------------
 *
 * http_server.c
 *		The HTTP worker: serves the decision pages behind the links of
 *		messages, and Slack's interactivity callbacks.
 *
 * One worker, "pg_herald http", runs when herald.http_listen is set (and
 * pg_herald is in shared_preload_libraries).  It connects to
 * herald.database and runs GNU libmicrohttpd in its external event loop
 * (epoll, no thread of libmicrohttpd's own): each turn it waits on its
 * latch, postmaster death and the daemon's epoll descriptor, for at most
 * the daemon's timeout, then lets the daemon run.
 *
 * libmicrohttpd calls back from MHD_run(), in this process.  The callbacks
 * touch no PostgreSQL facility that may throw (no palloc, no ereport):
 * they use malloc and plain C.  The access handler refuses what it can
 * refuse alone (unknown routes, wrong methods, declared bodies over
 * HERALD_HTTP_MAX_BODY, clients over their rate), collects the rest of a
 * request (its body bounded), suspends the connection and queues it.  Once
 * MHD_run() returns, the worker serves the queued requests one by one,
 * each in its own transaction as role herald_http with SPI connected
 * (decision_page.c, slack.c); an error aborts the transaction, is logged
 * and answered with a 500 page.  The response is copied into malloc'd
 * memory, the connection resumed, and the next callback queues it.
 *
 * Abuse: at most HTTP_MAX_CONNECTIONS connections, an idle client is
 * dropped after HTTP_IDLE_TIMEOUT seconds, one that trickles its request
 * (headers and body) after HTTP_REQUEST_TIMEOUT, each connection's buffers are
 * bounded; per client address (herald.http_rate_limit > 0) a token bucket
 * of requests and a cap on open connections, kept in a bounded table.
 * Every refusal is logged, once per reason and address per minute.
 *
 * All state here belongs to the one worker process: no locks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <time.h>
#include <microhttpd.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "compat.h"
#include "pg_herald.h"
#include "http_server.h"

#define HTTP_MAX_CONNECTIONS 256
#define HTTP_MAX_PER_ADDRESS 32		/* open connections per client address */
#define HTTP_IDLE_TIMEOUT 10	/* seconds */
#define HTTP_REQUEST_TIMEOUT 30 /* seconds to send a whole request */
#define HTTP_CONNECTION_MEMORY (32 * 1024)
#define HTTP_MAX_URL 2048
#define HTTP_MAX_HEADER 1024
#define HTTP_ADDRESSES 1024		/* client addresses tracked */
#define HTTP_LOG_EVERY 60		/* seconds between two logs of one refusal */
#define HTTP_PENDING_LOGS 64
#define HTTP_RATE_BURST 3.0		/* seconds' worth of requests */
#define HANDLER_REASONS 8

/* herald.http_rate_limit: requests per second per client address, 0: none */
double		herald_http_rate_limit = 10;

/* Why a request was refused: each is logged once a minute per address. */
typedef enum Refusal
{
	REFUSED_RATE,
	REFUSED_CONNECTIONS,
	REFUSED_BODY,
	REFUSED_ROUTE,
	REFUSED_METHOD,
	REFUSED_SLOW,
	REFUSED_HANDLER,			/* the handler's log_reason */
	REFUSED_KINDS
} Refusal;

/* One client address: its bucket, its connections, when refusals were logged. */
typedef struct Client
{
	char		address[INET6_ADDRSTRLEN];	/* "" for a free entry */
	double		tokens;
	double		refilled;		/* monotonic seconds */
	double		seen;
	int			connections;
	time_t		logged[REFUSED_KINDS];
	/* the handlers' reasons: a few, each told by a hash of its text */
	uint32		handler_reason[HANDLER_REASONS];
	time_t		handler_logged[HANDLER_REASONS];
} Client;

/* A refusal to log once MHD_run() returns. */
typedef struct PendingLog
{
	char		address[INET6_ADDRSTRLEN];
	char		reason[160];
} PendingLog;

typedef enum Route
{
	ROUTE_NONE,
	ROUTE_HEALTH,
	ROUTE_DECISION,
	ROUTE_SLACK
} Route;

/* One request, from its first callback to its completion; malloc'd. */
typedef struct Request
{
	struct MHD_Connection *connection;
	Route		route;
	char	   *method;
	char	   *path;
	char		remote[INET6_ADDRSTRLEN];
	char	   *content_type;
	char	   *origin;
	char	   *slack_signature;
	char	   *slack_timestamp;
	char	   *body;
	size_t		bodylen;
	bool		too_large;
	bool		answered;		/* refused (or answered) by the callback itself */
	bool		queued;			/* waiting to be served */
	struct Request *next;		/* in the queue */
	/* the response, once served */
	bool		served;
	int			status;
	char	   *content_type_out;
	char	   *out;
	size_t		outlen;
	int			nheaders;
	char	   *headers[HERALD_HTTP_MAX_HEADERS];
} Request;

/*
 * An open connection and since when its current request has been coming
 * (0: it came, or is being answered); the worker shuts down those that take
 * over HTTP_REQUEST_TIMEOUT, which libmicrohttpd's idle timeout, reset by
 * every byte, does not.
 */
typedef struct Tracked
{
	struct MHD_Connection *connection;	/* NULL: a free entry */
	double		since;
	char		address[INET6_ADDRSTRLEN];
} Tracked;

static Tracked tracked[HTTP_MAX_CONNECTIONS];

static struct MHD_Daemon *daemon_handle = NULL;
static Request *queue_head = NULL;
static Request *queue_tail = NULL;
static Client clients[HTTP_ADDRESSES];
static PendingLog pending_logs[HTTP_PENDING_LOGS];
static int	npending_logs = 0;
static int	dropped_logs = 0;
static Oid	http_role = InvalidOid;

PGDLLEXPORT void herald_http_main(Datum arg);

static const char *security_headers[] = {
	"Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"X-Frame-Options", "DENY",
	"Cache-Control", "no-store",
	"X-Content-Type-Options", "nosniff",
	/*
	 * Not no-referrer: with it, browsers send "Origin: null" with the page's
	 * own POST.  same-origin keeps the link's token from every other site.
	 */
	"Referrer-Policy", "same-origin",
	NULL
};

static double
monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A client's entry, created (evicting the least recently seen idle one) when absent. */
static Client *
client_of(const char *address)
{
	Client	   *oldest = NULL;

	for (int i = 0; i < HTTP_ADDRESSES; i++)
	{
		Client	   *c = &clients[i];

		if (strcmp(c->address, address) == 0)
			return c;
		if (c->connections == 0 && (oldest == NULL || c->address[0] == '\0' ||
									(oldest->address[0] != '\0' && c->seen < oldest->seen)))
			oldest = c;
	}
	if (oldest == NULL)
		return NULL;			/* every entry has open connections */
	memset(oldest, 0, sizeof(*oldest));
	strlcpy(oldest->address, address, sizeof(oldest->address));
	oldest->tokens = Max(herald_http_rate_limit * HTTP_RATE_BURST, 1);
	oldest->refilled = oldest->seen = monotonic_seconds();
	return oldest;
}

/*
 * Note a refusal for the log, unless one of its kind was logged for that
 * address within the last minute.  Plain C: called from callbacks.
 */
static void
note_refusal(const char *address, Refusal kind, const char *reason)
{
	Client	   *c = client_of(address);
	time_t		now = time(NULL);

	if (c != NULL)
	{
		time_t	   *logged = &c->logged[kind];

		if (kind == REFUSED_HANDLER)
		{
			uint32		h = 5381;
			int			slot;

			for (const char *p = reason; *p; p++)
				h = h * 33 + (unsigned char) *p;
			slot = h % HANDLER_REASONS;
			if (c->handler_reason[slot] != h)
			{
				c->handler_reason[slot] = h;
				c->handler_logged[slot] = 0;
			}
			logged = &c->handler_logged[slot];
		}
		if (*logged != 0 && now - *logged < HTTP_LOG_EVERY)
			return;
		*logged = now;
	}
	if (npending_logs >= HTTP_PENDING_LOGS)
	{
		dropped_logs++;
		return;
	}
	strlcpy(pending_logs[npending_logs].address, address, INET6_ADDRSTRLEN);
	strlcpy(pending_logs[npending_logs].reason, reason, sizeof(pending_logs[0].reason));
	/*
	 * A path is the client's text: only printable ASCII reaches the log (a
	 * request line is ASCII; anything else, control characters and bytes
	 * that may not be valid UTF-8 alike, becomes "?").
	 */
	for (char *p = pending_logs[npending_logs].reason; *p; p++)
		if ((unsigned char) *p < ' ' || (unsigned char) *p >= 0x7f)
			*p = '?';
	npending_logs++;
}

static void
flush_refusal_logs(void)
{
	for (int i = 0; i < npending_logs; i++)
		if (pending_logs[i].address[0] == '\0')
			ereport(LOG,
					(errmsg("pg_herald http: libmicrohttpd: %s", pending_logs[i].reason)));
		else
			ereport(LOG,
				(errmsg("pg_herald http refused a request from %s: %s",
						pending_logs[i].address, pending_logs[i].reason),
				 errdetail("Further refusals of this kind from this address are not logged for a minute.")));
	if (dropped_logs > 0)
		ereport(LOG,
				(errmsg("pg_herald http left %d more refusals or messages unlogged", dropped_logs)));
	npending_logs = 0;
	dropped_logs = 0;
}

/* Whether a request from this address may go on: its token bucket. */
static bool
take_token(const char *address)
{
	Client	   *c;
	double		now;
	double		burst = herald_http_rate_limit * HTTP_RATE_BURST;

	if (herald_http_rate_limit <= 0)
		return true;
	c = client_of(address);
	if (c == NULL)
		return false;
	now = monotonic_seconds();
	burst = Max(burst, 1);
	c->tokens = Min(burst, c->tokens + (now - c->refilled) * herald_http_rate_limit);
	c->refilled = now;
	c->seen = now;
	if (c->tokens < 1)
		return false;
	c->tokens -= 1;
	return true;
}

static void
address_text(const struct sockaddr *sa, char *out)
{
	out[0] = '\0';
	if (sa == NULL)
		strlcpy(out, "?", INET6_ADDRSTRLEN);
	else if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, out, INET6_ADDRSTRLEN);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, out, INET6_ADDRSTRLEN);
	else
		strlcpy(out, "?", INET6_ADDRSTRLEN);
}

/* Before accepting: the per-address connection cap. */
static enum MHD_Result
accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	char		address[INET6_ADDRSTRLEN];
	Client	   *c;

	if (herald_http_rate_limit <= 0)
		return MHD_YES;
	address_text(addr, address);
	c = client_of(address);
	if (c == NULL || c->connections >= HTTP_MAX_PER_ADDRESS)
	{
		note_refusal(address, REFUSED_CONNECTIONS, "too many open connections from this address");
		return MHD_NO;
	}
	return MHD_YES;
}

/* Count each address's open connections. */
static void
connection_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
				  enum MHD_ConnectionNotificationCode toe)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	char		address[INET6_ADDRSTRLEN];
	Client	   *c;

	address_text(info ? info->client_addr : NULL, address);
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
	{
		*socket_context = NULL;
		for (int i = 0; i < HTTP_MAX_CONNECTIONS; i++)
			if (tracked[i].connection == NULL)
			{
				tracked[i].connection = connection;
				tracked[i].since = monotonic_seconds();
				strlcpy(tracked[i].address, address, sizeof(tracked[i].address));
				*socket_context = &tracked[i];
				break;
			}
	}
	else if (*socket_context != NULL)
	{
		((Tracked *) *socket_context)->connection = NULL;
		*socket_context = NULL;
	}
	c = client_of(address);
	if (c == NULL)
		return;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		c->connections++;
	else if (c->connections > 0)
		c->connections--;
}

/* The connection's request has come (0) or its next one starts (now). */
static void
request_timer(struct MHD_Connection *connection, double since)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	if (info != NULL && info->socket_context != NULL)
		((Tracked *) info->socket_context)->since = since;
}

/*
 * Shut down the connections whose request took too long to come (the
 * daemon then closes them); milliseconds until the next one is due, or -1.
 */
static long
enforce_request_timeout(void)
{
	double		now = monotonic_seconds();
	double		next = -1;

	for (int i = 0; i < HTTP_MAX_CONNECTIONS; i++)
	{
		Tracked    *t = &tracked[i];
		double		left;

		if (t->connection == NULL || t->since == 0)
			continue;
		left = t->since + HTTP_REQUEST_TIMEOUT - now;
		if (left <= 0)
		{
			const union MHD_ConnectionInfo *info =
				MHD_get_connection_info(t->connection, MHD_CONNECTION_INFO_CONNECTION_FD);

			if (info != NULL)
				(void) shutdown(info->connect_fd, SHUT_RDWR);
			note_refusal(t->address, REFUSED_SLOW, "request not sent within 30 s");
			t->since = 0;
		}
		else if (next < 0 || left < next)
			next = left;
	}
	return next < 0 ? -1 : (long) (next * 1000) + 1;
}

/*
 * libmicrohttpd's own complaints (a connection refused at the limit, say),
 * noted for the log: at most one a minute.
 */
static void mhd_logger(void *cls, const char *fmt, va_list ap) pg_attribute_printf(2, 0);

static void
mhd_logger(void *cls, const char *fmt, va_list ap)
{
	static time_t last = 0;
	time_t		now = time(NULL);
	size_t		len;

	if ((last != 0 && now - last < HTTP_LOG_EVERY) || npending_logs >= HTTP_PENDING_LOGS)
		return;
	last = now;
	pending_logs[npending_logs].address[0] = '\0';
	vsnprintf(pending_logs[npending_logs].reason, sizeof(pending_logs[0].reason), fmt, ap);
	len = strlen(pending_logs[npending_logs].reason);
	while (len > 0 && pending_logs[npending_logs].reason[len - 1] == '\n')
		pending_logs[npending_logs].reason[--len] = '\0';
	npending_logs++;
}

static char *
copy_bounded(const char *value, size_t max)
{
	size_t		len;
	char	   *copy;

	if (value == NULL)
		return NULL;
	len = strnlen(value, max);
	copy = malloc(len + 1);
	if (copy == NULL)
		return NULL;
	memcpy(copy, value, len);
	copy[len] = '\0';
	return copy;
}

static void
free_request(Request *r)
{
	free(r->method);
	free(r->path);
	free(r->content_type);
	free(r->origin);
	free(r->slack_signature);
	free(r->slack_timestamp);
	free(r->body);
	free(r->content_type_out);
	free(r->out);
	for (int i = 0; i < r->nheaders; i++)
		free(r->headers[i]);
	free(r);
}

static void
request_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
				  enum MHD_RequestTerminationCode toe)
{
	Request    *r = *con_cls;

	/* a connection kept alive: its next request starts now */
	request_timer(connection, monotonic_seconds());
	if (r == NULL)
		return;
	Assert(!r->queued);
	free_request(r);
	*con_cls = NULL;
}

/*
 * Queue a response built from plain C strings: a status, a content type, a
 * body and extra "Name: value" headers, with the security headers.
 */
static enum MHD_Result
send_response(struct MHD_Connection *connection, int status, const char *content_type,
			  const char *body, size_t bodylen, char **headers, int nheaders)
{
	struct MHD_Response *response;
	enum MHD_Result ret;

	response = MHD_create_response_from_buffer(bodylen, (void *) body, MHD_RESPMEM_MUST_COPY);
	if (response == NULL)
		return MHD_NO;
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	for (int i = 0; security_headers[i] != NULL; i += 2)
		MHD_add_response_header(response, security_headers[i], security_headers[i + 1]);
	for (int i = 0; i < nheaders; i++)
	{
		char	   *colon = strchr(headers[i], ':');
		char		name[128];
		const char *value;

		if (colon == NULL || colon - headers[i] >= (int) sizeof(name))
			continue;
		memcpy(name, headers[i], colon - headers[i]);
		name[colon - headers[i]] = '\0';
		value = colon + 1;
		while (*value == ' ')
			value++;
		MHD_add_response_header(response, name, value);
	}
	ret = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return ret;
}

/* A short refusal page, answered by the callback itself. */
static enum MHD_Result
refuse(Request *r, struct MHD_Connection *connection, int status, const char *title,
	   const char *extra_header)
{
	char		page[1024];
	char	   *headers[1];
	int			len;

	r->answered = true;
	len = snprintf(page, sizeof(page),
				   "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
				   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
				   "<title>%s</title></head><body style=\"font-family:system-ui,sans-serif;"
				   "margin:2rem auto;max-width:40rem;padding:0 1rem\"><h1>%s</h1></body></html>\n",
				   title, title);
	headers[0] = (char *) extra_header;
	return send_response(connection, status, "text/html; charset=utf-8", page, len,
						 headers, extra_header ? 1 : 0);
}

/* A request's path as logs show it: never a link's token. */
static const char *
logged_path(Request *r)
{
	return r->route == ROUTE_DECISION ? "/d/{token}" : r->path;
}

static Route
route_of(const char *path)
{
	if (strcmp(path, "/healthz") == 0)
		return ROUTE_HEALTH;
	if (strcmp(path, "/slack/actions") == 0)
		return ROUTE_SLACK;
	/* /d/{token}, /d/{token}/change: decision_page.c sorts them out */
	if (strncmp(path, "/d/", 3) == 0 && path[3] != '\0' && path[3] != '/')
		return ROUTE_DECISION;
	return ROUTE_NONE;
}

/*
 * libmicrohttpd's access handler: refuse what can be refused at once,
 * collect the rest, suspend and queue it; once served, queue its response.
 */
static enum MHD_Result
access_handler(void *cls, struct MHD_Connection *connection, const char *url,
			   const char *method, const char *version, const char *upload_data,
			   size_t *upload_data_size, void **con_cls)
{
	Request    *r = *con_cls;

	if (r == NULL)
	{
		const union MHD_ConnectionInfo *info =
			MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		const char *length;
		bool		get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
		bool		post = strcmp(method, "POST") == 0;
		char		reason[160];

		r = calloc(1, sizeof(Request));
		if (r == NULL)
			return MHD_NO;
		*con_cls = r;
		r->connection = connection;
		address_text(info ? info->client_addr : NULL, r->remote);
		r->method = copy_bounded(method, 16);
		r->path = copy_bounded(url, HTTP_MAX_URL);
		if (r->method == NULL || r->path == NULL)
			return MHD_NO;
		r->route = route_of(r->path);

		if (!take_token(r->remote))
		{
			note_refusal(r->remote, REFUSED_RATE, "over herald.http_rate_limit");
			return refuse(r, connection, MHD_HTTP_TOO_MANY_REQUESTS, "Too many requests",
						  "Retry-After: 1");
		}
		if (r->route == ROUTE_NONE || strlen(url) >= HTTP_MAX_URL)
		{
			/*
			 * What follows "/d/" anywhere may be a link's token (a proxy that
			 * keeps public_url's path, a request in absolute form): not for
			 * the log.
			 */
			const char *link = strstr(r->path, "/d/");
			int			shown = link ? (int) (link - r->path) + 3 : (int) strlen(r->path);

			snprintf(reason, sizeof(reason), "no route %s %.*s%s", r->method,
					 Min(shown, 80), r->path, link ? "..." : "");
			note_refusal(r->remote, REFUSED_ROUTE, reason);
			return refuse(r, connection, MHD_HTTP_NOT_FOUND, "Not found", NULL);
		}
		if ((r->route == ROUTE_HEALTH && !get) || (r->route == ROUTE_SLACK && !post) ||
			(r->route == ROUTE_DECISION && !get && !post))
		{
			snprintf(reason, sizeof(reason), "method %s not allowed on %.80s", r->method,
					 logged_path(r));
			note_refusal(r->remote, REFUSED_METHOD, reason);
			return refuse(r, connection, MHD_HTTP_METHOD_NOT_ALLOWED, "Method not allowed",
						  r->route == ROUTE_SLACK ? "Allow: POST" :
						  r->route == ROUTE_HEALTH ? "Allow: GET, HEAD" : "Allow: GET, HEAD, POST");
		}
		length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
											 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (length != NULL && strtoull(length, NULL, 10) > HERALD_HTTP_MAX_BODY)
		{
			note_refusal(r->remote, REFUSED_BODY, "body over 64 kB");
			return refuse(r, connection, MHD_HTTP_CONTENT_TOO_LARGE, "Request body too large", NULL);
		}
		r->content_type = copy_bounded(MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
																   MHD_HTTP_HEADER_CONTENT_TYPE),
									   HTTP_MAX_HEADER);
		r->origin = copy_bounded(MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
															 MHD_HTTP_HEADER_ORIGIN),
								 HTTP_MAX_HEADER);
		r->slack_signature = copy_bounded(MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
																	  "X-Slack-Signature"),
										  HTTP_MAX_HEADER);
		r->slack_timestamp = copy_bounded(MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
																	  "X-Slack-Request-Timestamp"),
										  HTTP_MAX_HEADER);
		r->body = malloc(1);
		if (r->body == NULL)
			return MHD_NO;
		r->body[0] = '\0';
		return MHD_YES;
	}

	if (r->answered)
	{
		/* whatever else comes of a refused request is dropped */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->route == ROUTE_HEALTH && *upload_data_size == 0)
	{
		r->answered = true;
		return send_response(connection, MHD_HTTP_OK, "text/plain; charset=utf-8",
							 "ok\n", 3, NULL, 0);
	}
	if (r->served)
		return send_response(connection, r->status, r->content_type_out, r->out, r->outlen,
							 r->headers, r->nheaders);

	if (*upload_data_size > 0)
	{
		size_t		n = *upload_data_size;

		*upload_data_size = 0;
		if (r->too_large || r->bodylen + n > HERALD_HTTP_MAX_BODY)
		{
			/* a chunked body over the limit: the connection is closed */
			if (!r->too_large)
				note_refusal(r->remote, REFUSED_BODY, "body over 64 kB");
			r->too_large = true;
			return MHD_NO;
		}
		else
		{
			char	   *grown = realloc(r->body, r->bodylen + n + 1);

			if (grown == NULL)
				return MHD_NO;
			r->body = grown;
			memcpy(r->body + r->bodylen, upload_data, n);
			r->bodylen += n;
			r->body[r->bodylen] = '\0';
		}
		return MHD_YES;
	}

	/* the whole request is in: the worker serves it after MHD_run() */
	request_timer(connection, 0);
	MHD_suspend_connection(connection);
	r->queued = true;
	r->next = NULL;
	if (queue_tail)
		queue_tail->next = r;
	else
		queue_head = r;
	queue_tail = r;
	return MHD_YES;
}

/* What a handler gets: the request, and the response it fills in. */
typedef struct ServeStep
{
	Request    *request;
	HeraldHttpRequest req;
	HeraldHttpResponse resp;
} ServeStep;

/* Copy a response out of PostgreSQL's memory into the request's malloc'd. */
static void
keep_response(Request *r, HeraldHttpResponse *resp)
{
	const char *ct = resp->content_type ? resp->content_type : "text/html; charset=utf-8";

	free(r->content_type_out);
	free(r->out);
	for (int i = 0; i < r->nheaders; i++)
		free(r->headers[i]);
	r->nheaders = 0;
	r->status = resp->status;
	r->content_type_out = strdup(ct);
	r->out = malloc(resp->body.len + 1);
	if (r->out == NULL || r->content_type_out == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	memcpy(r->out, resp->body.data, resp->body.len);
	r->out[resp->body.len] = '\0';
	r->outlen = resp->body.len;
	for (int i = 0; i < resp->nheaders && i < HERALD_HTTP_MAX_HEADERS; i++)
	{
		r->headers[i] = strdup(resp->headers[i]);
		if (r->headers[i] == NULL)
			break;
		r->nheaders = i + 1;
	}
}

static void
set_plain_page(HeraldHttpResponse *resp, int status, const char *title)
{
	resp->status = status;
	resp->content_type = "text/html; charset=utf-8";
	resetStringInfo(&resp->body);
	herald_http_page_start(&resp->body, title);
	herald_http_page_end(&resp->body);
}

/* One request, in its transaction: as herald_http, through its route. */
static void
serve_step(void *arg)
{
	ServeStep  *s = arg;
	Oid			saved_user;
	int			saved_context;

	if (!OidIsValid(herald_installation()))
		set_plain_page(&s->resp, MHD_HTTP_SERVICE_UNAVAILABLE, "pg_herald is not installed here");
	else
	{
		if (!OidIsValid(http_role))
			http_role = get_role_oid("herald_http", false);
		GetUserIdAndSecContext(&saved_user, &saved_context);
		SetUserIdAndSecContext(http_role,
							   saved_context | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		if (s->request->route == ROUTE_SLACK)
			herald_slack_actions(&s->req, &s->resp);
		else
			herald_decision_page(&s->req, &s->resp);
		SetUserIdAndSecContext(saved_user, saved_context);
	}
	keep_response(s->request, &s->resp);
}

static void
serve(Request *r, MemoryContext cxt)
{
	ServeStep	s;
	ErrorData  *edata = NULL;
	MemoryContext old = MemoryContextSwitchTo(cxt);

	memset(&s, 0, sizeof(s));
	s.request = r;
	s.req.method = r->method;
	s.req.path = r->path;
	s.req.remote = r->remote;
	s.req.body = r->body;
	s.req.bodylen = r->bodylen;
	s.req.content_type = r->content_type;
	s.req.origin = r->origin;
	s.req.slack_signature = r->slack_signature;
	s.req.slack_timestamp = r->slack_timestamp;
	s.resp.status = 200;
	s.resp.content_type = "text/html; charset=utf-8";
	initStringInfo(&s.resp.body);

	if (!herald_try_transaction("pg_herald: serving an HTTP request", serve_step, &s, &edata))
	{
		ereport(LOG,
				(errmsg("pg_herald http could not serve %s %s from %s: %s",
						r->method, logged_path(r), r->remote,
						edata && edata->message ? edata->message : "unknown error")));
		PG_TRY();
		{
			s.resp.nheaders = 0;
			set_plain_page(&s.resp, MHD_HTTP_INTERNAL_SERVER_ERROR,
						   "Something went wrong: nothing was recorded");
			keep_response(r, &s.resp);
		}
		PG_CATCH();
		{
			/* out of memory: the connection gets an empty 500 */
			FlushErrorState();
			free(r->out);
			r->out = NULL;
			r->outlen = 0;
			r->status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		}
		PG_END_TRY();
	}
	else if (s.resp.log_reason)
	{
		char		reason[160];

		snprintf(reason, sizeof(reason), "%s (%s %s)", s.resp.log_reason, r->method,
				 logged_path(r));
		note_refusal(r->remote, REFUSED_HANDLER, reason);
	}
	if (r->content_type_out == NULL)
		r->content_type_out = strdup("text/html; charset=utf-8");
	if (r->out == NULL)
		r->out = strdup("");
	r->served = true;
	MemoryContextSwitchTo(old);
	MemoryContextReset(cxt);
}

/* Parse host:port (IPv6 in brackets) and start the daemon on it. */
static struct MHD_Daemon *
start_daemon(void)
{
	char	   *listen = pstrdup(herald_http_listen);
	char	   *colon = strrchr(listen, ':');
	char	   *host = listen;
	struct addrinfo hints;
	struct addrinfo *res;
	struct MHD_Daemon *d;
	int			rc;
	unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

	Assert(colon != NULL);
	*colon = '\0';
	if (host[0] == '[')
	{
		host++;
		if (host[strlen(host) - 1] == ']')
			host[strlen(host) - 1] = '\0';
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not resolve herald.http_listen \"%s\": %s",
						herald_http_listen, gai_strerror(rc))));
	if (res->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	d = MHD_start_daemon(flags, 0, accept_policy, NULL, access_handler, NULL,
						 MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
						 MHD_OPTION_SOCK_ADDR, res->ai_addr,
						 MHD_OPTION_CONNECTION_LIMIT, (unsigned int) HTTP_MAX_CONNECTIONS,
						 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) HTTP_IDLE_TIMEOUT,
						 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) HTTP_CONNECTION_MEMORY,
						 MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
						 MHD_OPTION_NOTIFY_CONNECTION, connection_notify, NULL,
						 MHD_OPTION_END);
	freeaddrinfo(res);
	if (d == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not serve HTTP on herald.http_listen \"%s\"", herald_http_listen),
				 errhint("Is another program listening on that address?")));
	return d;
}

void
herald_http_main(Datum arg)
{
	WaitEventSet *set;
	WaitEvent	events[3];
	MemoryContext request_context;
	const union MHD_DaemonInfo *info;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	herald_worker_connect(false);
	herald_http_attach();
	pgstat_report_appname("pg_herald http");
	/* resolve no name through user schemas; no request waits long */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "5s", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "2s", PGC_SUSET, PGC_S_OVERRIDE);

	daemon_handle = start_daemon();
	info = MHD_get_daemon_info(daemon_handle, MHD_DAEMON_INFO_EPOLL_FD);
	if (info == NULL)
		elog(ERROR, "libmicrohttpd has no epoll descriptor");
	set = herald_create_wait_event_set(3);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(set, WL_SOCKET_READABLE, info->epoll_fd, NULL, NULL);
	request_context = AllocSetContextCreate(TopMemoryContext, "pg_herald http request",
											ALLOCSET_DEFAULT_SIZES);

	ereport(LOG,
			(errmsg("pg_herald http serving on %s for database \"%s\"",
					herald_http_listen, herald_shared->datname)));

	for (;;)
	{
		MHD_UNSIGNED_LONG_LONG mhd_timeout;
		long		timeout = 60000;
		long		due;
		bool		served = false;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MHD_run(daemon_handle);
		flush_refusal_logs();
		while (queue_head != NULL)
		{
			Request    *r = queue_head;

			queue_head = r->next;
			if (queue_head == NULL)
				queue_tail = NULL;
			r->queued = false;
			r->next = NULL;
			serve(r, request_context);
			MHD_resume_connection(r->connection);
			served = true;
			CHECK_FOR_INTERRUPTS();
		}
		flush_refusal_logs();
		if (served)
			continue;			/* let the daemon send the responses */

		due = enforce_request_timeout();
		flush_refusal_logs();
		if (due >= 0 && due < timeout)
			timeout = due;
		if (MHD_get_timeout(daemon_handle, &mhd_timeout) == MHD_YES &&
			mhd_timeout < (MHD_UNSIGNED_LONG_LONG) timeout)
			timeout = (long) mhd_timeout;
		(void) WaitEventSetWait(set, timeout, events, lengthof(events),
							   herald_wait_event(HERALD_WAIT_HTTP_SERVER));
		ResetLatch(MyLatch);
	}
}

void
herald_define_http_settings(void)
{
	DefineCustomRealVariable("herald.http_rate_limit",
							 "Requests per second the HTTP worker serves to one client address.",
							 "Up to 3 seconds' worth at once; each address may also hold at most 32 "
							 "connections.  0: no limit per address (behind a reverse proxy, every "
							 "request comes from its address: limit there).",
							 &herald_http_rate_limit,
							 10, 0, 10000,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
}

/* The value of a hexadecimal digit, or -1. */
int
herald_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode len bytes ('+' is a space) into a palloc'd string. */
static bool
form_decode(const char *src, size_t len, char **out, size_t *outlen)
{
	char	   *dst = palloc(len + 1);
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		char		c = src[i];

		if (c == '+')
			c = ' ';
		else if (c == '%')
		{
			if (i + 2 >= len || herald_hex_value(src[i + 1]) < 0 ||
				herald_hex_value(src[i + 2]) < 0)
				return false;
			c = (char) (herald_hex_value(src[i + 1]) * 16 + herald_hex_value(src[i + 2]));
			i += 2;
		}
		if (c == '\0')
			return false;
		dst[n++] = c;
	}
	dst[n] = '\0';
	*out = dst;
	*outlen = n;
	return true;
}

/*
 * Parse a form-urlencoded body: for each of fields, the first value given
 * under its name (percent-decoded, palloc'd, NUL-terminated: the bytes as
 * sent, which the caller checks and converts) and how many times the name
 * came.  False when the body is not form-urlencoded: a pair without "=",
 * an escape that is not two hexadecimal digits, a NUL.
 */
bool
herald_parse_form(const char *body, size_t len, HeraldFormField *fields, int nfields)
{
	const char *p = body;
	const char *end = body + len;

	for (int i = 0; i < nfields; i++)
	{
		fields[i].value = NULL;
		fields[i].len = 0;
		fields[i].count = 0;
	}
	while (p < end)
	{
		const char *amp = memchr(p, '&', end - p);
		const char *stop = amp ? amp : end;
		const char *eq = memchr(p, '=', stop - p);
		char	   *name;
		char	   *value;
		size_t		namelen;
		size_t		valuelen;

		if (stop > p)
		{
			if (eq == NULL ||
				!form_decode(p, eq - p, &name, &namelen) ||
				!form_decode(eq + 1, stop - eq - 1, &value, &valuelen))
				return false;
			for (int i = 0; i < nfields; i++)
				if (strcmp(name, fields[i].name) == 0 && fields[i].count++ == 0)
				{
					fields[i].value = value;
					fields[i].len = valuelen;
				}
		}
		p = stop + 1;
	}
	return true;
}
