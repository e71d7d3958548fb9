/*-------------------------------------------------------------------------
 *
 * format_email.c
 *		The email format: an RFC 5322 message for the SMTP transport.
 *
 * One delivery becomes one message, sent by http.c over SMTP to the
 * channel's target (smtp:// or smtps://, the user name as the URL's
 * userinfo, the channel's secret as the password) from the channel's
 * sender to its recipients.  The message is built deterministically, from
 * the delivery alone, so that the same delivery always gives the same
 * bytes:
 *
 *	 From, To, Subject, Date (the event's creation time), Message-ID
 *	 (<webhook-id@pg-herald>, stable across retries), for the later
 *	 messages of an episode (reminders, escalation, follow-ups, decisions,
 *	 resolution) In-Reply-To and References naming the Message-ID of its
 *	 first event's message to the channel, so that mail clients thread
 *	 them, MIME-Version,
 *	 X-Herald-Event, X-Herald-Type, then a multipart/alternative body whose
 *	 boundary is "herald-<webhook-id>" with these parts:
 *	   text/plain: the title and the message (the message alone when it
 *	   starts with the title), the actions as "Label: URL" lines, the
 *	   facts as "Name: value" lines and the context line;
 *	   text/html: a small self-contained document with the title, the
 *	   message, the actions as buttons (links in a table, inline styles
 *	   only, as mail clients want), a table of the facts and the context
 *	   line, every piece of event text HTML-escaped;
 *	   and, when the event asks for a decision meeting (its payload's
 *	   "meeting": a critical threshold rule with a meeting length), a third
 *	   one, text/calendar with METHOD:REQUEST: the invitation, with the
 *	   recipients as attendees.
 *	 The parts are UTF-8 in quoted-printable (RFC 2045), so every line of
 *	 the message is short and 7-bit whatever the event holds; an encoded
 *	 line never starts with "-", so no event text can end a part early.
 *
 * The subject is the channel's subject template, or the event's title, on
 * one line and cut to SUBJECT_MAX_CHARS characters; when it is not plain
 * ASCII it is sent as RFC 2047 encoded-words.  Addresses, the subject and
 * every other header value are stripped of line breaks here, whatever the
 * SQL layer already refused, so event text can never add a header.
 *
 * Lines end with CRLF throughout.  Called by the delivery worker with no
 * transaction open.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#include <time.h>

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "pg_herald.h"

/* The subject is cut to this many characters. */
#define SUBJECT_MAX_CHARS 200

/* Header lines are folded to stay within this (RFC 5322 2.1.1). */
#define HEADER_LINE_MAX 78

/* Lines holding encoded-words, and each encoded-word (RFC 2047 2). */
#define ENCODED_LINE_MAX 76
#define ENCODED_WORD_MAX 75
#define ENCODED_WORD_OVERHEAD 12	/* "=?UTF-8?B?" and "?=" */

/* Quoted-printable lines, soft break included (RFC 2045 6.7). */
#define QP_LINE_MAX 76

/* Longest part of the webhook id used in the boundary (70 at most). */
#define ID_MAX_CHARS 60

/*
 * text on one line: CR, LF, TAB and the other control characters become
 * spaces, and leading and trailing spaces go.
 */
static char *
one_line(const char *text)
{
	char	   *copy = pstrdup(text ? text : "");
	char	   *start = copy;
	char	   *end;

	for (char *p = copy; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			*p = ' ';
	while (*start == ' ')
		start++;
	end = start + strlen(start);
	while (end > start && end[-1] == ' ')
		end--;
	*end = '\0';
	return start;
}

/* An address with every control character (CR and LF among them) removed. */
static char *
clean_address(const char *address)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const char *p = address ? address : ""; *p; p++)
		if ((unsigned char) *p >= 0x20 && *p != 0x7f)
			appendStringInfoChar(&buf, *p);
	return buf.data;
}

/*
 * The webhook id reduced to characters that are safe in both a Message-ID
 * (dot-atom-text) and a MIME boundary: letters, digits, "_" and "-".
 */
static char *
clean_id(const char *id)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const char *p = id ? id : ""; *p && buf.len < ID_MAX_CHARS; p++)
		appendStringInfoChar(&buf, (isalnum((unsigned char) *p) ||
									*p == '_' || *p == '-') ? *p : '_');
	return buf.data;
}

static void
append_base64(StringInfo buf, const unsigned char *src, int len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (int i = 0; i < len; i += 3)
	{
		uint32		n = (uint32) src[i] << 16;

		if (i + 1 < len)
			n |= (uint32) src[i + 1] << 8;
		if (i + 2 < len)
			n |= src[i + 2];
		appendStringInfoChar(buf, alphabet[(n >> 18) & 0x3f]);
		appendStringInfoChar(buf, alphabet[(n >> 12) & 0x3f]);
		appendStringInfoChar(buf, i + 1 < len ? alphabet[(n >> 6) & 0x3f] : '=');
		appendStringInfoChar(buf, i + 2 < len ? alphabet[n & 0x3f] : '=');
	}
}

/*
 * A header value needs encoded-words when it is not printable ASCII, or
 * when it holds "=?", which a reader would take for one.
 */
static bool
needs_encoding(const char *text)
{
	for (const char *p = text; *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
			return true;
	return strstr(text, "=?") != NULL;
}

/*
 * "Name: text" as RFC 2047 encoded-words, one per line, each line within
 * ENCODED_LINE_MAX and each word within ENCODED_WORD_MAX; a word always
 * holds whole UTF-8 characters.
 */
static void
append_encoded_header(StringInfo buf, const char *name, const char *text)
{
	const unsigned char *p = (const unsigned char *) text;
	int			left = strlen(text);
	int			prefix = strlen(name) + 2;	/* "Name: " */

	appendStringInfo(buf, "%s:", name);
	while (left > 0)
	{
		int			avail = Min(ENCODED_WORD_MAX, ENCODED_LINE_MAX - prefix);
		int			max_bytes = Max((avail - ENCODED_WORD_OVERHEAD) / 4 * 3, 6);
		int			n = 0;

		while (n < left)
		{
			int			len = Min(pg_utf_mblen(p + n), left - n);

			if (n + len > max_bytes)
				break;
			n += len;
		}
		appendStringInfoString(buf, prefix == 1 ? "\r\n " : " ");
		appendStringInfoString(buf, "=?UTF-8?B?");
		append_base64(buf, p, n);
		appendStringInfoString(buf, "?=");
		p += n;
		left -= n;
		prefix = 1;				/* the folding space */
	}
	appendStringInfoString(buf, "\r\n");
}

/*
 * "Name: text" for an unstructured header (RFC 5322 3.2.5): plain ASCII is
 * folded at spaces to stay near HEADER_LINE_MAX, anything else is encoded.
 * text must already be on one line.
 */
static void
append_text_header(StringInfo buf, const char *name, const char *text)
{
	const char *p = text;
	int			line;

	if (needs_encoding(text))
	{
		append_encoded_header(buf, name, text);
		return;
	}
	appendStringInfo(buf, "%s: ", name);
	line = strlen(name) + 2;
	while (*p)
	{
		/* a run: the spaces before a word, and the word */
		const char *word = p;
		const char *end;

		while (*word == ' ')
			word++;
		end = word;
		while (*end && *end != ' ')
			end++;
		/* fold before the spaces, never leaving a line of spaces only */
		if (p != text && word != p && *word != '\0' &&
			line + (end - p) > HEADER_LINE_MAX)
		{
			appendStringInfoString(buf, "\r\n");
			line = 0;
		}
		appendBinaryStringInfo(buf, p, end - p);
		line += end - p;
		p = end;
	}
	appendStringInfoString(buf, "\r\n");
}

/* "Name: a, b, c", folded after a comma when a line grows too long. */
static void
append_address_header(StringInfo buf, const char *name, char **addresses, int n)
{
	int			line = strlen(name) + 2;

	appendStringInfo(buf, "%s: ", name);
	for (int i = 0; i < n; i++)
	{
		int			len = strlen(addresses[i]);

		if (i > 0)
		{
			if (line + 2 + len > HEADER_LINE_MAX)
			{
				appendStringInfoString(buf, ",\r\n ");
				line = 1;
			}
			else
			{
				appendStringInfoString(buf, ", ");
				line += 2;
			}
		}
		appendStringInfoString(buf, addresses[i]);
		line += len;
	}
	appendStringInfoString(buf, "\r\n");
}

/*
 * "Date: Mon, 23 Nov 2026 13:01:13 +0000" for created_at (ISO 8601 in
 * UTC); the current time if created_at cannot be read, which should not
 * happen.
 */
static void
append_date_header(StringInfo buf, const char *created_at)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	static const int month_offset[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
	int			year,
				month,
				day,
				hour,
				minute,
				second;
	int			y;

	if (created_at == NULL ||
		sscanf(created_at, "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d",
			   &year, &month, &day, &hour, &minute, &second) != 6 ||
		year < 1 || month < 1 || month > 12 || day < 1 || day > 31 ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
		second < 0 || second > 60)
	{
		time_t		now = time(NULL);
		struct tm	tm;

		gmtime_r(&now, &tm);
		year = tm.tm_year + 1900;
		month = tm.tm_mon + 1;
		day = tm.tm_mday;
		hour = tm.tm_hour;
		minute = tm.tm_min;
		second = tm.tm_sec;
	}
	/* the day of the week, by Sakamoto's method */
	y = month < 3 ? year - 1 : year;
	appendStringInfo(buf, "Date: %s, %d %s %04d %02d:%02d:%02d +0000\r\n",
					 days[(y + y / 4 - y / 100 + y / 400 + month_offset[month - 1] + day) % 7],
					 day, months[month - 1], year, hour, minute, second);
}

/*
 * One byte as quoted-printable: printable ASCII as itself, except "=",
 * a space or tab at the end of its line, and "-" or "." starting an
 * encoded line (so that no line looks like a boundary, or like the end of
 * the SMTP data); everything else as =XX.  Returns the token's length.
 */
static int
qp_token(unsigned char c, bool line_end, bool line_start, char *token)
{
	static const char hex[] = "0123456789ABCDEF";

	if (((c == ' ' || c == '\t') && !line_end) ||
		(c > ' ' && c < 0x7f && c != '=' &&
		 !(line_start && (c == '-' || c == '.'))))
	{
		token[0] = (char) c;
		return 1;
	}
	token[0] = '=';
	token[1] = hex[c >> 4];
	token[2] = hex[c & 0x0f];
	return 3;
}

/*
 * text in quoted-printable (RFC 2045 6.7): line breaks (LF or CRLF) become
 * CRLF, and longer lines are split with soft breaks so that no line
 * exceeds QP_LINE_MAX.
 */
static void
append_quoted_printable(StringInfo buf, const char *text)
{
	const unsigned char *p = (const unsigned char *) text;
	int			column = 0;

	while (*p)
	{
		char		token[3];
		int			len;
		bool		line_end;

		if (*p == '\n' || (p[0] == '\r' && p[1] == '\n'))
		{
			appendStringInfoString(buf, "\r\n");
			column = 0;
			p += (*p == '\r') ? 2 : 1;
			continue;
		}
		line_end = p[1] == '\0' || p[1] == '\n' || (p[1] == '\r' && p[2] == '\n');
		len = qp_token(*p, line_end, column == 0, token);
		/* the last token of a line may use the room of the soft break */
		if (column + len > (line_end ? QP_LINE_MAX : QP_LINE_MAX - 1))
		{
			appendStringInfoString(buf, "=\r\n");
			column = 0;
			len = qp_token(*p, line_end, true, token);
		}
		appendBinaryStringInfo(buf, token, len);
		column += len;
		p++;
	}
}

/*
 * text HTML-escaped; line breaks become <br> when breaks is true, spaces
 * otherwise.
 */
static void
append_html(StringInfo buf, const char *text, bool breaks)
{
	for (const char *p = text; *p; p++)
	{
		const char *entity = herald_entity(*p, true);

		if (entity)
			appendStringInfoString(buf, entity);
		else if (*p == '\r' && p[1] == '\n')
			continue;			/* the LF makes the break */
		else if (*p == '\r' || *p == '\n')
			appendStringInfoString(buf, breaks ? "<br>\n" : " ");
		else
			appendStringInfoChar(buf, *p);
	}
}

/*
 * The text/plain part, before encoding: the title and the message (the
 * title once), the actions, the facts and the context line.
 */
static char *
plain_part(const char *title, const char *message, HeraldAction *actions, int nactions,
		   HeraldFact *facts, int nfacts, const char *context)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s\n\n", herald_title_and_message(title, message, "\n\n"));
	for (int i = 0; i < nactions; i++)
		appendStringInfo(&buf, "%s: %s\n", one_line(actions[i].label), actions[i].url);
	if (nactions > 0)
		appendStringInfoChar(&buf, '\n');
	for (int i = 0; i < nfacts; i++)
		appendStringInfo(&buf, "%s: %s\n", one_line(facts[i].name),
						 one_line(facts[i].value));
	if (nfacts > 0)
		appendStringInfoChar(&buf, '\n');
	appendStringInfo(&buf, "%s\n", context);
	return buf.data;
}

/*
 * The actions as buttons: one row each, a link styled as a button (a
 * table cell for its colour, which every mail client shows).
 */
static void
append_html_actions(StringInfo buf, HeraldAction *actions, int nactions)
{
	if (nactions == 0)
		return;
	appendStringInfoString(buf, "<table role=\"presentation\" cellpadding=\"0\" "
						   "cellspacing=\"0\" border=\"0\" style=\"margin:16px 0\">\n");
	for (int i = 0; i < nactions; i++)
	{
		appendStringInfoString(buf, "<tr><td style=\"padding:0 0 8px 0\">"
							   "<table role=\"presentation\" cellpadding=\"0\" "
							   "cellspacing=\"0\" border=\"0\"><tr>"
							   "<td bgcolor=\"#1f6feb\" style=\"border-radius:6px;"
							   "background-color:#1f6feb\">"
							   "<a href=\"");
		append_html(buf, actions[i].url, false);
		appendStringInfoString(buf, "\" target=\"_blank\" style=\"display:inline-block;"
							   "padding:10px 18px;font-family:sans-serif;font-size:15px;"
							   "font-weight:bold;color:#ffffff;text-decoration:none;"
							   "border-radius:6px\">");
		append_html(buf, actions[i].label, false);
		appendStringInfoString(buf, "</a></td></tr></table></td></tr>\n");
	}
	appendStringInfoString(buf, "</table>\n");
}

/* The text/html part, before encoding. */
static char *
html_part(const char *title, const char *message, HeraldAction *actions,
		  int nactions, HeraldFact *facts, int nfacts, const char *context)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf,
						   "<!DOCTYPE html>\n"
						   "<html>\n"
						   "<head>\n"
						   "<meta charset=\"utf-8\">\n"
						   "<title>");
	append_html(&buf, title, false);
	appendStringInfoString(&buf, "</title>\n</head>\n<body>\n<h2>");
	append_html(&buf, title, false);
	appendStringInfoString(&buf, "</h2>\n");
	/* what the message adds to the title */
	message = herald_message_body(title, message);
	if (message[0])
	{
		appendStringInfoString(&buf, "<p>");
		append_html(&buf, message, true);
		appendStringInfoString(&buf, "</p>\n");
	}
	append_html_actions(&buf, actions, nactions);
	if (nfacts > 0)
	{
		appendStringInfoString(&buf, "<table cellpadding=\"4\" cellspacing=\"0\">\n");
		for (int i = 0; i < nfacts; i++)
		{
			appendStringInfoString(&buf, "<tr><th align=\"left\">");
			append_html(&buf, facts[i].name, false);
			appendStringInfoString(&buf, "</th><td>");
			append_html(&buf, facts[i].value, true);
			appendStringInfoString(&buf, "</td></tr>\n");
		}
		appendStringInfoString(&buf, "</table>\n");
	}
	appendStringInfoString(&buf, "<p style=\"color:#666;font-size:small\">");
	append_html(&buf, context, false);
	appendStringInfoString(&buf, "</p>\n</body>\n</html>\n");
	return buf.data;
}

/* iCalendar text: backslash, semicolon, comma and line breaks escaped. */
static void
append_ical_text(StringInfo buf, const char *text)
{
	for (const char *p = text; *p; p++)
	{
		if (*p == '\\' || *p == ';' || *p == ',')
		{
			appendStringInfoChar(buf, '\\');
			appendStringInfoChar(buf, *p);
		}
		else if (*p == '\r' && p[1] == '\n')
			continue;
		else if (*p == '\r' || *p == '\n')
			appendStringInfoString(buf, "\\n");
		else if ((unsigned char) *p < 0x20 || *p == 0x7F)
			appendStringInfoChar(buf, ' ');	/* TEXT allows no control character */
		else
			appendStringInfoChar(buf, *p);
	}
}

/* One content line, folded at 75 octets without splitting a character. */
static void
append_ical_line(StringInfo buf, const char *line)
{
	int			len = strlen(line);
	int			width = 75;

	while (len > width)
	{
		int			cut = pg_mbcliplen(line, len, width);

		appendBinaryStringInfo(buf, line, cut);
		appendStringInfoString(buf, "\r\n ");
		line += cut;
		len -= cut;
		width = 74;				/* the leading space counts */
	}
	appendStringInfo(buf, "%s\r\n", line);
}

/*
 * The invitation to a decision meeting (RFC 5545, METHOD:REQUEST) that a
 * threshold rule with a meeting asks for when it fires at critical level:
 * the payload's meeting gives its start and end, the channel's recipients
 * are the attendees.
 */
static char *
calendar_part(HeraldDelivery *d, const char *id, const char *title, const char *message,
			  const char *sender, char **recipients, int nrecipients,
			  const char *start, const char *end)
{
	StringInfoData buf;
	StringInfoData line;
	char		stamp[32];

	/* DTSTAMP from created_at, 2026-11-23T13:01:13.843169Z */
	snprintf(stamp, sizeof(stamp), "%.4s%.2s%.2sT%.2s%.2s%.2sZ",
			 d->created_at, d->created_at + 5, d->created_at + 8,
			 d->created_at + 11, d->created_at + 14, d->created_at + 17);

	initStringInfo(&buf);
	initStringInfo(&line);
	append_ical_line(&buf, "BEGIN:VCALENDAR");
	append_ical_line(&buf, "VERSION:2.0");
	append_ical_line(&buf, "PRODID:-//pg_herald//pg_herald " PG_HERALD_VERSION "//EN");
	append_ical_line(&buf, "METHOD:REQUEST");
	append_ical_line(&buf, "BEGIN:VEVENT");
	append_ical_line(&buf, psprintf("UID:%s@pg-herald", id));
	append_ical_line(&buf, psprintf("DTSTAMP:%s", stamp));
	append_ical_line(&buf, psprintf("DTSTART:%s", one_line(start)));
	append_ical_line(&buf, psprintf("DTEND:%s", one_line(end)));
	appendStringInfoString(&line, "SUMMARY:Decision meeting: ");
	append_ical_text(&line, title);
	append_ical_line(&buf, line.data);
	resetStringInfo(&line);
	appendStringInfoString(&line, "DESCRIPTION:");
	append_ical_text(&line, message);
	append_ical_line(&buf, line.data);
	append_ical_line(&buf, psprintf("ORGANIZER:mailto:%s", sender));
	for (int i = 0; i < nrecipients; i++)
		append_ical_line(&buf, psprintf("ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:%s",
										recipients[i]));
	append_ical_line(&buf, "STATUS:CONFIRMED");
	append_ical_line(&buf, "END:VEVENT");
	append_ical_line(&buf, "END:VCALENDAR");
	return buf.data;
}

/* One part of the multipart body: its headers and its encoded content. */
static void
append_part(StringInfo buf, const char *boundary, const char *type,
			const char *content)
{
	appendStringInfo(buf, "--%s\r\n", boundary);
	appendStringInfo(buf, "Content-Type: %s; charset=utf-8\r\n", type);
	appendStringInfoString(buf, "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	append_quoted_printable(buf, content);
	/* the CRLF before the next boundary belongs to the boundary */
	appendStringInfoString(buf, "\r\n");
}

/*
 * Build the message of one delivery for an email channel, and the SMTP
 * envelope: sender, recipients, URL and password.
 */
void
herald_format_email(HeraldDelivery *d, HeraldOutgoing *out)
{
	HeraldTemplateValues values;
	HeraldFact	facts[HERALD_MAX_FACTS];
	int			nfacts;
	HeraldAction actions[HERALD_MAX_ACTIONS];
	int			nactions;
	char	   *title;
	char	   *message;
	char	   *context;
	char	   *subject;
	char	   *sender;
	char	  **recipients;
	int			nrecipients = 0;
	char	   *id;
	char	   *boundary;
	char	   *parent;
	StringInfoData buf;
	char	   *meeting_start = NULL;
	char	   *meeting_end = NULL;
	JsonbValue	meeting;

	sender = clean_address(d->sender);
	if (sender[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("channel \"%s\" has no sender address", d->channel)));
	recipients = palloc(sizeof(char *) * Max(d->nrecipients, 1));
	for (int i = 0; i < d->nrecipients; i++)
	{
		char	   *address = clean_address(d->recipients[i]);

		if (address[0] != '\0')
			recipients[nrecipients++] = address;
	}
	if (nrecipients == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("channel \"%s\" has no recipients", d->channel)));

	values = herald_template_values(d);
	title = herald_title(d, herald_chars_bytes(SUBJECT_MAX_CHARS));
	message = herald_message(d, 0, NULL);
	context = herald_context_line(d);
	nfacts = herald_facts(d, facts);
	nactions = herald_actions(d, actions);

	subject = one_line(d->subject ?
					   herald_render_template(d->subject, &values,
											  herald_chars_bytes(SUBJECT_MAX_CHARS), NULL) :
					   title);
	if (subject[0] == '\0')
		subject = one_line(title);
	subject = herald_truncate(subject, SUBJECT_MAX_CHARS, "...");

	id = clean_id(d->webhook_id);
	boundary = psprintf("herald-%s", id);

	/* a decision meeting to invite the recipients to, for some events */
	if (d->payload &&
		getKeyJsonValueFromContainer(&d->payload->root, "meeting", 7, &meeting) != NULL &&
		meeting.type == jbvBinary && JsonContainerIsObject(meeting.val.binary.data))
	{
		JsonbValue	v;

		if (getKeyJsonValueFromContainer(meeting.val.binary.data, "start", 5, &v) &&
			v.type == jbvString)
			meeting_start = pnstrdup(v.val.string.val, v.val.string.len);
		if (getKeyJsonValueFromContainer(meeting.val.binary.data, "end", 3, &v) &&
			v.type == jbvString)
			meeting_end = pnstrdup(v.val.string.val, v.val.string.len);
	}

	initStringInfo(&buf);
	append_address_header(&buf, "From", &sender, 1);
	append_address_header(&buf, "To", recipients, nrecipients);
	append_text_header(&buf, "Subject", subject);
	append_date_header(&buf, d->created_at);
	appendStringInfo(&buf, "Message-ID: <%s@pg-herald>\r\n", id);
	/* the later messages of an episode reply to its first one */
	if ((parent = herald_episode_webhook_id(d)) != NULL)
	{
		parent = clean_id(parent);
		appendStringInfo(&buf, "In-Reply-To: <%s@pg-herald>\r\n", parent);
		appendStringInfo(&buf, "References: <%s@pg-herald>\r\n", parent);
	}
	appendStringInfoString(&buf, "MIME-Version: 1.0\r\n");
	appendStringInfo(&buf, "X-Herald-Event: " INT64_FORMAT "\r\n", d->event_id);
	append_text_header(&buf, "X-Herald-Type", one_line(d->event_type));
	appendStringInfo(&buf, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n",
					 boundary);
	appendStringInfoString(&buf, "\r\n");
	append_part(&buf, boundary, "text/plain",
				plain_part(one_line(title), message, actions, nactions, facts, nfacts,
						   context));
	append_part(&buf, boundary, "text/html",
				html_part(one_line(title), message, actions, nactions, facts, nfacts,
						  context));
	if (meeting_start && meeting_end)
		append_part(&buf, boundary, "text/calendar; method=REQUEST",
					calendar_part(d, id, one_line(title), message, sender,
								  recipients, nrecipients, meeting_start, meeting_end));
	appendStringInfo(&buf, "--%s--\r\n", boundary);

	out->url = pstrdup(d->target);
	out->mail_from = sender;
	out->password = d->secret ? pstrdup(d->secret) : NULL;
	out->body = buf.data;
	out->bodylen = buf.len;

	/* last: nothing may fail once the curl list exists */
	out->rcpts = NULL;
	for (int i = 0; i < nrecipients; i++)
		out->rcpts = herald_append_header(out->rcpts, recipients[i]);
}
