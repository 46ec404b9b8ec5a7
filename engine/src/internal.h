/*
 * internal.h — what engine files share and users never see: error setting,
 * aligned allocation with a counter, and small helpers.
 */
#ifndef MR_INTERNAL_H
#define MR_INTERNAL_H

#include "moreau.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

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
static inline int mr_same_shape(const mr_tensor *a, const mr_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

/* *out = a * b for sizes and counts; 1 (and *out untouched) when the product
 * overflows int64 or an operand is negative. Every product of sizes that a
 * caller or a file controls goes through it. */
static inline int mr_size_mul(int64_t a, int64_t b, int64_t *out)
{
    int64_t p;
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &p))
        return 1;
    *out = p;
    return 0;
}

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
