/*-------------------------------------------------------------------------
 *
 * http.h
 *		Concurrent HTTP and SMTP requests for the delivery worker (libcurl
 *		multi), and NATS publishes (nats.c) completed alike.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HERALD_HTTP_H
#define HERALD_HTTP_H

#include "postgres.h"

#include <curl/curl.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "utils/timestamp.h"

#include "pg_herald.h"

#define HERALD_RESPONSE_EXCERPT 1024
/* The most bytes of response headers read: a longer answer fails. */
#define HERALD_RESPONSE_HEADERS_MAX 65536

typedef struct HeraldRequest
{
	dlist_node	node;			/* in the completed list */
	void	   *arg;			/* the caller's delivery */
	HeraldTransport transport;	/* HERALD_HTTP, HERALD_SMTP or HERALD_NATS */
	CURL	   *easy;
	struct curl_slist *headers; /* HTTP headers, owned by the request */
	struct curl_slist *rcpts;	/* SMTP recipients, owned by the request */
	char	   *body;			/* owned by the request */
	size_t		bodylen;
	size_t		read_offset;	/* SMTP: how much of body libcurl has read */
	TimestampTz started;
	char		errbuf[CURL_ERROR_SIZE];
	char		denied[160];	/* why the network policy refused a
								 * connection, "" when it did not */
	StringInfoData response;	/* first HERALD_RESPONSE_EXCERPT bytes */
	size_t		response_bytes; /* of the body, all of it */
	size_t		header_bytes;	/* of the response headers so far */
	bool		headers_done;	/* the headers of the final answer ended */
	bool		headers_too_large;	/* HERALD_RESPONSE_HEADERS_MAX passed */

	/* results, valid once completed */
	CURLcode	result;
	long		http_status;	/* HTTP status, or the last SMTP reply code;
								 * 0 when no response */
	long		retry_after;	/* seconds, -1 when absent */
	double		latency_ms;
} HeraldRequest;

extern void herald_http_init(void);
extern void herald_http_configure(void);
extern HeraldRequest *herald_http_start(HeraldOutgoing *out, long timeout_ms,
										void *arg);
extern bool herald_http_wait(long timeout_ms, uint32 wait_event_info);
extern HeraldRequest *herald_http_next_completed(void);
extern void herald_http_free(HeraldRequest *req);
extern int	herald_http_in_flight(void);
extern char *herald_http_error(HeraldRequest *req);
extern void herald_http_finish(HeraldRequest *req);
extern void herald_http_wait_set_changed(void);

/*
 * nats.c: JetStream publishes, completed as HeraldRequests (result CURLE_OK
 * when a stream acknowledged, else errbuf says why, and denied when the
 * network policy refused a server).
 */
extern void herald_nats_start(HeraldRequest *req, HeraldOutgoing *out, long timeout_ms);
extern void herald_nats_poll(void);
extern long herald_nats_timeout_ms(void);
extern int	herald_nats_wait_fd(void);
extern void herald_nats_configure(void);

#endif							/* HERALD_HTTP_H */
