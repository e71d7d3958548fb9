/*-------------------------------------------------------------------------
 *
 * http_server.h
 *		The HTTP worker's requests and responses, as its route handlers see
 *		them.
 *
 * http_server.c runs libmicrohttpd in the worker's own wait loop.  It reads
 * a whole request (bounded), suspends the connection, and hands the request
 * to a route handler inside a transaction, as role herald_http, with SPI
 * connected; the handler fills in the response; the worker commits (or
 * aborts, on an error, and answers 500), then resumes the connection with
 * the response.  No handler talks to libmicrohttpd, and no ereport ever
 * unwinds through it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HERALD_HTTP_SERVER_H
#define HERALD_HTTP_SERVER_H

#include "lib/stringinfo.h"

#define HERALD_HTTP_MAX_BODY (64 * 1024)
#define HERALD_HTTP_MAX_HEADERS 8

typedef struct HeraldHttpRequest
{
	const char *method;			/* "GET", "HEAD" or "POST" */
	const char *path;			/* without the query string */
	const char *remote;			/* the client's address, as text */
	const char *body;			/* NUL-terminated, bodylen bytes */
	size_t		bodylen;
	/* the request headers the handlers read, NULL when absent */
	const char *content_type;
	const char *origin;
	const char *slack_signature;	/* X-Slack-Signature */
	const char *slack_timestamp;	/* X-Slack-Request-Timestamp */
} HeraldHttpRequest;

typedef struct HeraldHttpResponse
{
	int			status;
	const char *content_type;	/* e.g. "text/html; charset=utf-8" */
	StringInfoData body;		/* initialised by the worker */
	/* extra response headers, "Name: value" */
	int			nheaders;
	char	   *headers[HERALD_HTTP_MAX_HEADERS];
	const char *log_reason;		/* a refusal: logged once with this reason */
} HeraldHttpResponse;

/* http_server.c */
extern double herald_http_rate_limit;
extern void herald_define_http_settings(void);

/* decision_page.c: GET, HEAD and POST /d/{token}; the pages' frame */
extern void herald_decision_page(const HeraldHttpRequest *req, HeraldHttpResponse *resp);
extern void herald_http_page_start(StringInfo buf, const char *title);
extern void herald_http_page_end(StringInfo buf);
extern void herald_html_escape(StringInfo buf, const char *text);

/* http_server.c: the form-urlencoded bodies of pages and Slack alike */
typedef struct HeraldFormField
{
	const char *name;			/* in: the field's name */
	char	   *value;			/* out: its first value, or NULL */
	size_t		len;			/* out: the value's bytes */
	int			count;			/* out: how many times it came */
} HeraldFormField;

extern int	herald_hex_value(char c);
extern bool herald_parse_form(const char *body, size_t len, HeraldFormField *fields,
							  int nfields);

/* slack.c: POST /slack/actions */
extern void herald_slack_actions(const HeraldHttpRequest *req, HeraldHttpResponse *resp);

#endif							/* HERALD_HTTP_SERVER_H */
