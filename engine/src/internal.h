/*
 * internal.h — what engine files share and users never see: error setting,
 * aligned allocation with a counter, and small helpers.
 */
#ifndef MR_INTERNAL_H
#define MR_INTERNAL_H

#include "moreau.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

/* A dense float32 tensor (opaque in moreau.h: engine code reads the fields,
 * users go through the accessors). Unused trailing dims of shape are 1. */
struct mr_tensor {
    float *data;        /* numel floats, 64-byte aligned when owned */
    int64_t shape[4];   /* dims outermost first */
    int64_t numel;      /* product of the first ndim dims */
    int32_t ndim;       /* 1..4 */
    int32_t owns_data;  /* 1: data is freed with the tensor */
};

#if defined(__GNUC__)
#define MR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MR_PRINTF(a, b)
#endif

/* Sets the thread-local message and returns code, so a failure reads
 *   return mr_error(MR_ESHAPE, "conv2d: expected %d channels, got %d", c, x);  */
int mr_error(int code, const char *fmt, ...) MR_PRINTF(2, 3);
/* How many messages mr_error has set on this thread: a caller compares it
 * before and after a call to tell whether the callee set a fresh message. */
unsigned long mr_error_serial(void);

/* 64-byte aligned allocation, counted by mr_alloc_count(). mr_alloc sets the
 * error message on failure and returns NULL. */
void *mr_alloc(size_t bytes);
void *mr_calloc(size_t bytes);
void mr_free(void *p);

/* Number of threads the engine's own parallel loops use (the CPU backend's
 * setting: backend/cpu/threads.c). */
int mr_threads(void);

/* 1 when a and b have the same dims and sizes (an equal numel is not enough). */
/* A process-wide byte budget (the sampler's memory budget, the loaders'
 * budget): set to bytes > 0, or back to its default with 0 (or less);
 * read as the bytes in force. */
static inline void mr_budget_store(atomic_llong *budget, int64_t bytes)
{
    atomic_store(budget, bytes > 0 ? (long long)bytes : 0);
}
static inline int64_t mr_budget_load(atomic_llong *budget, int64_t default_bytes)
{
    long long b = atomic_load(budget);
    return b > 0 ? b : default_bytes;
}

/* Every NaN in p[0, n) becomes the one quiet NaN 0x7FC00000. LuaJIT (GC64)
 * keeps its object tags in the top bits of NaN doubles, and its FFI does not
 * normalize a float it converts: a float NaN with the sign set and payload
 * bits (e.g. 0xFFAC0000, from a hostile weights file) reads in Lua as a
 * forged string, table or userdata pointer. So no NaN with a payload may
 * enter a tensor from a file or leave one towards Lua (docs/sandbox.md,
 * "NaN payloads"); NaNs computed from these are the CPU's default NaN or this
 * one, both plain numbers to LuaJIT. */
static inline void mr_canonicalize_nans(float *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (p[i] != p[i])
            p[i] = __builtin_nanf("");
}

static inline int mr_same_shape(const mr_tensor *a, const mr_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

/* ------------------------------------------------------------ sizes
 *
 * One family for the arithmetic of sizes, counts, strides and byte sizes.
 * Every product or sum of sizes that a caller or a file controls goes through
 * it, so no size wraps around int64 and no int64 size is cut to an int.
 *
 *   mr_size_mul, mr_size_add   a * b, a + b: 1 on overflow or a negative
 *                              operand (*out untouched), 0 otherwise; for
 *                              callers that word their own message
 *   mr_size_prod               the product of n sizes, or MR_EINVAL with
 *                              "FN: WHAT = 2147483648*2147483648*2147483648 overflows int64"
 *   mr_bytes_of                count * elem_size bytes (fits int64 and size_t),
 *                              or MR_ENOMEM with "FN: WHAT: COUNT elements of
 *                              SIZE bytes overflow int64"
 *   mr_size_int                MR_EINVAL unless 0 <= v <= INT_MAX, for sizes
 *                              handed to int parameters (OpenBLAS's blasint
 *                              in this build, int loop bounds): "FN: WHAT =
 *                              V is over INT_MAX (2147483647)"
 *
 * MR_SIZE_PROD(&out, fn, what, a, b, c) passes its operands as int64_t. */
static inline int mr_size_mul(int64_t a, int64_t b, int64_t *out)
{
    int64_t p;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &p))
        return 1;
    *out = p;
    return 0;
}

static inline int mr_size_add(int64_t a, int64_t b, int64_t *out)
{
    int64_t s;
    if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &s))
        return 1;
    *out = s;
    return 0;
}

int mr_size_prod(int64_t *out, const char *fn, const char *what, int n, const int64_t *ops);
int mr_bytes_of(int64_t *out, const char *fn, const char *what, int64_t count, int64_t elem_size);
int mr_size_int(const char *fn, const char *what, int64_t v);

#define MR_SIZE_PROD(out, fn, what, ...)                                                    \
    mr_size_prod(out, fn, what, (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
                 (const int64_t[]){__VA_ARGS__})

/* The loader budget (io/budget.c; mr_set_loader_budget): every reader calls
 * it with the bytes its result will take, computed with the size helpers
 * above (-1 for a size past int64), before allocating what a file declares.
 * MR_OK when bytes fits the budget; else MR_ENOMEM with the message
 *   "<fmt, args>, over the loader budget of N bytes (mr_set_loader_budget)"
 * where fmt names the function, the file and what it declares. */
int mr_loader_check(int64_t bytes, const char *fmt, ...) MR_PRINTF(2, 3);
/* Opens path for reading without blocking on a FIFO or a device (O_NONBLOCK,
 * cleared once open) and returns the descriptor; -1 with errno set when it
 * cannot be opened; MR_NOT_REGULAR (closed again) when it is not a regular
 * file. Every loader opens its files through this (io/budget.c). */
enum { MR_NOT_REGULAR = -2 };
int mr_open_regular(const char *path);
/* The same as a FILE* ("rb"): NULL with errno set, or with *not_regular = 1
 * when path is not a regular file. */
FILE *mr_fopen_regular(const char *path, int *not_regular);

/* A long call's progress (core/progress.c): begin with where it starts and
 * the whole (in `unit`s: "iteration", "copy"; a resumed solver starts past
 * 0), update with where it is, end when done or failed. Inert unless
 * mr_progress_set turned the lines on. */
typedef struct mr_progress {
    int on, tenth, drawn;
    const char *what, *unit;
    int64_t first, total;
    double t0, last;
} mr_progress;
void mr_progress_begin(mr_progress *p, const char *what, const char *unit, int64_t first, int64_t total);
void mr_progress_update(mr_progress *p, int64_t done);
void mr_progress_end(mr_progress *p);

#define MR_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MR_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Propagates a negative status. */
#define MR_TRY(expr)                 \
    do {                             \
        int mr_try_rc_ = (expr);     \
        if (mr_try_rc_ < 0)          \
            return mr_try_rc_;       \
    } while (0)

#endif
