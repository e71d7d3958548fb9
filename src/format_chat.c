/*-------------------------------------------------------------------------
 *
 * format_chat.c
 *		The chat formats: Slack, Microsoft Teams and Google Chat.
 *
 * Each format posts JSON to the channel's target URL and draws its text
 * from the shared event model (format.c): the title, the message, the
 * facts, the context line and the links of the message.  Whatever the
 * data, the body is valid JSON within the service's limits: text is cut
 * (character by character, with a visible "… [truncated]") before it is
 * escaped, first for the service's markup and then for JSON.
 *
 * A message about an event that awaits a decision carries its actions
 * (format.c herald_actions(): the rule's choices, or "Acknowledge" and
 * "Record a decision", one signed link each), in each service's own way,
 * right under the message.  Actions are never cut or dropped: the message,
 * the facts and the links go first.
 *
 * Slack (incoming webhook): Block Kit, with a "text" fallback for
 * notifications.  A header block (plain text, 150 characters), a section
 * with the message (mrkdwn, 3,000 characters), a section with up to 10
 * facts as fields (2,000 characters each), an actions block
 * "herald-actions" with a button per action, a context block and an
 * actions block with a button per link (label 75 characters, URL 3,000).
 * An action's button opens its link; on an interactive channel (one with
 * slack_signing_secret) it carries action_id "herald-" + the action's id
 * and value = the link's token and no URL, so that the click comes to
 * /slack/actions signed by Slack, except "Record a decision", which also
 * opens the page, where the decision is typed.  A decision.recorded
 * delivery to the channel the click came from goes to the click's
 * response_url instead, and replaces the message clicked: the same title,
 * message and facts, and a line saying who answered, when, and what, with
 * no buttons.  Slack's limits count characters after its escaping of & < >
 * as entities, so the raw text is cut to what fits once escaped.
 *
 * Microsoft Teams (Workflows webhook): a message with one Adaptive Card:
 * title, message, the actions as Action.OpenUrl in ActionSets of at most
 * TEAMS_ACTIONS_PER_SET (Teams shows no more in a row), a fact set (values
 * 500 characters), the context line and an Action.OpenUrl per link.  Teams
 * refuses payloads of 28 KB and more.
 *
 * Google Chat (incoming webhook): a "text" message (*title*, message,
 * "Name: value" lines, _context_), & < > escaped as entities since Chat
 * reads <...> as links and mentions, in the thread of the episode
 * (format.c herald_thread_key()); REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD
 * opens the thread when it does not exist yet.  (Slack and Teams incoming
 * webhooks cannot thread: neither says which message it posted.)  The
 * actions follow as a card (cardsV2) with a buttonList, each button opening
 * its link.  Chat refuses messages of 32,000 bytes and more.
 *
 * For the two byte limits, fit_body builds the payload and, while it is
 * too long, cuts the message by the excess (plus a margin), then drops
 * facts, then links, and builds it again; the actions always stay.
 *
 * Called by the delivery worker with no transaction open.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/json.h"

#include "pg_herald.h"

/* Limits every format applies (characters) */
#define TITLE_MAX_CHARS 150		/* Slack's limit for a header */
#define CONTEXT_MAX_CHARS 500
#define LINK_MAX_CHARS 3000		/* longer links are left out */
#define LABEL_MAX_CHARS 75		/* Slack's limit for a button's text */
#define FACT_VALUE_MAX_CHARS 500	/* Teams and Google Chat */
#define SLACK_VALUE_MAX_CHARS 2000	/* Slack's limit for a button's value */
#define TEAMS_ACTIONS_PER_SET 5

/* Slack: characters, counted after Slack's escaping */
#define SLACK_TEXT_MAX_CHARS 3000
#define SLACK_FIELD_MAX_CHARS 2000

/* Teams and Google Chat: bytes of the whole payload, which must be less */
#define TEAMS_MAX_BYTES 28000
#define GOOGLE_CHAT_MAX_BYTES 32000
#define GOOGLE_CHAT_THREAD_KEY_MAX_CHARS 4000
#define GOOGLE_CHAT_REPLY_OPTION \
	"messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"

/*
 * fit_body cuts a little more than the excess, so that the marker it adds
 * cannot leave the payload still too long, and gives up (a bug) after
 * FIT_MAX_ROUNDS builds: one cut of the message, then one per fact and
 * link dropped, suffice.
 */
#define FIT_MARGIN 64
#define FIT_MAX_ROUNDS 32

/* The text of one message, as plain text, before any escaping. */
typedef struct ChatParts
{
	char	   *title;
	char	   *headline;		/* title and message in one text, the title
								 * once (Slack's notification text) */
	char	   *message;		/* as sent: full_message, or cut */
	char	   *full_message;	/* what the message adds to the title */
	int			message_bytes;	/* bytes of full_message in message */
	char	   *context;
	char	   *thread_key;		/* Google Chat */
	HeraldFact	facts[HERALD_MAX_FACTS];
	int			nfacts;
	char	   *links[HERALD_MAX_LINKS];
	char	   *labels[HERALD_MAX_LINKS];	/* the links' button text */
	int			nlinks;
	HeraldAction actions[HERALD_MAX_ACTIONS];	/* labels cut to buttons' */
	int			nactions;
	bool		interactive;	/* Slack: buttons post to /slack/actions */
	char	   *status;			/* Slack update: who answered, or NULL */
} ChatParts;

typedef void (*chat_builder) (StringInfo buf, ChatParts *p);

/* Bytes of the character at p, never past end. */
static int
char_bytes(const char *p, const char *end)
{
	return Min(pg_mblen(p), (int) (end - p));
}

/* Characters one byte becomes in markup: & < > are entities. */
static int
markup_width(char c)
{
	const char *entity = herald_entity(c, false);

	return entity ? strlen(entity) : 1;
}

/* Append len bytes of text with & < > as entities (Slack, Google Chat). */
static void
append_markup(StringInfo buf, const char *text, int len)
{
	for (int i = 0; i < len; i++)
	{
		const char *entity = herald_entity(text[i], false);

		if (entity)
			appendStringInfoString(buf, entity);
		else
			appendStringInfoChar(buf, text[i]);
	}
}

static char *
markup(const char *text)
{
	StringInfoData buf;

	initStringInfo(&buf);
	append_markup(&buf, text, strlen(text));
	return buf.data;
}

/*
 * text cut to at most max_chars characters, marker included; with
 * as_markup, escaped for markup and cut so that the escaped text fits.
 * Not escaped for JSON.
 */
static char *
cut_text(const char *text, int max_chars, bool as_markup)
{
	int			budget = max_chars - herald_char_length(HERALD_TRUNCATED);
	const char *end = text + strlen(text);
	const char *fits = NULL;	/* end of what fits with the marker */
	int			chars = 0;
	StringInfoData buf;

	if (!as_markup)
		return herald_truncate(text, max_chars, HERALD_TRUNCATED);
	for (const char *p = text; p < end; p += char_bytes(p, end))
	{
		chars += markup_width(*p);
		if (fits == NULL && chars > budget)
			fits = p;
	}
	initStringInfo(&buf);
	if (chars <= max_chars)
		append_markup(&buf, text, end - text);
	else
	{
		append_markup(&buf, text, fits - text);
		appendStringInfoString(&buf, HERALD_TRUNCATED);
	}
	return buf.data;
}

/* The authority of a URL, without user and password: "" when none. */
static char *
link_host(const char *link)
{
	const char *start = strstr(link, "://");
	const char *end;
	const char *at;

	if (start == NULL)
		return pstrdup("");
	start += 3;
	end = start + strcspn(start, "/?#");
	for (at = start; at < end; at++)
		if (*at == '@')
			start = at + 1;
	return pnstrdup(start, end - start);
}

/*
 * A button's text for each link: its host, or "Open link N" when another
 * link shares it.
 */
static void
label_links(ChatParts *p, char **hosts)
{
	for (int i = 0; i < p->nlinks; i++)
	{
		bool		unique = true;

		for (int j = 0; j < p->nlinks && unique; j++)
			if (j != i && strcmp(hosts[i], hosts[j]) == 0)
				unique = false;
		if (unique)
			p->labels[i] = herald_truncate(hosts[i], LABEL_MAX_CHARS, HERALD_TRUNCATED);
		else
			p->labels[i] = psprintf("Open link %d", i + 1);
	}
}

/*
 * The links of the whole rendered message, with their labels, so that
 * cutting it to fit the payload keeps them.  Slack refuses the whole
 * message for one button with a bad URL: leave out the links with no host
 * and the ones too long.
 */
static void
collect_links(ChatParts *p, const char *rendered)
{
	char	   *links[HERALD_MAX_LINKS];
	char	   *hosts[HERALD_MAX_LINKS];
	int			nlinks = herald_links(rendered, links);

	for (int i = 0; i < nlinks; i++)
	{
		char	   *host = link_host(links[i]);

		if (host[0] == '\0' || herald_char_length(links[i]) > LINK_MAX_CHARS)
			continue;
		hosts[p->nlinks] = host;
		p->links[p->nlinks++] = links[i];
	}
	label_links(p, hosts);
}

/*
 * The text of a delivery, with the limits every format shares applied:
 * the message rendered in at most message_max bytes (what the format can
 * show of it), fact values cut to fact_max characters (0: not cut here).
 */
static void
collect_parts(HeraldDelivery *d, ChatParts *p, int message_max, int fact_max)
{
	char	   *rendered;

	memset(p, 0, sizeof(*p));
	p->title = herald_truncate(herald_title(d, herald_chars_bytes(TITLE_MAX_CHARS)),
							   TITLE_MAX_CHARS, HERALD_TRUNCATED);
	rendered = herald_message(d, message_max, NULL);
	p->headline = herald_title_and_message(p->title, rendered, ": ");
	p->full_message = pstrdup(herald_message_body(p->title, rendered));
	p->message = p->full_message;
	p->message_bytes = strlen(p->full_message);
	p->context = herald_truncate(herald_context_line(d), CONTEXT_MAX_CHARS,
								 HERALD_TRUNCATED);
	p->nfacts = herald_facts(d, p->facts);
	if (fact_max > 0)
		for (int i = 0; i < p->nfacts; i++)
			p->facts[i].value = herald_truncate(p->facts[i].value, fact_max,
												HERALD_TRUNCATED);

	collect_links(p, rendered);

	p->nactions = herald_actions(d, p->actions);
	for (int i = 0; i < p->nactions; i++)
		p->actions[i].label = herald_truncate(p->actions[i].label, LABEL_MAX_CHARS,
											  "\xE2\x80\xA6");
	p->interactive = d->interactive;
}

/*
 * Shrink the payload by about bytes: cut the message or, once nothing is
 * left of it, drop the last fact, then the last link.  false when there is
 * nothing left to drop.
 */
static bool
shrink_parts(ChatParts *p, int bytes)
{
	if (p->message_bytes > 0)
	{
		/* escaping never shrinks text: each byte cut saves at least one */
		p->message_bytes = pg_mbcliplen(p->full_message, p->message_bytes,
										Max(p->message_bytes - bytes, 0));
		p->message = psprintf("%.*s%s", p->message_bytes, p->full_message,
							  HERALD_TRUNCATED);
		return true;
	}
	if (p->nfacts > 0)
	{
		p->nfacts--;
		return true;
	}
	if (p->nlinks > 0)
	{
		p->nlinks--;
		return true;
	}
	return false;
}

/*
 * Build the payload into buf, shrinking the parts until it is shorter than
 * max_bytes.
 */
static void
fit_body(StringInfo buf, ChatParts *p, chat_builder build, int max_bytes,
		 const char *format)
{
	for (int round = 0; round < FIT_MAX_ROUNDS; round++)
	{
		resetStringInfo(buf);
		build(buf, p);
		if (buf->len < max_bytes)
			return;
		if (!shrink_parts(p, buf->len - max_bytes + FIT_MARGIN))
			break;
	}
	elog(ERROR, "could not fit a %s message in %d bytes", format, max_bytes);
}

/* Separate the items of a JSON array. */
static void
append_separator(StringInfo buf, bool *first)
{
	if (!*first)
		appendStringInfoString(buf, ", ");
	*first = false;
}

/*
 * The request every format sends: a JSON POST to url, with the channel's
 * headers when it goes to the channel's target (not to a Slack
 * response_url, another endpoint).
 */
static void
set_request(HeraldDelivery *d, HeraldOutgoing *out, char *url, bool to_target,
			StringInfo body)
{
	struct curl_slist *headers = NULL;

	headers = herald_append_header(headers,
								   "Content-Type: application/json; charset=utf-8");
	/* no "100 Continue" round trip */
	headers = herald_append_header(headers, "Expect:");
	for (int i = 0; to_target && i < d->nheaders; i++)
		headers = herald_append_header(headers, d->headers[i]);

	out->url = url;
	out->headers = headers;
	out->body = body->data;
	out->bodylen = body->len;
}

/*
 * One Slack button for an action: it opens the link or, on an interactive
 * channel, posts its token to /slack/actions (see the file header).
 * "Acknowledge", which commits to nothing, is the primary one; a rule's
 * choices are shown alike, none favoured.
 */
static void
append_slack_action(StringInfo buf, HeraldAction *a, bool interactive, bool separate)
{
	bool		value = interactive && herald_char_length(a->token) <= SLACK_VALUE_MAX_CHARS;
	bool		url = !value || strcmp(a->id, "decide") == 0;

	if (separate)
		appendStringInfoString(buf, ", ");
	appendStringInfoString(buf, "{\"type\": \"button\", \"action_id\": ");
	escape_json(buf, psprintf("herald-%s", a->id));
	appendStringInfoString(buf, ", \"text\": {\"type\": \"plain_text\", \"text\": ");
	escape_json(buf, a->label);
	appendStringInfoString(buf, ", \"emoji\": true}");
	if (value)
	{
		appendStringInfoString(buf, ", \"value\": ");
		escape_json(buf, a->token);
	}
	if (url)
	{
		appendStringInfoString(buf, ", \"url\": ");
		escape_json(buf, a->url);
	}
	if (strcmp(a->id, "acknowledge") == 0)
		appendStringInfoString(buf, ", \"style\": \"primary\"");
	appendStringInfoChar(buf, '}');
}

/*
 * Slack: Block Kit, cut to Slack's limits per element (there is no
 * overall byte limit to fit, so no fit_body).  Empty texts are refused by
 * Slack, so a block with an empty text is left out.
 */
static void
build_slack(StringInfo buf, ChatParts *p)
{
	char	   *fallback;
	bool		first = true;

	if (p->status)
		fallback = psprintf("%s: %s", p->title, p->status);
	else
		fallback = p->headline;
	appendStringInfoString(buf, "{\"text\": ");
	escape_json(buf, cut_text(fallback, SLACK_TEXT_MAX_CHARS, true));
	appendStringInfoString(buf, ", \"blocks\": [");

	if (p->title[0])
	{
		append_separator(buf, &first);
		appendStringInfoString(buf, "{\"type\": \"header\", "
							   "\"text\": {\"type\": \"plain_text\", \"text\": ");
		escape_json(buf, p->title);
		appendStringInfoString(buf, ", \"emoji\": true}}");
	}

	if (p->message[0])
	{
		append_separator(buf, &first);
		appendStringInfoString(buf, "{\"type\": \"section\", "
							   "\"text\": {\"type\": \"mrkdwn\", \"text\": ");
		escape_json(buf, cut_text(p->message, SLACK_TEXT_MAX_CHARS, true));
		appendStringInfoString(buf, "}}");
	}

	if (p->nfacts > 0)
	{
		append_separator(buf, &first);
		appendStringInfoString(buf, "{\"type\": \"section\", \"fields\": [");
		for (int i = 0; i < p->nfacts; i++)
		{
			char	   *name = psprintf("*%s*\n", markup(p->facts[i].name));
			int			room = Max(SLACK_FIELD_MAX_CHARS - herald_char_length(name), 0);

			if (i > 0)
				appendStringInfoString(buf, ", ");
			appendStringInfoString(buf, "{\"type\": \"mrkdwn\", \"text\": ");
			escape_json(buf, psprintf("%s%s", name,
									  cut_text(p->facts[i].value, room, true)));
			appendStringInfoChar(buf, '}');
		}
		appendStringInfoString(buf, "]}");
	}

	if (p->status)
	{
		append_separator(buf, &first);
		appendStringInfoString(buf, "{\"type\": \"section\", "
							   "\"text\": {\"type\": \"mrkdwn\", \"text\": ");
		escape_json(buf, cut_text(p->status, SLACK_TEXT_MAX_CHARS, true));
		appendStringInfoString(buf, "}}");
	}

	if (p->nactions > 0)
	{
		append_separator(buf, &first);
		appendStringInfoString(buf, "{\"type\": \"actions\", "
							   "\"block_id\": \"herald-actions\", \"elements\": [");
		for (int i = 0; i < p->nactions; i++)
			append_slack_action(buf, &p->actions[i], p->interactive, i > 0);
		appendStringInfoString(buf, "]}");
	}

	append_separator(buf, &first);
	appendStringInfoString(buf, "{\"type\": \"context\", "
						   "\"elements\": [{\"type\": \"mrkdwn\", \"text\": ");
	escape_json(buf, cut_text(p->context, SLACK_TEXT_MAX_CHARS, true));
	appendStringInfoString(buf, "}]}");

	if (p->nlinks > 0)
	{
		append_separator(buf, &first);
		appendStringInfoString(buf, "{\"type\": \"actions\", \"elements\": [");
		for (int i = 0; i < p->nlinks; i++)
		{
			if (i > 0)
				appendStringInfoString(buf, ", ");
			appendStringInfoString(buf, "{\"type\": \"button\", "
								   "\"text\": {\"type\": \"plain_text\", \"text\": ");
			escape_json(buf, p->labels[i]);
			appendStringInfoString(buf, "}, \"url\": ");
			escape_json(buf, p->links[i]);
			appendStringInfoChar(buf, '}');
		}
		appendStringInfoString(buf, "]}");
	}
	appendStringInfoString(buf, "]}");
}

/* Teams: a message with one Adaptive Card. */
static void
build_teams(StringInfo buf, ChatParts *p)
{
	appendStringInfoString(buf,
						   "{\"type\": \"message\", \"attachments\": [{"
						   "\"contentType\": \"application/vnd.microsoft.card.adaptive\", "
						   "\"contentUrl\": null, \"content\": {"
						   "\"$schema\": "
						   "\"http://adaptivecards.io/schemas/adaptive-card.json\", "
						   "\"type\": \"AdaptiveCard\", \"version\": \"1.4\", \"body\": [");

	appendStringInfoString(buf, "{\"type\": \"TextBlock\", \"text\": ");
	escape_json(buf, p->title);
	appendStringInfoString(buf, ", \"weight\": \"Bolder\", \"size\": \"Medium\", "
						   "\"wrap\": true}");

	if (p->message[0])
	{
		appendStringInfoString(buf, ", {\"type\": \"TextBlock\", \"text\": ");
		escape_json(buf, p->message);
		appendStringInfoString(buf, ", \"wrap\": true}");
	}

	for (int i = 0; i < p->nactions; i++)
	{
		if (i % TEAMS_ACTIONS_PER_SET == 0)
			appendStringInfoString(buf, i == 0 ? ", {\"type\": \"ActionSet\", \"actions\": ["
								   : "]}, {\"type\": \"ActionSet\", \"actions\": [");
		else
			appendStringInfoString(buf, ", ");
		appendStringInfoString(buf, "{\"type\": \"Action.OpenUrl\", \"title\": ");
		escape_json(buf, p->actions[i].label);
		appendStringInfoString(buf, ", \"url\": ");
		escape_json(buf, p->actions[i].url);
		appendStringInfoChar(buf, '}');
	}
	if (p->nactions > 0)
		appendStringInfoString(buf, "]}");

	if (p->nfacts > 0)
	{
		appendStringInfoString(buf, ", {\"type\": \"FactSet\", \"facts\": [");
		for (int i = 0; i < p->nfacts; i++)
		{
			if (i > 0)
				appendStringInfoString(buf, ", ");
			appendStringInfoString(buf, "{\"title\": ");
			escape_json(buf, p->facts[i].name);
			appendStringInfoString(buf, ", \"value\": ");
			escape_json(buf, p->facts[i].value);
			appendStringInfoChar(buf, '}');
		}
		appendStringInfoString(buf, "]}");
	}

	appendStringInfoString(buf, ", {\"type\": \"TextBlock\", \"text\": ");
	escape_json(buf, p->context);
	appendStringInfoString(buf, ", \"isSubtle\": true, \"size\": \"Small\", "
						   "\"wrap\": true}]");

	if (p->nlinks > 0)
	{
		appendStringInfoString(buf, ", \"actions\": [");
		for (int i = 0; i < p->nlinks; i++)
		{
			if (i > 0)
				appendStringInfoString(buf, ", ");
			appendStringInfoString(buf, "{\"type\": \"Action.OpenUrl\", \"title\": ");
			escape_json(buf, p->labels[i]);
			appendStringInfoString(buf, ", \"url\": ");
			escape_json(buf, p->links[i]);
			appendStringInfoChar(buf, '}');
		}
		appendStringInfoChar(buf, ']');
	}
	appendStringInfoString(buf, "}}]}");
}

/* Google Chat: one text, in the thread of the episode. */
static void
build_google_chat(StringInfo buf, ChatParts *p)
{
	StringInfoData text;

	initStringInfo(&text);
	appendStringInfoChar(&text, '*');
	append_markup(&text, p->title, strlen(p->title));
	appendStringInfoChar(&text, '*');
	if (p->message[0])
	{
		appendStringInfoChar(&text, '\n');
		append_markup(&text, p->message, strlen(p->message));
	}
	for (int i = 0; i < p->nfacts; i++)
	{
		appendStringInfoChar(&text, '\n');
		append_markup(&text, p->facts[i].name, strlen(p->facts[i].name));
		appendStringInfoString(&text, ": ");
		append_markup(&text, p->facts[i].value, strlen(p->facts[i].value));
	}
	appendStringInfoString(&text, "\n_");
	append_markup(&text, p->context, strlen(p->context));
	appendStringInfoChar(&text, '_');

	appendStringInfoString(buf, "{\"text\": ");
	escape_json(buf, text.data);
	if (p->nactions > 0)
	{
		appendStringInfoString(buf, ", \"cardsV2\": [{\"cardId\": \"herald-actions\", "
							   "\"card\": {\"sections\": [{\"widgets\": [{\"buttonList\": "
							   "{\"buttons\": [");
		for (int i = 0; i < p->nactions; i++)
		{
			if (i > 0)
				appendStringInfoString(buf, ", ");
			appendStringInfoString(buf, "{\"text\": ");
			escape_json(buf, p->actions[i].label);
			appendStringInfoString(buf, ", \"onClick\": {\"openLink\": {\"url\": ");
			escape_json(buf, p->actions[i].url);
			appendStringInfoString(buf, "}}}");
		}
		appendStringInfoString(buf, "]}}]}]}}]");
	}
	appendStringInfoString(buf, ", \"thread\": {\"threadKey\": ");
	escape_json(buf, p->thread_key);
	appendStringInfoString(buf, "}}");
	pfree(text.data);
}

/* The target with the reply option, unless it already has one. */
static char *
google_chat_url(const char *target)
{
	size_t		len = strlen(target);
	const char *sep;

	if (strstr(target, "messageReplyOption=") != NULL)
		return pstrdup(target);
	if (len > 0 && (target[len - 1] == '?' || target[len - 1] == '&'))
		sep = "";
	else if (strchr(target, '?') != NULL)
		sep = "&";
	else
		sep = "?";
	return psprintf("%s%s%s", target, sep, GOOGLE_CHAT_REPLY_OPTION);
}

/*
 * The line of a Slack update that says who answered, when and what:
 * "✅ Acknowledged by @ann at 14:02 UTC", "✅ Decision by @ann at 14:02
 * UTC: Roll back the form — the form lost 30% of sales", with the next
 * step and the note on their own lines.
 */
static char *
slack_status(HeraldDelivery *d)
{
	HeraldTemplateValues values = herald_template_values(d);
	JsonbValue	v;
	char	   *when = NULL;
	char	   *summary;
	bool		acknowledged;

	if (d->payload &&
		getKeyJsonValueFromContainer(&d->payload->root, "decided_at", 10, &v) &&
		v.type == jbvString)
		when = herald_utc_time(pnstrdup(v.val.string.val, v.val.string.len), false);
	acknowledged = d->payload &&
		getKeyJsonValueFromContainer(&d->payload->root, "kind", 4, &v) &&
		v.type == jbvString && v.val.string.len == 15 &&
		memcmp(v.val.string.val, "acknowledgement", 15) == 0;
	summary = herald_render_template(acknowledged ? "{{decision_details}}" :
									 ": {{decision_summary}}{{decision_details}}",
									 &values, herald_chars_bytes(SLACK_TEXT_MAX_CHARS), NULL);
	return psprintf("\xE2\x9C\x85 %s by %s%s%s%s",
					acknowledged ? "Acknowledged" : "Decision",
					herald_render_template("{{decided_by}}", &values,
										   herald_chars_bytes(200), NULL),
					when && when[0] ? " at " : "", when ? when : "", summary);
}

void
herald_format_slack(HeraldDelivery *d, HeraldOutgoing *out)
{
	ChatParts	p;
	StringInfoData buf;

	if (d->response_url != NULL)
	{
		HeraldDelivery about;
		char	   *status = slack_status(d);
		char	   *text;

		/* the message clicked, answered: {"replace_original": true, ...} */
		herald_about_delivery(d, &about);
		collect_parts(&about, &p, herald_chars_bytes(SLACK_TEXT_MAX_CHARS), 0);
		p.nactions = 0;
		p.status = status;
		initStringInfo(&buf);
		build_slack(&buf, &p);
		Assert(buf.data[0] == '{');
		text = psprintf("{\"replace_original\": true, %s", buf.data + 1);
		resetStringInfo(&buf);
		appendStringInfoString(&buf, text);
		set_request(d, out, pstrdup(d->response_url), false, &buf);
		return;
	}

	/* fact values are cut in build_slack, to what fits once escaped */
	collect_parts(d, &p, herald_chars_bytes(SLACK_TEXT_MAX_CHARS), 0);
	initStringInfo(&buf);
	build_slack(&buf, &p);
	set_request(d, out, pstrdup(d->target), true, &buf);
}

void
herald_format_teams(HeraldDelivery *d, HeraldOutgoing *out)
{
	ChatParts	p;
	StringInfoData buf;

	collect_parts(d, &p, TEAMS_MAX_BYTES, FACT_VALUE_MAX_CHARS);
	initStringInfo(&buf);
	fit_body(&buf, &p, build_teams, TEAMS_MAX_BYTES, "Microsoft Teams");
	set_request(d, out, pstrdup(d->target), true, &buf);
}

void
herald_format_google_chat(HeraldDelivery *d, HeraldOutgoing *out)
{
	ChatParts	p;
	StringInfoData buf;

	collect_parts(d, &p, GOOGLE_CHAT_MAX_BYTES, FACT_VALUE_MAX_CHARS);
	/* an identifier, not shown: cut with no marker */
	p.thread_key = herald_truncate(herald_thread_key(d),
								   GOOGLE_CHAT_THREAD_KEY_MAX_CHARS, "");
	initStringInfo(&buf);
	fit_body(&buf, &p, build_google_chat, GOOGLE_CHAT_MAX_BYTES, "Google Chat");
	set_request(d, out, google_chat_url(d->target), true, &buf);
}
