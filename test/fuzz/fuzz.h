/*-------------------------------------------------------------------------
 *
 * fuzz.h
 *		The fuzzing runtime's interface to the harnesses (runtime.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HERALD_FUZZ_H
#define HERALD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

extern uint64 herald_fuzz_errors;

extern bool herald_fuzz_call(void (*fn) (void *arg), void *arg);
extern char *herald_fuzz_cstring(const uint8 *data, size_t size);
extern void herald_fuzz_split(const uint8 *data, size_t size, char **parts, int n);

/* What a harness gets: the fuzzer's bytes. */
typedef struct FuzzInput
{
	const uint8 *data;
	size_t		size;
} FuzzInput;

/* Whether the bytes are valid UTF-8 (what a text value of the database is). */
extern bool herald_fuzz_utf8(const char *s, size_t len);

/* Whether text is one JSON value, in valid UTF-8. */
extern bool herald_fuzz_json(const char *text);

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The fuzzer's entry point of a harness whose work is fn(FuzzInput *): an
 * ERROR it raises is an answer, anything else a finding.
 */
#define HERALD_FUZZ_TARGET(fn) \
int \
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) \
{ \
	FuzzInput	in = {data, size}; \
 \
	herald_fuzz_call(fn, &in); \
	return 0; \
}

#endif
