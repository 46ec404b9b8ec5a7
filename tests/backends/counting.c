/*
 * counting.c — a test backend: it counts every call the engine makes through
 * the backend interface and delegates the work to the CPU backend, so results
 * are the CPU's, bit for bit. tests/backend_spec.lua loads it (built by CMake
 * as a test-only library next to libmoreau) and checks the counts, the
 * results, the fallback rule (mr_counting_refuse) and the engine's report of
 * a failing entry (mr_counting_fail). It is the proof of
 * docs/architecture.md, "How to add a backend": it touches no engine file and
 * no op's shape logic, only the public header.
 */
#include "moreau.h"

#include <string.h>

enum { MAX_OPS = 64 };

static const mr_backend *cpu;
static int64_t runs[MAX_OPS][MR_PASS_COUNT];
static int64_t n_alloc, n_free, n_copy, n_zero, n_add, n_fill;
static int refused = -1; /* an op the backend claims not to support; -1: none */
static int fail_fill, fail_run; /* 1: that entry returns MR_EINVAL without computing */

static void *c_alloc(void *ctx, size_t bytes) { n_alloc++; return cpu->alloc(cpu->ctx, bytes); }
static void c_free(void *ctx, void *p) { n_free += p != NULL; cpu->free(cpu->ctx, p); }
static void c_copy(void *ctx, float *d, const float *s, int64_t n) { n_copy++; cpu->copy(cpu->ctx, d, s, n); }
static void c_zero(void *ctx, float *d, int64_t n) { n_zero++; cpu->zero(cpu->ctx, d, n); }
static void c_add(void *ctx, float *d, const float *s, int64_t n) { n_add++; cpu->add(cpu->ctx, d, s, n); }

static int c_fill_normal(void *ctx, float *d, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset,
                         float mean, float std)
{
    n_fill++;
    if (fail_fill)
        return MR_EINVAL;
    return cpu->fill_normal(cpu->ctx, d, n, seed, stream, offset, mean, std);
}

static int c_supports(void *ctx, int op, int pass)
{
    return op != refused && op >= 0 && op < MAX_OPS && cpu->supports(cpu->ctx, op, pass);
}

static int c_run(void *ctx, int op, int pass, const mr_op_call *call)
{
    runs[op][pass]++;
    if (fail_run)
        return MR_EINVAL;
    return cpu->run(cpu->ctx, op, pass, call);
}

static mr_backend counting = {
    .name = "counting",
    .alloc = c_alloc,
    .free = c_free,
    .copy = c_copy,
    .zero = c_zero,
    .add = c_add,
    .fill_normal = c_fill_normal,
    .supports = c_supports,
    .run = c_run,
};

/* Registers the backend as "counting" (once; MR_OK again after that). */
int mr_counting_register(void)
{
    if (mr_backend_get("counting") == &counting)
        return MR_OK;
    cpu = mr_backend_cpu();
    return mr_backend_register(&counting);
}

/* The passes `pass` (MR_PASS_*) of op `op` (an index of mr_op_names()) run here. */
int64_t mr_counting_runs(int op, int pass)
{
    return op >= 0 && op < MAX_OPS && pass >= 0 && pass < MR_PASS_COUNT ? runs[op][pass] : -1;
}

/* Calls of a memory or RNG entry: "alloc", "free", "copy", "zero", "add", "fill_normal"; -1 otherwise. */
int64_t mr_counting_calls(const char *entry)
{
    const char *names[] = {"alloc", "free", "copy", "zero", "add", "fill_normal"};
    const int64_t *counts[] = {&n_alloc, &n_free, &n_copy, &n_zero, &n_add, &n_fill};
    for (int i = 0; i < 6; i++)
        if (entry && strcmp(entry, names[i]) == 0)
            return *counts[i];
    return -1;
}

/* Sets every count to 0. */
void mr_counting_reset(void)
{
    memset(runs, 0, sizeof runs);
    n_alloc = n_free = n_copy = n_zero = n_add = n_fill = 0;
}

/* From now on the backend does not support op `op` (-1: supports every op). */
void mr_counting_refuse(int op) { refused = op; }

/* From now on entry `entry` ("fill_normal" or "run") returns MR_EINVAL
 * without setting a message, as a failing device would; NULL: none fails.
 * MR_EINVAL for another name. */
int mr_counting_fail(const char *entry)
{
    fail_fill = entry && strcmp(entry, "fill_normal") == 0;
    fail_run = entry && strcmp(entry, "run") == 0;
    return !entry || fail_fill || fail_run ? MR_OK : MR_EINVAL;
}
