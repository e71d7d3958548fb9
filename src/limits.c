/*-------------------------------------------------------------------------
 *
 * limits.c
 *		The ranges of declared parameter values.
 *
 * Every interval and number the SQL API takes (a channel's timeout and
 * retry_delay, a rule's every and pending_for, a silence's length,
 * herald.flush()'s timeout, ...) has a documented range (README.md,
 * "Parameter ranges"), checked when it is given: what is stored then keeps
 * every timestamp the workers compute from it in range, and no timer
 * rounds to nothing.  herald_check_range() is that one check; the SQL
 * declarations call it as herald._check_range(), C callers directly.
 *
 * The bounds are given as text, in the form the error message shows them
 * ("100 milliseconds"), and read as values of the checked type.  The
 * comparison is the type's default ordering, in which NaN sorts above
 * every number and the infinities beyond every finite one: both fall
 * outside any finite range.  An interval whose parts have opposite signs
 * ('1 month -30 days 5 minutes') is refused whatever its place in that
 * ordering: it lasts from less than nothing to two days depending on the
 * date it is added to, and the workers both add intervals to dates and
 * convert them to milliseconds.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "datatype/timestamp.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "pg_herald.h"

PG_FUNCTION_INFO_V1(herald_check_range_sql);

/* A bound written as text, as a value of the checked type. */
static Datum
range_bound(const char *text, Oid type)
{
	Oid			input;
	Oid			ioparam;

	getTypeInputInfo(type, &input, &ioparam);
	return OidInputFunctionCall(input, unconstify(char *, text), ioparam, -1);
}

/*
 * Refuse a value of parameter outside [low, high].  A NULL value passes
 * unless required.  hint, when given, goes with either error.
 */
void
herald_check_range(const char *parameter, Datum value, bool isnull, Oid type,
				   const char *low, const char *high, bool required,
				   const char *hint)
{
	TypeCacheEntry *tc;

	if (isnull)
	{
		if (required)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", parameter),
					 errdetail("It must be between %s and %s.", low, high),
					 hint ? errhint("%s", hint) : 0));
		return;
	}

	if (type == INTERVALOID)
	{
		Interval   *iv = DatumGetIntervalP(value);

		if ((iv->month > 0 || iv->day > 0 || iv->time > 0) &&
			(iv->month < 0 || iv->day < 0 || iv->time < 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must be between %s and %s", parameter, low, high),
					 errdetail("Its months, days and time must not have opposite signs."),
					 hint ? errhint("%s", hint) : 0));
	}

	tc = lookup_type_cache(type, TYPECACHE_CMP_PROC_FINFO);
	if (!OidIsValid(tc->cmp_proc_finfo.fn_oid))
		elog(ERROR, "type %s has no default ordering", format_type_be(type));

	if (DatumGetInt32(FunctionCall2Coll(&tc->cmp_proc_finfo, DEFAULT_COLLATION_OID,
										value, range_bound(low, type))) < 0 ||
		DatumGetInt32(FunctionCall2Coll(&tc->cmp_proc_finfo, DEFAULT_COLLATION_OID,
										value, range_bound(high, type))) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between %s and %s", parameter, low, high),
				 hint ? errhint("%s", hint) : 0));
}

/*
 * herald._check_range(parameter text, value anyelement, low text, high text,
 * required boolean, hint text)
 */
Datum
herald_check_range_sql(PG_FUNCTION_ARGS)
{
	Oid			type = get_fn_expr_argtype(fcinfo->flinfo, 1);

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(4))
		elog(ERROR, "herald._check_range() needs a parameter name, bounds and required");
	if (!OidIsValid(type))
		elog(ERROR, "could not determine the type of the checked value");

	herald_check_range(text_to_cstring(PG_GETARG_TEXT_PP(0)),
					   PG_GETARG_DATUM(1), PG_ARGISNULL(1), type,
					   text_to_cstring(PG_GETARG_TEXT_PP(2)),
					   text_to_cstring(PG_GETARG_TEXT_PP(3)),
					   PG_GETARG_BOOL(4),
					   PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5)));
	PG_RETURN_VOID();
}
