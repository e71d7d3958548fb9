/*
 * Fuzz what pg_herald does with a receiver's answer (src/http.c): the
 * bytes a hostile endpoint sends back, through the real request path
 * (herald_http_start(), the multi handle, the header and body callbacks,
 * the completion that reads the status and Retry-After, and
 * herald_http_error()).  The receiver is the harness itself, on a
 * loopback port, answering with the fuzzed bytes and then closing.  The first byte picks HTTP (even)
 * or SMTP (odd), the rest is the answer.  Properties: the excerpt kept
 * stays within HERALD_RESPONSE_EXCERPT, the headers counted within their
 * limit, Retry-After is absent or positive, the status is 0 (none) or
 * three digits, an SMTP transfer that succeeded ended with a 2xx reply,
 * and a failed one has a description.
 */
#include "../../src/http.c"

#include <fcntl.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "kinds.h"

int			herald_max_host_connections = 4;
int			herald_max_in_flight = 64;	/* the reused easy handles kept */
char	   *herald_ca_file = NULL;	/* the system's CA certificates only */

/* the harness's listening socket on 127.0.0.1, and its address */
static int	listener = -1;
static struct sockaddr_in listen_addr;

/* the server's end of the request being made, and the answer it sends */
static int	server_fd = -1;
static const uint8 *answer;
static size_t answer_len;

static void
listen_loopback(void)
{
	socklen_t	len = sizeof(listen_addr);

	listener = socket(AF_INET, SOCK_STREAM, 0);
	memset(&listen_addr, 0, sizeof(listen_addr));
	listen_addr.sin_family = AF_INET;
	listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (listener < 0 ||
		bind(listener, (struct sockaddr *) &listen_addr, sizeof(listen_addr)) != 0 ||
		listen(listener, 4) != 0 ||
		getsockname(listener, (struct sockaddr *) &listen_addr, &len) != 0 ||
		fcntl(listener, F_SETFL, O_NONBLOCK) != 0)
	{
		perror("http_response: loopback listener");
		abort();
	}
}

/*
 * Serve the request being made: accept libcurl's connection, then write
 * what is left of the answer (as much as the socket takes), then the end
 * of the stream.  Called from the request's loop: nothing blocks.
 */
static void
serve(void)
{
	if (server_fd < 0)
	{
		server_fd = accept(listener, NULL, NULL);
		if (server_fd < 0)
			return;
		fcntl(server_fd, F_SETFL, O_NONBLOCK);
	}
	if (answer_len > 0)
	{
		ssize_t		n = write(server_fd, answer, answer_len);

		if (n > 0)
		{
			answer += n;
			answer_len -= n;
		}
		else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			answer_len = 0;		/* libcurl closed the connection */
	}
	if (answer_len == 0)
		shutdown(server_fd, SHUT_WR);
}

/* network.c's decision, without its settings: loopback is what we use */
bool
herald_network_allowed(const struct sockaddr *sa, char *why, size_t whylen)
{
	return true;
}

/*
 * NATS publishes (src/nats.c) are not fuzzed here: the answers are HTTP
 * and SMTP ones.  The request path asks nats.c for its wait and its
 * results; with no NATS channel, it has none.
 */
void
herald_nats_configure(void)
{
}

void
herald_nats_start(HeraldRequest *req, HeraldOutgoing *out, long timeout_ms)
{
	abort();					/* only a nats channel's request comes here */
}

void
herald_nats_poll(void)
{
}

long
herald_nats_timeout_ms(void)
{
	return -1;
}

int
herald_nats_wait_fd(void)
{
	return -1;
}

static void
one(void *arg)
{
	FuzzInput  *in = arg;
	HeraldOutgoing out;
	HeraldRequest *req;
	bool		smtp;
	int			running = 1;
	char	   *error;

	if (in->size < 1 || in->size > 65536)
		return;
	smtp = (in->data[0] & 1) != 0;
	answer = in->data + 1;
	answer_len = in->size - 1;
	server_fd = -1;

	memset(&out, 0, sizeof(out));
	out.transport = smtp ? HERALD_SMTP : HERALD_HTTP;
	out.url = psprintf(smtp ? "smtp://127.0.0.1:%d" : "http://127.0.0.1:%d/hook",
					   ntohs(listen_addr.sin_port));
	out.body = pstrdup(smtp ? "Subject: x\r\n\r\nbody\r\n" : "{\"a\":1}");
	out.bodylen = strlen(out.body);
	out.headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (smtp)
	{
		out.mail_from = "herald@example.com";
		out.rcpts = curl_slist_append(NULL, "<ops@example.com>");
	}
	req = herald_http_start(&out, 2000, NULL);
	curl_easy_setopt(req->easy, CURLOPT_FORBID_REUSE, 1L);

	/* libcurl's own loop instead of the worker's WaitEventSet; bounded */
	for (int i = 0; running && i < 1000; i++)
	{
		if (curl_multi_perform(multi, &running) != CURLM_OK)
			break;
		serve();
		if (running)
			curl_multi_poll(multi, NULL, 0, 1, NULL);
	}
	if (running)
	{
		/* bounded by the request's timeout: cannot happen */
		abort();
	}
	collect_completed();
	req = herald_http_next_completed();
	if (req == NULL)
		abort();
	Assert(herald_http_next_completed() == NULL);

	if (req->response.len > HERALD_RESPONSE_EXCERPT ||
		req->response_bytes < (size_t) req->response.len ||
		(req->header_bytes > HERALD_RESPONSE_HEADERS_MAX && !req->headers_too_large) ||
		req->retry_after == 0 || req->retry_after < -1 ||
		(req->http_status != 0 && (req->http_status < 100 || req->http_status > 999)))
		abort();
	/*
	 * delivery.c takes a transfer that succeeded over SMTP as the server's
	 * acceptance: its last reply is 2xx.  (Over HTTP it goes by the
	 * status's class; "HTTP/200K" is no status line: 0.)
	 */
	if (req->result == CURLE_OK && smtp &&
		(req->http_status < 200 || req->http_status > 299))
		abort();
	error = herald_http_error(req);
	if (getenv("HERALD_FUZZ_VERBOSE"))
		fprintf(stderr, "status %ld, retry_after %ld, %d bytes kept of %zu, error %s\n",
				req->http_status, req->retry_after, req->response.len,
				req->response_bytes, error ? error : "none");
	if (req->result != CURLE_OK && (error == NULL || error[0] == '\0'))
		abort();
	if (error)
		pfree(error);
	herald_http_free(req);
	if (server_fd >= 0)
	{
		close(server_fd);
		server_fd = -1;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzInput	in = {data, size};

	if (multi == NULL)
	{
		herald_http_init();
		listen_loopback();
	}
	herald_fuzz_call(one, &in);
	return 0;
}
