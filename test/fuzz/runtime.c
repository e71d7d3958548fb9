/*-------------------------------------------------------------------------
 *
 * runtime.c
 *		What pg_herald's backend code needs to run inside a libFuzzer
 *		harness, outside a server.
 *
 * The harnesses link pg_herald's own source files (compiled with clang and
 * the sanitizers against the PostgreSQL server headers) with Debian's
 * frontend libpgcommon.a and libpgport.a (StringInfo, psprintf, the
 * encoding tables, HMAC, snprintf) and with this file, which supplies the
 * rest:
 *
 * - memory contexts: each palloc'd chunk is its own malloc() block, linked
 *   into the list of its context, so that AddressSanitizer sees every
 *   overflow and use after free, and so that deleting the per-input
 *   context frees everything an input allocated (LeakSanitizer then
 *   reports only what really leaks);
 * - ereport/elog: an ERROR is recorded and longjmps to the innermost
 *   PG_TRY, which the harness's herald_fuzz_call() sets up: an ERROR from
 *   bad input is an answer, not a finding; FATAL and PANIC abort(), which
 *   libFuzzer reports as a crash, as are failed Assert()s (the harnesses
 *   are built with USE_ASSERT_CHECKING);
 * - the multibyte helpers of the backend for a UTF-8 database (the
 *   encoding tables themselves are libpgcommon's), text datums, the GUC
 *   check-hook message variables, and the few settings the code reads.
 *
 * Nothing here touches a catalog: functions that need one are not fuzzed;
 * the pure part beneath them is.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/time.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "nodes/memnodes.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "fuzz.h"

/* ---- memory contexts ---- */

/*
 * The header before each chunk.  Its context comes last, just before the
 * data, where GetMemoryChunkContext() (inline in memutils.h) reads it.
 */
typedef struct Chunk
{
	struct Chunk *prev;
	struct Chunk *next;
	Size		size;
	struct FuzzContext *cxt;
} Chunk;

StaticAssertDecl(sizeof(Chunk) % MAXIMUM_ALIGNOF == 0, "chunk header breaks alignment");

typedef struct FuzzContext
{
	MemoryContextData base;		/* what MemoryContext points at */
	struct FuzzContext *parent;
	struct FuzzContext *children;
	struct FuzzContext *sibling;
	Chunk		head;			/* circular list of chunks */
} FuzzContext;

#define CHUNK_OF(p) ((Chunk *) ((char *) (p) - sizeof(Chunk)))
#define DATA_OF(c) ((void *) ((char *) (c) + sizeof(Chunk)))

static FuzzContext top_context;

MemoryContext TopMemoryContext = NULL;
MemoryContext CurrentMemoryContext = NULL;
MemoryContext ErrorContext = NULL;

static void
context_init(FuzzContext *c, FuzzContext *parent, const char *name)
{
	memset(c, 0, sizeof(*c));
	c->base.type = T_AllocSetContext;
	c->base.name = name;
	c->head.prev = c->head.next = &c->head;
	c->parent = parent;
	if (parent)
	{
		c->sibling = parent->children;
		parent->children = c;
	}
}

/* The contexts exist from the start: no harness needs to set them up. */
static void
ensure_top(void)
{
	if (TopMemoryContext != NULL)
		return;
	context_init(&top_context, NULL, "TopMemoryContext");
	TopMemoryContext = (MemoryContext) &top_context;
	CurrentMemoryContext = TopMemoryContext;
	ErrorContext = TopMemoryContext;
}

static void *
chunk_alloc(MemoryContext context, Size size, bool zero, bool huge)
{
	FuzzContext *cxt = (FuzzContext *) context;
	Chunk	   *c;

	ensure_top();
	if (cxt == NULL)
		cxt = (FuzzContext *) CurrentMemoryContext;
	if (!(huge ? AllocHugeSizeIsValid(size) : AllocSizeIsValid(size)))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	c = malloc(sizeof(Chunk) + size);
	if (c == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (zero)
		memset(DATA_OF(c), 0, size);
	c->cxt = cxt;
	c->size = size;
	c->next = cxt->head.next;
	c->prev = &cxt->head;
	cxt->head.next->prev = c;
	cxt->head.next = c;
	return DATA_OF(c);
}

static void
chunk_free(Chunk *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
	free(c);
}

static void
context_free_chunks(FuzzContext *cxt)
{
	while (cxt->head.next != &cxt->head)
		chunk_free(cxt->head.next);
}

static void context_delete_children(FuzzContext *cxt);

static void
context_delete(FuzzContext *cxt)
{
	FuzzContext **link;

	context_delete_children(cxt);
	context_free_chunks(cxt);
	if (cxt->parent)
	{
		for (link = &cxt->parent->children; *link; link = &(*link)->sibling)
		{
			if (*link == cxt)
			{
				*link = cxt->sibling;
				break;
			}
		}
	}
	if (CurrentMemoryContext == (MemoryContext) cxt)
		CurrentMemoryContext = (MemoryContext) cxt->parent;
	if (cxt != &top_context)
		free(cxt);
}

static void
context_delete_children(FuzzContext *cxt)
{
	while (cxt->children)
		context_delete(cxt->children);
}

MemoryContext
AllocSetContextCreateInternal(MemoryContext parent, const char *name,
							  Size minContextSize, Size initBlockSize, Size maxBlockSize)
{
	FuzzContext *c = malloc(sizeof(FuzzContext));

	ensure_top();
	if (c == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	context_init(c, (FuzzContext *) (parent ? parent : TopMemoryContext), name);
	return (MemoryContext) c;
}

void
MemoryContextDelete(MemoryContext context)
{
	Assert(context != TopMemoryContext);
	context_delete((FuzzContext *) context);
}

void
MemoryContextReset(MemoryContext context)
{
	context_delete_children((FuzzContext *) context);
	context_free_chunks((FuzzContext *) context);
}

void
MemoryContextResetOnly(MemoryContext context)
{
	context_free_chunks((FuzzContext *) context);
}

void
MemoryContextDeleteChildren(MemoryContext context)
{
	context_delete_children((FuzzContext *) context);
}

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return chunk_alloc(context, size, false, false);
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return chunk_alloc(context, size, true, false);
}

void *
MemoryContextAllocExtended(MemoryContext context, Size size, int flags)
{
	return chunk_alloc(context, size, (flags & MCXT_ALLOC_ZERO) != 0,
					   (flags & MCXT_ALLOC_HUGE) != 0);
}

void *
MemoryContextAllocHuge(MemoryContext context, Size size)
{
	return chunk_alloc(context, size, false, true);
}

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	Size		len = strlen(string) + 1;
	char	   *s = chunk_alloc(context, len, false, false);

	memcpy(s, string, len);
	return s;
}

void *
palloc(Size size)
{
	return chunk_alloc(NULL, size, false, false);
}

void *
palloc0(Size size)
{
	return chunk_alloc(NULL, size, true, false);
}

void *
palloc_extended(Size size, int flags)
{
	return MemoryContextAllocExtended(CurrentMemoryContext, size, flags);
}

void
pfree(void *pointer)
{
	chunk_free(CHUNK_OF(pointer));
}

static void *
chunk_realloc(void *pointer, Size size, bool huge)
{
	Chunk	   *old = CHUNK_OF(pointer);
	void	   *p = chunk_alloc((MemoryContext) old->cxt, size, false, huge);

	memcpy(p, pointer, Min(size, old->size));
	chunk_free(old);
	return p;
}

void *
repalloc(void *pointer, Size size)
{
	return chunk_realloc(pointer, size, false);
}

void *
repalloc_huge(void *pointer, Size size)
{
	return chunk_realloc(pointer, size, true);
}

char *
pstrdup(const char *in)
{
	return MemoryContextStrdup(CurrentMemoryContext, in);
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	len = strnlen(in, len);
	out = palloc(len + 1);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

char *
pchomp(const char *in)
{
	size_t		n = strlen(in);

	while (n > 0 && in[n - 1] == '\n')
		n--;
	return pnstrdup(in, n);
}

/* libpgcommon's frontend allocators, which its objects may call */
void *
pg_malloc(size_t size)
{
	return palloc(size);
}

void *
pg_malloc0(size_t size)
{
	return palloc0(size);
}

void *
pg_malloc_extended(size_t size, int flags)
{
	return palloc_extended(size, flags);
}

void *
pg_realloc(void *pointer, size_t size)
{
	return pointer ? repalloc(pointer, size) : palloc(size);
}

char *
pg_strdup(const char *in)
{
	return pstrdup(in);
}

void
pg_free(void *pointer)
{
	if (pointer)
		pfree(pointer);
}

/* ---- errors ---- */

sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;
volatile sig_atomic_t InterruptPending = false;
volatile uint32 CritSectionCount = 0;

char	   *GUC_check_errmsg_string;
char	   *GUC_check_errdetail_string;
char	   *GUC_check_errhint_string;

static int	error_level;
static int	error_code;
static char error_message[1024];

/* errors the harnesses caught since the start, for their summary */
uint64		herald_fuzz_errors = 0;

bool
errstart(int elevel, const char *domain)
{
	if (elevel < ERROR)
	{
		/* a warning, notice or log line: the message is dropped */
		error_level = elevel;
		return false;
	}
	error_level = elevel;
	error_code = ERRCODE_INTERNAL_ERROR;
	error_message[0] = '\0';
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	if (error_level >= FATAL)
	{
		fprintf(stderr, "fuzz runtime: %s at %s:%d (%s): %s\n",
				error_level == FATAL ? "FATAL" : "PANIC",
				filename, lineno, funcname ? funcname : "?", error_message);
		abort();
	}
	if (getenv("HERALD_FUZZ_VERBOSE"))
		fprintf(stderr, "fuzz runtime: ERROR %c%c%c%c%c at %s:%d: %s\n",
				PGUNSIXBIT(error_code), PGUNSIXBIT(error_code >> 6),
				PGUNSIXBIT(error_code >> 12), PGUNSIXBIT(error_code >> 18),
				PGUNSIXBIT(error_code >> 24), filename, lineno, error_message);
	if (PG_exception_stack == NULL)
	{
		fprintf(stderr, "fuzz runtime: ERROR outside herald_fuzz_call at %s:%d: %s\n",
				filename, lineno, error_message);
		abort();
	}
	/* an internal error (elog) from input is worth a look: say so */
	if (error_code == ERRCODE_INTERNAL_ERROR && getenv("HERALD_FUZZ_STRICT"))
	{
		fprintf(stderr, "fuzz runtime: internal error at %s:%d: %s\n",
				filename, lineno, error_message);
		abort();
	}
	siglongjmp(*PG_exception_stack, 1);
}

int
errcode(int sqlerrcode)
{
	error_code = sqlerrcode;
	return 0;
}

/* Format the message the way ereport would (to check the arguments too). */
#define KEEP_MESSAGE(fmt) \
	do { \
		va_list		ap; \
		va_start(ap, fmt); \
		vsnprintf(error_message, sizeof(error_message), fmt, ap); \
		va_end(ap); \
	} while (0)

#define FORMAT_AND_DROP(fmt) \
	do { \
		char		scratch[1024]; \
		va_list		ap; \
		va_start(ap, fmt); \
		vsnprintf(scratch, sizeof(scratch), fmt, ap); \
		va_end(ap); \
	} while (0)

int
errmsg(const char *fmt,...)
{
	KEEP_MESSAGE(fmt);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	KEEP_MESSAGE(fmt);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	FORMAT_AND_DROP(fmt);
	return 0;
}

int
errdetail_internal(const char *fmt,...)
{
	FORMAT_AND_DROP(fmt);
	return 0;
}

int
errhint(const char *fmt,...)
{
	FORMAT_AND_DROP(fmt);
	return 0;
}

int
errhidestmt(bool hide_stmt)
{
	return 0;
}

int
errcontext_msg(const char *fmt,...)
{
	FORMAT_AND_DROP(fmt);
	return 0;
}

int
set_errcontext_domain(const char *domain)
{
	return 0;
}

void
pg_re_throw(void)
{
	if (PG_exception_stack == NULL)
		abort();
	siglongjmp(*PG_exception_stack, 1);
}

void
FlushErrorState(void)
{
	error_code = 0;
	error_message[0] = '\0';
}

int
geterrcode(void)
{
	return error_code;
}

void
pre_format_elog_string(int errnumber, const char *domain)
{
}

char *
format_elog_string(const char *fmt,...)
{
	static char buf[1024];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return buf;
}

void
GUC_check_errcode(int sqlerrcode)
{
}

void
ExceptionalCondition(const char *conditionName, const char *errorType,
					 const char *fileName, int lineNumber)
{
	fprintf(stderr, "fuzz runtime: %s(\"%s\", File: \"%s\", Line: %d)\n",
			errorType, conditionName, fileName, lineNumber);
	abort();
}

void
check_stack_depth(void)
{
}

void
ProcessInterrupts(void)
{
}

/*
 * Run fn(arg) in a fresh memory context, catching an ERROR.  Returns true
 * when fn returned, false when it raised an ERROR.
 */
bool
herald_fuzz_call(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt;
	MemoryContext old;
	sigjmp_buf	jb;
	sigjmp_buf *save = PG_exception_stack;
	volatile bool ok = true;

	ensure_top();
	cxt = AllocSetContextCreate(TopMemoryContext, "fuzz input", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	if (sigsetjmp(jb, 0) == 0)
	{
		PG_exception_stack = &jb;
		error_context_stack = NULL;
		fn(arg);
	}
	else
	{
		ok = false;
		herald_fuzz_errors++;
	}
	PG_exception_stack = save;
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return ok;
}

/* A NUL-terminated palloc'd copy of the fuzzer's bytes. */
char *
herald_fuzz_cstring(const uint8 *data, size_t size)
{
	char	   *s = palloc(size + 1);

	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/*
 * Split the fuzzer's bytes at the first n-1 NUL bytes into n strings (the
 * missing ones empty): several inputs from one.
 */
void
herald_fuzz_split(const uint8 *data, size_t size, char **parts, int n)
{
	size_t		start = 0;

	for (int i = 0; i < n; i++)
	{
		size_t		end = start;

		if (i < n - 1)
			while (end < size && data[end] != '\0')
				end++;
		else
			end = size;
		parts[i] = start < size ? herald_fuzz_cstring(data + start, end - start)
			: pstrdup("");
		/* in the last part, a NUL ends the string as C would see it */
		start = end < size ? end + 1 : size;
	}
}

/* ---- the backend's multibyte helpers, for a UTF-8 database ---- */

int
GetDatabaseEncoding(void)
{
	return PG_UTF8;
}

int
pg_database_encoding_max_length(void)
{
	return pg_encoding_max_length(PG_UTF8);
}

int
pg_mblen(const char *mbstr)
{
	return pg_utf_mblen((const unsigned char *) mbstr);
}

/* characters in the first limit bytes (or up to the NUL) */
int
pg_mbstrlen_with_len(const char *mbstr, int limit)
{
	int			len = 0;

	while (limit > 0 && *mbstr)
	{
		int			l = pg_mblen(mbstr);

		limit -= l;
		mbstr += l;
		len++;
	}
	return len;
}

int
pg_mbstrlen(const char *mbstr)
{
	int			len = 0;

	while (*mbstr)
	{
		mbstr += pg_mblen(mbstr);
		len++;
	}
	return len;
}

/* the longest prefix of at most limit bytes that ends on a character */
int
pg_mbcliplen(const char *mbstr, int len, int limit)
{
	int			clen = 0;

	while (len > 0 && *mbstr)
	{
		int			l = pg_mblen(mbstr);

		if (clen + l > limit)
			break;
		clen += l;
		if (clen == limit)
			break;
		len -= l;
		mbstr += l;
	}
	return clen;
}

/* the bytes of the first limit characters */
int
pg_mbcharcliplen(const char *mbstr, int len, int limit)
{
	int			clen = 0;
	int			nch = 0;

	while (len > 0 && *mbstr)
	{
		int			l = pg_mblen(mbstr);

		nch++;
		if (nch > limit)
			break;
		clen += l;
		len -= l;
		mbstr += l;
	}
	return clen;
}

bool
pg_verify_mbstr(int encoding, const char *mbstr, int len, bool noError)
{
	int			ok = pg_encoding_verifymbstr(encoding, mbstr, len);

	if (ok == len)
		return true;
	if (noError)
		return false;
	ereport(ERROR,
			(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
			 errmsg("invalid byte sequence for encoding \"%s\"",
					pg_enc2name_tbl[encoding].name)));
	return false;
}

char *
pg_any_to_server(const char *s, int len, int encoding)
{
	/* the database is UTF-8, as the harnesses say: check, copy */
	Assert(encoding == PG_UTF8);
	pg_verify_mbstr(encoding, s, len, false);
	return pnstrdup(s, len);
}

/* ---- text datums ---- */

struct varlena *
pg_detoast_datum_packed(struct varlena *datum)
{
	/* the harnesses make plain in-line datums only */
	Assert(!VARATT_IS_EXTERNAL(datum) && !VARATT_IS_COMPRESSED(datum));
	return datum;
}

struct varlena *
pg_detoast_datum(struct varlena *datum)
{
	Assert(!VARATT_IS_EXTENDED(datum));
	return datum;
}

text *
cstring_to_text_with_len(const char *s, int len)
{
	text	   *result = palloc(len + VARHDRSZ);

	SET_VARSIZE(result, len + VARHDRSZ);
	memcpy(VARDATA(result), s, len);
	return result;
}

text *
cstring_to_text(const char *s)
{
	return cstring_to_text_with_len(s, strlen(s));
}

char *
text_to_cstring(const text *t)
{
	text	   *tunpacked = (text *) pg_detoast_datum_packed((struct varlena *) t);

	return pnstrdup(VARDATA_ANY(tunpacked), VARSIZE_ANY_EXHDR(tunpacked));
}

bool
herald_fuzz_utf8(const char *s, size_t len)
{
	return pg_encoding_verifymbstr(PG_UTF8, s, len) == (int) len;
}

/* The number of inputs refused with an ERROR, for test/fuzz/run. */
static void
write_summary(void)
{
	const char *path = getenv("HERALD_FUZZ_SUMMARY");
	FILE	   *f;

	if (path == NULL || (f = fopen(path, "w")) == NULL)
		return;
	fprintf(f, UINT64_FORMAT "\n", herald_fuzz_errors);
	fclose(f);
}

static void __attribute__((constructor))
runtime_start(void)
{
	ensure_top();
	atexit(write_summary);
}

/* ---- time ---- */

TimestampTz
GetCurrentTimestamp(void)
{
	struct timeval tp;

	gettimeofday(&tp, NULL);
	return (TimestampTz) (tp.tv_sec -
						  ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY))
		* USECS_PER_SEC + tp.tv_usec;
}

/* ---- JSON ---- */

/*
 * A JSON string literal of str (RFC 8259 7: quote, backslash and control
 * characters escaped), as the backend's escape_json() appends it; the
 * harnesses check that what pg_herald builds around it is valid JSON.
 */
void
escape_json(StringInfo buf, const char *str)
{
	appendStringInfoChar(buf, '"');
	for (const char *p = str; *p; p++)
	{
		switch (*p)
		{
			case '\b':
				appendStringInfoString(buf, "\\b");
				break;
			case '\f':
				appendStringInfoString(buf, "\\f");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			case '"':
				appendStringInfoString(buf, "\\\"");
				break;
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			default:
				if ((unsigned char) *p < ' ')
					appendStringInfo(buf, "\\u%04x", (int) *p);
				else
					appendStringInfoChar(buf, *p);
				break;
		}
	}
	appendStringInfoChar(buf, '"');
}

/*
 * Whether text is one JSON value (RFC 8259) and nothing else, in valid
 * UTF-8: the check of the harnesses that build JSON.
 */
static const char *json_value(const char *p, int depth);

static const char *
json_space(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

static const char *
json_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	while (*p != '"')
	{
		if ((unsigned char) *p < ' ')
			return NULL;		/* the end, or a raw control character */
		if (*p == '\\')
		{
			p++;
			if (*p == 'u')
			{
				for (int i = 1; i <= 4; i++)
					if (!isxdigit((unsigned char) p[i]))
						return NULL;
				p += 4;
			}
			else if (strchr("\"\\/bfnrt", *p) == NULL || *p == '\0')
				return NULL;
		}
		p++;
	}
	return p + 1;
}

static const char *
json_value(const char *p, int depth)
{
	if (depth > 100)
		return NULL;
	p = json_space(p);
	if (*p == '{' || *p == '[')
	{
		char		close = *p == '{' ? '}' : ']';
		bool		object = *p == '{';

		p = json_space(p + 1);
		if (*p == close)
			return p + 1;
		for (;;)
		{
			if (object)
			{
				p = json_string(json_space(p));
				if (p == NULL)
					return NULL;
				p = json_space(p);
				if (*p++ != ':')
					return NULL;
			}
			p = json_value(p, depth + 1);
			if (p == NULL)
				return NULL;
			p = json_space(p);
			if (*p == close)
				return p + 1;
			if (*p++ != ',')
				return NULL;
		}
	}
	if (*p == '"')
		return json_string(p);
	if (strncmp(p, "true", 4) == 0)
		return p + 4;
	if (strncmp(p, "false", 5) == 0)
		return p + 5;
	if (strncmp(p, "null", 4) == 0)
		return p + 4;
	if (*p == '-' || isdigit((unsigned char) *p))
	{
		if (*p == '-')
			p++;
		if (!isdigit((unsigned char) *p))
			return NULL;
		while (isdigit((unsigned char) *p))
			p++;
		if (*p == '.')
		{
			p++;
			if (!isdigit((unsigned char) *p))
				return NULL;
			while (isdigit((unsigned char) *p))
				p++;
		}
		return p;
	}
	return NULL;
}

bool
herald_fuzz_json(const char *text)
{
	const char *end = json_value(text, 0);

	return end != NULL && *json_space(end) == '\0' &&
		herald_fuzz_utf8(text, strlen(text));
}
