/*-------------------------------------------------------------------------
 *
 * http.h
 *		Concurrent HTTP requests for the delivery worker (libcurl multi).
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

#define HERALD_RESPONSE_EXCERPT 1024

typedef struct HeraldRequest
{
	dlist_node	node;			/* in the completed list */
	void	   *arg;			/* the caller's delivery */
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *body;			/* owned by the request */
	size_t		bodylen;
	TimestampTz started;
	char		errbuf[CURL_ERROR_SIZE];
	StringInfoData response;	/* first HERALD_RESPONSE_EXCERPT bytes */

	/* results, valid once completed */
	CURLcode	result;
	long		http_status;	/* 0 when no response */
	long		retry_after;	/* seconds, -1 when absent */
	double		latency_ms;
} HeraldRequest;

extern void herald_http_init(void);
extern void herald_http_configure(void);
extern HeraldRequest *herald_http_start(const char *url,
										struct curl_slist *headers,
										char *body, size_t bodylen,
										long timeout_ms, void *arg);
extern bool herald_http_wait(long timeout_ms, uint32 wait_event_info);
extern HeraldRequest *herald_http_next_completed(void);
extern void herald_http_free(HeraldRequest *req);
extern int	herald_http_in_flight(void);
extern char *herald_http_error(HeraldRequest *req);

#endif							/* HERALD_HTTP_H */
