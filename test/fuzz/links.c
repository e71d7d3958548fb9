/*
 * Fuzz the decision links' tokens (src/links.c): what a browser sends in
 * /d/{token}.  Parsing never reads or writes out of bounds and accepts
 * only canonical base64url; a parsed token verifies only under the key
 * that made it; a token made from what was parsed parses back to the same
 * link (herald_link_token() asserts it stays within the limits).
 */
// fuzz-links: links
#include "postgres.h"

#include "pg_herald.h"
#include "fuzz.h"

static const uint8 key[] = "a key of thirty-two bytes, fixed";

static void
one(void *arg)
{
	FuzzInput  *in = arg;
	char	   *token = herald_fuzz_cstring(in->data, in->size);
	HeraldLink	link;
	HeraldLink	again;
	uint8		raw[HERALD_LINK_MAX_BYTES];
	uint8		raw2[HERALD_LINK_MAX_BYTES];
	uint8		small[8];
	int			rawlen;
	int			rawlen2;
	int			n;
	char	   *remade;

	/* base64url, into a buffer too small as well as into a large one */
	n = herald_b64url_decode(token, small, sizeof(small));
	Assert(n <= (int) sizeof(small));
	n = herald_b64url_decode(token, raw, sizeof(raw));
	if (n >= 0)
	{
		char	   *back = herald_b64url_encode(raw, n);

		/* canonical only: one spelling per byte string */
		if (strcmp(back, token) != 0)
			abort();
	}

	if (!herald_link_parse(token, &link, raw, &rawlen))
		return;
	Assert(rawlen <= HERALD_LINK_MAX_BYTES);
	/* the MAC of a fuzzed token: checking it must not crash */
	(void) herald_link_verify(raw, rawlen, key, sizeof(key) - 1);

	/* a token made of what was parsed, under our key, round-trips */
	if (link.action > 255)
		return;
	remade = herald_link_token(&link, key, sizeof(key) - 1);
	if (!herald_link_parse(remade, &again, raw2, &rawlen2) ||
		!herald_link_verify(raw2, rawlen2, key, sizeof(key) - 1) ||
		again.key_id != link.key_id || again.event_id != link.event_id ||
		again.action != link.action || again.channel_id != link.channel_id ||
		again.expires != link.expires || strcmp(again.recipient, link.recipient) != 0)
		abort();
	/* and no other key verifies it */
	if (herald_link_verify(raw2, rawlen2, (const uint8 *) "another key", 11))
		abort();
}

HERALD_FUZZ_TARGET(one)
