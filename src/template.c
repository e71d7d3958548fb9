/*-------------------------------------------------------------------------
 *
 * template.c
 *		Message templates with {{placeholders}}.
 *
 * A template is checked when a rule is declared (herald._check_template)
 * and rendered by the delivery worker for each delivery, from the event's
 * payload.  Both go through template_walk(), so what is accepted is exactly
 * what can be rendered.  Rendering produces plain text; each channel format
 * escapes it for its target.
 *
 * Placeholders: {{rule}}, {{event_id}}, {{type}} for every event; for row
 * rules {{table}}, {{operation}}, {{new.COLUMN}} and {{old.COLUMN}}; for
 * threshold rules {{key}}, {{value}}, {{op}}, {{threshold}},
 * {{warning_threshold}}, {{recover_threshold}}, {{crossed}} (the threshold
 * the value crossed: see herald._threshold_payload), {{state}},
 * {{previous_state}}, {{level}}, {{since}}, {{error}} and {{sparkline}} (the
 * metric's recent values drawn with block characters, empty with fewer than
 * 3 values).  A channel's
 * template (an email subject) serves every kind and may use all of them
 * but {{new.*}} and {{old.*}}, and those of decision.recorded events too:
 * {{about}}, {{decision_summary}}, {{decision_details}} (computed: see
 * render_decision) and the fields {{kind}}, {{choice}}, {{decision}},
 * {{note}}, {{action}}, {{action_owner}}, {{action_due}}, {{decided_by}},
 * {{identified_by}}, {{decided_at}}, {{about_event_id}}, {{about_type}},
 * and those of follow-ups, which quote the alert they ask about:
 * {{about_message}} (its message as it was rendered), {{about_value}},
 * {{about_level}}, {{about_at}} (when it happened, in UTC), {{about_state}}
 * ("still firing", "resolved") and {{about_context}} (computed: "rule.fired
 * at 2026-12-01 14:02 UTC, still firing").
 * A rule's message serves only the rule's own events, never follow-ups or
 * decision.recorded, so it may not use these.  A field the event lacks
 * renders as nothing.
 *
 * A placeholder may name filters after its field ({{value | number(2)}}):
 * filters.c parses, checks and applies them; the field is rendered into a
 * buffer of its own first, bounded as filters.c says, and the result goes
 * into the message.
 *
 * The default message and the title of each event type are in
 * event_types.c.
 *
 * A rendering is bounded: the caller gives the most bytes it can use (its
 * channel kind's limit, and herald.max_message_size), and the walk stops
 * as soon as the text reaches it, so that neither a template repeating a
 * placeholder nor a huge value costs more than that bound; the text is
 * then cut at a character boundary and ends with HERALD_TRUNCATED.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "pg_herald.h"

#define COMMON_PLACEHOLDERS "{{rule}}, {{event_id}}, {{type}}"
#define ROW_PLACEHOLDERS COMMON_PLACEHOLDERS ", {{table}}, {{operation}}, {{new.COLUMN}}, {{old.COLUMN}}"
#define THRESHOLD_FIELDS "{{key}}, {{value}}, {{op}}, {{threshold}}, " \
	"{{warning_threshold}}, {{recover_threshold}}, {{crossed}}, {{state}}, {{previous_state}}, " \
	"{{level}}, {{since}}, {{error}}, {{sparkline}}"
#define THRESHOLD_PLACEHOLDERS COMMON_PLACEHOLDERS ", " THRESHOLD_FIELDS
#define DECISION_FIELDS "{{about}}, {{decision_summary}}, {{decision_details}}, " \
	"{{about_event_id}}, {{about_type}}, {{kind}}, {{choice}}, {{decision}}, {{note}}, " \
	"{{action}}, {{action_owner}}, {{action_due}}, {{decided_by}}, {{identified_by}}, " \
	"{{decided_at}}, {{about_message}}, {{about_value}}, {{about_level}}, {{about_at}}, " \
	"{{about_state}}, {{about_context}}"
#define CHANNEL_PLACEHOLDERS COMMON_PLACEHOLDERS ", {{table}}, {{operation}}, " \
	THRESHOLD_FIELDS ", " DECISION_FIELDS

static const char *const row_fields[] = {"table", "operation", NULL};
/* fields of other events, rendered but not offered to templates */
static const char *const other_fields[] = {
	"channel", "about_created_at", "sql", "link", NULL
};

/*
 * Fields of decision.recorded (and follow-ups: about_*), and the three
 * computed from them (about, decision_summary, decision_details).  A rule's
 * message never serves these events (its own events only), so only
 * channel templates may use them.
 */
static const char *const decision_fields[] = {
	"about_event_id", "about_type", "kind", "choice", "decision", "note", "action",
	"action_owner", "action_due", "decided_by", "identified_by", "decided_at",
	"about_message", "about_value", "about_level", "about_at", "about_state", NULL
};
static const char *const decision_computed[] = {
	"about", "decision_summary", "decision_details", "about_context", NULL
};
static const char *const threshold_fields[] = {
	"key", "value", "op", "threshold", "warning_threshold", "recover_threshold",
	"crossed", "state", "previous_state", "level", "since", "error", "sparkline", NULL
};

/* the fields number filters take, and those time filters take */
static const char *const number_fields[] = {
	"value", "threshold", "warning_threshold", "recover_threshold", "crossed",
	"event_id", "about_event_id", NULL
};
static const char *const time_fields[] = {"since", "decided_at", "action_due", NULL};

/*
 * What a template is checked against: a row rule's message (with its
 * table), a threshold rule's message, or a channel's template (an email
 * subject), which serves events of every kind.
 */
typedef enum TemplateKind
{
	TEMPLATE_ROW,
	TEMPLATE_THRESHOLD,
	TEMPLATE_CHANNEL
} TemplateKind;

typedef struct TemplateCheck
{
	TemplateKind kind;
	Oid			relid;			/* row rules: the table */
	const char *valid;			/* the placeholders, for hints */
} TemplateCheck;

static const char *const kind_names[] = {"row rules", "threshold rules", "channels"};

PG_FUNCTION_INFO_V1(herald_check_template);
PG_FUNCTION_INFO_V1(herald_render_sql);

/*
 * What a rendering writes to: at most limit bytes of text; cut is set once
 * something did not fit.
 */
typedef struct RenderBuffer
{
	StringInfoData text;
	int			limit;
	bool		cut;
} RenderBuffer;

/*
 * Append len bytes of s, or what fits of them at a character boundary.
 * false once the buffer is full: the caller stops.
 */
static bool
emit(RenderBuffer *rb, const char *s, int len)
{
	int			room = rb->limit - rb->text.len;

	if (rb->cut)
		return false;
	if (len > room)
	{
		if (room > 0)
			appendBinaryStringInfo(&rb->text, s, pg_mbcliplen(s, len, room));
		rb->cut = true;
		return false;
	}
	appendBinaryStringInfo(&rb->text, s, len);
	return true;
}

static bool
emit_string(RenderBuffer *rb, const char *s)
{
	return emit(rb, s, strlen(s));
}

/*
 * Called for each placeholder with its trimmed name; appends the value to
 * out (when out is not NULL).
 */
typedef void (*placeholder_fn) (const char *name, RenderBuffer *out, void *arg);

/*
 * Copy tmpl to out (when not NULL), calling fn for every placeholder, until
 * out is full.  With strict (the valid placeholders, for the hint), an
 * unterminated or empty placeholder is an error; otherwise it is copied as
 * it stands.
 */
static void
template_walk(const char *tmpl, placeholder_fn fn, void *arg, RenderBuffer *out,
			  const char *strict)
{
	const char *p = tmpl;

	while (*p && !(out && out->cut))
	{
		const char *open = strstr(p, "{{");
		const char *close;
		const char *start;
		const char *end;
		char	   *name;

		if (open == NULL)
		{
			if (out)
				emit_string(out, p);
			return;
		}
		if (out && !emit(out, p, open - p))
			return;

		close = strstr(open + 2, "}}");
		if (close == NULL)
		{
			if (strict)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unterminated placeholder in message template"),
						 errdetail("A placeholder opened with \"{{\" is never closed with \"}}\".")));
			if (out)
				emit_string(out, open);
			return;
		}

		start = open + 2;
		end = close;
		while (start < end && isspace((unsigned char) *start))
			start++;
		while (end > start && isspace((unsigned char) end[-1]))
			end--;
		if (start == end)
		{
			if (strict)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("empty placeholder in message template"),
						 errhint("Valid placeholders: %s.", strict)));
			if (out)
				emit(out, open, close + 2 - open);
		}
		else
		{
			name = pnstrdup(start, end - start);
			fn(name, out, arg);
			pfree(name);
		}
		p = close + 2;
	}
}

/* --- checking ----------------------------------------------------------- */

static bool
in_list(const char *name, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(name, *list) == 0)
			return true;
	return false;
}

/*
 * Is name a placeholder of this kind of template?  Returns what it holds,
 * for its filters.
 */
static HeraldValueKind
field_kind(TemplateCheck *check, const char *name)
{
	HeraldValueKind kind = in_list(name, number_fields) ? HERALD_VALUE_NUMBER :
		in_list(name, time_fields) ? HERALD_VALUE_TIME : HERALD_VALUE_TEXT;

	if (strcmp(name, "rule") == 0 || strcmp(name, "event_id") == 0 ||
		strcmp(name, "type") == 0)
		return kind;
	if (check->kind != TEMPLATE_THRESHOLD && in_list(name, row_fields))
		return kind;
	if (check->kind != TEMPLATE_ROW && in_list(name, threshold_fields))
		return kind;
	if (check->kind == TEMPLATE_CHANNEL &&
		(in_list(name, decision_fields) || in_list(name, decision_computed)))
		return kind;

	if (check->kind == TEMPLATE_ROW &&
		(strncmp(name, "new.", 4) == 0 || strncmp(name, "old.", 4) == 0))
	{
		const char *col = name + 4;
		AttrNumber	attnum = get_attnum(check->relid, col);
		char		category;
		bool		preferred;

		if (attnum == InvalidAttrNumber || attnum < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" in placeholder \"{{%s}}\" does not exist in table %s",
							col, name, get_rel_name(check->relid))));
		get_type_category_preferred(getBaseType(get_atttype(check->relid, attnum)),
									&category, &preferred);
		return category == TYPCATEGORY_NUMERIC ? HERALD_VALUE_NUMBER :
			category == TYPCATEGORY_DATETIME ? HERALD_VALUE_TIME : HERALD_VALUE_TEXT;
	}

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown placeholder \"{{%s}}\" in template", name),
			 errhint("Valid placeholders for %s: %s.", kind_names[check->kind], check->valid)));
	return HERALD_VALUE_TEXT;	/* keep the compiler quiet */
}

static void
check_placeholder(const char *inner, RenderBuffer *out, void *arg)
{
	TemplateCheck *check = arg;
	HeraldPlaceholder ph;

	(void) herald_parse_placeholder(inner, &ph, true);
	herald_check_filters(&ph, field_kind(check, ph.name));
}

/* herald._check_template(template text, kind text, on_table regclass) */
Datum
herald_check_template(PG_FUNCTION_ARGS)
{
	char	   *tmpl;
	char	   *kind;
	TemplateCheck check;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	tmpl = text_to_cstring(PG_GETARG_TEXT_PP(0));
	kind = text_to_cstring(PG_GETARG_TEXT_PP(1));
	check.relid = PG_ARGISNULL(2) ? InvalidOid : PG_GETARG_OID(2);
	if (strcmp(kind, "row") == 0)
	{
		check.kind = TEMPLATE_ROW;
		check.valid = ROW_PLACEHOLDERS;
	}
	else if (strcmp(kind, "threshold") == 0)
	{
		check.kind = TEMPLATE_THRESHOLD;
		check.valid = THRESHOLD_PLACEHOLDERS;
	}
	else
	{
		check.kind = TEMPLATE_CHANNEL;
		check.valid = CHANNEL_PLACEHOLDERS;
	}
	template_walk(tmpl, check_placeholder, &check, NULL, check.valid);
	PG_RETURN_VOID();
}

/* --- rendering ---------------------------------------------------------- */

/* Append a JSON value as plain text: strings unquoted, null as nothing. */
static void
append_jsonb_value(RenderBuffer *out, JsonbValue *v)
{
	StringInfoData json;

	switch (v->type)
	{
		case jbvNull:
			break;
		case jbvString:
			emit(out, v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			emit_string(out,
						DatumGetCString(DirectFunctionCall1(numeric_out,
															NumericGetDatum(v->val.numeric))));
			break;
		case jbvBool:
			emit_string(out, v->val.boolean ? "true" : "false");
			break;
		case jbvBinary:
			/* an object or an array: its text is about the size of the value */
			initStringInfo(&json);
			(void) JsonbToCString(&json, v->val.binary.data, v->val.binary.len);
			emit(out, json.data, json.len);
			pfree(json.data);
			break;
		default:
			break;
	}
}

/* Find key in a JSON object container; NULL when absent. */
static JsonbValue *
object_field(JsonbContainer *obj, const char *key, JsonbValue *result)
{
	if (obj == NULL || !JsonContainerIsObject(obj))
		return NULL;
	return getKeyJsonValueFromContainer(obj, key, strlen(key), result);
}

/*
 * The metric's recent values (the "recent" array of a threshold event's
 * payload) as a Unicode sparkline, one block per value from their minimum
 * to their maximum; "" with fewer than HERALD_SPARKLINE_MIN_VALUES values,
 * too few to show a trend.  {{sparkline}} and the Trend fact (format.c)
 * both draw it.
 */
char *
herald_sparkline(Jsonb *payload)
{
	static const char *const blocks[] = {
		"\xE2\x96\x81", "\xE2\x96\x82", "\xE2\x96\x83", "\xE2\x96\x84",
		"\xE2\x96\x85", "\xE2\x96\x86", "\xE2\x96\x87", "\xE2\x96\x88"
	};
	JsonbValue	recent;
	double		values[64];
	int			n = 0;
	double		lo = 0;
	double		hi = 0;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	StringInfoData buf;

	initStringInfo(&buf);
	if (payload == NULL || !object_field(&payload->root, "recent", &recent) ||
		recent.type != jbvBinary || !JsonContainerIsArray(recent.val.binary.data))
		return buf.data;
	it = JsonbIteratorInit(recent.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM || v.type != jbvNumeric || n >= lengthof(values))
			continue;
		/* a value beyond the range of double (or NaN) has no place to draw */
		values[n] = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
													   NumericGetDatum(v.val.numeric)));
		if (isnan(values[n]) || isinf(values[n]))
			continue;
		lo = (n == 0 || values[n] < lo) ? values[n] : lo;
		hi = (n == 0 || values[n] > hi) ? values[n] : hi;
		n++;
	}
	if (n < HERALD_SPARKLINE_MIN_VALUES)
		return buf.data;
	for (int i = 0; i < n; i++)
	{
		int			level = (hi > lo) ? (int) ((values[i] - lo) / (hi - lo) * 7.0 + 0.5) : 3;

		appendStringInfoString(&buf, blocks[Max(0, Min(level, 7))]);
	}
	return buf.data;
}

/* Is name a string field of the payload, not empty?  Then v holds it. */
static bool
string_field(JsonbContainer *data, const char *name, JsonbValue *v)
{
	return object_field(data, name, v) != NULL && v->type == jbvString &&
		v->val.string.len > 0;
}

static bool
emit_value(RenderBuffer *out, JsonbValue *v)
{
	return emit(out, v->val.string.val, v->val.string.len);
}

/*
 * The placeholders computed for decision.recorded: {{about}} ("event 42",
 * "event 42 [paris]"), {{decision_summary}} ("acknowledged", or the choice
 * and the text: "Roll back the form — the form lost 30% of sales") and
 * {{decision_details}} (the next step with its owner and due date, and the
 * note, each on a line of its own, or nothing); and for follow-ups
 * {{about_context}} (the type of the event asked about, when, and how its
 * episode stands).
 */
static void
render_decision(const char *name, RenderBuffer *out, JsonbContainer *data)
{
	JsonbValue	v;
	JsonbValue	w;

	if (strcmp(name, "about") == 0)
	{
		/* nothing for an event that is about no other */
		if (!object_field(data, "about_event_id", &v) || !emit_string(out, "event "))
			return;
		append_jsonb_value(out, &v);
		if (string_field(data, "key", &v) &&
			emit_string(out, " [") && emit_value(out, &v))
			emit_string(out, "]");
	}
	else if (strcmp(name, "about_context") == 0)
	{
		/* "rule.fired at 2026-12-01 14:02 UTC, still firing" */
		if (string_field(data, "about_type", &v) && !emit_value(out, &v))
			return;
		if (string_field(data, "about_at", &v) &&
			!(emit_string(out, " at ") && emit_value(out, &v)))
			return;
		if (string_field(data, "about_state", &v) && emit_string(out, ", "))
			emit_value(out, &v);
	}
	else if (strcmp(name, "decision_summary") == 0)
	{
		bool		choice = string_field(data, "choice", &v);
		bool		text = string_field(data, "decision", &w);
		JsonbValue	kind;

		if (string_field(data, "kind", &kind) &&
			kind.val.string.len == strlen("acknowledgement") &&
			memcmp(kind.val.string.val, "acknowledgement", kind.val.string.len) == 0)
			emit_string(out, "acknowledged");
		else if (choice && text &&
				 (v.val.string.len != w.val.string.len ||
				  memcmp(v.val.string.val, w.val.string.val, v.val.string.len) != 0))
		{
			if (emit_value(out, &v) && emit_string(out, " \xE2\x80\x94 "))
				emit_value(out, &w);
		}
		else if (text)
			emit_value(out, &w);
		else if (choice)
			emit_value(out, &v);
	}
	else if (strcmp(name, "decision_details") == 0)
	{
		bool		owner = string_field(data, "action_owner", &v);
		bool		due = string_field(data, "action_due", &w);
		JsonbValue	x;

		if (string_field(data, "action", &x))
		{
			if (!emit_string(out, "\nNext step: ") || !emit_value(out, &x))
				return;
			if (owner && !(emit_string(out, " (owner ") && emit_value(out, &v) &&
						   emit_string(out, due ? ", due " : ")")))
				return;
			if (due && !(emit_string(out, owner ? "" : " (due ") && emit_value(out, &w) &&
						 emit_string(out, ")")))
				return;
		}
		else if (owner || due)
		{
			/* an owner or a due date without a next step */
			if (owner && !(emit_string(out, "\nOwner: ") && emit_value(out, &v)))
				return;
			if (due && !(emit_string(out, owner ? ", due " : "\nDue: ") &&
						 emit_value(out, &w)))
				return;
		}
		if (string_field(data, "note", &x) && emit_string(out, "\nNote: "))
			emit_value(out, &x);
	}
}

/* A placeholder that cannot be resolved, as written. */
static void
emit_unresolved(RenderBuffer *out, const char *name)
{
	if (emit_string(out, "{{") && emit_string(out, name))
		emit_string(out, "}}");
}

/*
 * Append the value of field name to out; false, appending nothing, for a
 * field that cannot be resolved (the caller shows the placeholder as
 * written).
 */
static bool
render_field(const char *name, RenderBuffer *out, void *arg)
{
	const HeraldTemplateValues *values = arg;
	JsonbContainer *data = values->data ? &values->data->root : NULL;
	JsonbValue	v;
	JsonbValue	row;

	if (strcmp(name, "rule") == 0)
		emit_string(out, values->rule ? values->rule : "");
	else if (strcmp(name, "event_id") == 0)
	{
		char		id[32];

		snprintf(id, sizeof(id), INT64_FORMAT, values->event_id);
		emit_string(out, id);
	}
	else if (strcmp(name, "type") == 0)
		emit_string(out, values->type);
	else if (strcmp(name, "sparkline") == 0)
		emit_string(out, herald_sparkline(values->data));
	else if (in_list(name, decision_computed))
		render_decision(name, out, data);
	else if (in_list(name, row_fields) || in_list(name, threshold_fields) ||
			 in_list(name, other_fields) || in_list(name, decision_fields))
	{
		/* a field the event lacks (no warning threshold) renders as nothing */
		if (object_field(data, name, &v))
			append_jsonb_value(out, &v);
	}
	else if ((strncmp(name, "new.", 4) == 0 || strncmp(name, "old.", 4) == 0))
	{
		char		which[4];

		memcpy(which, name, 3);
		which[3] = '\0';
		if (!object_field(data, which, &row) || row.type != jbvBinary)
		{
			/* no such row in this event (OLD of an insert): empty */
		}
		else if (object_field(row.val.binary.data, name + 4, &v))
			append_jsonb_value(out, &v);
		else
			return false;
	}
	else
		return false;
	return true;
}

/*
 * One placeholder: its field, through its filters.  One that does not
 * parse (it was never checked: cannot happen for a declared template), or
 * whose field cannot be resolved (a column dropped or renamed since),
 * stays as written, filters and all.
 */
static void
render_placeholder(const char *inner, RenderBuffer *out, void *arg)
{
	const HeraldTemplateValues *values = arg;
	HeraldPlaceholder ph;
	RenderBuffer field;
	bool		cut;

	if (!herald_parse_placeholder(inner, &ph, false))
	{
		emit_unresolved(out, inner);
		return;
	}
	if (ph.nfilters == 0)
	{
		if (!render_field(ph.name, out, arg))
			emit_unresolved(out, inner);
		return;
	}
	initStringInfo(&field.text);
	field.limit = herald_filter_input_limit(&ph, out->limit - out->text.len);
	field.cut = false;
	if (!render_field(ph.name, &field, arg))
	{
		pfree(field.text.data);
		emit_unresolved(out, inner);
		return;
	}
	cut = herald_apply_filters(&ph, &field.text, field.cut, values->timezone);
	/* a field cut to the room left (and not truncated since) fills it */
	if (emit(out, field.text.data, field.text.len) && cut)
		out->cut = true;
	pfree(field.text.data);
}

/*
 * Render a template for one event, in at most max_bytes bytes (at least
 * enough for HERALD_TRUNCATED); NULL renders the default message of the
 * event's type.  A text that does not fit is cut at a character boundary
 * and ends with HERALD_TRUNCATED; *cut (when not NULL) says whether that
 * happened.  A placeholder that cannot be resolved any more (a column
 * dropped after the rule was declared) stays visible as written rather
 * than failing the delivery.
 */
char *
herald_render_template(const char *tmpl, const HeraldTemplateValues *values,
					   int max_bytes, bool *cut)
{
	RenderBuffer out;
	int			marker = strlen(HERALD_TRUNCATED);

	Assert(max_bytes >= marker);
	if (tmpl == NULL)
		tmpl = herald_event_message(values->type, values->data, values->has_actions);
	initStringInfo(&out.text);
	out.limit = Max(max_bytes, marker);
	out.cut = false;
	template_walk(tmpl, render_placeholder, (void *) values, &out, NULL);
	if (out.cut)
	{
		out.text.len = pg_mbcliplen(out.text.data, out.text.len,
									out.limit - marker);
		out.text.data[out.text.len] = '\0';
		appendStringInfoString(&out.text, HERALD_TRUNCATED);
	}
	if (cut)
		*cut = out.cut;
	return out.text.data;
}

/*
 * herald._render(template text, rule text, event_id bigint, type text,
 * payload jsonb, max_bytes integer): an event's message as a message
 * without actions shows it (NULL: its type's default), in at most
 * max_bytes (and herald.max_message_size) bytes.  Follow-ups quote the
 * message of the alert they ask about with it.  A template is text only:
 * rendering runs no code.
 */
Datum
herald_render_sql(PG_FUNCTION_ARGS)
{
	HeraldTemplateValues values;
	char	   *tmpl;
	int			max_bytes;

	if (PG_ARGISNULL(3) || PG_ARGISNULL(4) || PG_ARGISNULL(5))
		PG_RETURN_NULL();
	tmpl = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	values.rule = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	values.event_id = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2);
	values.type = text_to_cstring(PG_GETARG_TEXT_PP(3));
	values.data = PG_GETARG_JSONB_P(4);
	/* quoted, it asks nothing: no hint on answering in SQL */
	values.has_actions = true;
	/* no channel here: times are shown in herald.timezone */
	values.timezone = herald_timezone;
	max_bytes = Min(Max(PG_GETARG_INT32(5), (int) strlen(HERALD_TRUNCATED)),
					herald_max_message_size);
	PG_RETURN_TEXT_P(cstring_to_text(herald_render_template(tmpl, &values, max_bytes,
															NULL)));
}
