/*-------------------------------------------------------------------------
 *
 * webhook.c
 *		The generic webhook format: a Standard Webhooks request.
 *
 * Body: {"type": ..., "timestamp": ..., "data": {...}} where data carries
 * the rule, the event id, the rendered message and the event's payload
 * (table, operation, new and old rows).  Headers: webhook-id (stable across
 * retries of one delivery), webhook-timestamp (this attempt) and
 * webhook-signature (see signing.c), plus the channel's own headers.
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

static struct curl_slist *
append_header(struct curl_slist *list, const char *line)
{
	struct curl_slist *next = curl_slist_append(list, line);

	if (next == NULL)
	{
		curl_slist_free_all(list);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building request headers")));
	}
	return next;
}

/*
 * Build the body and headers of one attempt.  The body is palloc'd in the
 * current memory context; the caller owns both.
 */
struct curl_slist *
herald_webhook_request(HeraldDelivery *d, char **body, size_t *bodylen)
{
	StringInfoData buf;
	HeraldTemplateValues values;
	char	   *message;
	uint8		key[64];
	int			keylen;
	char		signature[HERALD_SIGNATURE_MAX];
	int64		now = (int64) time(NULL);
	struct curl_slist *headers = NULL;
	char	   *line;

	values.rule = d->rule;
	values.event_id = d->event_id;
	values.type = d->event_type;
	values.data = d->payload;
	message = herald_render_template(d->message, &values);

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

	if (!herald_secret_key(d->secret, key, &keylen))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("channel \"%s\" has a malformed secret", d->channel)));
	herald_sign(key, keylen, d->webhook_id, now, buf.data, buf.len, signature);

	headers = append_header(headers, "Content-Type: application/json");
	headers = append_header(headers, "Expect:");
	for (int i = 0; i < d->nheaders; i++)
		headers = append_header(headers, d->headers[i]);
	line = psprintf("webhook-id: %s", d->webhook_id);
	headers = append_header(headers, line);
	pfree(line);
	line = psprintf("webhook-timestamp: " INT64_FORMAT, now);
	headers = append_header(headers, line);
	pfree(line);
	line = psprintf("webhook-signature: %s", signature);
	headers = append_header(headers, line);
	pfree(line);

	*body = buf.data;
	*bodylen = buf.len;
	return headers;
}
