/*-------------------------------------------------------------------------
 *
 * http.c
 *		Concurrent HTTP and SMTP requests on one libcurl multi handle, driven
 *		by a PostgreSQL WaitEventSet.
 *
 * The delivery worker starts requests with herald_http_start() and waits in
 * herald_http_wait(), which sleeps on the worker's latch, postmaster death,
 * every socket libcurl watches and libcurl's own timer at once: a commit
 * that sets the latch wakes the worker even while requests are in flight,
 * and nothing is polled on a fixed period.  Connections are reused through
 * the multi handle's pool, capped per host (herald.max_host_connections).
 *
 * A request is what a channel format built (HeraldOutgoing), for its kind's
 * transport (channel_kinds.c): an HTTP POST (webhook and chat channels),
 * spoken over http and https only, redirects never followed; or an SMTP
 * message (email channels), spoken over smtp (STARTTLS when the server offers
 * it) and smtps only, the user name taken from the URL and the password from
 * the channel's secret.  Proxy settings from the environment are ignored.  For
 * SMTP, http_status is the server's last reply code.  TLS always verifies
 * the server's certificate and host name, against the system's CA
 * certificates and those of herald.ca_file (network.c).
 *
 * On Linux, libcurl's sockets are kept in an epoll set of this module,
 * changed as libcurl says (one epoll_ctl per change), and the worker's wait
 * set holds that one descriptor: with keep-alive, libcurl stops and starts
 * watching a connection's socket at every request, and a wait set rebuilt
 * for each change (a new epoll descriptor, every socket added again, the old
 * one closed) cost more than the requests' own system calls.  Elsewhere the
 * wait set holds every socket and is rebuilt when they change.
 *
 * NATS publishes (nats.c) are requests too: herald_http_start() hands them
 * to nats.c, the wait set holds nats.c's eventfd, and they complete on the
 * same list (herald_http_finish()), so that the worker counts and records
 * them like the others.
 *
 * The module-level state belongs to the one worker process that uses it;
 * there is no locking.  herald._check_target() validates target URLs with
 * libcurl's own parser at declaration.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#ifdef __linux__
#include <sys/epoll.h>
#define CURL_EPOLL 1
#endif

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "compat.h"
#include "pg_herald.h"
#include "http.h"

PG_FUNCTION_INFO_V1(herald_check_target);

typedef struct WatchedSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} WatchedSocket;

static CURLM *multi = NULL;
static MemoryContext http_context = NULL;
static dlist_head completed = DLIST_STATIC_INIT(completed);
static int	in_flight = 0;

static WatchedSocket *sockets = NULL;
static int	nsockets = 0;
static int	maxsockets = 0;
static bool sockets_changed = true;
#ifdef CURL_EPOLL
static int	curl_epoll = -1;	/* libcurl's sockets, see the header */
#endif
static TimestampTz curl_deadline = 0;	/* when libcurl's timer fires, 0 none */

/*
 * Easy handles of finished requests, reset, for the next ones: a new handle
 * is a large allocation and its set-up, for every request otherwise.  At
 * most max_in_flight are kept (as many as can be in use at once).
 */
static CURL **spare_handles = NULL;
static int	nspare = 0;
static int	maxspare = 0;

/*
 * Whether the libcurl loaded reuses an easy handle safely.  Before 8.1.1
 * (Debian 12 has 7.88.1), a reset handle keeps a pointer to the previous
 * transfer's last response header, which libcurl has freed: a receiver
 * answering the next transfer with a folded header line right after the
 * status line makes libcurl append to that freed memory.  There, every
 * request has a new handle.
 */
static bool reuse_handles = false;

static WaitEventSet *wait_set = NULL;
static WaitEvent *wait_events = NULL;
static int	wait_set_size = 0;

/* libcurl tells which sockets to watch */
static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	int			i;

	for (i = 0; i < nsockets; i++)
		if (sockets[i].fd == fd)
			break;

	Assert(nsockets >= 0 && nsockets <= maxsockets);
#ifdef CURL_EPOLL
	{
		struct epoll_event ev;

		memset(&ev, 0, sizeof(ev));
		ev.data.fd = fd;
		if (what & CURL_POLL_IN)
			ev.events |= EPOLLIN;
		if (what & CURL_POLL_OUT)
			ev.events |= EPOLLOUT;
		if (what == CURL_POLL_REMOVE)
		{
			/* a socket closed already left the set by itself */
			(void) epoll_ctl(curl_epoll, EPOLL_CTL_DEL, fd, &ev);
		}
		else if (epoll_ctl(curl_epoll, i < nsockets ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0)
		{
			/* a new socket under the number of one closed, or the reverse */
			if (epoll_ctl(curl_epoll, i < nsockets ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0)
			{
				elog(LOG, "pg_herald could not watch a socket: %m");
				return -1;
			}
		}
	}
#endif
	if (what == CURL_POLL_REMOVE)
	{
		if (i < nsockets)
			sockets[i] = sockets[--nsockets];
	}
	else if (i < nsockets)
		sockets[i].what = what;
	else
	{
		if (nsockets == maxsockets)
		{
			maxsockets = Max(16, maxsockets * 2);
			sockets = sockets ?
				repalloc(sockets, sizeof(WatchedSocket) * maxsockets) :
				MemoryContextAlloc(http_context, sizeof(WatchedSocket) * maxsockets);
		}
		sockets[nsockets].fd = fd;
		sockets[nsockets].what = what;
		nsockets++;
	}
#ifndef CURL_EPOLL
	sockets_changed = true;
#endif
	return 0;
}

/* libcurl tells when it wants to be called on a timeout */
static int
timer_callback(CURLM *m, long timeout_ms, void *userp)
{
	curl_deadline = timeout_ms < 0 ? 0 :
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	HeraldRequest *req = userp;
	size_t		len = size * nmemb;
	int			room = HERALD_RESPONSE_EXCERPT - req->response.len;

	Assert(room >= 0);
	if (room > 0)
		appendBinaryStringInfo(&req->response, data, Min((size_t) room, len));
	req->response_bytes += len;
	return len;
}

/*
 * libcurl hands over each response header line: count them, and stop the
 * transfer once they pass HERALD_RESPONSE_HEADERS_MAX, so that an endpoint
 * cannot make the worker hold megabytes of headers.
 */
static size_t
header_callback(char *data, size_t size, size_t nitems, void *userp)
{
	HeraldRequest *req = userp;
	size_t		len = size * nitems;

	req->header_bytes += len;
	if (req->header_bytes > HERALD_RESPONSE_HEADERS_MAX)
	{
		req->headers_too_large = true;
		return 0;
	}
	/* a status line starts the headers of an answer (100 Continue first) */
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
		req->headers_done = false;
	else if ((len == 2 && data[0] == '\r' && data[1] == '\n') ||
			 (len == 1 && data[0] == '\n'))
		req->headers_done = true;
	return len;
}

void
herald_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	http_context = AllocSetContextCreate(TopMemoryContext,
										 "pg_herald http",
										 ALLOCSET_DEFAULT_SIZES);
#ifdef CURL_EPOLL
	curl_epoll = epoll_create1(EPOLL_CLOEXEC);
	if (curl_epoll < 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not create an epoll descriptor: %m")));
#endif
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not create a libcurl multi handle")));
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_callback);
	reuse_handles = curl_version_info(CURLVERSION_NOW)->version_num >= 0x080101;
	herald_http_configure();
}

/* Apply the settings that may change on reload. */
void
herald_http_configure(void)
{
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS,
					  (long) herald_max_host_connections);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
					  (long) Max(herald_max_host_connections * 4, 16));
	herald_nats_configure();
}

/*
 * libcurl asks for every socket it would connect, with the resolved
 * address: the network policy refuses it before any connection exists.
 */
static curl_socket_t
open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	HeraldRequest *req = clientp;

	if (!herald_network_allowed(&address->addr, req->denied, sizeof(req->denied)))
		return CURL_SOCKET_BAD;
	return socket(address->family, address->socktype, address->protocol);
}

/* libcurl reads the SMTP message from the request's body. */
static size_t
read_callback(char *buffer, size_t size, size_t nitems, void *userp)
{
	HeraldRequest *req = userp;
	size_t		n = Min(size * nitems, req->bodylen - req->read_offset);

	memcpy(buffer, req->body + req->read_offset, n);
	req->read_offset += n;
	return n;
}

/* libcurl rewinds the message when it has to send it again. */
static int
seek_callback(void *userp, curl_off_t offset, int origin)
{
	HeraldRequest *req = userp;

	if (origin != SEEK_SET || offset < 0 || (size_t) offset > req->bodylen)
		return CURL_SEEKFUNC_CANTSEEK;
	req->read_offset = (size_t) offset;
	return CURL_SEEKFUNC_OK;
}

/*
 * Start sending what a channel format built: out->body POSTed to out->url
 * with out->headers (HERALD_HTTP), or out->body sent as a message to
 * out->rcpts through the SMTP server at out->url (HERALD_SMTP).
 *
 * Once it returns, the request owns out->headers, out->rcpts and out->body
 * (palloc'd in a context that outlives the request) and they are cleared in
 * out; when it raises an error they still belong to out.  libcurl keeps its
 * own copies of the URL, the sender and the password.  A request that
 * cannot even be started is returned as a failed attempt.
 */
HeraldRequest *
herald_http_start(HeraldOutgoing *out, long timeout_ms, void *arg)
{
	MemoryContext old;
	HeraldRequest *req;
	CURL	   *easy;
	CURLMcode	mrc;
	char	   *mail_from = NULL;

	if (out->transport == HERALD_NATS)
	{
		/* a JetStream publish (nats.c), completed like the others */
		old = MemoryContextSwitchTo(http_context);
		req = palloc0(sizeof(HeraldRequest));
		initStringInfo(&req->response);
		MemoryContextSwitchTo(old);
		req->arg = arg;
		req->transport = HERALD_NATS;
		req->retry_after = -1;
		req->started = GetCurrentTimestamp();
		in_flight++;
		PG_TRY();
		{
			herald_nats_start(req, out, timeout_ms);
		}
		PG_CATCH();
		{
			/* not handed over: the caller reports the error */
			in_flight--;
			pfree(req->response.data);
			pfree(req);
			PG_RE_THROW();
		}
		PG_END_TRY();
		return req;
	}
	if (out->transport != HERALD_HTTP && out->transport != HERALD_SMTP)
		elog(ERROR, "pg_herald transport %d is not sent through libcurl",
			 (int) out->transport);
	if (out->transport == HERALD_SMTP)
		mail_from = (out->mail_from && out->mail_from[0] == '<') ?
			pstrdup(out->mail_from) :
			psprintf("<%s>", out->mail_from ? out->mail_from : "");

	old = MemoryContextSwitchTo(http_context);
	req = palloc0(sizeof(HeraldRequest));
	initStringInfo(&req->response);
	MemoryContextSwitchTo(old);

	easy = nspare > 0 ? spare_handles[--nspare] : curl_easy_init();
	if (easy == NULL)
	{
		pfree(req->response.data);
		pfree(req);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	}

	/* from here on nothing fails: the request takes what it sends */
	req->arg = arg;
	req->transport = out->transport;
	req->easy = easy;
	req->headers = out->headers;
	req->rcpts = out->rcpts;
	req->body = out->body;
	req->bodylen = out->bodylen;
	req->retry_after = -1;
	out->headers = NULL;
	out->rcpts = NULL;
	out->body = NULL;

	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_URL, out->url);
	curl_easy_setopt(easy, CURLOPT_PROXY, "");
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	/* 0 would mean no timeout at all to libcurl */
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, Max(timeout_ms, 1L));
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, req);
	/* TLS: the peer's certificate and its host name, always */
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (herald_ca_file != NULL && herald_ca_file[0] != '\0')
	{
		/*
		 * herald.ca_file in place of libcurl's bundle file; its CA directory
		 * (the system's) stays.  Not cached, so that each new connection
		 * reads the file as it is now: a file replaced in place counts
		 * after a reload, an unreadable one fails each attempt.
		 */
		curl_easy_setopt(easy, CURLOPT_CAINFO, herald_ca_file);
#if LIBCURL_VERSION_NUM >= 0x075700
		curl_easy_setopt(easy, CURLOPT_CA_CACHE_TIMEOUT, 0L);
#endif
	}
	if (req->transport == HERALD_HTTP)
	{
#if LIBCURL_VERSION_NUM >= 0x075500
		curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
		curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
		curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_callback);
		curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->bodylen);
		curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
		curl_easy_setopt(easy, CURLOPT_USERAGENT, "pg_herald/" PG_HERALD_VERSION);
	}
	else
	{
#if LIBCURL_VERSION_NUM >= 0x075500
		curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
#else
		curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long) (CURLPROTO_SMTP | CURLPROTO_SMTPS));
#endif
		curl_easy_setopt(easy, CURLOPT_MAIL_FROM, mail_from);
		curl_easy_setopt(easy, CURLOPT_MAIL_RCPT, req->rcpts);
		curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(easy, CURLOPT_READFUNCTION, read_callback);
		curl_easy_setopt(easy, CURLOPT_READDATA, req);
		curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, seek_callback);
		curl_easy_setopt(easy, CURLOPT_SEEKDATA, req);
		curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t) req->bodylen);
		/*
		 * STARTTLS when offered (smtps:// is TLS from the start); with a
		 * password, TLS is required, so that it never crosses in clear.
		 */
		curl_easy_setopt(easy, CURLOPT_USE_SSL,
						 (long) (out->password ? CURLUSESSL_ALL : CURLUSESSL_TRY));
		if (out->password)
			curl_easy_setopt(easy, CURLOPT_PASSWORD, out->password);
		pfree(mail_from);
	}

	req->started = GetCurrentTimestamp();
	mrc = curl_multi_add_handle(multi, easy);
	if (mrc != CURLM_OK)
	{
		/* report it as a failed attempt, like any other transport error */
		req->result = CURLE_FAILED_INIT;
		snprintf(req->errbuf, sizeof(req->errbuf), "%s", curl_multi_strerror(mrc));
		dlist_push_tail(&completed, &req->node);
		return req;
	}
	in_flight++;
	return req;
}

/* Move finished transfers to the completed list. */
static void
collect_completed(void)
{
	CURLMsg    *msg;
	int			queued;

	while ((msg = curl_multi_info_read(multi, &queued)) != NULL)
	{
		HeraldRequest *req;
		curl_off_t	total_us = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		req->result = msg->data.result;
		curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->http_status);
		/*
		 * libcurl reads what a hostile endpoint sends as a status even when
		 * it is none ("HTTP/2 18888888888" gives -1, an SMTP reply "2501"
		 * 2501): only a three-digit code is one, anything else is recorded
		 * as no response (0).
		 */
		if (req->http_status < 100 || req->http_status > 999)
			req->http_status = 0;
#if LIBCURL_VERSION_NUM >= 0x074200
		{
			curl_off_t	retry = -1;

			if (curl_easy_getinfo(req->easy, CURLINFO_RETRY_AFTER, &retry) == CURLE_OK &&
				retry > 0)
				req->retry_after = (long) retry;
		}
#endif
		if (curl_easy_getinfo(req->easy, CURLINFO_TOTAL_TIME_T, &total_us) == CURLE_OK)
			req->latency_ms = total_us / 1000.0;
		curl_multi_remove_handle(multi, req->easy);
		Assert(in_flight > 0);
		in_flight--;
		dlist_push_tail(&completed, &req->node);
	}
}

/* A request that is not libcurl's (nats.c) completed. */
void
herald_http_finish(HeraldRequest *req)
{
	Assert(in_flight > 0);
	in_flight--;
	dlist_push_tail(&completed, &req->node);
}

/* Another descriptor to wait on (nats.c's eventfd) appeared. */
void
herald_http_wait_set_changed(void)
{
	sockets_changed = true;
}

static void
rebuild_wait_set(void)
{
#ifdef CURL_EPOLL
	int			needed = 4;
#else
	int			needed = nsockets + 3;
#endif

	if (wait_set)
		FreeWaitEventSet(wait_set);
	if (needed > wait_set_size)
	{
		wait_set_size = Max(needed, wait_set_size * 2);
		if (wait_events)
			pfree(wait_events);
		wait_events = MemoryContextAlloc(http_context,
										 sizeof(WaitEvent) * wait_set_size);
	}
	Assert(needed <= wait_set_size);
	wait_set = herald_create_wait_event_set(needed);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	if (herald_nats_wait_fd() >= 0)
		AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, herald_nats_wait_fd(), NULL, NULL);
#ifdef CURL_EPOLL
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, curl_epoll, NULL, NULL);
#else
	for (int i = 0; i < nsockets; i++)
	{
		uint32		events = 0;

		if (sockets[i].what & CURL_POLL_IN)
			events |= WL_SOCKET_READABLE;
		if (sockets[i].what & CURL_POLL_OUT)
			events |= WL_SOCKET_WRITEABLE;
		AddWaitEventToSet(wait_set, events, sockets[i].fd, NULL, NULL);
	}
#endif
	sockets_changed = false;
}

#ifdef CURL_EPOLL
/* Let libcurl act on each of its sockets that is ready now. */
static void
curl_sockets_ready(void)
{
	struct epoll_event events[64];
	int			n;
	int			running;

	n = epoll_wait(curl_epoll, events, lengthof(events), 0);
	if (n < 0 && errno != EINTR)
		elog(LOG, "pg_herald could not read which sockets are ready: %m");
	for (int i = 0; i < n; i++)
	{
		int			mask = 0;

		if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			mask |= CURL_CSELECT_IN;
		if (events[i].events & (EPOLLOUT | EPOLLERR))
			mask |= CURL_CSELECT_OUT;
		if (events[i].events & EPOLLERR)
			mask |= CURL_CSELECT_ERR;
		curl_multi_socket_action(multi, events[i].data.fd, mask, &running);
	}
}
#endif

/*
 * Wait up to timeout_ms (-1: no limit) for the latch, a socket or libcurl's
 * timer, and let libcurl make progress.  Returns true when the latch was
 * set (and resets it).
 */
bool
herald_http_wait(long timeout_ms, uint32 wait_event_info)
{
	long		timeout = timeout_ms;
	bool		latch_set = false;
	int			running;
	int			n;

	if (sockets_changed || wait_set == NULL)
		rebuild_wait_set();

	if (in_flight > 0 && curl_deadline != 0)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		curl_ms = curl_deadline <= now ? 0 :
			(long) ((curl_deadline - now + 999) / 1000);

		if (timeout < 0 || curl_ms < timeout)
			timeout = curl_ms;
	}
	{
		long		nats_ms = herald_nats_timeout_ms();

		if (nats_ms >= 0 && (timeout < 0 || nats_ms < timeout))
			timeout = nats_ms;
	}

	n = WaitEventSetWait(wait_set, timeout, wait_events, wait_set_size,
						 wait_event_info);
	for (int i = 0; i < n; i++)
	{
		WaitEvent  *ev = &wait_events[i];

		if (ev->events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			latch_set = true;
		}
		else if (ev->fd == herald_nats_wait_fd())
			continue;			/* herald_nats_poll() below reads it */
#ifdef CURL_EPOLL
		else if (ev->fd == curl_epoll)
			curl_sockets_ready();
#endif
		else if (ev->events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
		{
			int			mask = 0;

			if (ev->events & WL_SOCKET_READABLE)
				mask |= CURL_CSELECT_IN;
			if (ev->events & WL_SOCKET_WRITEABLE)
				mask |= CURL_CSELECT_OUT;
			curl_multi_socket_action(multi, ev->fd, mask, &running);
		}
	}

	/* libcurl's timer: connection set-up, timeouts, newly added handles */
	if (in_flight > 0 && curl_deadline != 0 && GetCurrentTimestamp() >= curl_deadline)
	{
		curl_deadline = 0;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	collect_completed();
	herald_nats_poll();
	CHECK_FOR_INTERRUPTS();
	return latch_set;
}

HeraldRequest *
herald_http_next_completed(void)
{
	if (dlist_is_empty(&completed))
		return NULL;
	return dlist_container(HeraldRequest, node, dlist_pop_head_node(&completed));
}

int
herald_http_in_flight(void)
{
	return in_flight;
}

/* A readable description of a failed transfer. */
char *
herald_http_error(HeraldRequest *req)
{
	if (req->result == CURLE_OK)
		return NULL;
	if (req->transport == HERALD_NATS)
		return pstrdup(req->errbuf);
	if (req->headers_too_large)
		return psprintf("response header too large: more than %d bytes",
						HERALD_RESPONSE_HEADERS_MAX);

	/*
	 * libcurl refuses a header line longer than CURL_MAX_HTTP_HEADER
	 * before handing it over, and reports it as out of memory (as too
	 * large from 8.6 on).
	 */
	if (req->transport == HERALD_HTTP && !req->headers_done &&
		(req->result == CURLE_OUT_OF_MEMORY
#if LIBCURL_VERSION_NUM >= 0x080600
		 || req->result == CURLE_TOO_LARGE
#endif
		 ))
		return psprintf("response header too large: a line of more than %d bytes",
						CURL_MAX_HTTP_HEADER);
	if (req->result == CURLE_SSL_CACERT_BADFILE &&
		herald_ca_file != NULL && herald_ca_file[0] != '\0')
		return psprintf("could not load the CA certificates of herald.ca_file: %s",
						req->errbuf[0] ? req->errbuf : curl_easy_strerror(req->result));
	if (req->errbuf[0] != '\0')
		return psprintf("%s: %s", curl_easy_strerror(req->result), req->errbuf);
	return pstrdup(curl_easy_strerror(req->result));
}

/* Keep an easy handle for another request, or free it. */
static void
release_handle(CURL *easy)
{
	if (!reuse_handles)
	{
		curl_easy_cleanup(easy);
		return;
	}
	if (maxspare < herald_max_in_flight && nspare == maxspare)
	{
		int			size = Min(Max(16, maxspare * 2), herald_max_in_flight);

		spare_handles = spare_handles ?
			repalloc(spare_handles, sizeof(CURL *) * size) :
			MemoryContextAlloc(http_context, sizeof(CURL *) * size);
		maxspare = size;
	}
	if (nspare < maxspare && nspare < herald_max_in_flight)
	{
		/* every option back to its default: nothing of this request stays */
		curl_easy_reset(easy);
		spare_handles[nspare++] = easy;
	}
	else
		curl_easy_cleanup(easy);
}

void
herald_http_free(HeraldRequest *req)
{
	if (req->easy)
		release_handle(req->easy);
	if (req->headers)
		curl_slist_free_all(req->headers);
	if (req->rcpts)
		curl_slist_free_all(req->rcpts);
	if (req->body)
		pfree(req->body);
	pfree(req->response.data);
	pfree(req);
}

/*
 * herald._check_target(kind text, target text): error unless target is an
 * absolute URL with a host and a scheme the transport of the channel kind
 * (channel_kinds.c) speaks: smtp or smtps for SMTP, http or https for
 * HTTP.  Notify targets are channel names, checked in SQL.  The URL
 * itself is never quoted in messages: it may carry a token.
 */
Datum
herald_check_target(PG_FUNCTION_ARGS)
{
	char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *target = text_to_cstring(PG_GETARG_TEXT_PP(1));
	const HeraldChannelKind *k = herald_channel_kind(kind);
	bool		email;
	CURLU	   *url;
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *scheme_copy;

	if (k != NULL && k->transport == HERALD_NATS)
	{
		herald_check_nats_target(target);
		PG_RETURN_VOID();
	}
	if (k == NULL || (k->transport != HERALD_HTTP && k->transport != HERALD_SMTP))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot check a URL target for a channel of kind %s", kind)));
	email = k->transport == HERALD_SMTP;

	url = curl_url();
	if (url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	rc = curl_url_set(url, CURLUPART_URL, target, CURLU_NON_SUPPORT_SCHEME);
	if (rc == CURLUE_OK)
		rc = curl_url_get(url, CURLUPART_SCHEME, &scheme, 0);
	if (rc == CURLUE_OK)
	{
		bool		allowed;

		scheme_copy = pstrdup(scheme);
		curl_free(scheme);
		if (email)
			allowed = strcmp(scheme_copy, "smtp") == 0 || strcmp(scheme_copy, "smtps") == 0;
		else
			allowed = strcmp(scheme_copy, "http") == 0 || strcmp(scheme_copy, "https") == 0;
		if (!allowed)
		{
			curl_url_cleanup(url);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot use scheme \"%s\" for a channel of kind %s", scheme_copy, kind),
					 email ?
					 errhint("Use an smtp or smtps URL.") :
					 errhint("Use an http or https URL.")));
		}
		rc = curl_url_get(url, CURLUPART_HOST, &host, 0);
		if (rc == CURLUE_OK && host[0] == '\0')
			rc = CURLUE_NO_HOST;
		if (host)
			curl_free(host);
	}
	curl_url_cleanup(url);
	if (rc != CURLUE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("malformed target URL for a channel of kind %s", kind),
#if LIBCURL_VERSION_NUM >= 0x075000
				 errdetail("%s.", curl_url_strerror(rc)),
#endif
				 email ?
				 errhint("Give an absolute URL such as smtp://user@mail.example.com:587.") :
				 errhint("Give an absolute URL such as https://hooks.example.com/path.")));
	PG_RETURN_VOID();
}
