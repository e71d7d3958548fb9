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
 * name their key, and a decision.recorded event reads differently for an
 * acknowledgement.
 *
 * An event that awaits a decision (awaits_decision) is one whose messages
 * offer actions, one signed link each, when herald.public_url or
 * herald.http_listen is set (herald._actions() in install/decisions.sql
 * lists the same types; a row event only when its rule has choices or
 * follow-ups).  Without actions, its default message ends with
 * decide_hint, which says how to answer in SQL; with them, the buttons do
 * the asking and the hint is left out.
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
	{"row.inserted", true, HERALD_VARIANT_NONE,
		"{{rule}}: new row in {{table}}",
		"New row in {{table}} (rule {{rule}}, event {{event_id}})",
	NULL, NULL, DECIDE_HINT},
	{"row.updated", true, HERALD_VARIANT_NONE,
		"{{rule}}: row updated in {{table}}",
		"Row updated in {{table}} (rule {{rule}}, event {{event_id}})",
	NULL, NULL, DECIDE_HINT},
	{"row.deleted", true, HERALD_VARIANT_NONE,
		"{{rule}}: row deleted from {{table}}",
		"Row deleted from {{table}} (rule {{rule}}, event {{event_id}})",
	NULL, NULL, DECIDE_HINT},
	{"rule.fired", true, HERALD_VARIANT_KEY,
		"{{rule}} is firing",
		"{{rule}} is firing ({{level}}): {{value}} {{op}} {{threshold}} {{sparkline}}",
		"{{rule}} [{{key}}] is firing",
		"{{rule}} [{{key}}] is firing ({{level}}): {{value}} {{op}} {{threshold}} {{sparkline}}",
	DECIDE_HINT},
	{"rule.escalated", true, HERALD_VARIANT_KEY,
		"{{rule}} escalated to {{level}}",
		"{{rule}} escalated to {{level}}: {{value}} {{op}} {{threshold}}",
		"{{rule}} [{{key}}] escalated to {{level}}",
		"{{rule}} [{{key}}] escalated to {{level}}: {{value}} {{op}} {{threshold}}",
	DECIDE_HINT},
	{"rule.reminder", true, HERALD_VARIANT_KEY,
		"{{rule}} is still firing",
		"{{rule}} is still firing ({{level}}) since {{since}}: value {{value}}",
		"{{rule}} [{{key}}] is still firing",
		"{{rule}} [{{key}}] is still firing ({{level}}) since {{since}}: value {{value}}",
	DECIDE_HINT},
	{"rule.resolved", false, HERALD_VARIANT_KEY,
		"{{rule}} resolved",
		"{{rule}} resolved: value {{value}}",
		"{{rule}} [{{key}}] resolved",
		"{{rule}} [{{key}}] resolved: value {{value}}",
	NULL},
	{"rule.error", false, HERALD_VARIANT_NONE,
		"{{rule}} failed",
		"{{rule}} could not be evaluated: {{error}}",
	NULL, NULL, NULL},
	{"decision.followup", true, HERALD_VARIANT_NONE,
		"{{rule}}: what was decided about event {{about_event_id}}?",
		"No decision is recorded yet for event {{about_event_id}} ({{about_type}} of rule {{rule}}). "
		"What was decided?",
	NULL, NULL, " Record it: {{sql}} {{link}}"},
	/* the variant: an acknowledgement */
	{"decision.recorded", false, HERALD_VARIANT_ACKNOWLEDGEMENT,
		"{{rule}}: decision about {{about}}: {{decision_summary}}",
		"{{decided_by}} decided about {{about}} of rule {{rule}}: {{decision_summary}}{{decision_details}}",
		"{{rule}}: {{decided_by}} acknowledged {{about}}",
		"{{decided_by}} acknowledged {{about}} of rule {{rule}}.{{decision_details}}",
	NULL},
	{"channel.test", false, HERALD_VARIANT_NONE,
		"Test message from pg_herald",
		"Test message from pg_herald: channel {{channel}} works.",
	NULL, NULL, NULL},
	/* any other type */
	{NULL, false, HERALD_VARIANT_NONE,
		"{{type}}",
		"{{type}} (rule {{rule}}, event {{event_id}})",
	NULL, NULL, NULL}
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
