/*
 * safetensors.h — what the safetensors reader (safetensors_read.c) and writer
 * (safetensors_write.c) share: the rules on the header's text. Users see only
 * the mr_safetensors_* declarations of moreau.h.
 *
 * The header is a UTF-8 JSON object, parsed and printed with cJSON. Integers in
 * it (shapes, data_offsets) arrive as doubles, so only those below 2^53 are
 * exact: larger ones are refused rather than silently rounded. No object in the
 * header may repeat a key: JSON (RFC 8259, section 4) leaves open which of two
 * values a reader keeps, so such a file means different things to different
 * readers.
 */
#ifndef MR_IO_SAFETENSORS_H
#define MR_IO_SAFETENSORS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* The reference implementation's limit on the header length. */
#define MR_ST_MAX_HEADER ((uint64_t)100000000)
/* 2^53: the first integer a double cannot tell from its successor. */
#define MR_ST_INT_LIMIT 9007199254740992.0

/* Offset of the first byte of s[0, n) that is not valid UTF-8 (overlongs,
 * surrogates and code points above U+10FFFF are invalid), or -1 if all are valid. */
int64_t mr_st_utf8_invalid_at(const unsigned char *s, uint64_t n);

/* The members of a JSON object sorted by key (bytewise, as strcmp), into
 * *sorted (owned by the caller: mr_free; NULL when the object is empty) and
 * *n. *dup is the first member, in that order, whose key equals the previous
 * one's, or NULL when the keys are unique. Returns MR_OK or MR_ENOMEM. */
int mr_st_sorted_members(const cJSON *object, const cJSON ***sorted, int *n, const cJSON **dup);

/* "8x3x3x3"; "scalar" for ndim 0; "a 5-dim shape" beyond 4 dims (shape holds
 * the first min(ndim, 4) dims). Returns buf. */
const char *mr_st_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

#endif
