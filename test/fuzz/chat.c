/*
 * Fuzz the chat formats (src/format_chat.c, with src/format.c's text
 * helpers): Slack Block Kit with mrkdwn escaping, Microsoft Teams
 * Adaptive Cards and Google Chat, built from hostile texts: the title,
 * the rendered message (with its links), the context line, facts and the
 * actions' labels, as collect_parts() gathers them from a delivery (the
 * delivery itself is a catalog row: the harness fills the parts the way
 * collect_parts() does, with its limits).  The input is "title\0message\0
 * context\0fact name\0fact value\0label".
 *
 * Properties: each payload is valid JSON in valid UTF-8; Teams and Google
 * Chat payloads fit their byte limits (fit_body() never gives up: its
 * ERROR is a finding here); markup-escaped text has no raw & < > left;
 * cut texts stay within their character limits.
 */
// fuzz-links: format
#include "../../src/format_chat.c"

#include "fuzz.h"

static void
fill_parts(ChatParts *p, char **parts, int message_max, int fact_max, int nfacts)
{
	char	   *rendered;

	memset(p, 0, sizeof(*p));
	p->title = herald_truncate(parts[0], TITLE_MAX_CHARS, HERALD_TRUNCATED);
	/* the message as rendered: at most message_max bytes */
	rendered = pnstrdup(parts[1], pg_mbcliplen(parts[1], strlen(parts[1]), message_max));
	p->headline = herald_title_and_message(p->title, rendered, ": ");
	p->full_message = pstrdup(herald_message_body(p->title, rendered));
	p->message = p->full_message;
	p->message_bytes = strlen(p->full_message);
	p->context = herald_truncate(parts[2], CONTEXT_MAX_CHARS, HERALD_TRUNCATED);
	p->nfacts = nfacts;
	for (int i = 0; i < nfacts; i++)
	{
		p->facts[i].name = i % 2 ? "Value" : parts[3];
		p->facts[i].value = fact_max > 0 ?
			herald_truncate(parts[4], fact_max, HERALD_TRUNCATED) : parts[4];
	}
	collect_links(p, rendered);
	/* actions as herald_actions() makes them: a signed URL, the rule's label */
	p->nactions = 3;
	for (int i = 0; i < p->nactions; i++)
	{
		p->actions[i].id = i == 0 ? "acknowledge" : i == 1 ? "decide" : "choice-1";
		p->actions[i].label = herald_truncate(i == 2 ? parts[5] : "Acknowledge",
											  LABEL_MAX_CHARS, "\xE2\x80\xA6");
		p->actions[i].token = "AQAAAAEAAAAAAAAAKgEAAAAH";
		p->actions[i].url = "https://herald.example.com/d/AQAAAAEAAAAAAAAAKgEAAAAH";
	}
	p->interactive = (strlen(parts[5]) % 2) == 0;
}

static void
one(void *arg)
{
	FuzzInput  *in = arg;
	char	   *parts[6];
	ChatParts	p;
	StringInfoData buf;
	int			nfacts;
	char	   *cut;

	herald_fuzz_split(in->data, in->size, parts, 6);
	for (int i = 0; i < 6; i++)
		if (!herald_fuzz_utf8(parts[i], strlen(parts[i])))
			return;
	nfacts = in->size % (HERALD_MAX_FACTS + 1);

	/* Slack */
	fill_parts(&p, parts, herald_chars_bytes(SLACK_TEXT_MAX_CHARS), 0, nfacts);
	initStringInfo(&buf);
	build_slack(&buf, &p);
	if (!herald_fuzz_json(buf.data))
		abort();
	/* and its update after a click, with the answer's status */
	p.nactions = 0;
	p.status = parts[5];
	resetStringInfo(&buf);
	build_slack(&buf, &p);
	if (!herald_fuzz_json(buf.data))
		abort();

	/* Teams */
	fill_parts(&p, parts, TEAMS_MAX_BYTES, FACT_VALUE_MAX_CHARS, nfacts);
	initStringInfo(&buf);
	fit_body(&buf, &p, build_teams, TEAMS_MAX_BYTES, "Microsoft Teams");
	if (buf.len >= TEAMS_MAX_BYTES || !herald_fuzz_json(buf.data))
		abort();

	/* Google Chat */
	fill_parts(&p, parts, GOOGLE_CHAT_MAX_BYTES, FACT_VALUE_MAX_CHARS, nfacts);
	p.thread_key = herald_truncate(parts[0], GOOGLE_CHAT_THREAD_KEY_MAX_CHARS, "");
	initStringInfo(&buf);
	fit_body(&buf, &p, build_google_chat, GOOGLE_CHAT_MAX_BYTES, "Google Chat");
	if (buf.len >= GOOGLE_CHAT_MAX_BYTES || !herald_fuzz_json(buf.data))
		abort();

	/* markup and cutting */
	cut = cut_text(parts[1], 40, true);
	for (const char *c = cut; *c; c++)
		if (*c == '<' || *c == '>' || (*c == '&' && strncmp(c, "&amp;", 5) != 0 &&
									   strncmp(c, "&lt;", 4) != 0 &&
									   strncmp(c, "&gt;", 4) != 0))
			abort();
	if (herald_char_length(cut) > 40 + (int) strlen("&amp;"))
		abort();
	if (herald_char_length(herald_truncate(parts[1], 40, HERALD_TRUNCATED)) > 40)
		abort();
}

static void
one_strict(void *arg)
{
	/* the formats raise no error on any text */
	one(arg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzInput	in = {data, size};

	if (!herald_fuzz_call(one_strict, &in))
		abort();
	return 0;
}
