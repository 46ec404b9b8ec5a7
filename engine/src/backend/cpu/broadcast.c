/* backend/cpu/broadcast.c — the CPU kernels of ops/broadcast.c (formulas
 * there). */
#include "cpu.h"

#include "../../ops/broadcast.h"

#define BCAST_PAR_MIN 32768

typedef enum { BC_ADD, BC_SUB, BC_MUL, BC_DIV } bc_kind;

/* out = x ∘ P (forward 1) or out = ∂y/∂x ⊙ a (forward 0). One task per
 * (item, i0, i1) row. */
static void bc_apply(bc_kind k, const bcast_geom *g, int64_t N, const float *p, const float *a,
                     float *out, int forward)
{
    const int64_t rows = N * g->x[0] * g->x[1], W = g->x[2];
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (rows * W > BCAST_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t i0 = r / g->x[1] % g->x[0], i1 = r % g->x[1];
        const float *pr = p + i0 * g->ps[0] + i1 * g->ps[1];
        const float *ar = a + r * W;
        float *o = out + r * W;
        for (int64_t i2 = 0; i2 < W; i2++) {
            float pv = pr[i2 * g->ps[2]], av = ar[i2];
            switch (k) {
            case BC_ADD: o[i2] = forward ? av + pv : av; break;
            case BC_SUB: o[i2] = forward ? av - pv : av; break;
            case BC_MUL: o[i2] = av * pv; break;
            case BC_DIV: o[i2] = av / pv; break;
            }
        }
    }
}

/* dP += Σ_{n, broadcast} ∂y/∂p gy. One task per entry of P, its terms summed
 * in double in (item, row-major) order. */
static void bc_param_grad(bc_kind k, const bcast_geom *g, int64_t N, const float *p, const float *x,
                          const float *gy, float *dp)
{
    const int64_t pn = g->p[0] * g->p[1] * g->p[2], per = g->x[0] * g->x[1] * g->x[2];
    int64_t lo[3], hi[3];
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (N * per > BCAST_PAR_MIN) private(lo, hi)
    for (int64_t j = 0; j < pn; j++) {
        int64_t jd[3] = {j / (g->p[1] * g->p[2]), j / g->p[2] % g->p[1], j % g->p[2]};
        for (int d = 0; d < 3; d++) {
            int bc = g->p[d] == 1 && g->x[d] > 1;
            lo[d] = bc ? 0 : jd[d];
            hi[d] = bc ? g->x[d] : jd[d] + 1;
        }
        const double pv = p[j];
        double s = 0.0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t i0 = lo[0]; i0 < hi[0]; i0++)
                for (int64_t i1 = lo[1]; i1 < hi[1]; i1++)
                    for (int64_t i2 = lo[2]; i2 < hi[2]; i2++) {
                        int64_t t = n * per + (i0 * g->x[1] + i1) * g->x[2] + i2;
                        switch (k) {
                        case BC_ADD: s += gy[t]; break;
                        case BC_SUB: s -= gy[t]; break;
                        case BC_MUL: s += (double)gy[t] * x[t]; break;
                        case BC_DIV: s -= (double)gy[t] * x[t] / (pv * pv); break;
                        }
                    }
        dp[j] += (float)s;
    }
}

#define MR_BCAST_OP(op, KIND)                                                                   \
    static void op##_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)       \
    {                                                                                           \
        bc_apply(KIND, c->cache, y->shape[0], c->params[0]->data, x[0]->data, y->data, 1);      \
    }                                                                                           \
    static void op##_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,     \
                         const mr_tensor *gy, mr_tensor *const *gx)                             \
    {                                                                                           \
        if (gx[0])                                                                              \
            bc_apply(KIND, c->cache, gy->shape[0], c->params[0]->data, gy->data, gx[0]->data,  \
                     0);                                                                        \
        if (c->param_grads && c->param_grads[0])                                                \
            bc_param_grad(KIND, c->cache, gy->shape[0], c->params[0]->data, x[0]->data,        \
                          gy->data, c->param_grads[0]->data);                                   \
    }                                                                                           \
    static void op##_jvp(const mr_op_ctx *c, const mr_tensor *const *x,                         \
                         const mr_tensor *const *dx, const mr_tensor *y, mr_tensor *dy)         \
    {                                                                                           \
        bc_apply(KIND, c->cache, dy->shape[0], c->params[0]->data, dx[0]->data, dy->data, 0);   \
    }                                                                                           \
    static void op##_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,                 \
                                 const mr_tensor *const *dx, const mr_tensor *y,                \
                                 const mr_tensor *dy, const mr_tensor *gy,                      \
                                 const mr_tensor *dgy, mr_tensor *const *dgx)                   \
    {                                                                                           \
        if (dgx[0])                                                                             \
            bc_apply(KIND, c->cache, dgy->shape[0], c->params[0]->data, dgy->data,             \
                     dgx[0]->data, 0);                                                          \
    }                                                                                           \
    const mr_op_kernels mr_cpu_##op = {                                                         \
        .forward = op##_forward,                                                                \
        .vjp = op##_vjp,                                                                        \
        .jvp = op##_jvp,                                                                        \
        .vjp_tangent = op##_vjp_tangent,                                                        \
    };

MR_BCAST_OP(add_param, BC_ADD)
MR_BCAST_OP(sub_param, BC_SUB)
MR_BCAST_OP(mul_param, BC_MUL)
MR_BCAST_OP(div_param, BC_DIV)
