/*
 * Fuzz herald._check_nats_secret(secret) and the .creds parser behind it
 * (src/nats.c, parse_creds): the secret of a nats channel.  The input is
 * the secret.  What the check accepts, the worker's parser takes too: a
 * .creds content gives a JWT of three non-empty base64url parts inside the
 * secret and the seed its checksum vouches for; anything else is one line
 * of 1 to 4096 bytes.  Nothing crashes.
 */
#include "../../src/nats.c"

#include "fuzz.h"

static void
one(void *arg)
{
	FuzzInput  *in = arg;
	char	   *secret = herald_fuzz_cstring(in->data, in->size);
	char	   *copy;
	const char *jwt = NULL;
	size_t		jwtlen = 0;
	unsigned char seed[32];
	int			dots = 0;
	LOCAL_FCINFO(fcinfo, 1);

	/* what SQL hands over is text of the database encoding */
	if (!herald_fuzz_utf8(secret, strlen(secret)))
		return;
	copy = pstrdup(secret);
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = PointerGetDatum(cstring_to_text(secret));
	fcinfo->args[0].isnull = false;
	herald_check_nats_secret(fcinfo);

	/* accepted */
	if (strstr(copy, CREDS_JWT_BEGIN) == NULL && strstr(copy, CREDS_SEED_BEGIN) == NULL)
	{
		size_t		len = strlen(copy);

		if (len == 0 || len > NATS_SECRET_MAX)
			abort();
		for (size_t i = 0; i < len; i++)
			if ((unsigned char) copy[i] < ' ' || copy[i] == 0x7f)
				abort();
		return;
	}
	if (strlen(copy) > NATS_CREDS_MAX ||
		parse_creds(copy, &jwt, &jwtlen, seed) != NULL)
		abort();
	if (jwt < copy || jwt + jwtlen > copy + strlen(copy) || jwtlen < 5)
		abort();
	for (size_t i = 0; i < jwtlen; i++)
	{
		if (jwt[i] == '.')
		{
			if (i == 0 || i == jwtlen - 1 || jwt[i - 1] == '.')
				abort();
			dots++;
		}
		else if (!value_char((unsigned char) jwt[i]))
			abort();
	}
	if (dots != 2)
		abort();
}

HERALD_FUZZ_TARGET(one)
