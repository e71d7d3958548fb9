/*
 * Fuzz what the Slack actions endpoint reads before and after it trusts a
 * request (src/slack.c): the X-Slack-Request-Timestamp and
 * X-Slack-Signature headers, the HMAC over the raw body, and the body's
 * one form field "payload".  The input is "timestamp\0signature\0body".
 *
 * Properties: a timestamp is fresh only when it is decimal digits within
 * 300 s of now; a signature parses only as "v0=" and 64 lower-case hex
 * digits, and the signature made for a body under a secret parses back
 * to its MAC and matches no other body; the payload found is the form's
 * only "payload" field.  (The payload's JSON and the decision itself need
 * the database: not here.)
 */
// fuzz-links: http_server links
#include "../../src/slack.c"

#include "fuzz.h"

static const char secret[] = "8f742231b10e8888abcd99yyyzzz85a5";

static void
one(void *arg)
{
	FuzzInput  *in = arg;
	char	   *parts[3];
	uint8		mac[SLACK_MAC_BYTES];
	uint8		mine[SLACK_MAC_BYTES];
	uint8		parsed[SLACK_MAC_BYTES];
	char		signature[SLACK_SIGNATURE_CHARS + 1];
	char	   *payload = NULL;
	size_t		payloadlen = 0;
	const char *problem;
	size_t		bodylen;
	HeraldHttpResponse resp;
	char		now[32];

	herald_fuzz_split(in->data, in->size, parts, 3);
	bodylen = in->size - Min(in->size, strlen(parts[0]) + strlen(parts[1]) + 2);

	/* the timestamp */
	if (timestamp_is_fresh(parts[0]))
	{
		if (strspn(parts[0], "0123456789") != strlen(parts[0]) || parts[0][0] == '\0')
			abort();
	}
	snprintf(now, sizeof(now), "%lld", (long long) unix_now());
	if (!timestamp_is_fresh(now))
		abort();

	/* the signature header */
	if (parse_signature(parts[1], parsed))
	{
		if (strlen(parts[1]) != SLACK_SIGNATURE_CHARS || strncmp(parts[1], "v0=", 3) != 0 ||
			strspn(parts[1] + 3, "0123456789abcdef") != 2 * SLACK_MAC_BYTES)
			abort();
	}

	/* our signature of the raw body (the bytes after the headers, NULs and all) */
	slack_mac(secret, parts[0], in->data + (in->size - bodylen), bodylen, mac);
	memcpy(signature, "v0=", 3);
	for (int i = 0; i < SLACK_MAC_BYTES; i++)
		snprintf(signature + 3 + 2 * i, 3, "%02x", mac[i]);
	if (!parse_signature(signature, parsed) || !herald_mac_equal(parsed, mac, SLACK_MAC_BYTES))
		abort();
	/* one byte more of body is another MAC */
	{
		uint8	   *longer = palloc(bodylen + 1);

		memcpy(longer, in->data + (in->size - bodylen), bodylen);
		longer[bodylen] = 'x';
		slack_mac(secret, parts[0], longer, bodylen + 1, mine);
		if (herald_mac_equal(mine, mac, SLACK_MAC_BYTES))
			abort();
	}

	/* the body's payload field */
	problem = form_payload(parts[2], strlen(parts[2]), &payload, &payloadlen);
	if (problem == NULL)
	{
		if (payload == NULL || strlen(payload) != payloadlen)
			abort();
	}
	else if (strncmp(problem, MALFORMED, strlen(MALFORMED)) != 0)
		abort();

	/* the refusal answer */
	memset(&resp, 0, sizeof(resp));
	initStringInfo(&resp.body);
	respond(&resp, 400, NULL, problem ? problem : "fine");
	if (resp.status != 400)
		abort();
}

HERALD_FUZZ_TARGET(one)
