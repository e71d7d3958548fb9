/*
 * Fuzz message templates (src/template.c, src/filters.c): a hostile
 * author's template, checked as herald._check_template() checks it at
 * declaration (for a row rule on a table, a threshold rule, a channel),
 * and rendered with a hostile value through the real render path
 * (placeholders, filters, the byte bound and the cut at a character
 * boundary).  The value stands in {{rule}}: a payload is jsonb, which the
 * fuzzing runtime does not have (template_backend.c says what else is
 * left out).  The input is "template\0value"; its length picks the kind
 * and the bound.
 *
 * Properties: rendering raises no error (beyond the runtime's missing
 * numbers and times), whatever the template; the text stays within the
 * bound, is valid UTF-8, ends with the truncation marker exactly when it
 * was cut; a template without placeholders renders as itself.
 */
// fuzz-links: filters format event_types
#include "../../src/template.c"

#include "fuzz.h"
#include "template_backend.c"

static const char *const kinds[] = {"row", "threshold", "channel"};

typedef struct Render
{
	const char *tmpl;
	HeraldTemplateValues *values;
	int			max_bytes;
} Render;

static void
check(void *arg)
{
	char	  **parts = arg;
	LOCAL_FCINFO(fcinfo, 3);
	const char *kind = kinds[strlen(parts[1]) % 3];

	InitFunctionCallInfoData(*fcinfo, NULL, 3, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = PointerGetDatum(cstring_to_text(parts[0]));
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = PointerGetDatum(cstring_to_text(kind));
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = ObjectIdGetDatum(FUZZ_TABLE);
	fcinfo->args[2].isnull = strcmp(kind, "row") != 0;
	herald_check_template(fcinfo);
}

static void
render(void *arg)
{
	Render	   *r = arg;
	bool		cut = false;
	char	   *text = herald_render_template(r->tmpl, r->values, r->max_bytes, &cut);
	size_t		len = strlen(text);
	size_t		mlen = strlen(HERALD_TRUNCATED);

	if ((int) len > r->max_bytes || !herald_fuzz_utf8(text, len))
		abort();
	if (cut != (len >= mlen && strcmp(text + len - mlen, HERALD_TRUNCATED) == 0) && cut)
		abort();
	if (strstr(r->tmpl, "{{") == NULL && !cut && strcmp(text, r->tmpl) != 0)
		abort();
}

static void
one(void *arg)
{
	FuzzInput  *in = arg;
	char	   *parts[2];
	HeraldTemplateValues values;
	Render		r;

	herald_fuzz_split(in->data, in->size, parts, 2);
	if (!herald_fuzz_utf8(parts[0], strlen(parts[0])) ||
		!herald_fuzz_utf8(parts[1], strlen(parts[1])))
		return;

	/* the declaration's check: an ERROR refuses the template */
	(void) herald_fuzz_call(check, parts);

	/* rendering, checked or not (a column dropped since, a bug) */
	memset(&values, 0, sizeof(values));
	values.rule = parts[1];
	values.event_id = (int64) in->size * 1000003;
	values.type = "rule.fired";
	values.timezone = "UTC";
	r.tmpl = parts[0];
	r.values = &values;
	r.max_bytes = strlen(HERALD_TRUNCATED) + (in->size * 31) % 400;
	if (in->size % 5 == 0)
		r.max_bytes = 65536;
	if (!herald_fuzz_call(render, &r) && geterrcode() != ERRCODE_FEATURE_NOT_SUPPORTED)
	{
		fprintf(stderr, "template harness: rendering raised an error\n");
		abort();
	}
}

HERALD_FUZZ_TARGET(one)
