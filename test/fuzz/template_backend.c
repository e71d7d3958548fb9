/*
 * What the template and filter code (src/template.c, src/filters.c) calls
 * in the backend beyond test/fuzz/runtime.c, for test/fuzz/template.c:
 *
 * - the catalog, for {{new.COLUMN}} checks: a table (oid 16384) with
 *   columns "amount" (numeric), "created" (timestamptz) and "note"
 *   (text), nothing else;
 * - upper and lower: ASCII case mapping, and the dotless i (2 bytes) to
 *   "I" (1 byte) as the backend's may, so that a result shorter than its
 *   input is exercised;
 * - numbers, times and time zones (numeric_in, to_char, pg_tzset) are not
 *   here: they raise an ERROR (feature not supported), so the filters are
 *   fuzzed up to where they hand a value to them;
 * - jsonb: the harness renders without a payload (its hostile row is
 *   given as the rule's name): reaching jsonb is a harness bug, abort().
 */
#include "catalog/pg_type.h"
#include "pgtime.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#define FUZZ_TABLE 16384

pg_tz	   *session_timezone = NULL;
const int	day_tab[2][13] = {
	{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0},
	{31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0}
};

static void
not_here(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s is not in the fuzzing runtime", what)));
}

static void pg_attribute_noreturn()
no_jsonb(const char *what)
{
	fprintf(stderr, "template harness: %s reached without a payload\n", what);
	abort();
}

AttrNumber
get_attnum(Oid relid, const char *attname)
{
	if (relid != FUZZ_TABLE)
		return InvalidAttrNumber;
	return strcmp(attname, "amount") == 0 ? 1 : strcmp(attname, "created") == 0 ? 2 :
		strcmp(attname, "note") == 0 ? 3 : InvalidAttrNumber;
}

Oid
get_atttype(Oid relid, AttrNumber attnum)
{
	Assert(relid == FUZZ_TABLE);
	return attnum == 1 ? NUMERICOID : attnum == 2 ? TIMESTAMPTZOID : TEXTOID;
}

char *
get_rel_name(Oid relid)
{
	return pstrdup("fuzz_table");
}

Oid
getBaseType(Oid typid)
{
	return typid;
}

void
get_type_category_preferred(Oid typid, char *typcategory, bool *typispreferred)
{
	*typcategory = typid == NUMERICOID ? TYPCATEGORY_NUMERIC :
		typid == TIMESTAMPTZOID ? TYPCATEGORY_DATETIME : TYPCATEGORY_STRING;
	*typispreferred = false;
}

static char *
map_case(const char *buff, size_t nbytes, bool upper)
{
	StringInfoData out;

	initStringInfo(&out);
	for (size_t i = 0; i < nbytes && buff[i]; i++)
	{
		unsigned char c = buff[i];

		if (upper && c == 0xC4 && i + 1 < nbytes && (unsigned char) buff[i + 1] == 0xB1)
		{
			appendStringInfoChar(&out, 'I');
			i++;
		}
		else
			appendStringInfoChar(&out, upper ? pg_ascii_toupper(c) : pg_ascii_tolower(c));
	}
	return out.data;
}

char *
str_toupper(const char *buff, size_t nbytes, Oid collid)
{
	return map_case(buff, nbytes, true);
}

char *
str_tolower(const char *buff, size_t nbytes, Oid collid)
{
	return map_case(buff, nbytes, false);
}

/* fmgr's direct calls, for the backend functions below */
Datum
DirectFunctionCall1Coll(PGFunction func, Oid collation, Datum arg1)
{
	LOCAL_FCINFO(fcinfo, 1);

	InitFunctionCallInfoData(*fcinfo, NULL, 1, collation, NULL, NULL);
	fcinfo->args[0].value = arg1;
	fcinfo->args[0].isnull = false;
	return func(fcinfo);
}

Datum
DirectFunctionCall2Coll(PGFunction func, Oid collation, Datum arg1, Datum arg2)
{
	LOCAL_FCINFO(fcinfo, 2);

	InitFunctionCallInfoData(*fcinfo, NULL, 2, collation, NULL, NULL);
	fcinfo->args[0].value = arg1;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = arg2;
	fcinfo->args[1].isnull = false;
	return func(fcinfo);
}

Datum
DirectFunctionCall3Coll(PGFunction func, Oid collation, Datum arg1, Datum arg2, Datum arg3)
{
	LOCAL_FCINFO(fcinfo, 3);

	InitFunctionCallInfoData(*fcinfo, NULL, 3, collation, NULL, NULL);
	fcinfo->args[0].value = arg1;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = arg2;
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = arg3;
	fcinfo->args[2].isnull = false;
	return func(fcinfo);
}

#define NOT_HERE_FN(name) \
	Datum name(PG_FUNCTION_ARGS) { not_here(#name); PG_RETURN_NULL(); }
NOT_HERE_FN(numeric_in)
NOT_HERE_FN(numeric_out)
NOT_HERE_FN(numeric_mul)
NOT_HERE_FN(numeric_round)
NOT_HERE_FN(numeric_float8_no_overflow)
NOT_HERE_FN(timestamp_to_char)
NOT_HERE_FN(timestamptz_to_char)

Numeric
int64_to_numeric(int64 val)
{
	not_here("int64_to_numeric");
	return NULL;
}

int
tm2timestamp(struct pg_tm *tm, fsec_t fsec, int *tzp, Timestamp *result)
{
	not_here("tm2timestamp");
	return -1;
}

pg_tz *
pg_tzset(const char *tzname)
{
	return NULL;				/* no zone is known */
}

bool
pg_tz_acceptable(pg_tz *tz)
{
	return false;
}

JsonbValue *
getKeyJsonValueFromContainer(JsonbContainer *container, const char *keyVal, int keyLen,
							 JsonbValue *res)
{
	no_jsonb("getKeyJsonValueFromContainer");
}

JsonbIterator *
JsonbIteratorInit(JsonbContainer *container)
{
	no_jsonb("JsonbIteratorInit");
}

JsonbIteratorToken
JsonbIteratorNext(JsonbIterator **it, JsonbValue *val, bool skipNested)
{
	no_jsonb("JsonbIteratorNext");
}

char *
JsonbToCString(StringInfo out, JsonbContainer *in, int estimated_len)
{
	no_jsonb("JsonbToCString");
}
