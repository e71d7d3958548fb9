/*-------------------------------------------------------------------------
 *
 * webhook.c
 *		The generic webhook format: a Standard Webhooks request.
 *
 * Body: {"type": ..., "timestamp": ..., "data": {...}} where data carries
 * the rule, the event id, the rendered message, the event's payload
 * (table, operation, new and old rows) and, for an event that awaits a
 * decision, "actions": [{"id", "label", "url"}], one signed link each.
 * Headers: webhook-id (stable across retries of one delivery),
 * webhook-timestamp (this attempt) and webhook-signature (see signing.c;
 * during a secret rotation, one signature per secret), plus the channel's
 * own headers.
 *
 * The webhook-id of a delivery is "msg_" + the installation's id + "_" + the
 * delivery's id (herald.webhook_id(), defined here only: the claim and the
 * views call it).  The installation's id is drawn at CREATE EXTENSION
 * (herald.installation), so that a new installation, which numbers its
 * deliveries from 1 again, never repeats an id that receivers have seen.
 *
 * Called by the delivery worker with no transaction open.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#include <time.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "pg_herald.h"

PG_FUNCTION_INFO_V1(herald_webhook_id);

/* herald.installation: its one row */
#define INSTALLATION_TABLE "installation"
#define Anum_installation_id 1

/*
 * The id of this installation, from herald.installation.  Read directly,
 * not through SQL: it is no secret (every webhook-id shows it), and those
 * who may see a delivery's webhook-id need no privilege on the table.
 */
char *
herald_installation_id(void)
{
	Oid			relid = get_relname_relid(INSTALLATION_TABLE, herald_schema_oid(false));
	Relation	rel;
	Snapshot	snapshot;
	TableScanDesc scan;
	HeapTuple	tup;
	char	   *id = NULL;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("pg_herald's table herald.%s is missing", INSTALLATION_TABLE),
				 errhint("Run ALTER EXTENSION pg_herald UPDATE.")));
	rel = table_open(relid, AccessShareLock);
	snapshot = RegisterSnapshot(ActiveSnapshotSet() ? GetActiveSnapshot() :
								GetTransactionSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	tup = heap_getnext(scan, ForwardScanDirection);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_installation_id,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			id = TextDatumGetCString(d);
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	if (id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("pg_herald's table herald.%s is empty", INSTALLATION_TABLE)));
	return id;
}

/*
 * herald.webhook_id(delivery_id bigint): the webhook-id header of a
 * delivery.  The installation's id is read once per query.
 */
Datum
herald_webhook_id(PG_FUNCTION_ARGS)
{
	int64		delivery_id = PG_GETARG_INT64(0);
	char	   *id = fcinfo->flinfo->fn_extra;

	if (id == NULL)
	{
		char	   *read = herald_installation_id();

		id = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, read);
		pfree(read);
		fcinfo->flinfo->fn_extra = id;
	}
	PG_RETURN_TEXT_P(cstring_to_text(herald_format_webhook_id(id, delivery_id)));
}

/* The webhook-id of a delivery of the installation whose id this is. */
char *
herald_format_webhook_id(const char *installation_id, int64 delivery_id)
{
	return psprintf("msg_%s_" INT64_FORMAT, installation_id, delivery_id);
}

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
 * The JSON body of a webhook delivery, which the nats kind publishes too:
 * {"type", "timestamp", "data": {"rule", "event_id", "message", the
 * payload's members, "actions"}}.
 */
void
herald_webhook_body(HeraldDelivery *d, StringInfo buf_out)
{
	StringInfoData buf;
	char	   *message = herald_message(d, 0, NULL);
	HeraldAction actions[HERALD_MAX_ACTIONS];
	int			nactions;

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
	nactions = herald_actions(d, actions);
	if (nactions > 0)
	{
		appendStringInfoString(&buf, ", \"actions\": ");
		herald_append_actions_json(&buf, actions, nactions);
	}
	appendStringInfoString(&buf, "}}");
	*buf_out = buf;
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
	char	   *secrets[2] = {d->secret, d->previous_secret};
	StringInfoData signatures;
	int64		now = (int64) time(NULL);
	struct curl_slist *headers = NULL;

	herald_webhook_body(d, &buf);
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

	out->url = pstrdup(d->target);
	out->headers = headers;
	out->body = buf.data;
	out->bodylen = buf.len;
}
