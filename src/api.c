/*-------------------------------------------------------------------------
 *
 * api.c
 *		The boundary of pg_herald's SQL API: who calls it, and as whom it
 *		runs.
 *
 * The API's functions are the VOLATILE functions of the extension, in schema
 * herald, whose names do not begin with an underscore and that are neither
 * triggers nor SECURITY DEFINER.  A function manager hook
 * runs each of them on its caller's behalf:
 *
 *	- when one starts, the hook refuses it inside a security-restricted
 *	  operation (rule code: a metric or a condition runs as its owner under
 *	  SECURITY_RESTRICTED_OPERATION; so do index expressions and maintenance
 *	  commands), before its body is planned or run;
 *	- otherwise it notes the caller, the current user at that moment: the
 *	  session's role, or the owner of the SECURITY DEFINER function that
 *	  calls the API, never a role further out;
 *	- and switches to the extension's owner, which owns pg_herald's tables,
 *	  until the function returns or fails.
 *
 * herald_invoker_id() (SQL: herald._invoker()) is the innermost caller
 * noted, and the identity every check of the API uses: rules are owned by
 * it, its privileges are the ones a metric or a condition is checked with
 * at declaration.  Outside an API call there is no caller, and asking for
 * one is an error: pg_herald's internal functions cannot act on anyone's
 * behalf when called some other way.
 *
 * Internal functions (names beginning with an underscore) are executable by
 * the extension's owner only, except two pure helpers the views call.
 *
 * The stack of callers is backend-local; no locks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "pg_herald.h"

PG_FUNCTION_INFO_V1(herald_invoker);
PG_FUNCTION_INFO_V1(herald_act_for);

/* API calls nest only through SECURITY DEFINER functions that call them */
#define MAX_API_DEPTH 16

typedef struct ApiFrame
{
	FmgrInfo   *flinfo;			/* the call, as fmgr_security_definer holds it */
	Oid			caller;			/* who called it */
	int			caller_sec;		/* and the security context it had */
	int			nest_level;		/* the (sub)transaction it started in */
	Oid			acting_for;		/* herald._act_for(): checked as this role */
} ApiFrame;

static ApiFrame frames[MAX_API_DEPTH];
static int	nframes = 0;

static needs_fmgr_hook_type prev_needs_fmgr_hook = NULL;
static fmgr_hook_type prev_fmgr_hook = NULL;

/*
 * The role that owns the extension's objects: the owner of its schema,
 * which CREATE EXTENSION made.  pg_herald's own statements run as this role.
 */
Oid
herald_extension_owner(void)
{
	Oid			nspid = herald_schema_oid(false);
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nspid);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);
	return owner;
}

/* Is this function one of the API's (see the header)? */
static bool
is_api_function(Oid fn_oid)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		candidate;
	Oid			nspid;
	Oid			herald;
	Oid			extoid;

	if (fn_oid < FirstNormalObjectId)
		return false;
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn_oid));
	if (!HeapTupleIsValid(tup))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	candidate = NameStr(proc->proname)[0] != '_' &&
		proc->provolatile == PROVOLATILE_VOLATILE &&
		!proc->prosecdef &&
		proc->prorettype != TRIGGEROID;
	nspid = proc->pronamespace;
	ReleaseSysCache(tup);
	if (!candidate)
		return false;

	/*
	 * One of pg_herald's own functions: a member of the extension, not a
	 * function someone put in a schema of that name.
	 */
	herald = herald_schema_oid(true);
	if (!OidIsValid(herald) || nspid != herald)
		return false;
	extoid = get_extension_oid(HERALD_EXTENSION, true);
	return OidIsValid(extoid) &&
		getExtensionOfObject(ProcedureRelationId, fn_oid) == extoid;
}

static bool
api_needs_fmgr_hook(Oid fn_oid)
{
	if (prev_needs_fmgr_hook && prev_needs_fmgr_hook(fn_oid))
		return true;
	return is_api_function(fn_oid);
}

static void
api_fmgr_hook(FmgrHookEventType event, FmgrInfo *flinfo, Datum *private)
{
	if (event == FHET_START && is_api_function(flinfo->fn_oid))
	{
		Oid			user;
		int			sec;

		Oid			owner;

		GetUserIdAndSecContext(&user, &sec);
		if (InSecurityRestrictedOperation())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("%s.%s() cannot be called from a rule's metric or condition",
							HERALD_SCHEMA, get_func_name(flinfo->fn_oid)),
					 errdetail("pg_herald's functions refuse to run inside a security-restricted operation.")));
		if (nframes >= MAX_API_DEPTH)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("pg_herald's functions are nested more than %d deep", MAX_API_DEPTH)));
		/* nothing may fail once the frame is pushed: no FHET_ABORT would come */
		owner = herald_extension_owner();
		frames[nframes].flinfo = flinfo;
		frames[nframes].caller = user;
		frames[nframes].caller_sec = sec;
		frames[nframes].nest_level = GetCurrentTransactionNestLevel();
		frames[nframes].acting_for = InvalidOid;
		nframes++;
		SetUserIdAndSecContext(owner, sec | SECURITY_LOCAL_USERID_CHANGE);
	}
	else if (event == FHET_END || event == FHET_ABORT)
	{
		/* this call's frame, and any a caught error left above it */
		for (int i = nframes - 1; i >= 0; i--)
			if (frames[i].flinfo == flinfo)
			{
				nframes = i;
				SetUserIdAndSecContext(frames[i].caller, frames[i].caller_sec);
				break;
			}
	}

	if (prev_fmgr_hook)
		prev_fmgr_hook(event, flinfo, private);
}

/* A transaction's end leaves no API call open, whatever unwound it. */
static void
api_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
		nframes = 0;
}

/*
 * Nor does a subtransaction's abort: the calls that started in it are over
 * (the abort restores the user they switched from).
 */
static void
api_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	int			level;

	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	level = GetCurrentTransactionNestLevel();
	while (nframes > 0 && frames[nframes - 1].nest_level >= level)
		nframes--;
}

/*
 * The role that called pg_herald's API: see the header.  An error outside
 * an API call.
 */
Oid
herald_invoker_id(void)
{
	if (nframes == 0)
	{
		char	   *installed = herald_installed_version();

		if (installed != NULL && strcmp(installed, PG_HERALD_VERSION) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pg_herald %s is installed in this database, but the library is version %s",
							installed, PG_HERALD_VERSION),
					 errhint("Run ALTER EXTENSION pg_herald UPDATE.")));
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("pg_herald's internal functions can only be called through its API"),
				 herald_cluster == NULL ?
				 errhint("Add pg_herald to shared_preload_libraries and restart the server.") : 0));
	}
	if (OidIsValid(frames[nframes - 1].acting_for))
		return frames[nframes - 1].acting_for;
	return frames[nframes - 1].caller;
}

/* herald._invoker() RETURNS regrole: herald_invoker_id(). */
Datum
herald_invoker(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(herald_invoker_id());
}

/*
 * herald._act_for(role regrole) RETURNS void: for the rest of the API call
 * in progress, herald._invoker() names role instead of the caller, so that
 * the checks a declaration makes (tables readable, metric and condition
 * planned, row-level security) are made with that role's rights.
 * herald.alter_rule() uses it to check a change with the rule's owner's
 * rights when herald_admin makes it; the call's end (or its error) ends it.
 * Only the extension's owner may execute it, and pg_herald's code calls it
 * only after checking that the caller may change the owner's rule.
 */
Datum
herald_act_for(PG_FUNCTION_ARGS)
{
	Oid			role = PG_GETARG_OID(0);

	(void) herald_invoker_id();	/* an error outside an API call */
	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("role must not be null")));
	frames[nframes - 1].acting_for = role;
	PG_RETURN_VOID();
}

void
herald_api_init(void)
{
	prev_needs_fmgr_hook = needs_fmgr_hook;
	needs_fmgr_hook = api_needs_fmgr_hook;
	prev_fmgr_hook = fmgr_hook;
	fmgr_hook = api_fmgr_hook;
	RegisterXactCallback(api_xact_callback, NULL);
	RegisterSubXactCallback(api_subxact_callback, NULL);
}
