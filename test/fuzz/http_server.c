/*
 * Fuzz the HTTP worker's request intake (src/http_server.c): what a
 * client on the network sends, through the real libmicrohttpd access
 * handler (routing, methods, Content-Length, the headers kept, the body
 * arriving in chunks, the per-address rate limit and refusal log), with
 * libmicrohttpd's connection and response calls played by the harness.
 * The input is "method\0url\0content-length\0content-type\0origin\0
 * signature\0timestamp\0body"; the body comes in chunks whose size the
 * input's length picks.
 *
 * Properties: each request is answered at most once and then never
 * queued; a queued request has the whole body, within
 * HERALD_HTTP_MAX_BODY, NUL-terminated; no response header holds a CR or
 * LF; refusal log lines hold printable ASCII only; everything malloc'd is
 * freed when the request completes.  Then the form parser runs on the
 * body, as the handlers would.
 */
#include "../../src/http_server.c"

#include "fuzz.h"

/* ---- libmicrohttpd, as far as the access handler uses it ---- */

struct MHD_Response
{
	char	   *body;
	size_t		len;
};

static const char *fuzz_headers[5][2] = {
	{MHD_HTTP_HEADER_CONTENT_LENGTH, NULL},
	{MHD_HTTP_HEADER_CONTENT_TYPE, NULL},
	{MHD_HTTP_HEADER_ORIGIN, NULL},
	{"X-Slack-Signature", NULL},
	{"X-Slack-Request-Timestamp", NULL}
};
static union MHD_ConnectionInfo fuzz_client;
static struct sockaddr_storage fuzz_address;
static int	responses_queued;
static bool suspended;

const union MHD_ConnectionInfo *
MHD_get_connection_info(struct MHD_Connection *connection,
						enum MHD_ConnectionInfoType info_type,...)
{
	if (info_type == MHD_CONNECTION_INFO_CLIENT_ADDRESS)
		return &fuzz_client;
	return NULL;
}

const char *
MHD_lookup_connection_value(struct MHD_Connection *connection,
							enum MHD_ValueKind kind, const char *key)
{
	for (int i = 0; i < lengthof(fuzz_headers); i++)
		if (pg_strcasecmp(fuzz_headers[i][0], key) == 0)
			return fuzz_headers[i][1];
	return NULL;
}

struct MHD_Response *
MHD_create_response_from_buffer(size_t size, void *buffer, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *r = malloc(sizeof(struct MHD_Response));

	Assert(mode == MHD_RESPMEM_MUST_COPY);
	r->body = malloc(size + 1);
	memcpy(r->body, buffer, size);
	r->len = size;
	return r;
}

enum MHD_Result
MHD_add_response_header(struct MHD_Response *response, const char *header,
						const char *content)
{
	/* libmicrohttpd would refuse it; pg_herald must never try */
	if (strpbrk(header, "\r\n:") != NULL || strpbrk(content, "\r\n") != NULL ||
		header[0] == '\0')
		abort();
	return MHD_YES;
}

enum MHD_Result
MHD_queue_response(struct MHD_Connection *connection, unsigned int status_code,
				   struct MHD_Response *response)
{
	if (status_code < 100 || status_code > 599)
		abort();
	responses_queued++;
	return MHD_YES;
}

void
MHD_destroy_response(struct MHD_Response *response)
{
	free(response->body);
	free(response);
}

void
MHD_suspend_connection(struct MHD_Connection *connection)
{
	suspended = true;
}

static void
one(void *arg)
{
	FuzzInput  *in = arg;
	char	   *parts[8];
	struct MHD_Connection *connection = (struct MHD_Connection *) &fuzz_address;
	void	   *con_cls = NULL;
	size_t		none = 0;
	Request    *r;
	enum MHD_Result ret;
	size_t		chunk;
	size_t		bodylen;
	const char *body;

	herald_fuzz_split(in->data, in->size, parts, 8);
	for (int i = 0; i < lengthof(fuzz_headers); i++)
		fuzz_headers[i][1] = parts[2 + i][0] ? parts[2 + i] : NULL;
	body = parts[7];
	bodylen = strlen(body);
	chunk = 1 + in->size % 97;

	/* the client: one of a few addresses, or none known */
	memset(&fuzz_address, 0, sizeof(fuzz_address));
	switch (in->size % 3)
	{
		case 0:
			((struct sockaddr_in *) &fuzz_address)->sin_family = AF_INET;
			((struct sockaddr_in *) &fuzz_address)->sin_addr.s_addr = htonl(0x7f000001 + in->size % 5);
			fuzz_client.client_addr = (struct sockaddr *) &fuzz_address;
			break;
		case 1:
			((struct sockaddr_in6 *) &fuzz_address)->sin6_family = AF_INET6;
			((struct sockaddr_in6 *) &fuzz_address)->sin6_addr.s6_addr[15] = in->size % 7;
			fuzz_client.client_addr = (struct sockaddr *) &fuzz_address;
			break;
		default:
			fuzz_client.client_addr = NULL;
			break;
	}
	/* now and then, the rate limit is on */
	herald_http_rate_limit = (in->size % 11 == 0) ? 1 : 0;
	responses_queued = 0;
	suspended = false;

	/* the first call: the request line and headers */
	ret = access_handler(NULL, connection, parts[1], parts[0], "HTTP/1.1", NULL, &none, &con_cls);
	r = con_cls;
	if (ret == MHD_YES && r == NULL)
		abort();
	/* the body, chunk by chunk, then the call that ends it */
	for (size_t off = 0; ret == MHD_YES && off < bodylen; off += chunk)
	{
		size_t		n = Min(chunk, bodylen - off);
		size_t		left = n;

		ret = access_handler(NULL, connection, parts[1], parts[0], "HTTP/1.1",
							 body + off, &left, &con_cls);
		if (ret == MHD_YES && left != 0)
			abort();			/* all of it must be taken */
	}
	if (ret == MHD_YES)
		ret = access_handler(NULL, connection, parts[1], parts[0], "HTTP/1.1", NULL,
							 &none, &con_cls);
	if (responses_queued > 1)
		abort();
	r = con_cls;
	if (suspended)
	{
		/* queued for the worker: whole, bounded, terminated, unanswered */
		if (r == NULL || !r->queued || queue_head != r || r->answered ||
			responses_queued != 0 || r->bodylen != bodylen ||
			r->bodylen > HERALD_HTTP_MAX_BODY || r->body[r->bodylen] != '\0' ||
			memcmp(r->body, body, bodylen) != 0)
			abort();
		/* what the handlers parse */
		{
			HeraldFormField fields[2] = {{.name = "payload"}, {.name = "said"}};

			if (herald_parse_form(r->body, r->bodylen, fields, 2))
				for (int i = 0; i < 2; i++)
					if (fields[i].value && strlen(fields[i].value) != fields[i].len)
						abort();
		}
		queue_head = queue_tail = NULL;
		r->queued = false;
	}
	else if (queue_head != NULL)
		abort();
	request_completed(NULL, connection, &con_cls, MHD_REQUEST_TERMINATED_COMPLETED_OK);

	/* the refusal log: printable ASCII, then flushed */
	for (int i = 0; i < npending_logs; i++)
		for (const char *p = pending_logs[i].reason; *p; p++)
			if ((unsigned char) *p < ' ' || (unsigned char) *p >= 0x7f)
				abort();
	flush_refusal_logs();
}

HERALD_FUZZ_TARGET(one)
