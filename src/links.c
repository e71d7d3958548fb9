/*-------------------------------------------------------------------------
 *
 * links.c
 *		Signed decision links: the URLs behind every action of a message.
 *
 * A message about an event that awaits a decision offers actions (the
 * rule's choices, or "Acknowledge" and "Record a decision"), one URL each:
 * herald.public_url + "/d/" + a token.  The token binds what the link
 * proves and nothing more: the episode's event, the action, the channel the
 * message went to, the recipient it was addressed to ("" for whoever reads
 * the channel) and an expiry (herald.link_lifetime after it was signed).
 * It is base64url (no padding) of
 *
 *	 version (1 byte, 1) | key id (4) | event id (8) | action (1) |
 *	 channel id (4) | expiry, unix seconds (8) | recipient length (1) |
 *	 recipient | HMAC-SHA256(key, "herald-link" NUL | all that precedes) (32)
 *
 * integers big-endian.  The keys are rows of herald.link_keys, which only
 * the workers read: the newest unretired one signs, every one that is left
 * verifies.  A MAC is compared in constant time.
 *
 * The delivery worker signs links in its claim (herald._actions() calls
 * herald._link()); the HTTP worker checks them with herald._link_check().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "common/hmac.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "pg_herald.h"

#define LINK_VERSION 1
#define LINK_DOMAIN "herald-link"
#define FORM_DOMAIN "herald-form"
#define LINK_FIXED_BYTES 27		/* everything before the recipient */
#define LINK_MAC_BYTES 32

/* Settings. */
char	   *herald_http_listen = NULL;
char	   *herald_public_url = NULL;
int			herald_link_lifetime = 7 * 86400;

PG_FUNCTION_INFO_V1(herald_link_sql);
PG_FUNCTION_INFO_V1(herald_link_base_sql);
PG_FUNCTION_INFO_V1(herald_link_check_sql);

/* herald.public_url: empty, or an http(s) URL with no query or fragment. */
static bool
check_public_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;

	if (url == NULL || url[0] == '\0')
		return true;
	if (pg_strncasecmp(url, "http://", 7) != 0 && pg_strncasecmp(url, "https://", 8) != 0)
	{
		GUC_check_errdetail("The public URL must start with http:// or https://.");
		return false;
	}
	for (const char *c = url; *c; c++)
		if ((unsigned char) *c <= ' ' || *c == 0x7f || *c == '?' || *c == '#' ||
			*c == '"' || *c == '<' || *c == '>' || *c == '\\')
		{
			GUC_check_errdetail("The public URL must not contain spaces, control characters, quotes, angle brackets, \"?\" or \"#\".");
			return false;
		}
	if (strlen(url) > 200)
	{
		GUC_check_errdetail("The public URL must not be longer than 200 bytes.");
		return false;
	}
	return true;
}

/* herald.http_listen: empty, or host:port (an IPv6 host in brackets). */
static bool
check_http_listen(char **newval, void **extra, GucSource source)
{
	const char *value = *newval;
	const char *colon;
	char	   *end;
	long		port;

	if (value == NULL || value[0] == '\0')
		return true;
	colon = strrchr(value, ':');
	if (colon == NULL || colon == value)
	{
		GUC_check_errdetail("Give host:port, for example 127.0.0.1:8787.");
		return false;
	}
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || colon[1] == '\0' || port < 1 || port > 65535)
	{
		GUC_check_errdetail("The port must be a number from 1 to 65535.");
		return false;
	}
	for (const char *c = value; c < colon; c++)
		if (!(isalnum((unsigned char) *c) || *c == '.' || *c == '-' || *c == ':' ||
			  *c == '[' || *c == ']'))
		{
			GUC_check_errdetail("The host must be an address or a host name.");
			return false;
		}
	return true;
}

void
herald_define_link_settings(void)
{
	DefineCustomStringVariable("herald.http_listen",
							   "Address (host:port) the HTTP worker serves decision pages on.",
							   "Empty: no HTTP worker.",
							   &herald_http_listen,
							   "",
							   PGC_POSTMASTER,
							   0,
							   check_http_listen, NULL, NULL);

	DefineCustomStringVariable("herald.public_url",
							   "Base URL of the links in messages, as people reach the HTTP worker.",
							   "Empty: http:// followed by herald.http_listen.",
							   &herald_public_url,
							   "",
							   PGC_SIGHUP,
							   0,
							   check_public_url, NULL, NULL);

	DefineCustomIntVariable("herald.link_lifetime",
							"How long the links of a message stay valid.",
							NULL,
							&herald_link_lifetime,
							7 * 86400, 60, 366 * 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

/*
 * The base of every link, without a trailing slash, palloc'd; NULL when
 * neither herald.public_url nor herald.http_listen is set.
 */
char *
herald_link_base(void)
{
	char	   *base;
	size_t		len;

	/* the HTTP worker serves one database's links (launcher.c) */
	if (!herald_serves_links())
		return NULL;
	if (herald_public_url && herald_public_url[0] != '\0')
		base = pstrdup(herald_public_url);
	else if (herald_http_listen && herald_http_listen[0] != '\0')
		base = psprintf("http://%s", herald_http_listen);
	else
		return NULL;
	len = strlen(base);
	while (len > 0 && base[len - 1] == '/')
		base[--len] = '\0';
	return base;
}

/*
 * HMAC-SHA256(key, domain NUL data) into mac.  The domain keeps a link's
 * MAC from ever serving as another kind of token.
 */
void
herald_link_mac(const uint8 *key, int keylen, const char *domain,
				const uint8 *data, size_t len, uint8 *mac)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL ||
		pg_hmac_init(ctx, key, keylen) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) domain, strlen(domain) + 1) < 0 ||
		pg_hmac_update(ctx, data, len) < 0 ||
		pg_hmac_final(ctx, mac, LINK_MAC_BYTES) < 0)
	{
		pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC-SHA256");
	}
	pg_hmac_free(ctx);
}

/* Whether two MACs are equal, in time independent of where they differ. */
bool
herald_mac_equal(const uint8 *a, const uint8 *b, size_t len)
{
	uint8		diff = 0;

	for (size_t i = 0; i < len; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

static const char b64url[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* base64url without padding, palloc'd. */
char *
herald_b64url_encode(const uint8 *src, size_t len)
{
	char	   *out = palloc((len + 2) / 3 * 4 + 1);
	char	   *p = out;
	size_t		i;

	for (i = 0; i + 2 < len; i += 3)
	{
		uint32		v = (src[i] << 16) | (src[i + 1] << 8) | src[i + 2];

		*p++ = b64url[(v >> 18) & 63];
		*p++ = b64url[(v >> 12) & 63];
		*p++ = b64url[(v >> 6) & 63];
		*p++ = b64url[v & 63];
	}
	if (i < len)
	{
		uint32		v = src[i] << 16;

		if (i + 1 < len)
			v |= src[i + 1] << 8;
		*p++ = b64url[(v >> 18) & 63];
		*p++ = b64url[(v >> 12) & 63];
		if (i + 1 < len)
			*p++ = b64url[(v >> 6) & 63];
	}
	*p = '\0';
	/* four characters per three bytes, no padding */
	Assert((size_t) (p - out) == (len * 4 + 2) / 3);
	return out;
}

/*
 * Decode base64url without padding into out (room for maxlen bytes).
 * Returns the length, or -1 when text is not canonical base64url or does
 * not fit.
 */
int
herald_b64url_decode(const char *text, uint8 *out, int maxlen)
{
	int			n = 0;
	uint32		acc = 0;
	int			bits = 0;

	for (const char *c = text; *c; c++)
	{
		const char *pos = strchr(b64url, *c);

		if (pos == NULL || *c == '\0')
			return -1;
		acc = (acc << 6) | (uint32) (pos - b64url);
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			if (n >= maxlen)
				return -1;
			out[n++] = (acc >> bits) & 0xFF;
		}
	}
	/* leftover bits must be zero and fewer than a byte: canonical only */
	if (bits >= 6 || (acc & ((1 << bits) - 1)) != 0)
		return -1;
	return n;
}

static void
put_be(uint8 *p, uint64 v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
	{
		p[i] = v & 0xFF;
		v >>= 8;
	}
}

static uint64
get_be(const uint8 *p, int bytes)
{
	uint64		v = 0;

	for (int i = 0; i < bytes; i++)
		v = (v << 8) | p[i];
	return v;
}

/* The token of one link (see the file header), palloc'd. */
char *
herald_link_token(const HeraldLink *link, const uint8 *key, int keylen)
{
	uint8		buf[HERALD_LINK_MAX_BYTES];
	size_t		rlen = strlen(link->recipient);
	size_t		len;
	char	   *token;

	Assert(rlen <= HERALD_RECIPIENT_MAX);
	Assert(link->action >= 1 && link->action <= 255);
	buf[0] = LINK_VERSION;
	put_be(buf + 1, (uint32) link->key_id, 4);
	put_be(buf + 5, (uint64) link->event_id, 8);
	buf[13] = (uint8) link->action;
	put_be(buf + 14, (uint32) link->channel_id, 4);
	put_be(buf + 18, (uint64) link->expires, 8);
	buf[26] = (uint8) rlen;
	memcpy(buf + LINK_FIXED_BYTES, link->recipient, rlen);
	len = LINK_FIXED_BYTES + rlen;
	herald_link_mac(key, keylen, LINK_DOMAIN, buf, len, buf + len);
	len += LINK_MAC_BYTES;
	Assert(len <= HERALD_LINK_MAX_BYTES);
	token = herald_b64url_encode(buf, len);
	/* what herald_link_parse() accepts */
	Assert(strlen(token) <= HERALD_LINK_MAX_CHARS);
	return token;
}

/*
 * Parse a token into link, without checking its MAC (herald_link_verify()
 * does, once it has the key the token names).  Returns false when the token
 * is not one.
 */
bool
herald_link_parse(const char *token, HeraldLink *link, uint8 *raw, int *rawlen)
{
	int			len;
	int			rlen;

	if (token == NULL || strlen(token) > HERALD_LINK_MAX_CHARS)
		return false;
	len = herald_b64url_decode(token, raw, HERALD_LINK_MAX_BYTES);
	if (len < LINK_FIXED_BYTES + LINK_MAC_BYTES || raw[0] != LINK_VERSION)
		return false;
	rlen = raw[26];
	if (rlen > HERALD_RECIPIENT_MAX || len != LINK_FIXED_BYTES + rlen + LINK_MAC_BYTES)
		return false;
	link->key_id = (int32) get_be(raw + 1, 4);
	link->event_id = (int64) get_be(raw + 5, 8);
	link->action = raw[13];
	link->channel_id = (int32) get_be(raw + 14, 4);
	link->expires = (int64) get_be(raw + 18, 8);
	memcpy(link->recipient, raw + LINK_FIXED_BYTES, rlen);
	link->recipient[rlen] = '\0';
	Assert(len <= HERALD_LINK_MAX_BYTES);
	if (link->action < 1 || link->key_id <= 0 || link->event_id <= 0 ||
		link->channel_id <= 0 || memchr(link->recipient, '\0', rlen) != NULL)
		return false;
	*rawlen = len;
	return true;
}

/* Whether raw (a parsed token) carries the MAC key gives it. */
bool
herald_link_verify(const uint8 *raw, int rawlen, const uint8 *key, int keylen)
{
	uint8		mac[LINK_MAC_BYTES];
	int			len = rawlen - LINK_MAC_BYTES;

	Assert(rawlen >= LINK_FIXED_BYTES + LINK_MAC_BYTES);
	herald_link_mac(key, keylen, LINK_DOMAIN, raw, len, mac);
	return herald_mac_equal(mac, raw + len, LINK_MAC_BYTES);
}

/*
 * herald._link(key_id, key, event_id, action, channel_id, recipient): the
 * URL of one action, expiring herald.link_lifetime from now; NULL when no
 * public URL is set.  Called by the delivery worker's claim.
 */
Datum
herald_link_sql(PG_FUNCTION_ARGS)
{
	HeraldLink	link;
	bytea	   *key;
	char	   *recipient;
	char	   *base;

	for (int i = 0; i < 6; i++)
		if (PG_ARGISNULL(i))
			PG_RETURN_NULL();
	base = herald_link_base();
	if (base == NULL)
		PG_RETURN_NULL();
	key = PG_GETARG_BYTEA_PP(1);
	recipient = text_to_cstring(PG_GETARG_TEXT_PP(5));
	link.key_id = PG_GETARG_INT32(0);
	link.event_id = PG_GETARG_INT64(2);
	link.action = PG_GETARG_INT32(3);
	link.channel_id = PG_GETARG_INT32(4);
	if (link.action < 1 || link.action > 255 || strlen(recipient) > HERALD_RECIPIENT_MAX ||
		VARSIZE_ANY_EXHDR(key) < 16)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid link parameters")));
	strlcpy(link.recipient, recipient, sizeof(link.recipient));
	link.expires = (int64) (GetCurrentTimestamp() / USECS_PER_SEC) +
		((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY) + herald_link_lifetime;
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%s/d/%s", base,
											  herald_link_token(&link,
																(uint8 *) VARDATA_ANY(key),
																VARSIZE_ANY_EXHDR(key)))));
}

/* herald._link_base(): the base of every link, or NULL when none is set. */
Datum
herald_link_base_sql(PG_FUNCTION_ARGS)
{
	char	   *base = herald_link_base();

	if (base == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(base));
}

/* The secret of link key key_id, in the caller's memory context, or NULL. */
static bytea *
link_key(int32 key_id)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(key_id)};
	bytea	   *key = NULL;
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	ret = SPI_execute_with_args("SELECT k.secret FROM herald.link_keys k WHERE k.id = $1",
								1, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read link keys: %s", SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			key = DatumGetByteaPCopy(d);
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
	return key;
}

/*
 * Check a token against herald.link_keys.  Returns its status: "valid",
 * "expired" (a genuine link, too old), "unknown_key" (signed by a key that
 * is gone, or never was), "forged" (the MAC does not match) or
 * "malformed".  *link is what the token says, to be trusted only when the
 * MAC matched (valid or expired); then *key, when key is not NULL, is the
 * key that signed it.
 */
const char *
herald_link_open(const char *token, HeraldLink *link, bytea **key)
{
	uint8		raw[HERALD_LINK_MAX_BYTES];
	int			rawlen;
	bytea	   *secret;
	int64		now;

	if (key)
		*key = NULL;
	if (!herald_link_parse(token, link, raw, &rawlen))
		return "malformed";
	secret = link_key(link->key_id);
	if (secret == NULL)
		return "unknown_key";
	if (!herald_link_verify(raw, rawlen, (uint8 *) VARDATA(secret), VARSIZE(secret) - VARHDRSZ))
		return "forged";
	if (key)
		*key = secret;
	now = (int64) (GetCurrentTimestamp() / USECS_PER_SEC) +
		((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
	return link->expires < now ? "expired" : "valid";
}

/*
 * herald._link_check(token): herald_link_open()'s status and, when the MAC
 * matched, what the token says; the fields are NULL otherwise.
 */
Datum
herald_link_check_sql(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[7];
	bool		nulls[7] = {false, true, true, true, true, true, true};
	const char *status;
	HeraldLink	link;
	char	   *token = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "herald._link_check must return a record");
	desc = BlessTupleDesc(desc);

	status = herald_link_open(token, &link, NULL);
	if (strcmp(status, "valid") == 0 || strcmp(status, "expired") == 0)
	{
		values[1] = Int32GetDatum(link.key_id);
		values[2] = Int64GetDatum(link.event_id);
		values[3] = Int32GetDatum(link.action);
		values[4] = Int32GetDatum(link.channel_id);
		values[5] = CStringGetTextDatum(link.recipient);
		values[6] = TimestampTzGetDatum((TimestampTz) (link.expires -
													   ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY)) * USECS_PER_SEC);
		for (int i = 1; i < 7; i++)
			nulls[i] = false;
	}
	values[0] = CStringGetTextDatum(status);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
