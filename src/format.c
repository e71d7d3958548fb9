/*-------------------------------------------------------------------------
 *
 * format.c
 *		The event model shared by every channel format, and the dispatch.
 *
 * A delivery is rendered by the renderer of its channel's kind, which
 * channel_kinds.c names: webhook.c (Standard Webhooks), format_chat.c (Slack,
 * Microsoft Teams, Google Chat), format_email.c (SMTP) and notify below.  They
 * all draw on the same pieces, built here from the event: the message (the
 * rule's template or the default one for the event type, template.c), a short
 * title, the facts worth a glance (herald_facts: for a threshold event what
 * explains it, the value, the threshold crossed, the level, the key, since
 * when and the trend; for a row event its table, operation and columns, in
 * the table's order or the rule's; for a follow-up those of the alert it
 * asks about), a context line, the links the message contains, the actions
 * of an event that awaits a decision (herald_actions) and a thread per
 * episode (herald_thread_key, and the message an email replies to).
 * Titles and default messages are the event type's (event_types.c).
 * These are plain text; each format escapes them for its target and keeps
 * within its size limits.  No format shows the title twice: a message that
 * starts with its title (as the default ones do) is shown after the title
 * without it (herald_message_body), or instead of it where title and
 * message make one text (herald_title_and_message).
 *
 * Every text is bounded before it is built, whatever the template and the
 * row: the message by its kind's limit and herald.max_message_size, the
 * title by what the format shows of it, each fact by FACT_MAX_BYTES.  So a
 * delivery's memory is its payload plus these bounds.
 *
 * Called by the delivery worker with no transaction open.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "pg_herald.h"

/* PostgreSQL's limit on a NOTIFY payload is 8000 bytes. */
#define NOTIFY_MAX_BYTES 7999

/*
 * Columns of a row event shown as facts when its rule is gone (otherwise
 * herald._fact_columns says, with the same number by default).
 */
#define ROW_FACT_COLUMNS 6

/* The longest fact value, in bytes: more than any format shows. */
#define FACT_MAX_BYTES 8192

/* herald.max_message_size: the most bytes of a rendered message, any kind */
int			herald_max_message_size = 65536;

void
herald_define_format_settings(void)
{
	DefineCustomIntVariable("herald.max_message_size",
							"Maximum size of a rendered message.",
							"A longer message is cut and ends with \"… [truncated]\"; "
							"each channel kind may cut it shorter.",
							&herald_max_message_size,
							65536, 1024, 16 * 1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);
}

/* The most bytes chars characters take in the database encoding. */
int
herald_chars_bytes(int chars)
{
	return chars * pg_database_encoding_max_length();
}

/*
 * The values templates render for a delivery.  A message with actions, or
 * one that updates a message already answered (response_url), asks
 * nothing in SQL.
 */
HeraldTemplateValues
herald_template_values(HeraldDelivery *d)
{
	HeraldTemplateValues values;

	values.rule = d->rule;
	values.event_id = d->event_id;
	values.type = d->event_type;
	values.data = d->payload;
	values.has_actions = d->actions != NULL || d->response_url != NULL;
	values.timezone = d->timezone ? d->timezone : herald_timezone;
	return values;
}

/*
 * The rule's template for an event of this type: its messages' entry for
 * the type (herald.rule_defs.messages), else its message; NULL for the
 * default message of the type (event_types.c).  A rule.error event takes
 * the message only from messages: the rule's message speaks of the value,
 * which an error has not, and the default says what failed.
 */
static const char *
rule_template(const char *message, Jsonb *messages, const char *type)
{
	JsonbValue	v;

	if (messages != NULL && type != NULL && JsonContainerIsObject(&messages->root) &&
		getKeyJsonValueFromContainer(&messages->root, type, strlen(type), &v) != NULL &&
		v.type == jbvString)
		return pnstrdup(v.val.string.val, v.val.string.len);
	if (type != NULL && strcmp(type, "rule.error") == 0)
		return NULL;
	return message;
}

/*
 * The event's message: the rule's template for its type, or the default
 * of its type, in at most max_bytes (the kind's limit, 0 for none) and
 * herald.max_message_size bytes.  *cut (when not NULL) says whether it was
 * cut.
 */
char *
herald_message(HeraldDelivery *d, int max_bytes, bool *cut)
{
	HeraldTemplateValues values = herald_template_values(d);
	int			limit = herald_max_message_size;
	char	   *message;
	int			len;

	if (max_bytes > 0)
		limit = Min(limit, max_bytes);
	message = herald_render_template(rule_template(d->message, d->messages, d->event_type),
									 &values, limit, cut);
	/* what an empty placeholder at the end ({{sparkline}}) leaves */
	len = strlen(message);
	while (len > 0 && (message[len - 1] == ' ' || message[len - 1] == '\t'))
		message[--len] = '\0';
	return message;
}

/*
 * What a message adds to its title, to show under it: the message without
 * the title it starts with, nor the separator that follows (spaces, line
 * breaks, ":", "-" ...); the whole message when it does not start with the
 * title.  Points into message.
 */
const char *
herald_message_body(const char *title, const char *message)
{
	size_t		len = strlen(title);
	const char *rest = message + len;

	if (len == 0 || strncmp(message, title, len) != 0 ||
		/* "x is firing" does not start "x is firingly" */
		(isalnum((unsigned char) title[len - 1]) && isalnum((unsigned char) *rest)))
		return message;
	while (*rest && strchr(" \t\r\n:;,.-", *rest) != NULL)
		rest++;
	return rest;
}

/*
 * The title and the message as one text (a notification, a plain-text
 * part), the title said once: the message alone when it starts with the
 * title, else the title, separator and message; one of them when the
 * other is empty.
 */
char *
herald_title_and_message(const char *title, const char *message, const char *separator)
{
	if (herald_message_body(title, message) != message || title[0] == '\0')
		return pstrdup(message);
	if (message[0] == '\0')
		return pstrdup(title);
	return psprintf("%s%s%s", title, separator, message);
}

/* A short title, for headers and subjects, in at most max_bytes. */
char *
herald_title(HeraldDelivery *d, int max_bytes)
{
	HeraldTemplateValues values = herald_template_values(d);
	const char *tmpl = herald_event_title(d->event_type, d->payload);

	return herald_render_template(tmpl, &values,
								  Min(max_bytes, herald_max_message_size), NULL);
}

/* "rule big-order · 2026-11-23 13:01:13 UTC · event 42" */
char *
herald_context_line(HeraldDelivery *d)
{
	StringInfoData buf;
	char		when[32];

	/* created_at is ISO 8601 in UTC: 2026-11-23T13:01:13.843169Z */
	strlcpy(when, d->created_at ? d->created_at : "", sizeof(when));
	if (strlen(when) >= 19)
	{
		when[10] = ' ';
		when[19] = '\0';
	}
	initStringInfo(&buf);
	if (d->rule)
		appendStringInfo(&buf, "rule %s \xC2\xB7 ", d->rule);
	appendStringInfo(&buf, "%s UTC \xC2\xB7 event " INT64_FORMAT, when, d->event_id);
	return buf.data;
}

/* len bytes of text, cut to FACT_MAX_BYTES with the marker. */
static char *
fact_text(const char *text, int len)
{
	if (len <= FACT_MAX_BYTES)
		return pnstrdup(text, len);
	len = pg_mbcliplen(text, len, FACT_MAX_BYTES - strlen(HERALD_TRUNCATED));
	return psprintf("%.*s%s", len, text, HERALD_TRUNCATED);
}

/*
 * A JSON value as plain text: strings unquoted, null as "null"; at most
 * FACT_MAX_BYTES.
 */
static char *
value_text(JsonbValue *v)
{
	StringInfoData buf;
	char	   *text;

	switch (v->type)
	{
		case jbvNull:
			return pstrdup("null");
		case jbvString:
			return fact_text(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvBinary:
			initStringInfo(&buf);
			(void) JsonbToCString(&buf, v->val.binary.data, v->val.binary.len);
			text = fact_text(buf.data, buf.len);
			pfree(buf.data);
			return text;
		default:
			return pstrdup("");
	}
}

/* A fact, unless there are HERALD_MAX_FACTS already or value is empty. */
static int
append_fact(HeraldFact *facts, int n, const char *name, char *value)
{
	if (n >= HERALD_MAX_FACTS || value == NULL || value[0] == '\0')
		return n;
	facts[n].name = name;
	facts[n].value = value;
	return n + 1;
}

/* A member of the object obj as text; NULL when absent or null. */
static char *
member_text(JsonbContainer *obj, const char *key)
{
	JsonbValue	v;

	if (obj == NULL || getKeyJsonValueFromContainer(obj, key, strlen(key), &v) == NULL ||
		v.type == jbvNull)
		return NULL;
	return value_text(&v);
}

static int
add_fact(HeraldFact *facts, int n, JsonbContainer *obj, const char *key,
		 const char *name)
{
	return append_fact(facts, n, name, member_text(obj, key));
}

/*
 * A row event's facts: its table and operation, then the columns of its
 * row (new, or old for a delete): d->fact_columns in their order (the
 * rule's facts, or the table's first columns: herald._fact_columns), a
 * column the row does not have (renamed since) left out; without them (the
 * rule is gone), the first ROW_FACT_COLUMNS in the payload's order.
 */
static int
row_facts(HeraldDelivery *d, JsonbContainer *data, HeraldFact *facts)
{
	JsonbValue	row;
	JsonbContainer *obj;
	int			n = 0;

	n = add_fact(facts, n, data, "table", "Table");
	n = add_fact(facts, n, data, "operation", "Operation");
	if ((getKeyJsonValueFromContainer(data, "new", 3, &row) == NULL &&
		 getKeyJsonValueFromContainer(data, "old", 3, &row) == NULL) ||
		row.type != jbvBinary || !JsonContainerIsObject(row.val.binary.data))
		return n;
	obj = row.val.binary.data;
	if (d->fact_columns != NULL)
	{
		for (int i = 0; i < d->nfact_columns && n < HERALD_MAX_FACTS; i++)
		{
			JsonbValue	v;
			const char *col = d->fact_columns[i];

			if (getKeyJsonValueFromContainer(obj, col, strlen(col), &v) == NULL)
				continue;
			facts[n].name = col;
			facts[n].value = value_text(&v);
			n++;
		}
	}
	else
	{
		JsonbIterator *it = JsonbIteratorInit(obj);
		JsonbValue	v;
		JsonbIteratorToken tok;
		int			columns = 0;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_KEY || columns >= ROW_FACT_COLUMNS || n >= HERALD_MAX_FACTS)
				continue;
			facts[n].name = pnstrdup(v.val.string.val, v.val.string.len);
			tok = JsonbIteratorNext(&it, &v, true);
			facts[n].value = value_text(&v);
			n++;
			columns++;
		}
	}
	return n;
}

/*
 * A threshold event's facts, what explains it: the value; the threshold
 * it crossed, named for what it is ("Threshold: > 50" at critical level,
 * "Warning threshold: > 30" at warning level, "Recovers at: <= 40" on a
 * resolution: the recover threshold, else the lowest threshold of the
 * episode's direction); the level (not on a resolution);
 * the key of a grouped rule; since when the episode runs; the trend
 * (herald_sparkline, with enough values, unless the message's template
 * draws it); the state when the type does not
 * say it (no_data); why (the rule changed) and the error.
 */
static int
threshold_facts(HeraldDelivery *d, JsonbContainer *data, HeraldFact *facts)
{
	const char *type = d->event_type;
	bool		resolved = strcmp(type, "rule.resolved") == 0;
	bool		episode = resolved || strcmp(type, "rule.fired") == 0 ||
		strcmp(type, "rule.escalated") == 0 || strcmp(type, "rule.reminder") == 0;
	const char *implied = resolved ? "ok" : episode ? "firing" : "error";
	char	   *op = member_text(data, "op");
	char	   *level = member_text(data, "level");
	char	   *crossed = member_text(data, "crossed");
	char	   *value = member_text(data, "value");
	char	   *state = member_text(data, "state");
	char	   *since = member_text(data, "since");
	const char *template;
	int			n = 0;

	n = append_fact(facts, n, "Value", value);
	/* an event recorded before crossed was: its (critical) threshold */
	if (crossed == NULL && value != NULL)
		crossed = member_text(data, "threshold");
	if (crossed != NULL && op != NULL)
	{
		const char *name = "Threshold";

		if (resolved)
		{
			/*
			 * It came back past crossed (herald._transition()): at or below
			 * (above) a recover threshold, else as soon as the threshold no
			 * longer holds.
			 */
			bool		above = op[0] == '>';

			name = "Recovers at";
			if (member_text(data, "recover_threshold") != NULL && (above || op[0] == '<') &&
				strcmp(op, "<>") != 0)
				op = above ? "<=" : ">=";
			else
				op = strcmp(op, ">") == 0 ? "<=" : strcmp(op, ">=") == 0 ? "<" :
					strcmp(op, "<") == 0 ? ">=" : strcmp(op, "<=") == 0 ? ">" :
					strcmp(op, "=") == 0 ? "<>" : "=";
		}
		else if (level != NULL && strcmp(level, "warning") == 0)
			name = "Warning threshold";
		n = append_fact(facts, n, name, psprintf("%s %s", op, crossed));
	}
	if (!resolved)
		n = append_fact(facts, n, "Level", level);
	n = add_fact(facts, n, data, "key", "Key");
	if (episode && since != NULL)
		n = append_fact(facts, n, "Since", herald_utc_time(since, true));
	/* unless the message draws it already */
	template = rule_template(d->message, d->messages, type);
	if (value != NULL &&
		strstr(template ? template :
			   herald_event_message(type, d->payload, false), "sparkline") == NULL)
		n = append_fact(facts, n, "Trend", herald_sparkline(d->payload));
	if (state != NULL && strcmp(state, implied) != 0)
		n = append_fact(facts, n, "State", state);
	n = add_fact(facts, n, data, "reason", "Reason");
	n = add_fact(facts, n, data, "error", "Error");
	return n;
}

/*
 * The facts of an event, at most HERALD_MAX_FACTS: a row event's
 * (row_facts), a threshold event's (threshold_facts), and for the others
 * the fields of these that their payload has.
 */
int
herald_facts(HeraldDelivery *d, HeraldFact *facts)
{
	JsonbContainer *data = d->payload ? &d->payload->root : NULL;
	int			n = 0;

	if (data == NULL || !JsonContainerIsObject(data))
		return 0;
	if (strncmp(d->event_type, "row.", 4) == 0)
		return row_facts(d, data, facts);
	if (strncmp(d->event_type, "rule.", 5) == 0)
		return threshold_facts(d, data, facts);
	if (strcmp(d->event_type, "decision.followup") == 0)
	{
		/* the alert it asks about */
		n = add_fact(facts, n, data, "key", "Key");
		n = add_fact(facts, n, data, "about_value", "Value");
		n = add_fact(facts, n, data, "about_level", "Level");
		n = add_fact(facts, n, data, "about_at", "Since");
		n = add_fact(facts, n, data, "about_state", "State");
		return n;
	}
	n = add_fact(facts, n, data, "key", "Key");
	n = add_fact(facts, n, data, "value", "Value");
	n = add_fact(facts, n, data, "threshold", "Threshold");
	n = add_fact(facts, n, data, "state", "State");
	n = add_fact(facts, n, data, "level", "Level");
	n = add_fact(facts, n, data, "error", "Error");
	n = add_fact(facts, n, data, "channel", "Channel");
	return n;
}

/* The http(s) links in a message, in order, at most HERALD_MAX_LINKS. */
int
herald_links(const char *message, char **links)
{
	const char *p = message;
	int			n = 0;

	while (n < HERALD_MAX_LINKS && (p = strstr(p, "http")) != NULL)
	{
		const char *end;

		if (strncmp(p, "http://", 7) != 0 && strncmp(p, "https://", 8) != 0)
		{
			p += 4;
			continue;
		}
		end = p;
		while (*end && !isspace((unsigned char) *end) && *end != '"' &&
			   *end != '<' && *end != '>')
			end++;
		/* a sentence's final punctuation is not part of the link */
		while (end > p && strchr(".,;:!?)]}'", end[-1]) != NULL)
			end--;
		links[n++] = pnstrdup(p, end - p);
		p = end;
	}
	return n;
}

/* A URL fit to be a button: http(s), in one piece, no quote or bracket. */
static bool
safe_url(const char *url, int len)
{
	if (!((len > 7 && pg_strncasecmp(url, "http://", 7) == 0) ||
		  (len > 8 && pg_strncasecmp(url, "https://", 8) == 0)) ||
		len > HERALD_ACTION_URL_MAX)
		return false;
	for (int i = 0; i < len; i++)
		if ((unsigned char) url[i] <= ' ' || url[i] == 0x7f || url[i] == '"' ||
			url[i] == '<' || url[i] == '>' || url[i] == '\\')
			return false;
	return true;
}

/* A string member of a JSON object, copied; NULL when absent or empty. */
static char *
member_string(JsonbContainer *obj, const char *key)
{
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(obj, key, strlen(key), &v) == NULL ||
		v.type != jbvString || v.val.string.len == 0)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/*
 * The actions the delivery's message offers (herald._actions(): the
 * claim's [{"id", "label", "url"}]), in order, at most HERALD_MAX_ACTIONS.
 * An element that is not a complete action with an http(s) URL ending in
 * its token is left out, so that no format ever shows half an action.
 */
int
herald_actions(HeraldDelivery *d, HeraldAction *actions)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;

	/* only an event that awaits a decision asks for one */
	if (d->actions == NULL || !JsonContainerIsArray(&d->actions->root) ||
		!herald_event_type(d->event_type)->awaits_decision)
		return 0;
	it = JsonbIteratorInit(&d->actions->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		HeraldAction *a = &actions[n];
		char	   *slash;

		if (tok != WJB_ELEM || v.type != jbvBinary ||
			!JsonContainerIsObject(v.val.binary.data) || n >= HERALD_MAX_ACTIONS)
			continue;
		a->id = member_string(v.val.binary.data, "id");
		a->label = member_string(v.val.binary.data, "label");
		a->url = member_string(v.val.binary.data, "url");
		if (a->id == NULL || a->label == NULL || a->url == NULL ||
			!safe_url(a->url, strlen(a->url)))
			continue;
		slash = strrchr(a->url, '/');
		if (slash == NULL || slash[1] == '\0' ||
			strspn(slash + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				   "0123456789-_") != strlen(slash + 1))
			continue;
		a->token = pstrdup(slash + 1);
		n++;
	}
	return n;
}

/* The actions as the JSON array [{"id", "label", "url"}] (webhook, notify). */
void
herald_append_actions_json(StringInfo buf, HeraldAction *actions, int n)
{
	appendStringInfoChar(buf, '[');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoString(buf, ", ");
		appendStringInfoString(buf, "{\"id\": ");
		escape_json(buf, actions[i].id);
		appendStringInfoString(buf, ", \"label\": ");
		escape_json(buf, actions[i].label);
		appendStringInfoString(buf, ", \"url\": ");
		escape_json(buf, actions[i].url);
		appendStringInfoChar(buf, '}');
	}
	appendStringInfoChar(buf, ']');
}

/*
 * A time of a payload (a timestamptz as JSON, with its offset) in UTC:
 * "14:02 UTC", or with_date "2026-12-01 14:02 UTC"; "" when there is none.
 */
char *
herald_utc_time(const char *iso, bool with_date)
{
	TimestampTz ts;
	struct pg_tm tm;
	fsec_t		fsec;

	if (iso == NULL || iso[0] == '\0')
		return pstrdup("");
	ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(iso),
												 ObjectIdGetDatum(InvalidOid),
												 Int32GetDatum(-1)));
	/* no time zone given: the fields are UTC */
	if (TIMESTAMP_NOT_FINITE(ts) || timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return pstrdup("");
	if (with_date)
		return psprintf("%04d-%02d-%02d %02d:%02d UTC", tm.tm_year, tm.tm_mon,
						tm.tm_mday, tm.tm_hour, tm.tm_min);
	return psprintf("%02d:%02d UTC", tm.tm_hour, tm.tm_min);
}

/*
 * The event a decision.recorded delivery's response_url update is about,
 * as a delivery of its own, so that the update shows that message again
 * (its title, message and facts), with no actions and no hint.
 */
void
herald_about_delivery(HeraldDelivery *d, HeraldDelivery *about)
{
	JsonbContainer *data = d->payload ? &d->payload->root : NULL;
	JsonbValue	v;
	char	   *created;

	*about = *d;
	about->actions = NULL;
	about->payload = d->about_payload;
	about->event_type = data ? member_string(data, "about_type") : NULL;
	if (about->event_type == NULL)
		about->event_type = pstrdup("event");
	about->event_id = 0;
	if (data && getKeyJsonValueFromContainer(data, "about_event_id", 14, &v) &&
		v.type == jbvNumeric)
		about->event_id = DatumGetInt64(DirectFunctionCall1(numeric_int8,
															NumericGetDatum(v.val.numeric)));
	/* the rule's own templates, as the first message had them */
	about->message = strncmp(about->event_type, "decision.", 9) == 0 ? NULL : d->rule_message;
	about->messages = d->rule_messages;
	/* the context line wants ISO 8601 in UTC */
	created = data ? member_string(data, "about_created_at") : NULL;
	if (created)
	{
		TimestampTz ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
																 CStringGetDatum(created),
																 ObjectIdGetDatum(InvalidOid),
																 Int32GetDatum(-1)));
		struct pg_tm tm;
		fsec_t		fsec;

		if (!TIMESTAMP_NOT_FINITE(ts) && timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) == 0)
			about->created_at = psprintf("%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year,
										 tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min,
										 tm.tm_sec);
	}
}

/* A number member of a JSON object as int64; 0 when absent. */
static int64
member_int64(JsonbContainer *obj, const char *key)
{
	JsonbValue	v;

	if (obj == NULL || !JsonContainerIsObject(obj) ||
		getKeyJsonValueFromContainer(obj, key, strlen(key), &v) == NULL ||
		v.type != jbvNumeric)
		return 0;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8,
											 NumericGetDatum(v.val.numeric)));
}

/*
 * The first event of the delivery's episode: a rule.fired or row event is
 * its own; a reminder, an escalation and a resolution name their rule.fired
 * event (fired_event_id), a follow-up and a decision.recorded the episode
 * they are about (about_event_id, herald._episode()).  0 for an event of
 * no episode (rule.error, channel.test).
 */
int64
herald_episode_event(HeraldDelivery *d)
{
	JsonbContainer *data = d->payload ? &d->payload->root : NULL;

	if (strcmp(d->event_type, "rule.fired") == 0 || strncmp(d->event_type, "row.", 4) == 0)
		return d->event_id;
	if (strcmp(d->event_type, "rule.reminder") == 0 ||
		strcmp(d->event_type, "rule.escalated") == 0 ||
		strcmp(d->event_type, "rule.resolved") == 0)
		return member_int64(data, "fired_event_id");
	if (strncmp(d->event_type, "decision.", 9) == 0)
		return member_int64(data, "about_event_id");
	return 0;
}

/*
 * The installation's id, as the delivery's webhook-id (msg_<id>_<delivery>)
 * names it; "" when it does not.
 */
static char *
installation_of(HeraldDelivery *d)
{
	const char *start;
	const char *end;

	if (d->webhook_id == NULL || strncmp(d->webhook_id, "msg_", 4) != 0)
		return pstrdup("");
	start = d->webhook_id + 4;
	end = strchr(start, '_');
	return end ? pnstrdup(start, end - start) : pstrdup("");
}

/*
 * The webhook-id of the delivery of the episode's first event to the
 * delivery's channel, the message its later messages reply to (an email's
 * Message-ID is made of it); NULL for the first message itself and for an
 * event of no episode.  A webhook-id is msg_<installation>_<delivery id>,
 * and a delivery id herald._delivery_id(): event * 1000000 + channel.
 */
char *
herald_episode_webhook_id(HeraldDelivery *d)
{
	int64		episode = herald_episode_event(d);

	if (episode <= 0 || episode == d->event_id)
		return NULL;
	return herald_format_webhook_id(installation_of(d), episode * 1000000 + d->channel_id);
}

/*
 * One thread per episode: every message of one (its first event, the
 * reminders, the escalation, the follow-ups, the decisions and the
 * resolution) shares "pg_herald-<installation>-<first event>".  An event
 * of no episode gets one thread per rule instance: the rule's name, and
 * the key of a grouped threshold rule.  Not secret: the installation id is
 * in every webhook-id.
 */
char *
herald_thread_key(HeraldDelivery *d)
{
	JsonbValue	v;
	int64		episode = herald_episode_event(d);

	if (episode > 0)
		return psprintf("pg_herald-%s-" INT64_FORMAT, installation_of(d), episode);
	if (d->payload &&
		getKeyJsonValueFromContainer(&d->payload->root, "key", 3, &v) != NULL &&
		v.type == jbvString)
		return psprintf("%s/%.*s", d->rule ? d->rule : "", v.val.string.len, v.val.string.val);
	return pstrdup(d->rule ? d->rule : d->event_type);
}

/* Characters (not bytes) in a string of the database encoding. */
int
herald_char_length(const char *text)
{
	return pg_mbstrlen(text);
}

/*
 * text cut to at most max_chars characters, marker included, at a
 * character boundary; text itself when it fits.
 */
char *
herald_truncate(const char *text, int max_chars, const char *marker)
{
	int			keep;
	int			bytes;

	if (pg_mbstrlen(text) <= max_chars)
		return pstrdup(text);
	keep = Max(max_chars - pg_mbstrlen(marker), 0);
	bytes = pg_mbcharcliplen(text, strlen(text), keep);
	return psprintf("%.*s%s", bytes, text, marker);
}

/*
 * The entity that stands for a character in markup (& < > and, with
 * quotes, " and ' for HTML), or NULL for a character that stands for
 * itself.
 */
const char *
herald_entity(char c, bool quotes)
{
	switch (c)
	{
		case '&':
			return "&amp;";
		case '<':
			return "&lt;";
		case '>':
			return "&gt;";
		case '"':
			return quotes ? "&quot;" : NULL;
		case '\'':
			return quotes ? "&#39;" : NULL;
		default:
			return NULL;
	}
}

struct curl_slist *
herald_append_header(struct curl_slist *list, const char *line)
{
	struct curl_slist *next = curl_slist_append(list, line);

	if (next == NULL)
	{
		curl_slist_free_all(list);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building a request")));
	}
	return next;
}

/*
 * notify: pg_notify(target, payload), sent by the worker when it records
 * the outcome.  The payload {"event_id", "type", "rule", "message",
 * "actions"} stays under PostgreSQL's 8,000-byte limit: a long message is
 * cut first ("truncated": true says so); only if the actions alone do not
 * fit are the last ones left out, whole, and "actions_dropped" says how
 * many.  The event id is always there.
 */
void
herald_format_notify(HeraldDelivery *d, HeraldOutgoing *out)
{
	bool		rendered_cut;
	char	   *message = herald_message(d, NOTIFY_MAX_BYTES, &rendered_cut);
	HeraldAction actions[HERALD_MAX_ACTIONS];
	int			nall = herald_actions(d, actions);
	int			nactions = nall;
	StringInfoData buf;
	int			full = strlen(message);
	int			cut = full;

	for (;;)
	{
		initStringInfo(&buf);
		appendStringInfo(&buf, "{\"event_id\": " INT64_FORMAT ", \"type\": ", d->event_id);
		escape_json(&buf, d->event_type);
		appendStringInfoString(&buf, ", \"rule\": ");
		if (d->rule)
			escape_json(&buf, d->rule);
		else
			appendStringInfoString(&buf, "null");
		appendStringInfoString(&buf, ", \"message\": ");
		escape_json(&buf, message);
		if (nall > 0)
		{
			appendStringInfoString(&buf, ", \"actions\": ");
			herald_append_actions_json(&buf, actions, nactions);
			if (nactions < nall)
				appendStringInfo(&buf, ", \"actions_dropped\": %d", nall - nactions);
		}
		if (rendered_cut || cut < full || buf.len + 1 > NOTIFY_MAX_BYTES)
			appendStringInfoString(&buf, ", \"truncated\": true");
		appendStringInfoChar(&buf, '}');
		if (buf.len <= NOTIFY_MAX_BYTES)
			break;
		if (cut > 0)
		{
			/* escaping can grow a character up to six bytes: cut by the excess */
			cut = pg_mbcliplen(message, cut, Max(cut - (buf.len - NOTIFY_MAX_BYTES) - 32, 0));
			message[cut] = '\0';
		}
		else if (nactions > 0)
			nactions--;
		else
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the notification of event " INT64_FORMAT " is longer than 8000 bytes even without its message",
							d->event_id)));
		pfree(buf.data);
	}
	out->url = pstrdup(d->target);
	out->body = buf.data;
	out->bodylen = buf.len;
}

/*
 * Build what the delivery's channel kind sends, with the kind's renderer
 * and for its transport (channel_kinds.c).
 */
void
herald_format(HeraldDelivery *d, HeraldOutgoing *out)
{
	const HeraldChannelKind *kind = herald_channel_kind(d->kind);

	memset(out, 0, sizeof(*out));
	if (kind == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("unknown channel kind \"%s\"", d->kind)));
	out->transport = kind->transport;
	kind->render(d, out);
}
