/* conv2d.h — conv2d's geometry and the sizing rules shared by the shape half
 * (ops/conv2d.c: checks, cached geometry, scratch sizes) and the CPU kernels
 * (backend/cpu/conv2d.c, backend/cpu/conv2d_dnnl.c). */
#ifndef MR_CONV2D_H
#define MR_CONV2D_H

#include "op.h"

#include <omp.h>

/* Computed once per node by infer and cached with it (mr_op_ctx.cache). */
typedef struct conv_geom {
    int64_t C, H, W;   /* input channels and size */
    int64_t K, kh, kw; /* output channels, kernel */
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t G, cg, kg; /* groups, input and output channels per group */
    int64_t Ho, Wo;
} conv_geom;
_Static_assert(sizeof(conv_geom) <= MR_OP_CACHE_BYTES, "conv_geom must fit a node's op cache");

/* Upper bound (floats) of the im2col scratch: 4 MiB (with oneDNN this path
 * mostly computes weight gradients, whose GEMMs stay efficient on a few
 * samples per chunk; the cap keeps the workspace near the activations' size).
 * One sample may exceed it (then the chunk is one sample). The per-item
 * passes (forward, input gradient) hold one item's col per thread at work:
 * as many as fit under the cap, but at least CONV_MIN_SLOTS (or the number of
 * processors when smaller), so every thread has one. */
#define CONV_SCRATCH_CAP ((int64_t)1 << 20)
#define CONV_MIN_SLOTS 8

/* Output (or input) channels per task of the 1x1 GEMMs and the weight
 * gradient's GEMMs: a partition fixed by the shapes, never by the thread count. */
#define CONV_ROWS 64

/* Grouped convs with at most this many input channels per group use the direct loop. */
#define CONV_DIRECT_MAX_CG 4


enum { PATH_GEMM, PATH_1X1, PATH_DIRECT };

static inline int conv_path(const conv_geom *g)
{
    if (g->G > 1 && g->cg <= CONV_DIRECT_MAX_CG)
        return PATH_DIRECT; /* tiny GEMMs per group would cost more than they save */
    if (g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0)
        return PATH_1X1;
    return PATH_GEMM;
}

/* Scratch floats per sample of the GEMM path: one group's col plus its output block. */
static inline int64_t gemm_per_sample(const conv_geom *g)
{
    return (g->cg * g->kh * g->kw + g->kg) * g->Ho * g->Wo;
}

/* Samples per chunk for a batch of N under a cap <= CONV_SCRATCH_CAP:
 * monotone in N, so a scratch sized for the workspace capacity fits every
 * smaller batch. */
static inline int64_t gemm_chunk(const conv_geom *g, int64_t N, int64_t cap)
{
    int64_t nb = cap / gemm_per_sample(g);
    return MR_MAX(1, MR_MIN(N, nb));
}

/* Floats of one per-item slot of the GEMM path: one group's col (Cg kh kw, Ho Wo). */
static inline int64_t item_slot(const conv_geom *g) { return g->cg * g->kh * g->kw * g->Ho * g->Wo; }

/* Per-item slots (one per thread at work) for a batch of N: as many as fit
 * under CONV_SCRATCH_CAP, but at least min(procs, CONV_MIN_SLOTS), at most N.
 * Monotone in N and in the slot size, as gemm_chunk. How many threads share
 * the work changes no item's arithmetic. */
static inline int64_t item_slots(const conv_geom *g, int64_t N)
{
    int64_t least = MR_MIN(omp_get_num_procs(), CONV_MIN_SLOTS);
    return MR_MAX(1, MR_MIN(N, MR_MAX(CONV_SCRATCH_CAP / item_slot(g), least)));
}

#endif
