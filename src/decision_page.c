/*-------------------------------------------------------------------------
 *
 * decision_page.c
 *		The page behind every decision link: GET shows it, POST records.
 *
 * A link is {herald.public_url}/d/{token} (links.c).  GET and HEAD show
 * the event (rule, message, facts, time), the actions the rule offers with
 * the link's own preselected, fields for the decision, a next step, its
 * owner and due date, who is recording, and the episode's decisions so
 * far; they never record anything, since mail scanners and chat unfurlers
 * fetch every link.  Only the page's form, POSTed back, records: it
 * carries a per-form token, a MAC under the link's key over the link token,
 * the time the page was made and a nonce (herald._form_token()), good for a
 * day, which is also the request key: a form submitted twice records once,
 * and the second answer shows what the first recorded.
 *
 * The HTTP worker (http_server.c) calls herald_decision_page() inside a
 * transaction, as role herald_http, with SPI connected; everything it
 * reads or records goes through herald._link_page() and
 * herald._link_decide(), SECURITY DEFINER functions granted to that role
 * alone, which check the link themselves.  Every text on a page is
 * HTML-escaped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "pg_herald.h"
#include "http_server.h"

#define FORM_DOMAIN "herald-form"
#define FORM_MAC_BYTES 32
#define FORM_NONCE_BYTES 9
#define FORM_MAX_AGE 86400		/* seconds a page's form stays good */
#define FORM_FIELDS 7
#define MAX_SAID 4000			/* characters of a decision or note */
#define MAX_FIELD 1000			/* characters of the other fields */

PG_FUNCTION_INFO_V1(herald_form_token_sql);

/* the HTTP worker's plans, prepared once */
static SPIPlanPtr page_plan = NULL;
static SPIPlanPtr decide_plan = NULL;
PG_FUNCTION_INFO_V1(herald_form_ok_sql);

/* What a page's form holds (or held, when it comes back with an error). */
typedef struct Form
{
	char	   *form;
	char	   *action;
	char	   *said;
	char	   *next_step;
	char	   *owner;
	char	   *due;
	char	   *name;
} Form;

static const char *const form_names[FORM_FIELDS] = {
	"form", "action", "said", "next_step", "owner", "due", "name"
};

static const char page_style[] =
"body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;line-height:1.5;"
"margin:0;padding:1rem;background:#f4f4f1;color:#1b1b1b}"
"main{max-width:42rem;margin:0 auto;background:#fff;border-radius:10px;"
"padding:1rem 1.25rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}"
"main,p,li,dd,.msg{overflow-wrap:anywhere}"
"h1{font-size:1.35rem;margin:.2rem 0 .5rem}h2{font-size:1.1rem;margin-top:1.5rem}"
".ctx{color:#555;font-size:.9rem;margin:0 0 1rem}"
".msg{white-space:pre-wrap;background:#f7f7f7;border-left:4px solid #4a6ee0;"
"padding:.6rem .8rem;margin:0 0 1rem}"
"dl{display:grid;grid-template-columns:auto 1fr;gap:.2rem .8rem;margin:0 0 1rem}"
"dt{font-weight:600}dd{margin:0}"
"fieldset{border:1px solid #ccc;border-radius:8px;padding:.6rem .8rem;margin:0 0 1rem}"
"legend{font-weight:600;padding:0 .3rem}"
".choice{display:block;padding:.35rem 0}"
"label.field{display:block;font-weight:600;margin:.8rem 0 .2rem}"
"input[type=text],input[type=date],textarea{width:100%;box-sizing:border-box;"
"font:inherit;padding:.5rem;border:1px solid #999;border-radius:6px}"
"button{font:inherit;font-weight:600;margin-top:1rem;padding:.7rem 1.4rem;border:0;"
"border-radius:6px;background:#2f55d4;color:#fff;cursor:pointer}"
"button:focus,input:focus,textarea:focus{outline:3px solid #f0b400;outline-offset:1px}"
".who{margin:.8rem 0 0}.error{background:#fde8e8;border-left:4px solid #c81e1e;"
"padding:.6rem .8rem}.done{background:#e6f4ea;border-left:4px solid #1e7f3c;"
"padding:.6rem .8rem}.small{color:#555;font-size:.85rem}";

/* text, HTML-escaped (quotes too: it may be an attribute). */
void
herald_html_escape(StringInfo buf, const char *text)
{
	if (text == NULL)
		return;
	for (const char *c = text; *c; c++)
	{
		const char *entity = herald_entity(*c, true);

		if (entity)
			appendStringInfoString(buf, entity);
		else
			appendStringInfoChar(buf, *c);
	}
}

/* The start of every page, up to its heading. */
void
herald_http_page_start(StringInfo buf, const char *title)
{
	appendStringInfoString(buf, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
						   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
						   "<meta name=\"robots\" content=\"noindex, nofollow\">\n<title>");
	herald_html_escape(buf, title);
	appendStringInfo(buf, " \xC2\xB7 pg_herald</title>\n<style>%s</style></head>\n<body><main>\n<h1>",
					 page_style);
	herald_html_escape(buf, title);
	appendStringInfoString(buf, "</h1>\n");
}

void
herald_http_page_end(StringInfo buf)
{
	appendStringInfoString(buf, "</main></body></html>\n");
}

/* A page that only says something: a refusal, or the answer to a POST. */
static void
message_page(HeraldHttpResponse *resp, int status, const char *title, const char *css_class,
			 const char *text)
{
	resp->status = status;
	resp->content_type = "text/html; charset=utf-8";
	resetStringInfo(&resp->body);
	herald_http_page_start(&resp->body, title);
	if (text)
	{
		appendStringInfo(&resp->body, "<p class=\"%s\">", css_class);
		herald_html_escape(&resp->body, text);
		appendStringInfoString(&resp->body, "</p>\n");
	}
	herald_http_page_end(&resp->body);
}

/*
 * The answer to a link that does not open (status from herald._link_page()
 * or herald._link_decide()); false when status is not one.
 */
static bool
refused_link(const char *status, HeraldHttpResponse *resp)
{
	if (strcmp(status, "malformed") == 0 || strcmp(status, "unknown_key") == 0 ||
		strcmp(status, "forged") == 0)
	{
		message_page(resp, 403, "This link is not valid", "error",
					 "Open the link from the message itself, in full. Nothing was recorded.");
		resp->log_reason = strcmp(status, "forged") == 0 ? "forged link" :
			strcmp(status, "unknown_key") == 0 ? "link signed by an unknown key" : "malformed link";
	}
	else if (strcmp(status, "expired") == 0)
	{
		message_page(resp, 410, "This link has expired", "error",
					 "Links in messages stay valid for herald.link_lifetime. Nothing was recorded; record the decision with herald.decide() or from a newer message.");
		resp->log_reason = "expired link";
	}
	else if (strcmp(status, "gone") == 0)
	{
		message_page(resp, 410, "This event is no longer kept", "error",
					 "Its rule was dropped or the event was purged. Nothing was recorded.");
		resp->log_reason = "link to an event or rule that is gone";
	}
	else if (strcmp(status, "no_choice") == 0)
	{
		message_page(resp, 410, "This choice is no longer offered", "error",
					 "The rule's choices changed since the message was sent. Nothing was recorded.");
		resp->log_reason = "link to a choice the rule no longer offers";
	}
	else
		return false;
	return true;
}

/* The value of a named column of the only row SPI returned; NULL when null. */
static char *
col_text(const char *name)
{
	int			fnumber = SPI_fnumber(SPI_tuptable->tupdesc, name);

	if (fnumber <= 0)
		elog(ERROR, "column \"%s\" is missing", name);
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, fnumber);
}

static Datum
col_datum(const char *name, bool *isnull)
{
	int			fnumber = SPI_fnumber(SPI_tuptable->tupdesc, name);

	if (fnumber <= 0)
		elog(ERROR, "column \"%s\" is missing", name);
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, fnumber, isnull);
}

/* A text[] column as C strings (nulls as ""); *n elements. */
static char **
col_texts(const char *name, int *n)
{
	bool		isnull;
	Datum		d = col_datum(name, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	char	  **out;

	*n = 0;
	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, n);
	out = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		out[i] = nulls[i] ? "" : TextDatumGetCString(elems[i]);
	return out;
}

static void
field_value(StringInfo buf, const char *value)
{
	appendStringInfoString(buf, " value=\"");
	herald_html_escape(buf, value);
	appendStringInfoChar(buf, '"');
}

/*
 * The decision page of a link, as GET shows it, or again with an error
 * (status 422) when a POST could not record: then the form keeps what was
 * typed, and its token.
 */
static void
decision_page(const char *token, const Form *typed, const char *error, int error_status,
			  bool change, HeraldHttpResponse *resp)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		args[2];
	int			ret;
	char	   *status;
	HeraldDelivery d;
	HeraldFact	facts[HERALD_MAX_FACTS];
	int			nfacts;
	bool		isnull;
	char	  **labels;
	int			nlabels;
	char	  **decisions;
	int			ndecisions;
	bool		has_choices;
	int			action;
	char	   *recipient;
	char	   *channel;
	char	   *form_token;
	char	   *title;
	char	   *message;
	char	   *expires;
	char	   *mine;
	StringInfo	buf = &resp->body;

	args[0] = CStringGetTextDatum(token);
	args[1] = Int64GetDatum((int64) time(NULL));
	if (page_plan == NULL)
		page_plan = herald_prepare_kept("SELECT * FROM herald._link_page($1, $2)", 2, argtypes);
	ret = SPI_execute_plan(page_plan, args, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "herald._link_page failed: %s", SPI_result_code_string(ret));
	status = col_text("status");
	if (refused_link(status, resp))
		return;
	if (strcmp(status, "valid") != 0)
		elog(ERROR, "unexpected link status \"%s\"", status);

	memset(&d, 0, sizeof(d));
	d.event_id = DatumGetInt64(col_datum("event_id", &isnull));
	d.event_type = col_text("event_type");
	d.rule = col_text("rule");
	d.message = col_text("message");
	d.created_at = col_text("created_at");
	{
		Datum		p = col_datum("payload", &isnull);

		d.payload = isnull ? NULL : DatumGetJsonbPCopy(p);
		p = col_datum("messages", &isnull);
		d.messages = isnull ? NULL : DatumGetJsonbPCopy(p);
	}
	d.timezone = col_text("timezone");
	d.kind = "page";
	d.fact_columns = col_texts("fact_columns", &d.nfact_columns);
	has_choices = DatumGetBool(col_datum("has_choices", &isnull));
	labels = col_texts("labels", &nlabels);
	action = DatumGetInt32(col_datum("action", &isnull));
	channel = col_text("channel");
	recipient = col_text("recipient");
	expires = col_text("expires_at");
	form_token = typed && typed->form ? typed->form : col_text("form_token");
	decisions = col_texts("decisions", &ndecisions);
	mine = col_text("mine");
	if (typed && typed->action)
		action = atoi(typed->action);

	title = herald_title(&d, 400);
	message = herald_message(&d, 0, NULL);
	nfacts = herald_facts(&d, facts);

	resp->status = error ? error_status : 200;
	resp->content_type = "text/html; charset=utf-8";
	resetStringInfo(buf);
	herald_http_page_start(buf, title);
	appendStringInfoString(buf, "<p class=\"ctx\">");
	herald_html_escape(buf, herald_context_line(&d));
	appendStringInfoString(buf, "</p>\n");
	if (error)
	{
		appendStringInfoString(buf, "<p class=\"error\" role=\"alert\">");
		herald_html_escape(buf, error);
		appendStringInfoString(buf, "</p>\n");
	}
	/* under the title, what the message adds to it */
	message = (char *) herald_message_body(title, message);
	if (message[0])
	{
		appendStringInfoString(buf, "<div class=\"msg\">");
		herald_html_escape(buf, message);
		appendStringInfoString(buf, "</div>\n");
	}
	if (nfacts > 0)
	{
		appendStringInfoString(buf, "<dl>\n");
		for (int i = 0; i < nfacts; i++)
		{
			appendStringInfoString(buf, "<dt>");
			herald_html_escape(buf, facts[i].name);
			appendStringInfoString(buf, "</dt><dd>");
			herald_html_escape(buf, facts[i].value);
			appendStringInfoString(buf, "</dd>\n");
		}
		appendStringInfoString(buf, "</dl>\n");
	}

	/*
	 * The recipient answered through this link already: the answer is shown
	 * (going back to the page, or opening the link again, records nothing
	 * more), and changing it is a deliberate step: /d/{token}/change.
	 */
	if (mine && !change && typed == NULL)
	{
		appendStringInfoString(buf, "<p class=\"done\" role=\"status\">Your answer is already recorded: ");
		herald_html_escape(buf, mine);
		appendStringInfoString(buf, "</p>\n<p><a href=\"");
		herald_html_escape(buf, token);
		appendStringInfoString(buf, "/change\">Change my answer</a></p>\n");
	}
	else
	{
		appendStringInfoString(buf, "<form method=\"post\" accept-charset=\"utf-8\">\n"
							   "<input type=\"hidden\" name=\"form\"");
		field_value(buf, form_token);
		appendStringInfoString(buf, ">\n<fieldset><legend>Your answer</legend>\n");
		for (int i = 0; i < nlabels; i++)
		{
			appendStringInfo(buf, "<label class=\"choice\"><input type=\"radio\" name=\"action\" value=\"%d\"%s> ",
							 i + 1, i + 1 == action ? " checked" : "");
			herald_html_escape(buf, labels[i]);
			appendStringInfoString(buf, "</label>\n");
		}
		appendStringInfo(buf, "</fieldset>\n<label class=\"field\" for=\"said\">%s</label>\n"
						 "<textarea id=\"said\" name=\"said\" rows=\"4\" maxlength=\"%d\">",
						 has_choices ? "What was decided (optional: the choice says it)" :
						 "Decision (required to record a decision), or a note", MAX_SAID);
		herald_html_escape(buf, typed ? typed->said : NULL);
		appendStringInfo(buf, "</textarea>\n<label class=\"field\" for=\"next_step\">Next step (optional)</label>\n"
						 "<input type=\"text\" id=\"next_step\" name=\"next_step\" maxlength=\"%d\"", MAX_FIELD);
		field_value(buf, typed ? typed->next_step : NULL);
		appendStringInfo(buf, ">\n<label class=\"field\" for=\"owner\">Who owns it (optional)</label>\n"
						 "<input type=\"text\" id=\"owner\" name=\"owner\" maxlength=\"200\"");
		field_value(buf, typed ? typed->owner : NULL);
		appendStringInfoString(buf, ">\n<label class=\"field\" for=\"due\">Due date (optional)</label>\n"
							   "<input type=\"date\" id=\"due\" name=\"due\" placeholder=\"YYYY-MM-DD\"");
		field_value(buf, typed ? typed->due : NULL);
		appendStringInfoString(buf, ">\n");
		if (recipient == NULL || recipient[0] == '\0')
		{
			appendStringInfoString(buf, "<label class=\"field\" for=\"name\">Your name</label>\n"
								   "<input type=\"text\" id=\"name\" name=\"name\" required maxlength=\"200\" autocomplete=\"name\"");
			field_value(buf, typed ? typed->name : NULL);
			appendStringInfoString(buf, ">\n<p class=\"who\">Recording as a reader of channel <strong>");
			herald_html_escape(buf, channel ? channel : "?");
			appendStringInfoString(buf, "</strong>.</p>\n");
		}
		else
		{
			appendStringInfoString(buf, "<p class=\"who\">Recording as <strong>");
			herald_html_escape(buf, recipient);
			appendStringInfoString(buf, "</strong>");
			if (channel)
			{
				appendStringInfoString(buf, " (channel ");
				herald_html_escape(buf, channel);
				appendStringInfoChar(buf, ')');
			}
			appendStringInfoString(buf, ".</p>\n");
		}
		appendStringInfoString(buf, "<button type=\"submit\">Record</button>\n</form>\n");
	}
	appendStringInfoString(buf, "<h2>Decisions so far</h2>\n");
	if (ndecisions == 0)
		appendStringInfoString(buf, "<p>None yet.</p>\n");
	else
	{
		appendStringInfoString(buf, "<ul>\n");
		for (int i = 0; i < ndecisions; i++)
		{
			appendStringInfoString(buf, "<li>");
			herald_html_escape(buf, decisions[i]);
			appendStringInfoString(buf, "</li>\n");
		}
		appendStringInfoString(buf, "</ul>\n");
	}
	appendStringInfoString(buf, "<p class=\"small\">This link works until ");
	herald_html_escape(buf, expires);
	appendStringInfoString(buf, ". Opening it records nothing; only the button does.</p>\n");
	herald_http_page_end(buf);
}

/*
 * Parse a form-urlencoded body into form, each value valid UTF-8 converted
 * to the database encoding; false when it is not one.
 */
static bool
parse_form(const char *body, size_t bodylen, Form *form)
{
	char	  **slots[FORM_FIELDS] = {
		&form->form, &form->action, &form->said, &form->next_step,
		&form->owner, &form->due, &form->name
	};
	HeraldFormField fields[FORM_FIELDS];

	memset(form, 0, sizeof(*form));
	for (int i = 0; i < FORM_FIELDS; i++)
		fields[i].name = form_names[i];
	if (!herald_parse_form(body, bodylen, fields, FORM_FIELDS))
		return false;
	for (int i = 0; i < FORM_FIELDS; i++)
		if (fields[i].value)
		{
			if (!pg_verify_mbstr(PG_UTF8, fields[i].value, fields[i].len, true))
				return false;
			*slots[i] = pg_any_to_server(fields[i].value, fields[i].len, PG_UTF8);
		}
	return true;
}

/* The origin (scheme://host[:port]) of the links' base, palloc'd, or NULL. */
static char *
public_origin(void)
{
	char	   *base = herald_link_base();
	char	   *slash;

	if (base == NULL)
		return NULL;
	slash = strchr(base + strlen("https://") - 1, '/');
	if (slash)
		*slash = '\0';
	return base;
}

static bool
too_long(const char *value, int max_chars)
{
	return value != NULL && pg_mbstrlen(value) > max_chars;
}

/* POST /d/{token}: record what the form says. */
static void
decide(const HeraldHttpRequest *req, const char *token, HeraldHttpResponse *resp)
{
	Form		form;
	char	   *origin;
	Oid			argtypes[8] = {TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		args[8];
	char		nulls[8];
	const char *values[8];
	int			ret;
	int			action;
	char	   *status;
	char	   *end;

	if (req->origin != NULL)
	{
		origin = public_origin();
		if (origin == NULL || pg_strcasecmp(origin, req->origin) != 0)
		{
			message_page(resp, 403, "This form was sent from another site", "error",
						 "Nothing was recorded. Open the link from the message and submit its page.");
			resp->log_reason = "Origin does not match herald.public_url";
			return;
		}
	}
	if (req->content_type == NULL ||
		pg_strncasecmp(req->content_type, "application/x-www-form-urlencoded", 33) != 0)
	{
		message_page(resp, 415, "Unsupported form", "error", "Nothing was recorded.");
		resp->log_reason = "POST that is not form-urlencoded";
		return;
	}
	if (!parse_form(req->body, req->bodylen, &form))
	{
		message_page(resp, 400, "This form could not be read", "error", "Nothing was recorded.");
		resp->log_reason = "malformed form";
		return;
	}
	if (form.form == NULL || form.action == NULL)
	{
		message_page(resp, 400, "This form is incomplete", "error",
					 "Open the link from the message and submit its page. Nothing was recorded.");
		resp->log_reason = "form without its token or action";
		return;
	}
	action = (int) strtol(form.action, &end, 10);
	if (*end != '\0' || end == form.action || action < 1 || action > 255)
	{
		message_page(resp, 400, "This form could not be read", "error", "Nothing was recorded.");
		resp->log_reason = "form with an invalid action";
		return;
	}
	if (too_long(form.said, MAX_SAID) || too_long(form.next_step, MAX_FIELD) ||
		too_long(form.owner, 200) || too_long(form.name, 200) || too_long(form.due, 20) ||
		strlen(form.form) > 200)
	{
		decision_page(token, &form, "A field is too long: a decision has at most 4,000 characters, a next step 1,000, a name or owner 200.",
					  422, false, resp);
		return;
	}

	values[0] = token;
	values[1] = form.form;
	values[3] = form.said;
	values[4] = form.next_step;
	values[5] = form.owner;
	values[6] = form.due;
	values[7] = form.name;
	for (int i = 0; i < 8; i++)
	{
		nulls[i] = ' ';
		if (i == 2)
			args[i] = Int32GetDatum(action);
		else if (values[i] == NULL)
		{
			nulls[i] = 'n';
			args[i] = (Datum) 0;
		}
		else
			args[i] = CStringGetTextDatum(values[i]);
	}
	if (decide_plan == NULL)
		decide_plan = herald_prepare_kept("SELECT * FROM herald._link_decide($1, $2, $3, $4, $5, $6, $7, $8)",
										  8, argtypes);
	ret = SPI_execute_plan(decide_plan, args, nulls, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "herald._link_decide failed: %s", SPI_result_code_string(ret));
	status = col_text("status");
	if (refused_link(status, resp))
		return;
	if (strcmp(status, "form") == 0)
	{
		message_page(resp, 403, "This form is no longer valid", "error",
					 "A page's form is good for a day. Open the link from the message again. Nothing was recorded.");
		resp->log_reason = "form token not genuine or too old";
	}
	else if (strcmp(status, "action") == 0)
	{
		message_page(resp, 400, "This form could not be read", "error", "Nothing was recorded.");
		resp->log_reason = "form with an invalid action";
	}
	else if (strcmp(status, "empty") == 0)
		decision_page(token, &form, "Say what was decided, or choose \"Acknowledge\".", 422, false, resp);
	else if (strcmp(status, "name") == 0)
		decision_page(token, &form, "Give your name: it is recorded with the decision.", 422, false, resp);
	else if (strcmp(status, "due") == 0)
		decision_page(token, &form, "The due date must be a date (YYYY-MM-DD) from 2000 to 2999.", 422, false, resp);
	else if (strcmp(status, "recorded") == 0)
		message_page(resp, 200, "Recorded, thank you", "done", col_text("line"));
	else if (strcmp(status, "already") == 0)
		message_page(resp, 200, "This was already recorded", "done", col_text("line"));
	else
		elog(ERROR, "unexpected decision status \"%s\"", status);
}

/*
 * GET, HEAD and POST /d/{token}; GET /d/{token}/change shows the form even
 * when the recipient answered already (its POST goes to the same place).
 */
void
herald_decision_page(const HeraldHttpRequest *req, HeraldHttpResponse *resp)
{
	char	   *token = pstrdup(req->path + 3);
	char	   *slash = strchr(token, '/');
	bool		change = false;

	Assert(strncmp(req->path, "/d/", 3) == 0);
	if (slash)
	{
		if (strcmp(slash, "/change") != 0)
		{
			message_page(resp, 404, "Not found", "refused", "There is no such page.");
			resp->log_reason = "unknown route";
			return;
		}
		*slash = '\0';
		change = true;
	}
	if (strlen(token) > HERALD_LINK_MAX_CHARS ||
		strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(token))
	{
		refused_link("malformed", resp);
		return;
	}
	if (strcmp(req->method, "POST") == 0)
		decide(req, token, resp);
	else
		decision_page(token, NULL, NULL, 0, change, resp);
}

/* Form tokens --------------------------------------------------------------- */

/*
 * The MAC of a form made at made_at with a nonce for a link token, under
 * the key that signed the link; false when the link does not verify.
 */
static bool
form_mac(const char *token, int64 made_at, const char *nonce, uint8 *mac)
{
	HeraldLink	link;
	bytea	   *key;
	StringInfoData data;

	(void) herald_link_open(token, &link, &key);
	if (key == NULL)
		return false;
	initStringInfo(&data);
	appendStringInfo(&data, "%s.%lld.%s", token, (long long) made_at, nonce);
	herald_link_mac((uint8 *) VARDATA(key), VARSIZE(key) - VARHDRSZ, FORM_DOMAIN,
					(uint8 *) data.data, data.len, mac);
	return true;
}

/*
 * herald._form_token(token, made_at): "made_at.nonce.MAC", or NULL.  The
 * nonce tells apart two pages of one link made in the same second (two
 * readers of a channel): each form is its own request.
 */
Datum
herald_form_token_sql(PG_FUNCTION_ARGS)
{
	char	   *token = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		made_at = PG_GETARG_INT64(1);
	uint8		random[FORM_NONCE_BYTES];
	char	   *nonce;
	uint8		mac[FORM_MAC_BYTES];

	if (!pg_strong_random(random, sizeof(random)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random form nonce")));
	nonce = herald_b64url_encode(random, sizeof(random));
	if (!form_mac(token, made_at, nonce, mac))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%lld.%s.%s", (long long) made_at, nonce,
											  herald_b64url_encode(mac, FORM_MAC_BYTES))));
}

/*
 * herald._form_ok(token, form, max_age): whether form is a form token of
 * this link, made at most max_age seconds ago (and not in the future),
 * compared in constant time.  Only the canonical spelling passes: one form,
 * one request key.
 */
Datum
herald_form_ok_sql(PG_FUNCTION_ARGS)
{
	char	   *token = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *form = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int32		max_age = PG_GETARG_INT32(2);
	char	   *dot = strchr(form, '.');
	char	   *dot2;
	char	   *end;
	long long	made_at;
	int64		now = (int64) time(NULL);
	uint8		nonce[FORM_NONCE_BYTES + 1];
	uint8		given[FORM_MAC_BYTES + 1];
	uint8		mac[FORM_MAC_BYTES];

	if (dot == NULL || dot == form || dot - form > 12)
		PG_RETURN_BOOL(false);
	*dot = '\0';
	dot2 = strchr(dot + 1, '.');
	if (dot2 == NULL)
		PG_RETURN_BOOL(false);
	*dot2 = '\0';
	if (strspn(form, "0123456789") != strlen(form) || (form[0] == '0' && form[1] != '\0'))
		PG_RETURN_BOOL(false);
	made_at = strtoll(form, &end, 10);
	if (*end != '\0' || made_at > now + 300 || now - made_at > max_age)
		PG_RETURN_BOOL(false);
	if (herald_b64url_decode(dot + 1, nonce, sizeof(nonce)) != FORM_NONCE_BYTES ||
		herald_b64url_decode(dot2 + 1, given, sizeof(given)) != FORM_MAC_BYTES)
		PG_RETURN_BOOL(false);
	if (!form_mac(token, (int64) made_at, dot + 1, mac))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(herald_mac_equal(mac, given, FORM_MAC_BYTES));
}
