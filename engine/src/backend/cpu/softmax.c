/* backend/cpu/softmax.c — the CPU kernels of ops/softmax.c (formulas and
 * numerics there). */
#include "cpu.h"

#include <math.h>

/* A tensor seen as rows along per-sample axis a (dim 1 + a): row r = (m, j),
 * m = (n, the positions before the axis), holds entries base + k stride,
 * k < K, with base = m K inner + j and stride = inner (the positions after
 * the axis). Axis 0 is dim 1, the default. */
typedef struct rows {
    int64_t nrows, K, inner;
} rows;

static rows rows_of(const mr_tensor *x, int axis)
{
    rows r;
    int nd = x->ndim - 1;
    if (axis < 0)
        axis += nd; /* infer checked -nd <= axis < nd */
    r.K = x->shape[1 + axis];
    r.inner = 1;
    for (int d = 2 + axis; d < x->ndim; d++)
        r.inner *= x->shape[d];
    r.nrows = x->numel / r.K;
    return r;
}

static inline int64_t row_base(const rows *r, int64_t row)
{
    return (row / r->inner) * r->K * r->inner + row % r->inner;
}

/* log Σ_k e^{x_k} of one row, stable. */
static double row_lse(const float *x, int64_t K, int64_t s)
{
    double m = x[0];
    for (int64_t k = 1; k < K; k++)
        m = fmax(m, (double)x[k * s]);
    double z = 0;
    for (int64_t k = 0; k < K; k++)
        z += exp((double)x[k * s] - m);
    return m + log(z);
}

enum { SM_FORWARD, SM_VJP, SM_JVP, SM_VJP_TANGENT };

/* One pass of softmax (logp = 0) or log-softmax (logp = 1) over every row.
 *   SM_FORWARD:      out = y
 *   SM_VJP:          out = gx      from a = gy
 *   SM_JVP:          out = dy      from a = dx
 *   SM_VJP_TANGENT:  out = dgx     from a = dgy, b = dx, g = gy */
static void sm_run(int logp, int axis, int pass, const mr_tensor *xt, const float *a,
                   const float *b, const float *g, float *out)
{
    const rows r = rows_of(xt, axis);
    const float *xall = xt->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (xt->numel > 16384)
    for (int64_t row = 0; row < r.nrows; row++) {
        const int64_t o = row_base(&r, row), s = r.inner, K = r.K;
        const float *x = xall + o;
        float *y = out + o;
        const double lse = row_lse(x, K, s);
#define P(k) exp((double)x[(k) * s] - lse)
        switch (pass) {
        case SM_FORWARD:
            for (int64_t k = 0; k < K; k++)
                y[k * s] = logp ? (float)((double)x[k * s] - lse) : (float)P(k);
            break;
        case SM_VJP:
        case SM_JVP: {
            const float *ar = a + o;
            if (logp && pass == SM_VJP) { /* gx = gy - p Σ gy */
                double sum = 0;
                for (int64_t k = 0; k < K; k++)
                    sum += ar[k * s];
                for (int64_t k = 0; k < K; k++)
                    y[k * s] = (float)(ar[k * s] - P(k) * sum);
            } else { /* <p, a>, then p ⊙ (a - <p, a>) or, log-softmax jvp, a - <p, a> */
                double pa = 0;
                for (int64_t k = 0; k < K; k++)
                    pa += P(k) * ar[k * s];
                for (int64_t k = 0; k < K; k++)
                    y[k * s] = logp ? (float)(ar[k * s] - pa) : (float)(P(k) * (ar[k * s] - pa));
            }
            break;
        }
        case SM_VJP_TANGENT: {
            const float *dg = a + o, *dx = b + o, *gy = g + o;
            if (logp) { /* dgx = dgy - p Σ dgy - dp Σ gy,  dp = p ⊙ (dx - <p, dx>) */
                double sdg = 0, sg = 0, pdx = 0;
                for (int64_t k = 0; k < K; k++) {
                    sdg += dg[k * s];
                    sg += gy[k * s];
                    pdx += P(k) * dx[k * s];
                }
                for (int64_t k = 0; k < K; k++) {
                    double pk = P(k), dpk = pk * (dx[k * s] - pdx);
                    y[k * s] = (float)(dg[k * s] - pk * sdg - dpk * sg);
                }
            } else { /* dgx = dp ⊙ (gy - <p,gy>) - p <dp,gy> + p ⊙ (dgy - <p,dgy>) */
                double pg = 0, pdx = 0, pdg = 0, pdxg = 0;
                for (int64_t k = 0; k < K; k++) {
                    double pk = P(k);
                    pg += pk * gy[k * s];
                    pdx += pk * dx[k * s];
                    pdg += pk * dg[k * s];
                    pdxg += pk * dx[k * s] * gy[k * s];
                }
                const double dpg = pdxg - pdx * pg; /* <dp, gy> */
                for (int64_t k = 0; k < K; k++) {
                    double pk = P(k), dpk = pk * (dx[k * s] - pdx);
                    y[k * s] = (float)(dpk * (gy[k * s] - pg) - pk * dpg + pk * (dg[k * s] - pdg));
                }
            }
            break;
        }
        }
#undef P
    }
}

/* ------------------------------------------------------------- the ops */

#define MR_SOFTMAX_OP(op, LOGP)                                                                 \
    static void op##_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)       \
    {                                                                                           \
        sm_run(LOGP, c->attrs->axis, SM_FORWARD, x[0], NULL, NULL, NULL, y->data);              \
    }                                                                                           \
    static void op##_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,     \
                         const mr_tensor *gy, mr_tensor *const *gx)                             \
    {                                                                                           \
        if (gx[0])                                                                              \
            sm_run(LOGP, c->attrs->axis, SM_VJP, x[0], gy->data, NULL, NULL, gx[0]->data);      \
    }                                                                                           \
    static void op##_jvp(const mr_op_ctx *c, const mr_tensor *const *x,                         \
                         const mr_tensor *const *dx, const mr_tensor *y, mr_tensor *dy)         \
    {                                                                                           \
        sm_run(LOGP, c->attrs->axis, SM_JVP, x[0], dx[0]->data, NULL, NULL, dy->data);          \
    }                                                                                           \
    static void op##_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,                 \
                                 const mr_tensor *const *dx, const mr_tensor *y,                \
                                 const mr_tensor *dy, const mr_tensor *gy,                      \
                                 const mr_tensor *dgy, mr_tensor *const *dgx)                   \
    {                                                                                           \
        if (dgx[0])                                                                             \
            sm_run(LOGP, c->attrs->axis, SM_VJP_TANGENT, x[0], dgy->data, dx[0]->data, gy->data, \
                   dgx[0]->data);                                                               \
    }                                                                                           \
    const mr_op_kernels mr_cpu_##op = {                                                         \
        .forward = op##_forward,                                                                \
        .vjp = op##_vjp,                                                                        \
        .jvp = op##_jvp,                                                                        \
        .vjp_tangent = op##_vjp_tangent,                                                        \
    };

MR_SOFTMAX_OP(softmax, 0)
MR_SOFTMAX_OP(log_softmax, 1)
