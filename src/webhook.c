/*-------------------------------------------------------------------------
 *
 * webhook.c
 *		The generic webhook format: a Standard Webhooks request.
 *
 * Body: {"type": ..., "timestamp": ..., "data": {...}} where data carries
 * the rule, the event id, the rendered message and the event's payload
 * (table, operation, new and old rows).  Headers: webhook-id (stable across
 * retries of one delivery), webhook-timestamp (this attempt) and
 * webhook-signature (see signing.c; during a secret rotation, one signature
 * per secret), plus the channel's own headers.
 *
 * Called by the delivery worker with no transaction open.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#include <time.h>

#include "lib/stringinfo.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "pg_herald.h"

/* Append the members of a JSON object's text, without its braces. */
static void
append_object_members(StringInfo buf, Jsonb *object)
{
	StringInfoData text;
	int			start;
	int			end;

	initStringInfo(&text);
	(void) JsonbToCString(&text, &object->root, VARSIZE(object));
	start = 0;
	end = text.len;
	if (end >= 2 && text.data[0] == '{' && text.data[end - 1] == '}')
	{
		start = 1;
		end--;
	}
	else
		elog(ERROR, "event payload is not a JSON object");
	if (end > start)
	{
		appendStringInfoString(buf, ", ");
		appendBinaryStringInfo(buf, text.data + start, end - start);
	}
	pfree(text.data);
}

/*
 * Build the request of one attempt: the body, and the headers, signed with
 * the channel's secret and, while a rotation lasts, its previous one too
 * (several space-separated signatures, as the specification allows).
 */
void
herald_format_webhook(HeraldDelivery *d, HeraldOutgoing *out)
{
	StringInfoData buf;
	char	   *message = herald_message(d);
	char	   *secrets[2] = {d->secret, d->previous_secret};
	StringInfoData signatures;
	int64		now = (int64) time(NULL);
	struct curl_slist *headers = NULL;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"type\": ");
	escape_json(&buf, d->event_type);
	appendStringInfoString(&buf, ", \"timestamp\": ");
	escape_json(&buf, d->created_at);
	appendStringInfoString(&buf, ", \"data\": {\"rule\": ");
	if (d->rule)
		escape_json(&buf, d->rule);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfo(&buf, ", \"event_id\": " INT64_FORMAT ", \"message\": ",
					 d->event_id);
	escape_json(&buf, message);
	append_object_members(&buf, d->payload);
	appendStringInfoString(&buf, "}}");

	initStringInfo(&signatures);
	for (int i = 0; i < 2; i++)
	{
		uint8		key[64];
		int			keylen;
		char		signature[HERALD_SIGNATURE_MAX];

		if (secrets[i] == NULL)
			continue;
		if (!herald_secret_key(secrets[i], key, &keylen))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("channel \"%s\" has a malformed secret", d->channel)));
		herald_sign(key, keylen, d->webhook_id, now, buf.data, buf.len, signature);
		appendStringInfo(&signatures, "%s%s", signatures.len > 0 ? " " : "", signature);
	}

	headers = herald_append_header(headers, "Content-Type: application/json");
	headers = herald_append_header(headers, "Expect:");
	for (int i = 0; i < d->nheaders; i++)
		headers = herald_append_header(headers, d->headers[i]);
	headers = herald_append_header(headers, psprintf("webhook-id: %s", d->webhook_id));
	headers = herald_append_header(headers, psprintf("webhook-timestamp: " INT64_FORMAT, now));
	headers = herald_append_header(headers, psprintf("webhook-signature: %s", signatures.data));

	out->transport = HERALD_HTTP;
	out->url = pstrdup(d->target);
	out->headers = headers;
	out->body = buf.data;
	out->bodylen = buf.len;
}
