/*-------------------------------------------------------------------------
 *
 * slack.c
 *		Slack interactivity: POST /slack/actions, the clicks on the buttons
 *		of a Slack channel's messages.
 *
 * A Slack channel with a slack_signing_secret gets interactive buttons
 * (format_chat.c): action_id "herald-" + the action's id, value = the
 * token of the action's signed link (links.c).  Slack posts each click to
 * {herald.public_url}/slack/actions as a form-encoded "payload" field
 * holding the block_actions JSON, signed with the app's signing secret:
 *
 *	 X-Slack-Signature: v0=hex(HMAC-SHA256(secret, "v0:" timestamp ":" body))
 *	 X-Slack-Request-Timestamp: timestamp (unix seconds)
 *
 * The HTTP worker (http_server.c) calls herald_slack_actions() inside a
 * transaction, as role herald_http, with SPI connected.  In order, nothing
 * of the body read before it is authenticated:
 *
 *	 1. the headers and the timestamp (at most 300 s away from now), then
 *		the signature against the signing secret of every Slack channel,
 *		by herald._slack_verify(), which the role may call but whose secrets
 *		it may not read: 401 when none of them signed it;
 *	 2. the form, the payload's percent-encoding, UTF-8 and JSON: 400;
 *	 3. herald._slack_decide() checks the token (a valid link of one of the
 *		channels whose secret signed the request, 403 otherwise, 410 when it
 *		expired), then records the decision as the Slack user, identified
 *		by Slack's signature, through herald._record_decision().  The
 *		request key is the signature: a replayed request records nothing.
 *
 * A click Slack can show is answered 200: empty when recorded, otherwise a
 * small ephemeral message.  Every refusal is logged once by the worker
 * with resp->log_reason.  The message itself is updated through the
 * click's response_url by the delivery worker (decision.recorded), so
 * nothing here waits on the network.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hmac.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "http_server.h"
#include "pg_herald.h"

#define SLACK_MAX_SKEW 300		/* seconds between Slack's clock and ours */
#define SLACK_MAC_BYTES 32
#define SLACK_SIGNATURE_CHARS (3 + 2 * SLACK_MAC_BYTES)	/* "v0=" + hex */
#define SLACK_ACTION_PREFIX "herald-"

/*
 * The reasons a refusal is logged with are string constants: the worker
 * logs them once the transaction, and the handler's memory, are gone.
 */
#define MALFORMED "malformed Slack action: "

/* Bounds of the payload's fields: longer ones are not Slack's. */
#define SLACK_MAX_ID 64
#define SLACK_MAX_NAME 200
#define SLACK_MAX_ACTION_ID 255
#define SLACK_MAX_URL 2000

PG_FUNCTION_INFO_V1(herald_slack_verify_sql);

/* What herald._slack_decide() returns, in its column order. */
enum
{
	DECIDE_STATUS = 1,
	DECIDE_DECISION_ID,
	DECIDE_URL
};

static SPIPlanPtr verify_plan = NULL;
static SPIPlanPtr decide_plan = NULL;

/* The fields of a block_actions payload the handler uses. */
typedef struct SlackClick
{
	char	   *user_id;
	char	   *user_name;		/* username, else name; NULL when neither */
	char	   *action_id;
	char	   *token;			/* the action's value */
	char	   *response_url;	/* NULL when absent */
} SlackClick;

static void
respond(HeraldHttpResponse *resp, int status, const char *text, const char *reason)
{
	resp->status = status;
	resp->log_reason = reason;
	resetStringInfo(&resp->body);
	if (text == NULL)
	{
		resp->content_type = "text/plain; charset=utf-8";
		return;
	}
	/* Slack's shape of a message only the clicking user sees */
	resp->content_type = "application/json; charset=utf-8";
	appendStringInfoString(&resp->body,
						   "{\"response_type\": \"ephemeral\", "
						   "\"replace_original\": false, \"text\": ");
	escape_json(&resp->body, text);
	appendStringInfoChar(&resp->body, '}');
}

/* Unix seconds now. */
static int64
unix_now(void)
{
	return (int64) (GetCurrentTimestamp() / USECS_PER_SEC) +
		((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
}

/*
 * Whether text is a timestamp (decimal unix seconds) within
 * SLACK_MAX_SKEW of now.
 */
static bool
timestamp_is_fresh(const char *text)
{
	int64		ts = 0;
	int64		now = unix_now();
	int			n = 0;

	for (const char *c = text; *c; c++)
	{
		if (*c < '0' || *c > '9' || ++n > 12)
			return false;
		ts = ts * 10 + (*c - '0');
	}
	return n > 0 && ts >= now - SLACK_MAX_SKEW && ts <= now + SLACK_MAX_SKEW;
}

/*
 * The decoded value of the form's one "payload" field into *payload.
 * Returns NULL when found, otherwise why not (a constant).
 */
static const char *
form_payload(const char *body, size_t bodylen, char **payload, size_t *payloadlen)
{
	HeraldFormField field = {.name = "payload"};

	if (!herald_parse_form(body, bodylen, &field, 1))
		return MALFORMED "not a form-urlencoded body";
	if (field.count > 1)
		return MALFORMED "more than one payload field";
	if (field.count == 0)
		return MALFORMED "no payload field";
	*payload = field.value;
	*payloadlen = field.len;
	return NULL;
}

/*
 * The payload as jsonb, or NULL when it is not valid UTF-8 that the
 * database encoding can hold and JSON: the input errors of the conversion
 * and of jsonb_in (and a nesting too deep for the stack) are caught in a
 * subtransaction and become a 400; any other error (out of memory, a
 * cancel) goes on.
 */
static Jsonb *
parse_payload(const char *payload, size_t len)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Jsonb	   *volatile result = NULL;

	if (!pg_verify_mbstr(PG_UTF8, payload, len, true))
		return NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		char	   *text = pg_any_to_server(payload, len, PG_UTF8);

		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		/* bad input (22xxx) and too deep (54xxx) are the request's fault */
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION &&
			ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_PROGRAM_LIMIT_EXCEEDED)
			ReThrowError(edata);
		FreeErrorData(edata);
		result = NULL;
	}
	PG_END_TRY();
	return result;
}

/* The value of key in object container c, or NULL. */
static JsonbValue *
json_field(JsonbContainer *c, const char *key)
{
	if (c == NULL || !JsonContainerIsObject(c))
		return NULL;
	return getKeyJsonValueFromContainer(c, key, strlen(key), palloc(sizeof(JsonbValue)));
}

/* The object or array under key in object c, or NULL. */
static JsonbContainer *
json_container(JsonbContainer *c, const char *key)
{
	JsonbValue *v = json_field(c, key);

	return v && v->type == jbvBinary ? v->val.binary.data : NULL;
}

/*
 * The string under key in object c, palloc'd, or NULL when there is none,
 * it is empty or longer than maxlen bytes.
 */
static char *
json_string(JsonbContainer *c, const char *key, int maxlen)
{
	JsonbValue *v = json_field(c, key);

	if (v == NULL || v->type != jbvString || v->val.string.len == 0 ||
		v->val.string.len > maxlen)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * The fields of a block_actions click into click.  Returns NULL when they
 * are there, otherwise what is wrong (a constant).
 */
static const char *
read_click(Jsonb *jb, SlackClick *click)
{
	JsonbContainer *root = &jb->root;
	JsonbContainer *user;
	JsonbContainer *actions;
	JsonbValue *action;
	char	   *type;

	if (!JB_ROOT_IS_OBJECT(jb))
		return MALFORMED "the payload is not a JSON object";
	type = json_string(root, "type", 64);
	if (type == NULL || strcmp(type, "block_actions") != 0)
		return MALFORMED "the payload is not of type block_actions";
	user = json_container(root, "user");
	click->user_id = json_string(user, "id", SLACK_MAX_ID);
	if (click->user_id == NULL)
		return MALFORMED "the payload has no user.id";
	click->user_name = json_string(user, "username", SLACK_MAX_NAME);
	if (click->user_name == NULL)
		click->user_name = json_string(user, "name", SLACK_MAX_NAME);

	actions = json_container(root, "actions");
	if (actions == NULL || !JsonContainerIsArray(actions) ||
		JsonContainerSize(actions) < 1)
		return MALFORMED "the payload has no actions";
	action = getIthJsonbValueFromContainer(actions, 0);
	if (action == NULL || action->type != jbvBinary ||
		!JsonContainerIsObject(action->val.binary.data))
		return MALFORMED "the payload's action is not an object";
	click->action_id = json_string(action->val.binary.data, "action_id",
								   SLACK_MAX_ACTION_ID);
	click->token = json_string(action->val.binary.data, "value",
							   HERALD_LINK_MAX_CHARS);
	if (click->action_id == NULL || click->token == NULL)
		return MALFORMED "the payload's action has no action_id or value";
	if (strncmp(click->action_id, SLACK_ACTION_PREFIX, strlen(SLACK_ACTION_PREFIX)) != 0)
		return MALFORMED "the action is not one of pg_herald's";
	click->response_url = json_string(root, "response_url", SLACK_MAX_URL);
	return NULL;
}

/*
 * The channels whose signing secret signed the request (herald._slack_verify),
 * as a palloc'd array; NULL when none did.
 */
static ArrayType *
verified_channels(const HeraldHttpRequest *req)
{
	Datum		args[3];
	bool		isnull;
	Datum		result;
	bytea	   *body = palloc(VARHDRSZ + req->bodylen);
	ArrayType  *channels;
	int			ret;

	if (verify_plan == NULL)
	{
		Oid			argtypes[3] = {TEXTOID, BYTEAOID, TEXTOID};

		verify_plan = herald_prepare_kept("SELECT herald._slack_verify($1, $2, $3)",
										  3, argtypes);
	}
	SET_VARSIZE(body, VARHDRSZ + req->bodylen);
	if (req->bodylen > 0)
		memcpy(VARDATA(body), req->body, req->bodylen);
	args[0] = CStringGetTextDatum(req->slack_timestamp);
	args[1] = PointerGetDatum(body);
	args[2] = CStringGetTextDatum(req->slack_signature);
	ret = SPI_execute_plan(verify_plan, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not verify a Slack signature: %s", SPI_result_code_string(ret));
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return NULL;
	channels = DatumGetArrayTypePCopy(result);
	if (ArrayGetNItems(ARR_NDIM(channels), ARR_DIMS(channels)) == 0)
		return NULL;
	return channels;
}

/* herald._slack_decide() for one verified click; fills in resp. */
static void
decide(const HeraldHttpRequest *req, HeraldHttpResponse *resp,
	   SlackClick *click, ArrayType *channels)
{
	Datum		args[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *status;
	char	   *url;
	int			ret;

	if (decide_plan == NULL)
	{
		Oid			argtypes[7] = {TEXTOID, TEXTOID, INT4ARRAYOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID};

		decide_plan = herald_prepare_kept("SELECT d.status, d.decision_id, d.url"
										  "  FROM herald._slack_decide($1, $2, $3, $4, $5, $6, $7) d",
										  7, argtypes);
	}
	args[0] = CStringGetTextDatum(click->token);
	args[1] = CStringGetTextDatum(click->action_id + strlen(SLACK_ACTION_PREFIX));
	args[2] = PointerGetDatum(channels);
	args[3] = CStringGetTextDatum(click->user_id);
	if (click->user_name)
		args[4] = CStringGetTextDatum(click->user_name);
	else
		nulls[4] = 'n';
	if (click->response_url)
		args[5] = CStringGetTextDatum(click->response_url);
	else
		nulls[5] = 'n';
	/* the signature is Slack's, checked, and canonical (lower-case hex) */
	args[6] = CStringGetTextDatum(psprintf("slack:%s", req->slack_signature));

	ret = SPI_execute_plan(decide_plan, args, nulls, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not record a Slack action: %s", SPI_result_code_string(ret));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	status = SPI_getvalue(tup, desc, DECIDE_STATUS);
	url = SPI_getvalue(tup, desc, DECIDE_URL);
	if (status == NULL)
		elog(ERROR, "herald._slack_decide returned no status");

	if (strcmp(status, "recorded") == 0)
		respond(resp, 200, NULL, NULL);
	else if (strcmp(status, "replayed") == 0)
		respond(resp, 200, "This click was recorded already.",
				"replayed Slack request");
	else if (strcmp(status, "open_page") == 0)
		respond(resp, 200,
				url ? psprintf("Record the decision on its page: %s", url)
				: "Record the decision on its page.",
				NULL);
	else if (strcmp(status, "expired") == 0)
		respond(resp, 410, "These buttons have expired.", "expired Slack action link");
	else if (strcmp(status, "gone") == 0)
		respond(resp, 410, "The event or the rule's choice this button records is gone.",
				"Slack action for a purged event or a withdrawn choice");
	else if (strcmp(status, "invalid_token") == 0)
		respond(resp, 403, "This button is not valid.", "invalid Slack action token");
	else if (strcmp(status, "wrong_channel") == 0)
		respond(resp, 403, "This button does not belong to this Slack app.",
				"Slack action token of a channel the signing secret is not for");
	else if (strcmp(status, "bad_request") == 0)
		respond(resp, 400, "This request cannot be recorded.", "malformed Slack action");
	else
		elog(ERROR, "herald._slack_decide returned unknown status \"%s\"", status);
}

/*
 * POST /slack/actions (see the file header).  Called by the HTTP worker in
 * a transaction, as herald_http, SPI connected.
 */
void
herald_slack_actions(const HeraldHttpRequest *req, HeraldHttpResponse *resp)
{
	ArrayType  *channels;
	char	   *payload;
	size_t		payloadlen;
	const char *problem;
	Jsonb	   *jb;
	SlackClick	click;

	if (req->content_type == NULL ||
		pg_strncasecmp(req->content_type, "application/x-www-form-urlencoded", 33) != 0 ||
		(req->content_type[33] != '\0' && req->content_type[33] != ';' &&
		 req->content_type[33] != ' '))
	{
		respond(resp, 415, NULL, "Slack action not form-encoded");
		return;
	}
	if (req->slack_signature == NULL || req->slack_timestamp == NULL)
	{
		respond(resp, 401, NULL, "Slack action without signature headers");
		return;
	}
	if (!timestamp_is_fresh(req->slack_timestamp))
	{
		respond(resp, 401, NULL, "Slack action timestamp more than 300 s away");
		return;
	}
	channels = verified_channels(req);
	if (channels == NULL)
	{
		respond(resp, 401, NULL, "bad Slack signature");
		return;
	}

	/* authenticated: now the body may be read */
	problem = form_payload(req->body, req->bodylen, &payload, &payloadlen);
	if (problem == NULL)
	{
		jb = parse_payload(payload, payloadlen);
		if (jb == NULL)
			problem = MALFORMED "the payload is not UTF-8 JSON";
		else
		{
			memset(&click, 0, sizeof(click));
			problem = read_click(jb, &click);
		}
	}
	if (problem != NULL)
	{
		respond(resp, 400, NULL, problem);
		return;
	}
	decide(req, resp, &click, channels);
}

/* HMAC-SHA256(key, "v0:" timestamp ":" body) into mac. */
static void
slack_mac(const char *key, const char *timestamp, const uint8 *body, size_t bodylen,
		  uint8 *mac)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL ||
		pg_hmac_init(ctx, (const uint8 *) key, strlen(key)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) "v0:", 3) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) timestamp, strlen(timestamp)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) ":", 1) < 0 ||
		pg_hmac_update(ctx, body, bodylen) < 0 ||
		pg_hmac_final(ctx, mac, SLACK_MAC_BYTES) < 0)
	{
		pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC-SHA256");
	}
	pg_hmac_free(ctx);
}

/*
 * The MAC a signature ("v0=" and 64 lower-case hex digits) carries, into
 * mac; false when it is not one.  Lower case only: one request has one
 * spelling, so one request key.
 */
static bool
parse_signature(const char *signature, uint8 *mac)
{
	if (strlen(signature) != SLACK_SIGNATURE_CHARS || strncmp(signature, "v0=", 3) != 0)
		return false;
	for (int i = 0; i < SLACK_MAC_BYTES; i++)
	{
		char		hi = signature[3 + 2 * i];
		char		lo = signature[4 + 2 * i];

		if (herald_hex_value(hi) < 0 || herald_hex_value(lo) < 0 ||
			(hi >= 'A' && hi <= 'F') || (lo >= 'A' && lo <= 'F'))
			return false;
		mac[i] = (uint8) (herald_hex_value(hi) * 16 + herald_hex_value(lo));
	}
	return true;
}

/*
 * herald._slack_verify(timestamp, body, signature): the ids of the Slack
 * channels whose signing secret gives signature ("v0=" and 64 lower-case
 * hex digits) for timestamp and body, compared in constant time; an empty
 * array when none does or the signature is not one.  SECURITY DEFINER for
 * the HTTP worker's role, which may not read the secrets.  It does not
 * judge the timestamp: the caller does.
 */
Datum
herald_slack_verify_sql(PG_FUNCTION_ARGS)
{
	char	   *timestamp;
	bytea	   *body;
	char	   *signature;
	uint8		expected[SLACK_MAC_BYTES];
	MemoryContext caller = CurrentMemoryContext;
	Datum	   *ids;
	int			nids = 0;
	int			ret;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	timestamp = text_to_cstring(PG_GETARG_TEXT_PP(0));
	body = PG_GETARG_BYTEA_PP(1);
	signature = text_to_cstring(PG_GETARG_TEXT_PP(2));

	if (!parse_signature(signature, expected))
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(INT4OID));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	ret = SPI_execute("SELECT c.id, c.slack_signing_secret FROM herald.channel_defs c"
					  " WHERE c.kind = 'slack' AND c.slack_signing_secret IS NOT NULL"
					  " ORDER BY c.id", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the Slack signing secrets: %s",
			 SPI_result_code_string(ret));
	ids = MemoryContextAlloc(caller, sizeof(Datum) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		int32		id = DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		char	   *secret = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
		uint8		mac[SLACK_MAC_BYTES];

		if (secret == NULL)
			continue;
		slack_mac(secret, timestamp, (const uint8 *) VARDATA_ANY(body),
				  VARSIZE_ANY_EXHDR(body), mac);
		if (herald_mac_equal(mac, expected, SLACK_MAC_BYTES))
			ids[nids++] = Int32GetDatum(id);
		explicit_bzero(secret, strlen(secret));
		pfree(secret);
	}
	SPI_finish();
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, nids, INT4OID, 4, true, TYPALIGN_INT));
}
