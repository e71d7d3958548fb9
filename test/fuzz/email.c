/*
 * Fuzz the email format's escaping (src/format_email.c): headers (plain,
 * folded, RFC 2047 encoded-words), addresses, the Date header from a
 * stored timestamp, quoted-printable bodies, HTML and iCalendar text, the
 * Message-ID/boundary id.  Texts are what rows and authors put in a
 * message (valid UTF-8); the input is "text\0address\0created_at\0id".
 *
 * Properties: every header line ends with CRLF, holds no other CR or LF,
 * continues with a space, and stays within RFC 5322's 998 octets;
 * encoded-words stay within 75 characters, hold whole UTF-8 characters
 * and decode back to the text; quoted-printable lines stay within 76
 * characters, hold printable ASCII only, never start with "-" or ".",
 * and decode back to the text (line breaks as CRLF); HTML has no raw
 * < > " '; iCalendar lines stay within 75 octets, unfold and unescape
 * back to the text; ids hold letters, digits, "_" and "-" only.
 */
// fuzz-links: format
#include "../../src/format_email.c"

#include "fuzz.h"

static int
hex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Check header lines; returns the unfolded header (without "Name:"). */
static void
check_header_lines(const char *h)
{
	const char *line = h;

	while (*line)
	{
		const char *crlf = strstr(line, "\r\n");

		if (crlf == NULL)
			abort();			/* every line ends with CRLF */
		for (const char *p = line; p < crlf; p++)
			if (*p == '\r' || *p == '\n')
				abort();
		if (crlf - line > 998)
			abort();
		if (line != h && *line != ' ' && *line != '\t')
			abort();			/* a continuation starts with a space */
		line = crlf + 2;
	}
}

static int
b64(char c)
{
	const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = strchr(a, c);

	return c && p ? (int) (p - a) : -1;
}

/* Decode the encoded-words of an encoded header into buf. */
static void
decode_words(const char *h, StringInfo out)
{
	const char *p = h;

	while ((p = strstr(p, "=?UTF-8?B?")) != NULL)
	{
		const char *start = p;
		const char *end = strstr(p + 10, "?=");
		uint32		acc = 0;
		int			bits = 0;
		int			before = out->len;

		if (end == NULL || end + 2 - start > 75)
			abort();
		for (const char *c = p + 10; c < end; c++)
		{
			if (*c == '=')
				continue;
			if (b64(*c) < 0)
				abort();
			acc = (acc << 6) | b64(*c);
			bits += 6;
			if (bits >= 8)
			{
				bits -= 8;
				appendStringInfoChar(out, (char) ((acc >> bits) & 0xFF));
			}
		}
		/* whole characters in each word */
		if (!herald_fuzz_utf8(out->data + before, out->len - before))
			abort();
		p = end + 2;
	}
}

static void
check_qp(const char *text)
{
	StringInfoData qp;
	StringInfoData back;
	StringInfoData want;
	const char *line;

	initStringInfo(&qp);
	append_quoted_printable(&qp, text);
	initStringInfo(&back);
	line = qp.data;
	while (*line)
	{
		const char *crlf = strstr(line, "\r\n");
		const char *end = crlf ? crlf : line + strlen(line);
		bool		soft = false;

		if (end - line > QP_LINE_MAX || *line == '-' || *line == '.')
			abort();
		for (const char *p = line; p < end; p++)
		{
			if ((unsigned char) *p < ' ' && *p != '\t')
				abort();
			if ((unsigned char) *p >= 0x7f)
				abort();
			if (*p == '=')
			{
				if (p + 1 == end)
				{
					soft = true;
					break;
				}
				if (end - p < 3 || hex(p[1]) < 0 || hex(p[2]) < 0)
					abort();
				appendStringInfoChar(&back, (char) (hex(p[1]) * 16 + hex(p[2])));
				p += 2;
			}
			else
				appendStringInfoChar(&back, *p);
		}
		/* no space or tab right before a line break */
		if (!soft && end > line && (end[-1] == ' ' || end[-1] == '\t'))
			abort();
		if (crlf && !soft)
			appendStringInfoString(&back, "\r\n");
		line = crlf ? crlf + 2 : end;
	}
	/* the text, with its line breaks as CRLF */
	initStringInfo(&want);
	for (const char *p = text; *p; p++)
	{
		if (*p == '\r' && p[1] == '\n')
			continue;
		if (*p == '\n')
			appendStringInfoString(&want, "\r\n");
		else
			appendStringInfoChar(&want, *p);
	}
	if (strcmp(back.data, want.data) != 0)
		abort();
}

static void
check_ical(const char *text)
{
	StringInfoData esc;
	StringInfoData line;
	StringInfoData back;
	const char *p;

	initStringInfo(&esc);
	appendStringInfoString(&esc, "SUMMARY:");
	append_ical_text(&esc, text);
	initStringInfo(&line);
	append_ical_line(&line, esc.data);
	/* lines within 75 octets; unfolded, the escaped text again */
	initStringInfo(&back);
	p = line.data;
	while (*p)
	{
		const char *crlf = strstr(p, "\r\n");

		if (crlf == NULL || crlf - p > 75 || memchr(p, '\n', crlf - p) != NULL)
			abort();
		if (p != line.data)
		{
			if (*p != ' ')
				abort();
			p++;
		}
		appendBinaryStringInfo(&back, p, crlf - p);
		p = crlf + 2;
	}
	if (strcmp(back.data, esc.data) != 0 || !herald_fuzz_utf8(back.data, back.len))
		abort();
	/* no unescaped , ; or control character in the value */
	for (p = esc.data + 8; *p; p++)
	{
		if (*p == '\\')
		{
			if (p[1] != '\\' && p[1] != ';' && p[1] != ',' && p[1] != 'n')
				abort();
			p++;
		}
		else if (*p == ';' || *p == ',' || (unsigned char) *p < 0x20 || *p == 0x7f)
			abort();
	}
}

static void
one(void *arg)
{
	FuzzInput  *in = arg;
	char	   *parts[4];
	StringInfoData buf;
	char	   *subject;
	char	   *addresses[3];
	char	   *id;

	herald_fuzz_split(in->data, in->size, parts, 4);
	for (int i = 0; i < 4; i++)
		if (!herald_fuzz_utf8(parts[i], strlen(parts[i])))
			return;

	/* the subject: as long as herald_title() gives, on one line, plain or encoded */
	subject = pstrdup(parts[0]);
	subject[pg_mbcliplen(subject, strlen(subject), herald_chars_bytes(SUBJECT_MAX_CHARS))] = '\0';
	subject = one_line(subject);
	for (const char *p = subject; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			abort();
	if (subject[0] == ' ' || (subject[0] && subject[strlen(subject) - 1] == ' '))
		abort();
	initStringInfo(&buf);
	append_text_header(&buf, "Subject", subject);
	check_header_lines(buf.data);
	if (needs_encoding(subject))
	{
		StringInfoData words;

		initStringInfo(&words);
		decode_words(buf.data, &words);
		if (strcmp(words.data, subject) != 0)
			abort();
	}
	initStringInfo(&buf);
	append_encoded_header(&buf, "X-Herald-Rule", subject);
	check_header_lines(buf.data);

	/* addresses */
	addresses[0] = clean_address(parts[1]);
	addresses[1] = clean_address(parts[0]);
	addresses[2] = clean_address("ops@example.com");
	for (int i = 0; i < 3; i++)
		for (const char *p = addresses[i]; *p; p++)
			if ((unsigned char) *p < 0x20 || *p == 0x7f)
				abort();
	initStringInfo(&buf);
	append_address_header(&buf, "To", addresses, 3);
	/* (an address longer than a line stays whole: 998 is not checked) */
	for (const char *p = buf.data; *p; p++)
		if ((*p == '\r' && p[1] != '\n') || (*p == '\n' && (p == buf.data || p[-1] != '\r')))
			abort();

	/* the Date header of a stored timestamp, or of now */
	initStringInfo(&buf);
	append_date_header(&buf, parts[2]);
	check_header_lines(buf.data);
	if (strncmp(buf.data, "Date: ", 6) != 0 || strstr(buf.data, "\r\n") != buf.data + buf.len - 2)
		abort();

	/* the id of Message-ID and boundaries */
	id = clean_id(parts[3]);
	if (strlen(id) > ID_MAX_CHARS ||
		strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(id))
		abort();

	/* bodies */
	check_qp(parts[0]);
	initStringInfo(&buf);
	append_html(&buf, parts[0], true);
	if (strpbrk(buf.data, "\"'") != NULL)
		abort();
	for (const char *p = buf.data; *p; p++)
		if ((*p == '<' && strncmp(p, "<br>\n", 5) != 0) ||
			(*p == '>' && (p < buf.data + 3 || strncmp(p - 3, "<br>", 4) != 0)))
			abort();
	(void) plain_part(parts[0], parts[1], NULL, 0, NULL, 0, parts[3]);
	(void) html_part(parts[0], parts[1], NULL, 0, NULL, 0, parts[3]);
	check_ical(parts[0]);
}

HERALD_FUZZ_TARGET(one)
