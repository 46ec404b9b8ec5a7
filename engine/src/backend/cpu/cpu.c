/*
 * cpu.c — the CPU backend: workspace memory from the engine's aligned, counted
 * allocator (core/alloc.c), float loops for copies and adds, the Philox normal
 * fill of core/rng.c, and the kernels of backend/cpu/ (OpenBLAS, oneDNN and
 * OpenMP loops; their thread set-up is threads.c). It computes every op and
 * every pass, so it is also where the fallback rule sends the passes another
 * backend does not support.
 */
#define _DEFAULT_SOURCE /* madvise, MADV_HUGEPAGE */
#include "cpu.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

/* The kernels, one row per op in MR_OP_LIST order (a missing mr_cpu_<name>
 * fails to link). */
#define MR_CPU_ENTRY_(E, n) [MR_OP_##E] = &mr_cpu_##n,
static const mr_op_kernels *const kernels[MR_OP_COUNT] = {MR_OP_LIST(MR_CPU_ENTRY_)};
#undef MR_CPU_ENTRY_

/* Blocks of at least this size ask for transparent huge pages. */
#define HUGE_MIN ((size_t)4 << 20)

/* Asks the kernel to back the whole 4 KiB pages of [p, p + bytes) with 2 MiB
 * pages (transparent huge pages, where THP is "always" or "madvise"). Why: the
 * workspace of a 224x224 network is gigabytes (resnet50 at batch 16: 1.8 GiB),
 * first touched in the first pass; on this project's VM a 4 KiB page fault
 * costs ~10 us, so that pass spent ~5 s of CPU faulting (perf: the kernel's
 * fault path, 27% of a first forward + input gradient), against 512x fewer
 * faults with 2 MiB pages, which also spare the later passes TLB misses. A
 * hint only: where the kernel declines, the memory is the same, 4 KiB pages. */
void mr_cpu_advise_huge(void *p, size_t bytes)
{
    if (!p || bytes < HUGE_MIN)
        return;
    const uintptr_t page = 4096;
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(page - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE); /* a hint: failure changes nothing */
}

static void *cpu_alloc(void *ctx, size_t bytes)
{
    void *p = mr_alloc(bytes);
    mr_cpu_advise_huge(p, bytes);
    return p;
}

static void cpu_free(void *ctx, void *p) { mr_free(p); }

static void cpu_copy(void *ctx, float *dst, const float *src, int64_t n)
{
    if (n > 0 && dst != src)
        memmove(dst, src, (size_t)n * sizeof(float));
}

static void cpu_zero(void *ctx, float *dst, int64_t n)
{
    if (n > 0)
        memset(dst, 0, (size_t)n * sizeof(float));
}

/* Each entry is one float add, so the split across threads changes no bit. */
static void cpu_add(void *ctx, float *dst, const float *src, int64_t n)
{
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > 32768)
    for (int64_t i = 0; i < n; i++)
        dst[i] += src[i];
}

static int cpu_fill_normal(void *ctx, float *dst, int64_t n, uint64_t seed, uint64_t stream,
                           uint64_t offset, float mean, float std)
{
    return mr_rng_normal(dst, n, seed, stream, offset, mean, std);
}

static int cpu_supports(void *ctx, int op, int pass)
{
    return op >= 0 && op < MR_OP_COUNT && pass >= 0 && pass < MR_PASS_COUNT;
}

/* The subnormal census (mr_set_subnormal_census): per op and pass, the
 * subnormal values among the outputs, and the values scanned. */
static _Atomic int census_on;
static _Atomic int64_t census[MR_OP_COUNT][MR_PASS_COUNT][2];

/* A float32 is subnormal when its exponent bits are 0 and its mantissa is not. */
static void census_add(int op, int pass, const mr_tensor *t)
{
    if (!t)
        return;
    const uint32_t *u = (const uint32_t *)(const void *)t->data;
    int64_t sub = 0;
    for (int64_t i = 0; i < t->numel; i++)
        sub += (u[i] & 0x7f800000u) == 0 && (u[i] & 0x007fffffu) != 0;
    census[op][pass][0] += sub;
    census[op][pass][1] += t->numel;
}

void mr_set_subnormal_census(int on)
{
    if (on)
        for (int op = 0; op < MR_OP_COUNT; op++)
            for (int pass = 0; pass < MR_PASS_COUNT; pass++)
                census[op][pass][0] = census[op][pass][1] = 0;
    census_on = on != 0;
}

int mr_subnormal_census(int op, int pass, int64_t *subnormal, int64_t *values)
{
    if (op < 0 || op >= MR_OP_COUNT || pass < 0 || pass >= MR_PASS_COUNT)
        return mr_error(MR_EINVAL, "subnormal census: no op %d, pass %d", op, pass);
    *subnormal = census[op][pass][0];
    *values = census[op][pass][1];
    return MR_OK;
}

/* The CPU kernels cannot fail (their checks ran in each op's infer): MR_OK. */
static int cpu_run(void *ctx, int op, int pass, const mr_op_call *a)
{
    const mr_op_kernels *k = kernels[op];
    const int n_in = mr_op_table[op]->ninputs;
    mr_threads_update();
    switch (pass) {
    case MR_PASS_FORWARD:
        k->forward(a->ctx, a->x, a->y);
        if (census_on)
            census_add(op, pass, a->y);
        break;
    case MR_PASS_VJP:
        k->vjp(a->ctx, a->x, a->y, a->gy, a->gx);
        for (int i = 0; census_on && i < n_in; i++)
            census_add(op, pass, a->gx[i]);
        break;
    case MR_PASS_JVP:
        k->jvp(a->ctx, a->x, a->dx, a->y, a->dy);
        if (census_on)
            census_add(op, pass, a->dy);
        break;
    default: /* MR_PASS_VJP_TANGENT */
        k->vjp_tangent(a->ctx, a->x, a->dx, a->y, a->dy, a->gy, a->dgy, a->dgx);
        for (int i = 0; census_on && i < n_in; i++)
            census_add(op, pass, a->dgx[i]);
        break;
    }
    return MR_OK;
}

const mr_backend mr_cpu_backend = {
    .name = "cpu",
    .ctx = NULL,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .add = cpu_add,
    .fill_normal = cpu_fill_normal,
    .supports = cpu_supports,
    .run = cpu_run,
};

/* Every kernel table row has its four passes (a row left half-filled would
 * crash at run time): checked when the registry is first used. */
int mr_cpu_kernels_check(void)
{
    const char *const *names = mr_op_names();
    for (int i = 0; i < MR_OP_COUNT; i++) {
        const mr_op_kernels *k = kernels[i];
        if (!k || !k->forward || !k->vjp || !k->jvp || !k->vjp_tangent)
            return mr_error(MR_ESTATE, "cpu backend: op '%s' lacks a kernel", names[i]);
    }
    return MR_OK;
}
