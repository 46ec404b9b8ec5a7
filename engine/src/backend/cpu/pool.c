/* backend/cpu/pool.c — the CPU kernels of ops/pool.c (formulas there). */
#include "cpu.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(int32_t) == sizeof(float), "the argmax is stored in float state slots");

enum { POOL_MAX, POOL_AVG, POOL_ADAPTIVE };

/* One axis of the pooling windows. */
typedef struct pool_axis {
    int64_t in, out, k, s, p;
    int adaptive, include_pad;
} pool_axis;

/* The window [lo, hi) of output index o over the input, and its divisor. */
static inline void axis_window(const pool_axis *ax, int64_t o, int64_t *lo, int64_t *hi, int64_t *cnt)
{
    if (ax->adaptive) {
        *lo = o * ax->in / ax->out;
        *hi = ((o + 1) * ax->in + ax->out - 1) / ax->out;
        *cnt = *hi - *lo;
        return;
    }
    int64_t start = o * ax->s - ax->p;
    int64_t end = MR_MIN(start + ax->k, ax->in + ax->p);
    *lo = MR_MAX(start, 0);
    *hi = MR_MIN(end, ax->in);
    *cnt = ax->include_pad ? end - start : *hi - *lo;
}

static void make_axes(const mr_op_attrs *a, int kind, const mr_tensor *x, const mr_tensor *y,
                      pool_axis ax[2])
{
    for (int d = 0; d < 2; d++) {
        pool_axis *t = &ax[d];
        memset(t, 0, sizeof *t);
        t->in = x->shape[2 + d];
        t->out = y->shape[2 + d];
        t->adaptive = kind == POOL_ADAPTIVE;
        t->k = a->kernel[d];
        t->s = a->stride[d] ? a->stride[d] : a->kernel[d];
        t->p = a->padding[d];
        t->include_pad = kind == POOL_AVG && a->count_include_pad;
    }
}

/* ------------------------------------------------------------ maxpool */

static void maxpool_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    pool_axis ax[2];
    make_axes(c->attrs, POOL_MAX, x[0], y, ax);
    const int64_t H = ax[0].in, W = ax[1].in, OH = ax[0].out, OW = ax[1].out;
    const int64_t planes = y->shape[0] * y->shape[1];
    int32_t *arg = (int32_t *)(void *)c->state;
    const float *xd = x[0]->data;
    float *yd = y->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (x[0]->numel > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = xd + pl * H * W;
        float *yp = yd + pl * OH * OW;
        int32_t *ap = arg + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0, h1, cnt;
            axis_window(&ax[0], oh, &h0, &h1, &cnt);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0, w1;
                axis_window(&ax[1], ow, &w0, &w1, &cnt);
                float best = -INFINITY;
                int64_t bi = h0 * W + w0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) {
                        float v = xp[h * W + w];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = h * W + w;
                        }
                    }
                yp[oh * OW + ow] = best;
                ap[oh * OW + ow] = (int32_t)bi;
            }
        }
    }
}

/* gx = 0, then gx[a(o)] += g[o], plane by plane. */
static void maxpool_route(const mr_op_ctx *c, const mr_tensor *g, mr_tensor *gx)
{
    const int64_t planes = g->shape[0] * g->shape[1];
    const int64_t HW = gx->shape[2] * gx->shape[3], O = g->shape[2] * g->shape[3];
    const int32_t *arg = (const int32_t *)(const void *)c->state;
    const float *gd = g->data;
    float *od = gx->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (gx->numel > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *op = od + pl * HW;
        const float *gp = gd + pl * O;
        const int32_t *ap = arg + pl * O;
        memset(op, 0, (size_t)HW * sizeof(float));
        for (int64_t o = 0; o < O; o++)
            op[ap[o]] += gp[o];
    }
}

static void maxpool_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                        const mr_tensor *gy, mr_tensor *const *gx)
{
    if (gx[0])
        maxpool_route(c, gy, gx[0]);
}

void mr_maxpool2d_deeplift(const mr_op_attrs *a, const mr_tensor *x, const float *x0,
                           const int32_t *arg, const int32_t *arg0, const mr_tensor *gy,
                           mr_tensor *gx)
{
    (void)a; /* the windows are in the argmaxes */
    const int64_t planes = gy->shape[0] * gy->shape[1];
    const int64_t HW = gx->shape[2] * gx->shape[3], O = gy->shape[2] * gy->shape[3];
    const float *xd = x->data, *gd = gy->data;
    float *od = gx->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (gx->numel > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = xd + pl * HW, *x0p = x0 + pl * HW, *gp = gd + pl * O;
        const int32_t *ap = arg + pl * O, *bp = arg0 + pl * O;
        float *op = od + pl * HW;
        memset(op, 0, (size_t)HW * sizeof(float));
        for (int64_t o = 0; o < O; o++) {
            int32_t ia = ap[o], ib = bp[o];
            if (ia == ib) {
                op[ia] += gp[o];
                continue;
            }
            float p = xp[ia] - xp[ib], q = x0p[ib] - x0p[ia];
            float t = p + q > 0.f ? p / (p + q) : 0.5f;
            op[ia] += t * gp[o];
            op[ib] += (1.f - t) * gp[o];
        }
    }
}

static void maxpool_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                        const mr_tensor *y, mr_tensor *dy)
{
    const int64_t planes = y->shape[0] * y->shape[1];
    const int64_t HW = x[0]->shape[2] * x[0]->shape[3], O = y->shape[2] * y->shape[3];
    const int32_t *arg = (const int32_t *)(const void *)c->state;
    const float *dxd = dx[0]->data;
    float *dyd = dy->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (y->numel > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *ip = dxd + pl * HW;
        const int32_t *ap = arg + pl * O;
        float *op = dyd + pl * O;
        for (int64_t o = 0; o < O; o++)
            op[o] = ip[ap[o]];
    }
}

static void maxpool_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                                const mr_tensor *const *dx, const mr_tensor *y, const mr_tensor *dy,
                                const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *const *dgx)
{
    if (dgx[0])
        maxpool_route(c, dgy, dgx[0]);
}

/* ---------------------------------------------------- average pools */

/* The divisor D of a pool whose single output window is the whole H x W
 * plane (a global average pool: adaptive to 1x1, as in squeeze-excitation,
 * or a plain pool with that window and no padding); 0 for any other pool. */
static int64_t global_window(const pool_axis ax[2])
{
    if (ax[0].out != 1 || ax[1].out != 1)
        return 0;
    int64_t h0, h1, ch, w0, w1, cw;
    axis_window(&ax[0], 0, &h0, &h1, &ch);
    axis_window(&ax[1], 0, &w0, &w1, &cw);
    if (h0 != 0 || h1 != ax[0].in || w0 != 0 || w1 != ax[1].in)
        return 0;
    return MR_MAX(ch * cw, 1);
}

/* Σ p[i] over n floats in double: eight running sums (entry i goes to sum
 * i mod 8, the last n mod 8 to a ninth), added in a fixed tree. A single
 * running sum is one dependent add per entry; eight vectorize. The order
 * depends on n only, so the result does not depend on the batch or the
 * thread count. */
static double plane_sum(const float *p, int64_t n)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail = 0.0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += p[i + j];
    for (; i < n; i++)
        tail += p[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

/* y = the average pool of x (kind POOL_AVG or POOL_ADAPTIVE). */
static void avg_apply(const mr_op_attrs *a, int kind, const mr_tensor *x, mr_tensor *y)
{
    pool_axis ax[2];
    make_axes(a, kind, x, y, ax);
    const int64_t H = ax[0].in, W = ax[1].in, OH = ax[0].out, OW = ax[1].out;
    const int64_t planes = y->shape[0] * y->shape[1];
    const float *xd = x->data;
    float *yd = y->data;
    const int64_t D = global_window(ax);
    if (D) { /* the global pool: one vectorized sum per plane */
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (x->numel > 32768)
        for (int64_t pl = 0; pl < planes; pl++)
            yd[pl] = (float)(plane_sum(xd + pl * H * W, H * W) / (double)D);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (x->numel > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = xd + pl * H * W;
        float *yp = yd + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0, h1, ch;
            axis_window(&ax[0], oh, &h0, &h1, &ch);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0, w1, cw;
                axis_window(&ax[1], ow, &w0, &w1, &cw);
                double sum = 0.0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++)
                        sum += xp[h * W + w];
                yp[oh * OW + ow] = (float)(sum / (double)MR_MAX(ch * cw, 1));
            }
        }
    }
}

/* gx = J^T g of the average pool: each output spreads g / D over its window. */
static void avg_transpose(const mr_op_attrs *a, int kind, const mr_tensor *g, mr_tensor *gx)
{
    pool_axis ax[2];
    make_axes(a, kind, gx, g, ax);
    const int64_t H = ax[0].in, W = ax[1].in, OH = ax[0].out, OW = ax[1].out;
    const int64_t planes = g->shape[0] * g->shape[1];
    const float *gd = g->data;
    float *od = gx->data;
    const int64_t D = global_window(ax);
    if (D) { /* the global pool: g / D in every entry, stored once (the same bits as 0 + g / D) */
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (gx->numel > 32768)
        for (int64_t pl = 0; pl < planes; pl++) {
            float v = (float)((double)gd[pl] / (double)D), *op = od + pl * H * W;
            for (int64_t i = 0; i < H * W; i++)
                op[i] = v;
        }
        return;
    }
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (gx->numel > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *op = od + pl * H * W;
        const float *gp = gd + pl * OH * OW;
        memset(op, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0, h1, ch;
            axis_window(&ax[0], oh, &h0, &h1, &ch);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0, w1, cw;
                axis_window(&ax[1], ow, &w0, &w1, &cw);
                float v = (float)((double)gp[oh * OW + ow] / (double)MR_MAX(ch * cw, 1));
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++)
                        op[h * W + w] += v;
            }
        }
    }
}

/* Average pools are linear in x: the JVP is the pool of dx and the VJP
 * tangent the transpose applied to dgy. The two kinds share these four
 * wrappers, written once by this macro. */
#define MR_AVG_POOL_PASSES(prefix, KIND)                                                         \
    static void prefix##_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)    \
    {                                                                                            \
        avg_apply(c->attrs, KIND, x[0], y);                                                      \
    }                                                                                            \
    static void prefix##_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,  \
                             const mr_tensor *gy, mr_tensor *const *gx)                          \
    {                                                                                            \
        if (gx[0])                                                                               \
            avg_transpose(c->attrs, KIND, gy, gx[0]);                                            \
    }                                                                                            \
    static void prefix##_jvp(const mr_op_ctx *c, const mr_tensor *const *x,                      \
                             const mr_tensor *const *dx, const mr_tensor *y, mr_tensor *dy)      \
    {                                                                                            \
        avg_apply(c->attrs, KIND, dx[0], dy);                                                    \
    }                                                                                            \
    static void prefix##_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,              \
                                     const mr_tensor *const *dx, const mr_tensor *y,             \
                                     const mr_tensor *dy, const mr_tensor *gy,                   \
                                     const mr_tensor *dgy, mr_tensor *const *dgx)                \
    {                                                                                            \
        if (dgx[0])                                                                              \
            avg_transpose(c->attrs, KIND, dgy, dgx[0]);                                          \
    }

MR_AVG_POOL_PASSES(avgpool, POOL_AVG)
MR_AVG_POOL_PASSES(adaptive, POOL_ADAPTIVE)

const mr_op_kernels mr_cpu_maxpool2d = {
    .forward = maxpool_forward,
    .vjp = maxpool_vjp,
    .jvp = maxpool_jvp,
    .vjp_tangent = maxpool_vjp_tangent,
};

const mr_op_kernels mr_cpu_avgpool2d = {
    .forward = avgpool_forward,
    .vjp = avgpool_vjp,
    .jvp = avgpool_jvp,
    .vjp_tangent = avgpool_vjp_tangent,
};

const mr_op_kernels mr_cpu_adaptive_avgpool2d = {
    .forward = adaptive_forward,
    .vjp = adaptive_vjp,
    .jvp = adaptive_jvp,
    .vjp_tangent = adaptive_vjp_tangent,
};
