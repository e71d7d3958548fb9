/*-------------------------------------------------------------------------
 *
 * payload.c
 *		The payloads of row events, built without running anyone's code.
 *
 * A row event carries the captured row as JSON.  to_jsonb() renders a value
 * of a type created after initdb through the type's cast to json, when there
 * is one: a function its owner wrote, which would run as whoever captures
 * the row (the writer, or a rule's owner, or the extension's owner),
 * not as the one who wrote it.  The owner of a table a rule watches could
 * thus make a rule's owner, or a superuser, run its code just by changing a
 * column's type.
 *
 * Built-in types have no such cast (to_jsonb() does not look for one), so a
 * row whose columns are all of built-in types (domains over them included)
 * is rendered by jsonb_build_object() itself, payload and row in one go:
 * row_type_is_builtin() says so.  The rows of any other table are
 * rendered column by column, as to_jsonb() would, except that a cast to
 * json is used only when a superuser owns its function; otherwise the
 * value is rendered as its type's text output, which is built-in code for
 * every type a role that is not superuser can create (enums, composites,
 * ranges, domains, arrays).
 *
 * The rows of the common tables, whose columns are all of a few built-in
 * scalar types (booleans, numbers, text, dates and times), are rendered
 * here directly (integers and numerics without the trip through their
 * text output), with what jsonb_build_object() would look up for each
 * column of each row (its category, its output function) cached per row
 * type and checked against the type cache's identifier of the row's
 * descriptor: the document is the same, jsonb being canonical.  The
 * document is written in jsonb's binary form at once (simple_jsonb()), and
 * a date or time column's text is kept for the next row, which often has
 * the same value.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "pg_herald.h"

static void push_value(JsonbParseState **state, JsonbIteratorToken token,
					   Datum value, bool isnull, Oid type);

/* A type to_jsonb() renders without looking for a cast: a built-in one. */
static bool
type_is_builtin(Oid type)
{
	return type < FirstNormalObjectId || getBaseType(type) < FirstNormalObjectId;
}

/* Are the columns of this row type all of built-in types? */
static bool
row_type_is_builtin(TupleDesc desc)
{
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && !type_is_builtin(att->atttypid))
			return false;
	}
	return true;
}

/* to_jsonb(value), for a value whose rendering runs no cast (see above) */
static Jsonb *
call_to_jsonb(Datum value, Oid type)
{
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	/* to_jsonb() takes the type of its argument from the call expression */
	fmgr_info(F_TO_JSONB, &flinfo);
	fmgr_info_set_expr((Node *) makeFuncExpr(F_TO_JSONB, JSONBOID,
											 list_make1(makeNullConst(type, -1, InvalidOid)),
											 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL),
					   &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = value;
	fcinfo->args[0].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "to_jsonb returned null");
	return DatumGetJsonbP(result);
}

/* Push a jsonb document as a value (token WJB_VALUE) or element (WJB_ELEM). */
static void
push_jsonb(JsonbParseState **state, JsonbIteratorToken token, Jsonb *jb)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(jb))
	{
		if (!JsonbExtractScalar(&jb->root, &v))
			elog(ERROR, "could not extract a jsonb scalar");
	}
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &jb->root;
		v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	(void) pushJsonbValue(state, token, &v);
}

static void
push_string(JsonbParseState **state, JsonbIteratorToken token, const char *s)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = pstrdup(s);
	v.val.string.len = strlen(s);
	(void) pushJsonbValue(state, token, &v);
}

/*
 * May the cast function fn render a value of type as json?  Only a
 * superuser's function taking exactly that type (not a polymorphic one,
 * which would need a call expression) and returning json.
 */
static bool
trusted_cast(Oid fn, Oid type)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;
	bool		trusted;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fn);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	trusted = proc->pronargs == 1 && proc->proargtypes.values[0] == type &&
		proc->prorettype == JSONOID && !proc->proretset &&
		superuser_arg(proc->proowner);
	ReleaseSysCache(tup);
	return trusted;
}

/*
 * A value of a scalar type created after initdb: through its cast to json if
 * that cast is a superuser's function of the type (trusted_cast), otherwise
 * as its text output.
 */
static void
push_other(JsonbParseState **state, JsonbIteratorToken token, Datum value, Oid type)
{
	Oid			cast;
	Oid			output;
	bool		varlena;

	if (find_coercion_pathway(JSONOID, type, COERCION_EXPLICIT, &cast) == COERCION_PATH_FUNC &&
		OidIsValid(cast) && trusted_cast(cast, type))
	{
		char	   *json = TextDatumGetCString(OidFunctionCall1(cast, value));

		push_jsonb(state, token,
				   DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json))));
		return;
	}
	getTypeOutputInfo(type, &output, &varlena);
	push_string(state, token, OidOutputFunctionCall(output, value));
}

/* One dimension of an array, as to_jsonb() nests them. */
static void
push_array_dim(JsonbParseState **state, int dim, int ndims, int *dims,
			   Datum *elems, bool *nulls, int *next, Oid element)
{
	(void) pushJsonbValue(state, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < dims[dim]; i++)
	{
		if (dim + 1 == ndims)
		{
			push_value(state, WJB_ELEM, elems[*next], nulls[*next], element);
			(*next)++;
		}
		else
			push_array_dim(state, dim + 1, ndims, dims, elems, nulls, next, element);
	}
	(void) pushJsonbValue(state, WJB_END_ARRAY, NULL);
}

static void
push_array(JsonbParseState **state, Datum value, Oid element)
{
	ArrayType  *array = DatumGetArrayTypeP(value);
	int			ndims = ARR_NDIM(array);
	int		   *dims = ARR_DIMS(array);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			next = 0;

	if (ArrayGetNItems(ndims, dims) <= 0)
	{
		(void) pushJsonbValue(state, WJB_BEGIN_ARRAY, NULL);
		(void) pushJsonbValue(state, WJB_END_ARRAY, NULL);
		return;
	}
	get_typlenbyvalalign(element, &typlen, &typbyval, &typalign);
	deconstruct_array(array, element, typlen, typbyval, typalign, &elems, &nulls, &n);
	push_array_dim(state, 0, ndims, dims, elems, nulls, &next, element);
}

/* A row: an object of its columns, by name. */
static void
push_row(JsonbParseState **state, JsonbIteratorToken token, Datum value)
{
	HeapTupleHeader td = DatumGetHeapTupleHeader(value);
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(td),
											  HeapTupleHeaderGetTypMod(td));
	HeapTupleData tuple;

	if (row_type_is_builtin(desc))
	{
		push_jsonb(state, token, call_to_jsonb(value, HeapTupleHeaderGetTypeId(td)));
		ReleaseTupleDesc(desc);
		return;
	}

	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = td;

	(void) pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Datum		v;
		bool		isnull;

		if (att->attisdropped)
			continue;
		push_string(state, WJB_KEY, NameStr(att->attname));
		v = heap_getattr(&tuple, i + 1, desc, &isnull);
		push_value(state, WJB_VALUE, v, isnull, att->atttypid);
	}
	(void) pushJsonbValue(state, WJB_END_OBJECT, NULL);
	ReleaseTupleDesc(desc);
}

static void
push_value(JsonbParseState **state, JsonbIteratorToken token, Datum value, bool isnull,
		   Oid type)
{
	Oid			base;
	Oid			element;

	check_stack_depth();
	if (isnull)
	{
		JsonbValue	v;

		v.type = jbvNull;
		(void) pushJsonbValue(state, token, &v);
		return;
	}
	if (type_is_builtin(type))
	{
		push_jsonb(state, token, call_to_jsonb(value, type));
		return;
	}
	base = getBaseType(type);
	element = get_element_type(base);
	if (OidIsValid(element))
		push_array(state, value, element);
	else if (type_is_rowtype(base))
		push_row(state, token, value);
	else
		push_other(state, token, value, base);
}

/*
 * jsonb_build_object('table', ..., 'operation', ..., 'new', row[, 'old',
 * row]), as called from SQL: the variadic function takes its arguments'
 * types from the call expression.  The calls are kept per row type and
 * shape (new, old or both), a few at a time, so that rendering a row costs
 * no lookup the function does not make itself.
 */
#define BUILD_CALLS 8

typedef struct BuildCall
{
	Oid			rowtype;		/* InvalidOid: a free entry */
	bool		has_new;
	bool		has_old;
	FmgrInfo	flinfo;
} BuildCall;

static BuildCall build_calls[BUILD_CALLS];
static int	nbuild_calls = 0;
static MemoryContext build_calls_cxt = NULL;

static FmgrInfo *
build_call(Oid rowtype, bool has_new, bool has_old)
{
	BuildCall  *call;
	MemoryContext old;
	List	   *args = NIL;

	for (int i = 0; i < nbuild_calls; i++)
		if (build_calls[i].rowtype == rowtype && build_calls[i].has_new == has_new &&
			build_calls[i].has_old == has_old)
			return &build_calls[i].flinfo;

	if (build_calls_cxt == NULL)
		build_calls_cxt = AllocSetContextCreate(TopMemoryContext, "pg_herald payload calls",
												ALLOCSET_SMALL_SIZES);
	/* all taken: start again */
	if (nbuild_calls == BUILD_CALLS)
	{
		MemoryContextReset(build_calls_cxt);
		nbuild_calls = 0;
	}
	call = &build_calls[nbuild_calls];

	old = MemoryContextSwitchTo(build_calls_cxt);
	for (int i = 0; i < 4; i++)
		args = lappend(args, makeNullConst(TEXTOID, -1, InvalidOid));
	if (has_new)
		args = list_concat(args, list_make2(makeNullConst(TEXTOID, -1, InvalidOid),
											makeNullConst(rowtype, -1, InvalidOid)));
	if (has_old)
		args = list_concat(args, list_make2(makeNullConst(TEXTOID, -1, InvalidOid),
											makeNullConst(rowtype, -1, InvalidOid)));
	fmgr_info_cxt(F_JSONB_BUILD_OBJECT_ANY, &call->flinfo, build_calls_cxt);
	fmgr_info_set_expr((Node *) makeFuncExpr(F_JSONB_BUILD_OBJECT_ANY, JSONBOID, args,
											 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL),
					   &call->flinfo);
	MemoryContextSwitchTo(old);
	call->rowtype = rowtype;
	call->has_new = has_new;
	call->has_old = has_old;
	nbuild_calls++;
	return &call->flinfo;
}

/* The payload of rows of built-in types, by jsonb_build_object(). */
static Datum
build_builtin_payload(Oid rowtype, const char *table, const char *operation,
					  Datum new_row, Datum old_row)
{
	FmgrInfo   *flinfo = build_call(rowtype, new_row != (Datum) 0, old_row != (Datum) 0);
	LOCAL_FCINFO(fcinfo, 8);
	int			n = 0;
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, flinfo, list_length(((FuncExpr *) flinfo->fn_expr)->args),
							 InvalidOid, NULL, NULL);
	fcinfo->args[n++].value = CStringGetTextDatum("table");
	fcinfo->args[n++].value = CStringGetTextDatum(table);
	fcinfo->args[n++].value = CStringGetTextDatum("operation");
	fcinfo->args[n++].value = CStringGetTextDatum(operation);
	if (new_row != (Datum) 0)
	{
		fcinfo->args[n++].value = CStringGetTextDatum("new");
		fcinfo->args[n++].value = new_row;
	}
	if (old_row != (Datum) 0)
	{
		fcinfo->args[n++].value = CStringGetTextDatum("old");
		fcinfo->args[n++].value = old_row;
	}
	Assert(n == fcinfo->nargs);
	for (int i = 0; i < n; i++)
		fcinfo->args[i].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "jsonb_build_object returned null");
	return result;
}

/*
 * The direct rendering of rows of simple types (see the header): how each
 * column becomes a jsonb value, as datum_to_jsonb() does for its category.
 */
typedef enum SimpleKind
{
	SIMPLE_BOOL,				/* true or false */
	SIMPLE_INTEGER,				/* a number, always */
	SIMPLE_NUMERIC,				/* a number, but NaN and the infinities are strings */
	SIMPLE_NUMBER,				/* a number when its output is one, else a string */
	SIMPLE_TEXT,				/* its output, a string */
	SIMPLE_DATETIME				/* JsonEncodeDateTime(), a string */
} SimpleKind;

typedef struct SimpleColumn
{
	int			attno;			/* 0-based */
	SimpleKind	kind;
	Oid			type;
	char	   *name;
	int			namelen;
	FmgrInfo	output;

	/*
	 * SIMPLE_DATETIME: the value rendered last, under which time zone, and
	 * its text (last_len 0: none yet).  The rows of one statement often
	 * share it (a column defaulting to now()).
	 */
	int64		last;			/* a DateADT or a Timestamp: by value everywhere */
	pg_tz	   *last_tz;
	int			last_len;
	char		last_text[MAXDATELEN + 1];
} SimpleColumn;

typedef struct SimpleRow
{
	Oid			rowtype;		/* InvalidOid: a free entry */
	uint64		identifier;		/* the type cache's tupDesc_identifier */
	TypeCacheEntry *tce;		/* the type's entry (never freed) */
	bool		simple;			/* false: render it the other way */
	int			natts;
	int			ncolumns;
	SimpleColumn *columns;		/* in jsonb's order of keys: see key_order() */
} SimpleRow;

#define SIMPLE_ROWS 16

static SimpleRow simple_rows[SIMPLE_ROWS];
static int	nsimple_rows = 0;
static MemoryContext simple_rows_cxt = NULL;

static bool
simple_kind(Oid type, SimpleKind *kind)
{
	switch (type)
	{
		case BOOLOID:
			*kind = SIMPLE_BOOL;
			return true;
		case INT2OID:
		case INT4OID:
		case INT8OID:
			*kind = SIMPLE_INTEGER;
			return true;
		case NUMERICOID:
			*kind = SIMPLE_NUMERIC;
			return true;
		case FLOAT4OID:
		case FLOAT8OID:
			*kind = SIMPLE_NUMBER;
			return true;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			*kind = SIMPLE_TEXT;
			return true;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			*kind = SIMPLE_DATETIME;
			return true;
		default:
			return false;
	}
}

/*
 * jsonb keeps the keys of an object sorted, shorter keys first, keys of one
 * length in byte order (and unique).  The simple renderer builds its
 * objects with their keys in that order already, so that the document it
 * writes (simple_jsonb()) is the one pushJsonbValue() would have sorted: a
 * row's columns are sorted once, when its type is first seen.
 */
static int
key_order(const char *a, int alen, const char *b, int blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

static int
column_key_order(const void *a, const void *b)
{
	const SimpleColumn *ca = a;
	const SimpleColumn *cb = b;

	return key_order(ca->name, ca->namelen, cb->name, cb->namelen);
}

/* How rows of this type are rendered directly; NULL when they are not. */
static SimpleRow *
simple_row(Oid rowtype)
{
	TypeCacheEntry *tce;
	TupleDesc	desc;
	SimpleRow  *row = NULL;
	MemoryContext old;

	/*
	 * The common case, the type seen before and its descriptor unchanged,
	 * without a lookup: an invalidation of the row type clears the entry's
	 * descriptor, and a new one has a new identifier.
	 */
	for (int i = 0; i < nsimple_rows; i++)
		if (simple_rows[i].rowtype == rowtype && simple_rows[i].tce->tupDesc != NULL &&
			simple_rows[i].tce->tupDesc_identifier == simple_rows[i].identifier)
			return simple_rows[i].simple ? &simple_rows[i] : NULL;

	tce = lookup_type_cache(rowtype, TYPECACHE_TUPDESC);
	desc = tce->tupDesc;
	if (desc == NULL)
		return NULL;
	for (int i = 0; i < nsimple_rows; i++)
		if (simple_rows[i].rowtype == rowtype)
		{
			row = &simple_rows[i];
			if (row->identifier == tce->tupDesc_identifier)
				return row->simple ? row : NULL;
			break;
		}
	if (simple_rows_cxt == NULL)
		simple_rows_cxt = AllocSetContextCreate(TopMemoryContext, "pg_herald payload rows",
												ALLOCSET_SMALL_SIZES);
	if (row == NULL)
	{
		/* all taken: start again */
		if (nsimple_rows == SIMPLE_ROWS)
		{
			MemoryContextReset(simple_rows_cxt);
			nsimple_rows = 0;
		}
		row = &simple_rows[nsimple_rows++];
	}
	else if (row->columns != NULL)
	{
		/* the row type changed: what was cached for it goes */
		for (int i = 0; i < row->ncolumns; i++)
			pfree(row->columns[i].name);
		pfree(row->columns);
		row->columns = NULL;
	}
	row->rowtype = InvalidOid;
	old = MemoryContextSwitchTo(simple_rows_cxt);
	row->columns = palloc(sizeof(SimpleColumn) * Max(desc->natts, 1));
	row->ncolumns = 0;
	row->natts = desc->natts;
	row->simple = true;
	for (int i = 0; i < desc->natts && row->simple; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		SimpleColumn *col = &row->columns[row->ncolumns];
		Oid			outfn;
		bool		varlena;

		if (att->attisdropped)
			continue;
		if (!simple_kind(att->atttypid, &col->kind))
		{
			row->simple = false;
			break;
		}
		col->attno = i;
		col->type = att->atttypid;
		col->last_len = 0;
		col->name = pstrdup(NameStr(att->attname));
		col->namelen = strlen(col->name);
		getTypeOutputInfo(att->atttypid, &outfn, &varlena);
		fmgr_info_cxt(outfn, &col->output, simple_rows_cxt);
		row->ncolumns++;
	}
	if (row->simple)
		qsort(row->columns, row->ncolumns, sizeof(SimpleColumn), column_key_order);
	MemoryContextSwitchTo(old);
	row->identifier = tce->tupDesc_identifier;
	row->tce = tce;
	row->rowtype = rowtype;
	return row->simple ? row : NULL;
}

/* A string as a jsonb value, refused past jsonb's limit as jsonb_in() refuses it */
static void
simple_string(JsonbValue *v, char *s, size_t len)
{
	if (len > JENTRY_OFFLENMASK)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("string too long to represent as jsonb string"),
				 errdetail("Due to an implementation restriction, jsonb strings cannot exceed %d bytes.",
						   JENTRY_OFFLENMASK)));
	v->type = jbvString;
	v->val.string.val = s;
	v->val.string.len = len;
}

/*
 * The type cache's descriptor of a simple row type, as simple_row() found
 * it, not pinned: nothing that renders a row reads the catalogs (the output
 * functions of the simple types are built-in and read none), so no
 * invalidation can replace it meanwhile; and the writer's lock on the table
 * keeps the row type as it is.
 */
static TupleDesc
simple_row_desc(SimpleRow *row, Oid rowtype, int natts)
{
	TupleDesc	desc = row->tce->tupDesc;

	if (desc == NULL || row->tce->tupDesc_identifier != row->identifier ||
		desc->natts != row->natts || natts != row->natts || rowtype != row->rowtype)
		elog(ERROR, "row type %u changed while its row was rendered", row->rowtype);
	return desc;
}

static void simple_values(SimpleRow *row, Datum *values, bool *nulls, JsonbValue *object);

/* A row of a simple row type, a composite datum, as an object. */
static void
simple_row_value(SimpleRow *row, Datum value, JsonbValue *object)
{
	HeapTupleHeader td = DatumGetHeapTupleHeader(value);
	HeapTupleData tuple;
	TupleDesc	desc = simple_row_desc(row, HeapTupleHeaderGetTypeId(td), row->natts);
	Datum	   *values;
	bool	   *nulls;

	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&(tuple.t_self));
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = td;
	heap_deform_tuple(&tuple, desc, values, nulls);
	/* a row stored before a column was added: that column's default */
	for (int i = HeapTupleHeaderGetNatts(td); i < row->natts; i++)
		values[i] = heap_getattr(&tuple, i + 1, desc, &nulls[i]);
	simple_values(row, values, nulls, object);
	pfree(values);
	pfree(nulls);
}

/*
 * The values of a row of a simple row type (one per attribute, in the
 * type's order), as an object: its pairs already in key order.  The object
 * points into the values (text columns).
 */
static void
simple_values(SimpleRow *row, Datum *values, bool *nulls, JsonbValue *object)
{
	JsonbPair  *pairs;

	pairs = palloc(sizeof(JsonbPair) * Max(row->ncolumns, 1));
	for (int i = 0; i < row->ncolumns; i++)
	{
		SimpleColumn *col = &row->columns[i];
		Datum		d = values[col->attno];
		JsonbValue *v = &pairs[i].value;
		char	   *out;

		pairs[i].key.type = jbvString;
		pairs[i].key.val.string.val = col->name;
		pairs[i].key.val.string.len = col->namelen;
		pairs[i].order = i;
		if (nulls[col->attno])
		{
			v->type = jbvNull;
			continue;
		}
		switch (col->kind)
		{
			case SIMPLE_BOOL:
				v->type = jbvBool;
				v->val.boolean = DatumGetBool(d);
				break;
			case SIMPLE_INTEGER:
				/* the value numeric_in() makes of the integer's output */
				v->type = jbvNumeric;
				v->val.numeric = int64_to_numeric(col->type == INT2OID ? DatumGetInt16(d) :
												  col->type == INT4OID ? DatumGetInt32(d) :
												  DatumGetInt64(d));
				break;
			case SIMPLE_NUMERIC:
				/* the number itself: its output read back is the same number */
				v->val.numeric = DatumGetNumeric(d);
				if (!numeric_is_nan(v->val.numeric) && !numeric_is_inf(v->val.numeric))
				{
					v->type = jbvNumeric;
					break;
				}
				out = OutputFunctionCall(&col->output, d);
				simple_string(v, out, strlen(out));
				break;
			case SIMPLE_NUMBER:
				out = OutputFunctionCall(&col->output, d);
				/* NaN and the infinities are strings, as to_jsonb() makes them */
				if (strchr(out, 'N') == NULL && strchr(out, 'n') == NULL)
				{
					v->type = jbvNumeric;
					v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																		 CStringGetDatum(out),
																		 ObjectIdGetDatum(InvalidOid),
																		 Int32GetDatum(-1)));
				}
				else
					simple_string(v, out, strlen(out));
				break;
			case SIMPLE_TEXT:
				{
					/* the output of text, varchar and bpchar: the bytes themselves */
					text	   *t = DatumGetTextPP(d);

					simple_string(v, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				}
				break;
			case SIMPLE_DATETIME:
				{
					int64		value = col->type == DATEOID ? (int64) DatumGetDateADT(d) :
						(int64) DatumGetTimestamp(d);

					if (col->last_len == 0 || col->last != value || col->last_tz != session_timezone)
					{
						/* nothing cached while the text is being written */
						col->last_len = 0;
						JsonEncodeDateTime(col->last_text, d, col->type, NULL);
						col->last_len = strlen(col->last_text);
						col->last = value;
						col->last_tz = session_timezone;
					}
				}
				/* a copy: the old row's value of the column may come next */
				out = palloc(col->last_len + 1);
				memcpy(out, col->last_text, col->last_len + 1);
				simple_string(v, out, col->last_len);
				break;
		}
	}
	object->type = jbvObject;
	object->val.object.nPairs = row->ncolumns;
	object->val.object.pairs = pairs;
}

/*
 * The simple renderer's document in jsonb's binary form, written here in
 * one piece of memory sized beforehand (JsonbValueToJsonb() makes the same
 * bytes through a buffer grown item by item).  The format, as jsonb.h
 * describes it: an object is a word holding its count of pairs and its
 * kind, then one JEntry per key and one per value, keys first, then the
 * keys' bytes and the values' bytes in that order.  A JEntry holds the
 * item's type and length, or, for every JB_OFFSET_STRIDE'th item, the end
 * of its bytes from the start of the object's data.  Numerics and objects
 * start at a 4-byte boundary of the document, their padding counted in
 * their length.  Objects and scalars only: a simple row has no arrays, and
 * its objects' keys are sorted and unique already.
 */

/* The most bytes v can take, padding included. */
static Size
simple_size(const JsonbValue *v)
{
	Size		size = 0;

	switch (v->type)
	{
		case jbvObject:
			size = 3 + sizeof(uint32) + 2 * sizeof(JEntry) * v->val.object.nPairs;
			for (int i = 0; i < v->val.object.nPairs; i++)
				size += v->val.object.pairs[i].key.val.string.len +
					simple_size(&v->val.object.pairs[i].value);
			break;
		case jbvString:
			size = v->val.string.len;
			break;
		case jbvNumeric:
			size = 3 + VARSIZE_ANY(v->val.numeric);
			break;
		default:
			break;
	}
	return size;
}

/* Zeros up to the next 4-byte boundary from the document's start. */
static int
simple_pad(const char *start, char **pos)
{
	int			pad = INTALIGN(*pos - start) - (*pos - start);

	memset(*pos, 0, pad);
	*pos += pad;
	return pad;
}

static void
simple_too_big(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("the row is too large for a jsonb payload"),
			 errdetail("An object of a jsonb document holds at most %u bytes.",
					   JENTRY_OFFLENMASK)));
}

/* Write v at *pos (the document starting at start); returns its JEntry. */
static JEntry
simple_write(const char *start, char **pos, const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return JENTRY_ISNULL;
		case jbvBool:
			return v->val.boolean ? JENTRY_ISBOOL_TRUE : JENTRY_ISBOOL_FALSE;
		case jbvString:
			memcpy(*pos, v->val.string.val, v->val.string.len);
			*pos += v->val.string.len;
			return (JEntry) v->val.string.len;
		case jbvNumeric:
			{
				int			pad = simple_pad(start, pos);
				Size		len = VARSIZE_ANY(v->val.numeric);

				Assert(!numeric_is_nan(v->val.numeric));
				memcpy(*pos, v->val.numeric, len);
				*pos += len;
				return JENTRY_ISNUMERIC | (pad + len);
			}
		case jbvObject:
			{
				const char *begin = *pos;
				int			n = v->val.object.nPairs;
				uint32		header = (uint32) n | JB_FOBJECT;
				char	   *entries;
				const char *data;
				Size		total;

				simple_pad(start, pos);
				memcpy(*pos, &header, sizeof(header));
				*pos += sizeof(header);
				entries = *pos;
				*pos += 2 * sizeof(JEntry) * n;
				data = *pos;
				for (int i = 0; i < 2 * n; i++)
				{
					const JsonbValue *item = i < n ? &v->val.object.pairs[i].key :
						&v->val.object.pairs[i - n].value;
					JEntry		entry = simple_write(start, pos, item);
					Size		end = *pos - data;

					if (end > JENTRY_OFFLENMASK)
						simple_too_big();
					if (i % JB_OFFSET_STRIDE == 0)
						entry = (entry & JENTRY_TYPEMASK) | (JEntry) end | JENTRY_HAS_OFF;
					memcpy(entries + i * sizeof(JEntry), &entry, sizeof(entry));
				}
				total = *pos - begin;
				if (total > JENTRY_OFFLENMASK)
					simple_too_big();
				return JENTRY_ISCONTAINER | (JEntry) total;
			}
		default:
			elog(ERROR, "unexpected jsonb value of type %d in a row payload", (int) v->type);
	}
	return 0;					/* keep the compiler quiet */
}

/* The jsonb document of object, an object of objects and scalars. */
static Jsonb *
simple_jsonb(const JsonbValue *object)
{
	Size		size = VARHDRSZ + simple_size(object);
	char	   *start;
	char	   *pos;

	Assert(object->type == jbvObject);
	if (size > MaxAllocSize)
		simple_too_big();
	start = palloc(size);
	pos = start + VARHDRSZ;
	(void) simple_write(start, &pos, object);
	Assert(pos - start <= size);
	SET_VARSIZE(start, pos - start);
	return (Jsonb *) start;
}

/* A pair of the payload's object, its key a constant */
static void
payload_pair(JsonbPair *pair, const char *key, int order)
{
	pair->key.type = jbvString;
	pair->key.val.string.val = (char *) key;
	pair->key.val.string.len = strlen(key);
	pair->order = order;
}

static const char *const row_keys[2] = {"new", "old"};

/*
 * The payload of simple rows, given as objects (NULL: the operation has no
 * such row), a document built here as a whole, in jsonb's order of keys:
 * "new" and "old", then "table", then "operation" (see key_order()).
 */
static Datum
simple_payload(const char *table, const char *operation, JsonbValue *objects[2])
{
	JsonbPair	pairs[4];
	JsonbValue	payload;
	int			n = 0;

	for (int i = 0; i < 2; i++)
	{
		if (objects[i] == NULL)
			continue;
		payload_pair(&pairs[n], row_keys[i], n);
		pairs[n].value = *objects[i];
		n++;
	}
	payload_pair(&pairs[n], "table", n);
	simple_string(&pairs[n].value, (char *) table, strlen(table));
	n++;
	payload_pair(&pairs[n], "operation", n);
	simple_string(&pairs[n].value, (char *) operation, strlen(operation));
	n++;
	Assert(key_order("old", 3, "table", 5) < 0 && key_order("table", 5, "operation", 9) < 0);
	payload.type = jbvObject;
	payload.val.object.nPairs = n;
	payload.val.object.pairs = pairs;
	return JsonbPGetDatum(simple_jsonb(&payload));
}

/*
 * The payload: {"table": ..., "operation": ..., "new": ..., "old": ...}.
 * Rows of a simple row type (row given) make simple_payload()'s document;
 * other rows are rendered by push_row().
 */
static Datum
build_payload(SimpleRow *row, const char *table, const char *operation,
			  Datum new_row, Datum old_row)
{
	JsonbParseState *state = NULL;
	Datum		rows[2] = {new_row, old_row};

	if (row != NULL)
	{
		JsonbValue	values[2];
		JsonbValue *objects[2] = {NULL, NULL};

		for (int i = 0; i < 2; i++)
			if (rows[i] != (Datum) 0)
			{
				simple_row_value(row, rows[i], &values[i]);
				objects[i] = &values[i];
			}
		return simple_payload(table, operation, objects);
	}

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	push_string(&state, WJB_KEY, "table");
	push_string(&state, WJB_VALUE, table);
	push_string(&state, WJB_KEY, "operation");
	push_string(&state, WJB_VALUE, operation);
	for (int i = 0; i < 2; i++)
	{
		if (rows[i] == (Datum) 0)
			continue;
		push_string(&state, WJB_KEY, row_keys[i]);
		push_row(&state, WJB_VALUE, rows[i]);
	}
	return JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL)));
}

/* Are the columns of the row type of this row all of built-in types? */
static bool
row_is_builtin(Datum row, Oid *rowtype)
{
	HeapTupleHeader td = DatumGetHeapTupleHeader(row);
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(td),
											  HeapTupleHeaderGetTypMod(td));
	bool		builtin = row_type_is_builtin(desc);

	*rowtype = HeapTupleHeaderGetTypeId(td);
	ReleaseTupleDesc(desc);
	return builtin && HeapTupleHeaderGetTypMod(td) < 0;
}

/*
 * The payload of a row event: {"table": ..., "operation": ..., "new": ...,
 * "old": ...}, new and old being the rows (composite datums of one named
 * row type, 0 when the operation has none), rendered as described in the
 * header.
 */
Datum
herald_row_payload(const char *table, const char *operation, Datum new_row, Datum old_row)
{
	Oid			rowtype;

	if (new_row == (Datum) 0 && old_row == (Datum) 0)
		elog(ERROR, "a row event needs a row");
	else
	{
		HeapTupleHeader some = DatumGetHeapTupleHeader(new_row != (Datum) 0 ? new_row : old_row);
		SimpleRow  *row = NULL;

		rowtype = HeapTupleHeaderGetTypeId(some);
		if (HeapTupleHeaderGetTypMod(some) < 0 &&
			(new_row == (Datum) 0 || old_row == (Datum) 0 ||
			 HeapTupleHeaderGetTypeId(DatumGetHeapTupleHeader(old_row)) == rowtype))
			row = simple_row(rowtype);
		if (row != NULL)
			return build_payload(row, table, operation, new_row, old_row);
	}
	if (row_is_builtin(new_row != (Datum) 0 ? new_row : old_row, &rowtype) &&
		(new_row == (Datum) 0 || old_row == (Datum) 0 ||
		 HeapTupleHeaderGetTypeId(DatumGetHeapTupleHeader(old_row)) == rowtype))
		return build_builtin_payload(rowtype, table, operation, new_row, old_row);

	return build_payload(NULL, table, operation, new_row, old_row);
}

/*
 * The payload of a row event whose rows are in slots (NULL: the operation
 * has none), as herald_row_payload() renders them: rows of a simple row
 * type are read from the slots' values, without forming them into
 * composite datums first.
 */
Datum
herald_slot_payload(const char *table, const char *operation,
					TupleTableSlot *new_slot, TupleTableSlot *old_slot)
{
	TupleTableSlot *slots[2] = {new_slot, old_slot};
	TupleDesc	desc = (new_slot != NULL ? new_slot : old_slot)->tts_tupleDescriptor;
	SimpleRow  *row = NULL;
	Datum		rows[2] = {(Datum) 0, (Datum) 0};

	if (desc->tdtypmod < 0 && OidIsValid(desc->tdtypeid) &&
		(new_slot == NULL || old_slot == NULL ||
		 old_slot->tts_tupleDescriptor->tdtypeid == desc->tdtypeid))
		row = simple_row(desc->tdtypeid);
	if (row != NULL)
	{
		JsonbValue	values[2];
		JsonbValue *objects[2] = {NULL, NULL};

		for (int i = 0; i < 2; i++)
			if (slots[i] != NULL)
			{
				(void) simple_row_desc(row, slots[i]->tts_tupleDescriptor->tdtypeid,
									   slots[i]->tts_tupleDescriptor->natts);
				slot_getallattrs(slots[i]);
				simple_values(row, slots[i]->tts_values, slots[i]->tts_isnull, &values[i]);
				objects[i] = &values[i];
			}
		return simple_payload(table, operation, objects);
	}
	for (int i = 0; i < 2; i++)
		if (slots[i] != NULL)
			rows[i] = ExecFetchSlotHeapTupleDatum(slots[i]);
	return herald_row_payload(table, operation, rows[0], rows[1]);
}
