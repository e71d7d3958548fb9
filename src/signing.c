/*-------------------------------------------------------------------------
 *
 * signing.c
 *		Standard Webhooks secrets and signatures.
 *
 * A secret is "whsec_" followed by the base64 encoding of 24 to 64 random
 * bytes; the decoded bytes are the HMAC-SHA256 key.  A signature is
 * "v1," + base64(HMAC-SHA256(key, "<msg id>.<timestamp>.<body>")).
 * The delivery worker signs every attempt; the SQL functions here generate
 * and check secrets and let integrators reproduce a signature.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "fmgr.h"
#include "port.h"
#include "utils/builtins.h"
#include "utils/resowner.h"

#include "compat.h"
#include "pg_herald.h"

#define SECRET_PREFIX "whsec_"
#define SECRET_MIN_BYTES 24
#define SECRET_MAX_BYTES 64
#define SECRET_NEW_BYTES 32

/* The length of the padded base64 of n bytes */
#define B64_LEN(n) (((n) + 2) / 3 * 4)

static ResourceOwner signing_owner = NULL;

PG_FUNCTION_INFO_V1(herald_generate_secret);
PG_FUNCTION_INFO_V1(herald_check_secret);
PG_FUNCTION_INFO_V1(herald_webhook_signature);

/*
 * Decode a "whsec_..." secret into key (at least SECRET_MAX_BYTES long).
 * Returns false when the secret is malformed.
 */
bool
herald_secret_key(const char *secret, uint8 *key, int *keylen)
{
	const char *b64;
	int			b64len;
	uint8		buf[SECRET_MAX_BYTES * 2];
	int			len;

	if (secret == NULL || strncmp(secret, SECRET_PREFIX, strlen(SECRET_PREFIX)) != 0)
		return false;
	b64 = secret + strlen(SECRET_PREFIX);
	b64len = strlen(b64);
	if (b64len == 0 || pg_b64_dec_len(b64len) > (int) sizeof(buf))
		return false;
	len = herald_b64_decode(b64, b64len, buf, sizeof(buf));
	Assert(len <= (int) sizeof(buf));
	if (len < SECRET_MIN_BYTES || len > SECRET_MAX_BYTES)
		return false;
	memcpy(key, buf, len);
	*keylen = len;
	return true;
}

/*
 * Write the "v1,<base64>" signature of one request into out, which holds
 * HERALD_SIGNATURE_MAX bytes.
 */
void
herald_sign(const uint8 *key, int keylen, const char *msg_id, int64 timestamp,
			const char *body, size_t bodylen, char *out)
{
	pg_hmac_ctx *ctx;
	ResourceOwner save_owner;
	bool		ok;
	uint8		digest[32];
	char		prefix[128];
	int			prefixlen;
	int			n;

	/* a key herald_secret_key() decoded */
	Assert(keylen >= SECRET_MIN_BYTES && keylen <= SECRET_MAX_BYTES);
	prefixlen = snprintf(prefix, sizeof(prefix), "%s." INT64_FORMAT ".",
						 msg_id, timestamp);
	if (prefixlen >= (int) sizeof(prefix))
		elog(ERROR, "webhook id too long to sign");

	/*
	 * The HMAC context is tracked by a resource owner; the delivery worker
	 * signs outside any transaction, so it lends one of its own.
	 */
	save_owner = CurrentResourceOwner;
	if (CurrentResourceOwner == NULL)
	{
		if (signing_owner == NULL)
			signing_owner = ResourceOwnerCreate(NULL, "pg_herald signing");
		CurrentResourceOwner = signing_owner;
	}
	ctx = pg_hmac_create(PG_SHA256);
	ok = ctx != NULL &&
		pg_hmac_init(ctx, key, keylen) >= 0 &&
		pg_hmac_update(ctx, (const uint8 *) prefix, prefixlen) >= 0 &&
		pg_hmac_update(ctx, (const uint8 *) body, bodylen) >= 0 &&
		pg_hmac_final(ctx, digest, sizeof(digest)) >= 0;
	if (ctx != NULL)
		pg_hmac_free(ctx);
	CurrentResourceOwner = save_owner;
	if (!ok)
		elog(ERROR, "could not compute a webhook signature");

	memcpy(out, "v1,", 3);
	n = herald_b64_encode(digest, sizeof(digest), out + 3,
						  HERALD_SIGNATURE_MAX - 4);
	if (n < 0)
		elog(ERROR, "could not encode a webhook signature");
	/* "v1," and the 44 characters of a SHA-256 digest */
	Assert(n == B64_LEN(sizeof(digest)) && 3 + n < HERALD_SIGNATURE_MAX);
	out[3 + n] = '\0';
}

/* herald.generate_secret(): a new random "whsec_" secret */
Datum
herald_generate_secret(PG_FUNCTION_ARGS)
{
	uint8		raw[SECRET_NEW_BYTES];
	char		out[sizeof(SECRET_PREFIX) + SECRET_NEW_BYTES * 2];
	int			n;

	if (!pg_strong_random(raw, sizeof(raw)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random secret")));
	strcpy(out, SECRET_PREFIX);
	n = herald_b64_encode(raw, sizeof(raw),
						  out + strlen(SECRET_PREFIX),
						  sizeof(out) - strlen(SECRET_PREFIX) - 1);
	if (n < 0)
		elog(ERROR, "could not encode a secret");
	Assert(n == B64_LEN(SECRET_NEW_BYTES));
	Assert(strlen(SECRET_PREFIX) + n < sizeof(out));
	out[strlen(SECRET_PREFIX) + n] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/* herald._check_secret(secret): error unless the secret is well formed */
Datum
herald_check_secret(PG_FUNCTION_ARGS)
{
	uint8		key[SECRET_MAX_BYTES];
	int			keylen;

	if (PG_ARGISNULL(0) ||
		!herald_secret_key(text_to_cstring(PG_GETARG_TEXT_PP(0)), key, &keylen))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("malformed webhook secret"),
				 errdetail("A webhook secret is \"whsec_\" followed by the base64 encoding of %d to %d bytes.",
						   SECRET_MIN_BYTES, SECRET_MAX_BYTES),
				 errhint("Omit the secret to have one generated.")));
	PG_RETURN_VOID();
}

/*
 * herald.webhook_signature(msg_id, timestamp, body, secret): the
 * webhook-signature value pg_herald sends for that request.
 */
Datum
herald_webhook_signature(PG_FUNCTION_ARGS)
{
	char	   *msg_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		ts = PG_GETARG_INT64(1);
	text	   *body = PG_GETARG_TEXT_PP(2);
	char	   *secret = text_to_cstring(PG_GETARG_TEXT_PP(3));
	uint8		key[SECRET_MAX_BYTES];
	int			keylen;
	char		sig[HERALD_SIGNATURE_MAX];

	if (!herald_secret_key(secret, key, &keylen))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("malformed webhook secret")));
	if (strlen(msg_id) > 100)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook id is longer than 100 characters")));
	herald_sign(key, keylen, msg_id, ts, VARDATA_ANY(body),
				VARSIZE_ANY_EXHDR(body), sig);
	PG_RETURN_TEXT_P(cstring_to_text(sig));
}
