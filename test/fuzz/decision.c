/*
 * Fuzz the decision endpoint's request parsing (src/decision_page.c, with
 * src/links.c and src/http_server.c's form parser): the body a browser
 * POSTs to /d/{token}, the form token the page carried, and the pages'
 * escaping.  The input is "token\0form token\0body\0text".
 *
 * Properties: a body parses into valid UTF-8 values only; escaped text
 * has no raw < > " ' left and unescapes to the original; a form token
 * verifies only when made for that link under its key
 * (herald._form_token / herald._form_ok), and never when any of its
 * characters is changed.  herald_link_open()'s catalog lookup is replaced
 * by one fixed key (id 1); the rest of it is links.c's own.
 */
// fuzz-links: http_server format
#define herald_link_open fuzz_real_link_open
#include "../../src/links.c"
#undef herald_link_open
extern const char *herald_link_open(const char *token, HeraldLink *link, bytea **key);

#include "../../src/decision_page.c"

#include "fuzz.h"

static const char fuzz_key[] = "the fixed key of link key id 1";

/* links.c's herald_link_open(), with herald.link_keys holding key 1 only */
const char *
herald_link_open(const char *token, HeraldLink *link, bytea **key)
{
	uint8		raw[HERALD_LINK_MAX_BYTES];
	int			rawlen;
	bytea	   *secret;

	if (key)
		*key = NULL;
	if (!herald_link_parse(token, link, raw, &rawlen))
		return "malformed";
	if (link->key_id != 1)
		return "unknown_key";
	secret = (bytea *) cstring_to_text(fuzz_key);
	if (!herald_link_verify(raw, rawlen, (uint8 *) VARDATA(secret), VARSIZE(secret) - VARHDRSZ))
		return "forged";
	if (key)
		*key = secret;
	return "valid";
}

static bool
form_ok(const char *token, const char *form, int max_age)
{
	LOCAL_FCINFO(fcinfo, 3);
	Datum		d;

	InitFunctionCallInfoData(*fcinfo, NULL, 3, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = PointerGetDatum(cstring_to_text(token));
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = PointerGetDatum(cstring_to_text(form));
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = Int32GetDatum(max_age);
	fcinfo->args[2].isnull = false;
	d = herald_form_ok_sql(fcinfo);
	return DatumGetBool(d);
}

static char *
form_token(const char *token, int64 made_at)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		d;

	InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = PointerGetDatum(cstring_to_text(token));
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = Int64GetDatum(made_at);
	fcinfo->args[1].isnull = false;
	d = herald_form_token_sql(fcinfo);
	return fcinfo->isnull ? NULL : text_to_cstring(DatumGetTextPP(d));
}

/* Undo herald_html_escape(), false when something is left raw. */
static bool
unescape_matches(const char *escaped, const char *original)
{
	static const char *const entities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};
	static const char chars[] = "&<>\"'";
	const char *e = escaped;
	const char *o = original;

	while (*e)
	{
		if (*e == '<' || *e == '>' || *e == '"' || *e == '\'')
			return false;
		if (*e == '&')
		{
			int			i;

			for (i = 0; i < 5; i++)
				if (strncmp(e, entities[i], strlen(entities[i])) == 0)
					break;
			if (i == 5 || *o != chars[i])
				return false;
			e += strlen(entities[i]);
		}
		else if (*e++ != *o)
			return false;
		o++;
	}
	return *o == '\0';
}

static void
one(void *arg)
{
	FuzzInput  *in = arg;
	char	   *parts[4];
	Form		form;
	StringInfoData buf;
	HeraldHttpResponse resp;
	HeraldLink	link;
	char	   *mine;

	herald_fuzz_split(in->data, in->size, parts, 4);

	/* the body: every value kept is valid UTF-8 */
	if (parse_form(parts[2], strlen(parts[2]), &form))
	{
		char	   *values[] = {form.form, form.action, form.said, form.next_step,
		form.owner, form.due, form.name};

		for (int i = 0; i < lengthof(values); i++)
			if (values[i] && !herald_fuzz_utf8(values[i], strlen(values[i])))
				abort();
		(void) too_long(form.said, 10);
	}
	/* a body with a NUL in it: the parser sees the bytes */
	if (parse_form((const char *) in->data, in->size, &form) && form.said)
		Assert(herald_fuzz_utf8(form.said, strlen(form.said)));

	/* escaping */
	initStringInfo(&buf);
	herald_html_escape(&buf, parts[3]);
	if (!unescape_matches(buf.data, parts[3]))
		abort();

	/* a refusal page for whatever status */
	memset(&resp, 0, sizeof(resp));
	initStringInfo(&resp.body);
	(void) refused_link(parts[3], &resp);

	/* the form token the fuzzer made up */
	if (herald_fuzz_utf8(parts[0], strlen(parts[0])) &&
		herald_fuzz_utf8(parts[1], strlen(parts[1])))
		(void) form_ok(parts[0], parts[1], 3600);

	/* a real link (from the fuzzer's recipient): its form token verifies */
	memset(&link, 0, sizeof(link));
	link.key_id = 1;
	link.event_id = 42;
	link.action = 1 + (in->size % 255);
	link.channel_id = 7;
	link.expires = (int64) time(NULL) + 3600;
	strlcpy(link.recipient, parts[3], sizeof(link.recipient));
	mine = herald_link_token(&link, (const uint8 *) fuzz_key, strlen(fuzz_key));
	if (strcmp(herald_link_open(mine, &link, NULL), "valid") != 0)
		abort();
	{
		char	   *ft = form_token(mine, (int64) time(NULL));
		size_t		len;

		if (ft == NULL || !form_ok(mine, ft, 3600))
			abort();
		/* a changed character anywhere fails */
		len = strlen(ft);
		if (len > 0)
		{
			size_t		at = (in->size * 7919) % len;
			char		was = ft[at];

			ft[at] = was == 'A' ? 'B' : 'A';
			if (form_ok(mine, ft, 3600))
				abort();
			ft[at] = was;
		}
		/* and the fuzzer's own as the form for this link */
		if (herald_fuzz_utf8(parts[1], strlen(parts[1])) && strcmp(parts[1], ft) != 0 &&
			form_ok(mine, parts[1], 3600))
			abort();
	}
}

HERALD_FUZZ_TARGET(one)
