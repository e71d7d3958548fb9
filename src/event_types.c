/*-------------------------------------------------------------------------
 *
 * event_types.c
 *		The event types: one entry each, with its title, its default
 *		message and whether it awaits a decision.
 *
 * Every channel format takes an event's title (headers, subjects) and, for
 * a rule that gives no message, its default message from here; both are
 * templates (template.c) rendered over the event's payload.  A type may
 * have a variant, chosen by the payload: a grouped threshold rule's events
 * name their key, a decision.recorded event reads differently for an
 * acknowledgement, and a rule.error that names a table (a row rule's
 * capture failed, or a table a rule uses was dropped) ran no metric.
 *
 * An event that awaits a decision (awaits_decision) is one whose messages
 * offer actions, one signed link each, when herald.public_url or
 * herald.http_listen is set (herald._actions() in install/decisions.sql
 * lists the same types; a row event only when its rule has choices or
 * follow-ups).  Without actions, its default message ends with
 * decide_hint, which says how to answer in SQL; with them, the buttons do
 * the asking and the hint is left out.
 *
 * A rule's messages (herald.rule_defs.messages) may replace the default
 * message of each type its kind emits (format.c picks it).  Defaults name
 * the threshold crossed ({{crossed}}), not always the critical one, and
 * use filters (filters.c) so that a missing value or a time reads well.
 *
 * A new event type is one entry below; an unknown type gets the last one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/jsonb.h"

#include "pg_herald.h"

/* How to answer an event that calls for a decision, in SQL. */
#define DECIDE_HINT \
	"\nAcknowledge: SELECT herald.acknowledge({{event_id}});" \
	" decide: SELECT herald.decide({{event_id}}, 'what was decided');"

static const HeraldEventType event_types[] = {
	{
		.name = "row.inserted",
		.awaits_decision = true,
		.title = "{{rule}}: new row in {{table}}",
		.message = "New row in {{table}} (rule {{rule}}, event {{event_id}})",
		.decide_hint = DECIDE_HINT
	},
	{
		.name = "row.updated",
		.awaits_decision = true,
		.title = "{{rule}}: row updated in {{table}}",
		.message = "Row updated in {{table}} (rule {{rule}}, event {{event_id}})",
		.decide_hint = DECIDE_HINT
	},
	{
		.name = "row.deleted",
		.awaits_decision = true,
		.title = "{{rule}}: row deleted from {{table}}",
		.message = "Row deleted from {{table}} (rule {{rule}}, event {{event_id}})",
		.decide_hint = DECIDE_HINT
	},
	{
		.name = "rule.fired",
		.awaits_decision = true,
		.variant = HERALD_VARIANT_KEY,
		.title = "{{rule}} is firing",
		.message = "{{rule}} is firing ({{level}}): value {{value | default('missing')}}, "
		"threshold {{op}} {{crossed}}",
		.variant_title = "{{rule}} [{{key}}] is firing",
		.variant_message = "{{rule}} [{{key}}] is firing ({{level}}): "
		"value {{value | default('missing')}}, threshold {{op}} {{crossed}}",
		.decide_hint = DECIDE_HINT
	},
	{
		.name = "rule.escalated",
		.awaits_decision = true,
		.variant = HERALD_VARIANT_KEY,
		.title = "{{rule}} escalated to {{level}}",
		.message = "{{rule}} escalated to {{level}}: value {{value}}, threshold {{op}} {{crossed}}",
		.variant_title = "{{rule}} [{{key}}] escalated to {{level}}",
		.variant_message = "{{rule}} [{{key}}] escalated to {{level}}: "
		"value {{value}}, threshold {{op}} {{crossed}}",
		.decide_hint = DECIDE_HINT
	},
	{
		.name = "rule.reminder",
		.awaits_decision = true,
		.variant = HERALD_VARIANT_KEY,
		.title = "{{rule}} is still firing",
		.message = "{{rule}} is still firing ({{level}}) since {{since | time}}: "
		"value {{value | default('missing')}}",
		.variant_title = "{{rule}} [{{key}}] is still firing",
		.variant_message = "{{rule}} [{{key}}] is still firing ({{level}}) since {{since | time}}: "
		"value {{value | default('missing')}}",
		.decide_hint = DECIDE_HINT
	},
	{
		.name = "rule.resolved",
		.variant = HERALD_VARIANT_KEY,
		.title = "{{rule}} resolved",
		.message = "{{rule}} resolved: value {{value | default('missing')}}, back past {{crossed}} "
		"(it was {{level}} since {{since | time}})",
		.variant_title = "{{rule}} [{{key}}] resolved",
		.variant_message = "{{rule}} [{{key}}] resolved: value {{value | default('missing')}}, "
		"back past {{crossed}} (it was {{level}} since {{since | time}})"
	},
	{
		.name = "rule.error",
		/* a row rule's capture, or a table gone: the error says what failed */
		.variant = HERALD_VARIANT_TABLE,
		.title = "{{rule}} failed",
		.message = "{{rule}} failed: its metric could not be evaluated: {{error}}",
		.variant_title = "{{rule}} failed",
		.variant_message = "{{rule}} failed: {{error}}"
	},
	{
		.name = "decision.followup",
		.awaits_decision = true,
		.variant = HERALD_VARIANT_KEY,
		/* it quotes the alert it asks about (install/decisions.sql) */
		.title = "{{rule}}: what was decided about event {{about_event_id}}?",
		.message = "No decision is recorded yet about event {{about_event_id}} "
		"({{about_context}}):\n\xE2\x80\x9C{{about_message}}\xE2\x80\x9D\nWhat was decided?",
		.variant_title = "{{rule}} [{{key}}]: what was decided about event {{about_event_id}}?",
		.variant_message = "No decision is recorded yet about event {{about_event_id}} "
		"[{{key}}] ({{about_context}}):\n\xE2\x80\x9C{{about_message}}\xE2\x80\x9D\nWhat was decided?",
		/* the SQL call, and herald.decision_url's link when it is set */
		.decide_hint = " Record it: {{sql}} {{link}}"
	},
	{
		.name = "decision.recorded",
		.variant = HERALD_VARIANT_ACKNOWLEDGEMENT,
		.title = "{{rule}}: decision about {{about}}: {{decision_summary}}",
		.message = "{{decided_by}} decided about {{about}} of rule {{rule}}: "
		"{{decision_summary}}{{decision_details}}",
		.variant_title = "{{rule}}: {{decided_by}} acknowledged {{about}}",
		.variant_message = "{{decided_by}} acknowledged {{about}} of rule {{rule}}."
		"{{decision_details}}"
	},
	{
		.name = "channel.test",
		.title = "Test message from pg_herald",
		.message = "Test message from pg_herald: channel {{channel}} works."
	},
	/* any other type */
	{
		.name = NULL,
		.title = "{{type}}",
		.message = "{{type}} (rule {{rule}}, event {{event_id}})"
	}
};

/* The entry of an event type; the last one for a type not listed. */
const HeraldEventType *
herald_event_type(const char *name)
{
	const HeraldEventType *t;

	for (t = event_types; t->name != NULL; t++)
		if (name != NULL && strcmp(t->name, name) == 0)
			break;
	return t;
}

/* Does the payload select the type's variant? */
static bool
use_variant(const HeraldEventType *t, Jsonb *payload)
{
	JsonbValue	v;

	if (t->variant == HERALD_VARIANT_NONE || payload == NULL ||
		!JsonContainerIsObject(&payload->root))
		return false;
	if (t->variant == HERALD_VARIANT_KEY)
		return getKeyJsonValueFromContainer(&payload->root, "key", 3, &v) != NULL;
	if (t->variant == HERALD_VARIANT_TABLE)
		return getKeyJsonValueFromContainer(&payload->root, "table", 5, &v) != NULL;
	/* HERALD_VARIANT_ACKNOWLEDGEMENT */
	return getKeyJsonValueFromContainer(&payload->root, "kind", 4, &v) != NULL &&
		v.type == jbvString && v.val.string.len == strlen("acknowledgement") &&
		memcmp(v.val.string.val, "acknowledgement", v.val.string.len) == 0;
}

/* The title template of an event of this type and payload. */
const char *
herald_event_title(const char *type, Jsonb *payload)
{
	const HeraldEventType *t = herald_event_type(type);

	return use_variant(t, payload) ? t->variant_title : t->title;
}

/*
 * The default message template of an event of this type and payload: with
 * the hint on answering in SQL when the message carries no actions.
 */
const char *
herald_event_message(const char *type, Jsonb *payload, bool has_actions)
{
	const HeraldEventType *t = herald_event_type(type);
	const char *message = use_variant(t, payload) ? t->variant_message : t->message;

	if (t->decide_hint == NULL || has_actions)
		return message;
	return psprintf("%s%s", message, t->decide_hint);
}
