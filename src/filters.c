/*-------------------------------------------------------------------------
 *
 * filters.c
 *		Formatting filters in template placeholders, and the time zone
 *		times are shown in.
 *
 * A placeholder may name filters after its field, applied left to right:
 *
 *		{{value | number(2)}}				48,200.00
 *		{{value | percent(1)}}				15.3 %  (of 0.153)
 *		{{since | time}}					2026-12-01 19:14 CET
 *		{{since | time('DD/MM HH24:MI')}}	PostgreSQL's to_char patterns
 *		{{new.title | truncate(40) | upper}}
 *		{{new.note | default('none')}}		for an empty field
 *
 * An argument is a whole number or a string in single quotes ('' for a
 * quote); a string cannot hold "}}", which ends the placeholder.  Ranges:
 * number and percent take 0 to 10 decimals (0 when omitted), truncate 1 to
 * 10,000 characters, a time format 1 to 64 bytes, a default 1 to 200
 * bytes; a placeholder takes at most HERALD_MAX_FILTERS filters.
 *
 * template.c parses a placeholder with herald_parse_placeholder() both
 * when a template is declared (strict: every error is refused, with
 * SQLSTATE 22023) and when it is rendered (a placeholder that does not
 * parse stays as written).  At declaration herald_check_filters() also
 * refuses a number filter on a field that is not a number and a time
 * filter on one that is not a time.  At render no filter fails: a value a
 * number or time filter cannot read renders unchanged.
 *
 * Bounds: template.c renders the field into a buffer of at most
 * herald_filter_input_limit() bytes (what is left of the message, less
 * when a truncate comes first), a number is read only up to
 * NUMBER_MAX_CHARS characters and an exponent of 1,000, and a time format
 * is short; so a filter costs about the bytes it may produce, and the
 * rendering keeps to the byte bound template.c describes.  Filters return
 * plain text; each channel format escapes it afterwards.
 *
 * Times: a time with an offset (timestamptz) is shown in the channel's
 * time zone (herald.channel_defs.timezone), else in herald.timezone; one
 * without (timestamp, date) as it is.  The zone is looked up with
 * pg_tzset() and the format applied by to_char()'s own code
 * (timestamptz_to_char() with session_timezone set to the zone for the
 * call, timestamp_to_char() for a time without offset); both are the same
 * from PostgreSQL 15 to 18.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_collation_d.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "pg_herald.h"

/* a number longer than this renders unchanged */
#define NUMBER_MAX_CHARS 1000
#define NUMBER_MAX_EXPONENT 1000
#define MAX_DECIMALS 10
#define MAX_TRUNCATE 10000
#define MAX_FORMAT_BYTES 64
#define MAX_DEFAULT_BYTES 200
#define DEFAULT_TIME_FORMAT "YYYY-MM-DD HH24:MI TZ"
#define ELLIPSIS "\xE2\x80\xA6"

#define FILTER_LIST "number(decimals), percent(decimals), time, time('format'), " \
	"truncate(characters), upper, lower, default('text')"

/* herald.timezone: the zone times are shown in, when a channel names none */
char	   *herald_timezone = NULL;

typedef enum FilterArg
{
	ARG_NONE,					/* no argument */
	ARG_INT,					/* an optional whole number */
	ARG_INT_REQUIRED,
	ARG_STRING,					/* an optional string */
	ARG_STRING_REQUIRED
} FilterArg;

typedef struct FilterDef
{
	const char *name;
	HeraldFilterOp op;
	FilterArg	arg;
	int			min;			/* ARG_INT*: range; ARG_STRING*: bytes */
	int			max;
	const char *range;			/* for errors */
} FilterDef;

static const FilterDef filter_defs[] = {
	{"number", HERALD_FILTER_NUMBER, ARG_INT, 0, MAX_DECIMALS, "a number of decimals from 0 to 10"},
	{"percent", HERALD_FILTER_PERCENT, ARG_INT, 0, MAX_DECIMALS, "a number of decimals from 0 to 10"},
	{"time", HERALD_FILTER_TIME, ARG_STRING, 1, MAX_FORMAT_BYTES,
	"a to_char format of 1 to 64 bytes in single quotes"},
	{"truncate", HERALD_FILTER_TRUNCATE, ARG_INT_REQUIRED, 1, MAX_TRUNCATE,
	"a number of characters from 1 to 10000"},
	{"upper", HERALD_FILTER_UPPER, ARG_NONE, 0, 0, NULL},
	{"lower", HERALD_FILTER_LOWER, ARG_NONE, 0, 0, NULL},
	{"default", HERALD_FILTER_DEFAULT, ARG_STRING_REQUIRED, 1, MAX_DEFAULT_BYTES,
	"a text of 1 to 200 bytes in single quotes"},
	{NULL}
};

static bool
check_timezone_guc(char **newval, void **extra, GucSource source)
{
	pg_tz	   *tz = (*newval && **newval) ? pg_tzset(*newval) : NULL;

	if (tz == NULL || !pg_tz_acceptable(tz))
	{
		GUC_check_errdetail("\"%s\" is not a PostgreSQL time zone name.", *newval ? *newval : "");
		GUC_check_errhint("Give a name of pg_timezone_names, such as UTC or Europe/Paris.");
		return false;
	}
	return true;
}

void
herald_define_filter_settings(void)
{
	DefineCustomStringVariable("herald.timezone",
							   "Time zone that message templates show times in.",
							   "The time filter of a placeholder shows times in the channel's "
							   "timezone, else in this one.",
							   &herald_timezone,
							   "UTC",
							   PGC_SIGHUP,
							   0,
							   check_timezone_guc, NULL, NULL);
}

/* A zone name pg_tzset() knows and that PostgreSQL accepts, or NULL. */
static pg_tz *
lookup_zone(const char *name)
{
	pg_tz	   *tz;

	if (name == NULL || name[0] == '\0' || strlen(name) > 200)
		return NULL;
	tz = pg_tzset(name);
	return (tz != NULL && pg_tz_acceptable(tz)) ? tz : NULL;
}

PG_FUNCTION_INFO_V1(herald_check_timezone);

/* herald._check_timezone(zone text): a channel's timezone, at declaration */
Datum
herald_check_timezone(PG_FUNCTION_ARGS)
{
	char	   *name;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (lookup_zone(name) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown time zone \"%s\"", pnstrdup(name, pg_mbcliplen(name, strlen(name), 100))),
				 errhint("Give a name of pg_timezone_names, such as UTC or Europe/Paris.")));
	PG_RETURN_VOID();
}

/* --- parsing ------------------------------------------------------------ */

static const char *
skip_space(const char *p)
{
	while (*p && isspace((unsigned char) *p))
		p++;
	return p;
}

/* The placeholder's name, cut for an error message. */
static const char *
shown_name(const HeraldPlaceholder *ph)
{
	return ph->name ? ph->name : "";
}

/*
 * Parse the inside of a placeholder (between "{{" and "}}", trimmed) into
 * ph.  With strict, a syntax error, an unknown filter or a bad argument is
 * an error; otherwise the result is false.
 */
bool
herald_parse_placeholder(const char *inner, HeraldPlaceholder *ph, bool strict)
{
	const char *bar = strchr(inner, '|');
	const char *end;
	const char *p;

	memset(ph, 0, sizeof(*ph));
	if (bar == NULL)
	{
		ph->name = pstrdup(inner);
		return true;
	}
	end = bar;
	while (end > inner && isspace((unsigned char) end[-1]))
		end--;
	ph->name = pnstrdup(inner, pg_mbcliplen(inner, end - inner, Min(end - inner, 200)));
	if (end == inner)
	{
		if (strict)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("placeholder has filters but no field"),
					 errdetail("A placeholder is written {{field | filter | filter(argument)}}."),
					 errhint("Filters: %s.", FILTER_LIST)));
		return false;
	}

	p = bar;
	while (*p == '|')
	{
		const char *start;
		const FilterDef *def;
		HeraldFilter *f;
		char	   *fname;
		bool		has_arg = false;
		bool		is_string = false;
		bool		bad_arg = false;
		StringInfoData text;
		long		number = 0;

		p = skip_space(p + 1);
		start = p;
		while (*p == '_' || (*p >= 'a' && *p <= 'z'))
			p++;
		fname = pnstrdup(start, p - start);
		if (p == start)
		{
			if (strict)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("a filter name is missing after \"|\" in placeholder \"{{%s}}\"",
								shown_name(ph)),
						 errhint("Filters: %s.", FILTER_LIST)));
			return false;
		}
		for (def = filter_defs; def->name; def++)
			if (strcmp(def->name, fname) == 0)
				break;
		if (def->name == NULL)
		{
			if (strict)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown filter \"%s\" in placeholder \"{{%s}}\"", fname, shown_name(ph)),
						 errhint("Filters: %s.", FILTER_LIST)));
			return false;
		}
		if (ph->nfilters >= HERALD_MAX_FILTERS)
		{
			if (strict)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("placeholder \"{{%s}}\" has more than %d filters",
								shown_name(ph), HERALD_MAX_FILTERS)));
			return false;
		}

		p = skip_space(p);
		initStringInfo(&text);
		if (*p == '(')
		{
			has_arg = true;
			p = skip_space(p + 1);
			if (*p == '\'')
			{
				is_string = true;
				p++;
				for (;;)
				{
					if (*p == '\0')
						break;
					if (*p == '\'' && p[1] == '\'')
					{
						appendStringInfoChar(&text, '\'');
						p += 2;
					}
					else if (*p == '\'')
						break;
					else if (text.len > MAX_DEFAULT_BYTES + MAX_FORMAT_BYTES)
						p++;	/* too long already: refused below */
					else
						appendStringInfoChar(&text, *p++);
				}
				if (*p == '\'')
					p++;
				else
					p = "";		/* unterminated: a syntax error below */
			}
			else
			{
				const char *digits = p;

				if (*p == '-' || *p == '+')
					p++;
				while (isdigit((unsigned char) *p) && p - digits < 8)
					number = number * 10 + (*p++ - '0');
				if (p == digits || !isdigit((unsigned char) p[-1]) || isdigit((unsigned char) *p))
					p = "";		/* not a short whole number: refused below */
				else if (*digits == '-')
					number = -number;
			}
			p = skip_space(p);
			if (*p == ')')
				p = skip_space(p + 1);
			else
				bad_arg = true;
		}
		if (!bad_arg && *p != '\0' && *p != '|')
		{
			if (strict)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid filter syntax in placeholder \"{{%s}}\"", shown_name(ph)),
						 errdetail("Filters are separated by \"|\"; an argument is a whole number or a text in single quotes, in parentheses after the filter's name.")));
			return false;
		}

		/* the argument, for this filter */
		if (bad_arg || (has_arg && def->arg == ARG_NONE) ||
			(!has_arg && (def->arg == ARG_INT_REQUIRED || def->arg == ARG_STRING_REQUIRED)) ||
			(has_arg && is_string != (def->arg == ARG_STRING || def->arg == ARG_STRING_REQUIRED)) ||
			(has_arg && !is_string && (number < def->min || number > def->max)) ||
			(has_arg && is_string && (text.len < def->min || text.len > def->max)))
		{
			if (strict)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid argument of filter \"%s\" in placeholder \"{{%s}}\"",
								def->name, shown_name(ph)),
						 def->arg == ARG_NONE ?
						 errdetail("Filter \"%s\" takes no argument.", def->name) :
						 errdetail("Filter \"%s\" takes %s, in parentheses.", def->name, def->range)));
			return false;
		}
		f = &ph->filters[ph->nfilters++];
		f->op = def->op;
		f->name = def->name;
		f->number = has_arg ? (int) number : 0;
		f->text = is_string ? text.data : NULL;
	}
	return true;
}

/* --- checking ----------------------------------------------------------- */

static const char *const kind_words[] = {"text", "a number", "a time"};

/*
 * Refuse a filter that cannot take what the placeholder gives at its
 * place in the chain: number filters take numbers, time filters times;
 * after either, or after truncate, upper or lower, the value is text.
 */
void
herald_check_filters(const HeraldPlaceholder *ph, HeraldValueKind kind)
{
	HeraldValueKind current = kind;
	const char *after = NULL;

	for (int i = 0; i < ph->nfilters; i++)
	{
		const HeraldFilter *f = &ph->filters[i];
		HeraldValueKind wants = HERALD_VALUE_TEXT;

		if (f->op == HERALD_FILTER_NUMBER || f->op == HERALD_FILTER_PERCENT)
			wants = HERALD_VALUE_NUMBER;
		else if (f->op == HERALD_FILTER_TIME)
			wants = HERALD_VALUE_TIME;
		if (wants != HERALD_VALUE_TEXT && current != wants)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("filter \"%s\" cannot apply to placeholder \"{{%s}}\"",
							f->name, shown_name(ph)),
					 after ? errdetail("After filter \"%s\" the value is text.", after)
					 : errdetail("{{%s}} is %s, not %s.", shown_name(ph), kind_words[current],
								 kind_words[wants]),
					 errhint("Number filters apply to {{value}}, {{threshold}}, {{warning_threshold}}, "
							 "{{recover_threshold}}, {{crossed}}, {{event_id}}, {{about_event_id}} "
							 "and numeric columns; time filters to {{since}}, {{decided_at}}, "
							 "{{action_due}} and date and time columns.")));
		if (f->op == HERALD_FILTER_TIME && f->text)
		{
			/* to_char() itself refuses nothing a format holds; try it once */
			text	   *fmt = cstring_to_text(f->text);

			(void) DirectFunctionCall2Coll(timestamptz_to_char, DEFAULT_COLLATION_OID,
										   TimestampTzGetDatum(GetCurrentTimestamp()),
										   PointerGetDatum(fmt));
		}
		if (f->op != HERALD_FILTER_DEFAULT)
		{
			current = HERALD_VALUE_TEXT;
			after = f->name;
		}
	}
}

/* --- rendering ---------------------------------------------------------- */

/*
 * The most bytes of a field the filters need, given room bytes left in
 * the message: all of them, or, when a truncate comes first, the
 * characters it keeps and one more (at least enough to tell whether a
 * number or time filter before it can read the value).
 */
int
herald_filter_input_limit(const HeraldPlaceholder *ph, int room)
{
	for (int i = 0; i < ph->nfilters; i++)
		if (ph->filters[i].op == HERALD_FILTER_TRUNCATE)
			return Min(room, Max(herald_chars_bytes(ph->filters[i].number + 1),
								 NUMBER_MAX_CHARS + 1));
	return room;
}

/*
 * Is s a decimal number numeric_in() reads without an error: digits with
 * an optional sign, point and exponent, at most NUMBER_MAX_CHARS
 * characters and an exponent of at most NUMBER_MAX_EXPONENT?  (NaN and
 * Infinity are not: they render unchanged.)
 */
static bool
readable_number(const char *s, int len)
{
	const char *p = s;
	const char *end = s + len;
	int			digits = 0;

	if (len > NUMBER_MAX_CHARS)
		return false;
	while (p < end && isspace((unsigned char) *p))
		p++;
	if (p < end && (*p == '-' || *p == '+'))
		p++;
	while (p < end && isdigit((unsigned char) *p))
		p++, digits++;
	if (p < end && *p == '.')
	{
		p++;
		while (p < end && isdigit((unsigned char) *p))
			p++, digits++;
	}
	if (digits == 0)
		return false;
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		int			exponent = 0;
		int			edigits = 0;

		p++;
		if (p < end && (*p == '-' || *p == '+'))
			p++;
		while (p < end && isdigit((unsigned char) *p))
		{
			exponent = exponent * 10 + (*p++ - '0');
			if (++edigits > 4)
				return false;
		}
		if (edigits == 0 || exponent > NUMBER_MAX_EXPONENT)
			return false;
	}
	while (p < end && isspace((unsigned char) *p))
		p++;
	return p == end;
}

/* number(d) and percent(d): rounded, with a thousands separator */
static bool
format_number(StringInfo value, const HeraldFilter *f)
{
	Numeric		num;
	char	   *digits;
	const char *t;
	int			intlen;
	StringInfoData out;

	if (!readable_number(value->data, value->len))
		return false;
	num = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(value->data),
											  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	if (f->op == HERALD_FILTER_PERCENT)
		num = DatumGetNumeric(DirectFunctionCall2(numeric_mul, NumericGetDatum(num),
												  NumericGetDatum(int64_to_numeric(100))));
	num = DatumGetNumeric(DirectFunctionCall2(numeric_round, NumericGetDatum(num),
											  Int32GetDatum(f->number)));
	digits = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(num)));

	initStringInfo(&out);
	t = digits;
	if (*t == '-')
		appendStringInfoChar(&out, *t++);
	intlen = strcspn(t, ".");
	for (int i = 0; i < intlen; i++)
	{
		if (i > 0 && (intlen - i) % 3 == 0)
			appendStringInfoChar(&out, ',');
		appendStringInfoChar(&out, t[i]);
	}
	appendStringInfoString(&out, t + intlen);
	if (f->op == HERALD_FILTER_PERCENT)
		appendStringInfoString(&out, " %");
	resetStringInfo(value);
	appendBinaryStringInfo(value, out.data, out.len);
	pfree(out.data);
	pfree(digits);
	return true;
}

/* n decimal digits at *p, moved past them */
static bool
read_digits(const char **p, int n, int *result)
{
	*result = 0;
	for (int i = 0; i < n; i++)
	{
		if (!isdigit((unsigned char) (*p)[i]))
			return false;
		*result = *result * 10 + ((*p)[i] - '0');
	}
	*p += n;
	return true;
}

/*
 * An ISO 8601 time as PostgreSQL's JSON writes them: YYYY-MM-DD, then
 * optionally T (or a space) HH:MM[:SS[.fraction]], then optionally Z or an
 * offset +HH[:MM[:SS]].  *has_zone says whether it had an offset; without
 * one, *ts holds the fields as they are.
 */
static bool
parse_time(const char *s, Timestamp *ts, bool *has_zone)
{
	const char *p = skip_space(s);
	struct pg_tm tm;
	fsec_t		fsec = 0;
	int			tz = 0;

	memset(&tm, 0, sizeof(tm));
	*has_zone = false;
	if (!read_digits(&p, 4, &tm.tm_year) || *p++ != '-' ||
		!read_digits(&p, 2, &tm.tm_mon) || *p++ != '-' ||
		!read_digits(&p, 2, &tm.tm_mday))
		return false;
	if ((*p == 'T' || *p == ' ') && isdigit((unsigned char) p[1]))
	{
		p++;
		if (!read_digits(&p, 2, &tm.tm_hour) || *p++ != ':' ||
			!read_digits(&p, 2, &tm.tm_min))
			return false;
		if (*p == ':')
		{
			p++;
			if (!read_digits(&p, 2, &tm.tm_sec))
				return false;
			if (*p == '.')
			{
				int			scale = 100000;

				p++;
				if (!isdigit((unsigned char) *p))
					return false;
				for (; isdigit((unsigned char) *p); p++)
				{
					fsec += (*p - '0') * scale;
					scale /= 10;
				}
			}
		}
	}
	if (*p == 'Z')
	{
		*has_zone = true;
		p++;
	}
	else if (*p == '+' || *p == '-')
	{
		int			sign = (*p++ == '+') ? 1 : -1;
		int			h;
		int			m = 0;
		int			sec = 0;

		if (!read_digits(&p, 2, &h))
			return false;
		if (*p == ':')
		{
			p++;
			if (!read_digits(&p, 2, &m))
				return false;
			if (*p == ':')
			{
				p++;
				if (!read_digits(&p, 2, &sec))
					return false;
			}
		}
		if (h > 15 || m > 59 || sec > 59)
			return false;
		/* PostgreSQL counts offsets west of Greenwich as positive */
		tz = -sign * (h * SECS_PER_HOUR + m * SECS_PER_MINUTE + sec);
		*has_zone = true;
	}
	p = skip_space(p);
	if (*p != '\0' || tm.tm_year < 1 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
		tm.tm_mday > day_tab[isleap(tm.tm_year)][tm.tm_mon - 1] ||
		tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59)
		return false;
	if (tm2timestamp(&tm, fsec, *has_zone ? &tz : NULL, ts) != 0 || !IS_VALID_TIMESTAMP(*ts))
		return false;
	return true;
}

/* time and time('format'): in the zone, with to_char()'s patterns */
static bool
format_time(StringInfo value, const HeraldFilter *f, const char *zone)
{
	Timestamp	ts;
	bool		has_zone;
	text	   *fmt = cstring_to_text(f->text ? f->text : DEFAULT_TIME_FORMAT);
	char	   *result;
	int			len;

	if (value->len > 64 || !parse_time(value->data, &ts, &has_zone))
		return false;
	if (has_zone)
	{
		pg_tz	   *tz = lookup_zone(zone);
		pg_tz	   *saved = session_timezone;

		/* a zone that is gone since it was checked: UTC */
		if (tz == NULL)
			tz = lookup_zone("UTC");
		if (tz == NULL)
			return false;
		/* to_char() shows a timestamptz in session_timezone */
		session_timezone = tz;
		PG_TRY();
		{
			result = TextDatumGetCString(DirectFunctionCall2Coll(timestamptz_to_char,
																 DEFAULT_COLLATION_OID,
																 TimestampTzGetDatum(ts),
																 PointerGetDatum(fmt)));
		}
		PG_FINALLY();
		{
			session_timezone = saved;
		}
		PG_END_TRY();
	}
	else
		result = TextDatumGetCString(DirectFunctionCall2Coll(timestamp_to_char,
															 DEFAULT_COLLATION_OID,
															 TimestampGetDatum(ts),
															 PointerGetDatum(fmt)));
	/* a time without offset has no zone to show: no trailing space for it */
	len = strlen(result);
	while (len > 0 && result[len - 1] == ' ')
		len--;
	resetStringInfo(value);
	appendBinaryStringInfo(value, result, len);
	pfree(result);
	return true;
}

static void
replace_value(StringInfo value, char *s)
{
	resetStringInfo(value);
	appendStringInfoString(value, s);
	pfree(s);
}

/*
 * Apply the filters of ph to value, in place.  cut: value holds only the
 * beginning of the field (see herald_filter_input_limit), which number and
 * time filters then leave as it is.  zone: the time zone of times.
 * Returns whether the result still lacks its end (no truncate took it).
 */
bool
herald_apply_filters(const HeraldPlaceholder *ph, StringInfo value, bool cut, const char *zone)
{
	for (int i = 0; i < ph->nfilters; i++)
	{
		const HeraldFilter *f = &ph->filters[i];
		int			chars;

		switch (f->op)
		{
			case HERALD_FILTER_NUMBER:
			case HERALD_FILTER_PERCENT:
				if (!cut)
					(void) format_number(value, f);
				break;
			case HERALD_FILTER_TIME:
				if (!cut)
					(void) format_time(value, f, zone);
				break;
			case HERALD_FILTER_TRUNCATE:
				chars = pg_mbstrlen_with_len(value->data, value->len);
				if (chars > f->number || cut)
				{
					value->len = pg_mbcharcliplen(value->data, value->len, f->number);
					value->data[value->len] = '\0';
					appendStringInfoString(value, ELLIPSIS);
				}
				cut = false;
				break;
			case HERALD_FILTER_UPPER:
				if (value->len > 0)
					replace_value(value, str_toupper(value->data, value->len,
													 DEFAULT_COLLATION_OID));
				break;
			case HERALD_FILTER_LOWER:
				if (value->len > 0)
					replace_value(value, str_tolower(value->data, value->len,
													 DEFAULT_COLLATION_OID));
				break;
			case HERALD_FILTER_DEFAULT:
				if (value->len == 0 && !cut)
					appendStringInfoString(value, f->text);
				break;
		}
	}
	return cut;
}
