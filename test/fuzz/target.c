/*
 * Fuzz herald._check_target(kind, target) (src/http.c): the URL an author
 * gives a channel, checked with libcurl's parser.  The input is
 * "kind\0target".  An accepted target has a host and a scheme its kind's
 * transport speaks (a nats target, a list of servers, its scheme); nothing
 * else is accepted, and nothing crashes.
 */
#include "../../src/http.c"

#include "fuzz.h"
#include "kinds.h"

// fuzz-links: nats format

int			herald_max_host_connections = 4;

static void
one(void *arg)
{
	FuzzInput  *in = arg;
	char	   *parts[2];
	const HeraldChannelKind *k;
	CURLU	   *url;
	char	   *scheme = NULL;
	char	   *host = NULL;
	LOCAL_FCINFO(fcinfo, 2);

	herald_fuzz_split(in->data, in->size, parts, 2);
	/* what SQL hands over is text of the database encoding */
	if (!herald_fuzz_utf8(parts[1], strlen(parts[1])))
		return;
	InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = PointerGetDatum(cstring_to_text(parts[0]));
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = PointerGetDatum(cstring_to_text(parts[1]));
	fcinfo->args[1].isnull = false;
	herald_check_target(fcinfo);

	/* accepted: an absolute URL of the kind's schemes, with a host */
	k = herald_channel_kind(parts[0]);
	if (k == NULL)
		abort();
	if (k->transport == HERALD_NOTIFY)
		return;
	if (k->transport == HERALD_NATS)
	{
		/* a server list and a subject, not one URL: the scheme is checked */
		if (strncmp(parts[1], "nats://", 7) != 0 && strncmp(parts[1], "tls://", 6) != 0)
			abort();
		return;
	}
	url = curl_url();
	if (curl_url_set(url, CURLUPART_URL, parts[1], CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
		curl_url_get(url, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(url, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0')
		abort();
	if (k->transport == HERALD_SMTP ?
		(strcmp(scheme, "smtp") != 0 && strcmp(scheme, "smtps") != 0) :
		(strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		abort();
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(url);
}

HERALD_FUZZ_TARGET(one)
