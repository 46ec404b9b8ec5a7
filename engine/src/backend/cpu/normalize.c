/* backend/cpu/normalize.c — the CPU kernels of ops/normalize.c (formulas
 * there): layernorm and reduce_mean. */
#include "cpu.h"

#include "../../ops/normalize.h"

#include <math.h>

#define NORM_PAR_MIN 16384

/* ------------------------------------------------------------ layernorm */

/* μ and r of one row of D floats, in double. */
static void ln_stats(const float *x, int64_t D, double eps, double *mu, double *r)
{
    double s = 0.0;
    for (int64_t k = 0; k < D; k++)
        s += x[k];
    const double m = s / (double)D;
    double v = 0.0;
    for (int64_t k = 0; k < D; k++) {
        double d = x[k] - m;
        v += d * d;
    }
    *mu = m;
    *r = 1.0 / sqrt(v / (double)D + eps);
}

enum { LN_FORWARD, LN_VJP, LN_JVP, LN_VJP_TANGENT };

/* One pass over every row:
 *   LN_FORWARD      out = y
 *   LN_VJP          out = gx   from gy
 *   LN_JVP          out = dy   from dx
 *   LN_VJP_TANGENT  out = dgx  from gy, dx, dgy
 * stats (when not NULL) receives (μ, r) of every row. */
static void ln_run(const mr_op_ctx *c, int pass, int64_t N, const float *xall, const float *gyall,
                   const float *dxall, const float *dgyall, float *outall, double *stats)
{
    const layernorm_geom *g = c->cache;
    const int64_t D = g->D, rows = N * g->rows;
    const float *w = c->nparams >= 1 ? c->params[0]->data : NULL;
    const float *bias = c->nparams >= 2 ? c->params[1]->data : NULL;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (rows * D > NORM_PAR_MIN)
    for (int64_t row = 0; row < rows; row++) {
        const float *x = xall + row * D;
        float *out = outall + row * D;
        double mu, r;
        ln_stats(x, D, g->eps, &mu, &r);
        if (stats) {
            stats[2 * row] = mu;
            stats[2 * row + 1] = r;
        }
#define XH(k) (((double)x[k] - mu) * r)
#define W(k) (w ? (double)w[k] : 1.0)
        if (pass == LN_FORWARD) {
            for (int64_t k = 0; k < D; k++)
                out[k] = (float)(W(k) * XH(k) + (bias ? (double)bias[k] : 0.0));
            continue;
        }
        if (pass == LN_JVP) {
            const float *dx = dxall + row * D;
            double sdx = 0.0, s = 0.0;
            for (int64_t k = 0; k < D; k++)
                sdx += dx[k];
            const double mdx = sdx / (double)D;
            for (int64_t k = 0; k < D; k++)
                s += XH(k) * (dx[k] - mdx);
            s /= (double)D;
            for (int64_t k = 0; k < D; k++)
                out[k] = (float)(W(k) * r * ((dx[k] - mdx) - XH(k) * s));
            continue;
        }
        /* the vjp of a gradient row a: r (w a - mean(w a) - xh mean(w a ⊙ xh)) */
        const float *gy = gyall + row * D;
        double sg = 0.0, sgx = 0.0;
        for (int64_t k = 0; k < D; k++) {
            double gk = W(k) * gy[k];
            sg += gk;
            sgx += gk * XH(k);
        }
        const double mg = sg / (double)D, m = sgx / (double)D;
        if (pass == LN_VJP) {
            for (int64_t k = 0; k < D; k++)
                out[k] = (float)(r * (W(k) * gy[k] - mg - XH(k) * m));
            continue;
        }
        /* LN_VJP_TANGENT: vjp(dgy) - r s gx0 - r (m dxh + dm xh) */
        const float *dx = dxall + row * D, *dgy = dgyall + row * D;
        double sdx = 0.0, s = 0.0, sdg = 0.0, sdgx = 0.0;
        for (int64_t k = 0; k < D; k++) {
            sdx += dx[k];
            double dk = W(k) * dgy[k];
            sdg += dk;
            sdgx += dk * XH(k);
        }
        const double mdx = sdx / (double)D, mdg = sdg / (double)D, mdgx = sdgx / (double)D;
        for (int64_t k = 0; k < D; k++)
            s += XH(k) * (dx[k] - mdx);
        s /= (double)D;
        double sgdxh = 0.0; /* Σ g ⊙ dxh */
        for (int64_t k = 0; k < D; k++)
            sgdxh += W(k) * gy[k] * r * ((dx[k] - mdx) - XH(k) * s);
        const double dm = sgdxh / (double)D;
        for (int64_t k = 0; k < D; k++) {
            double xh = XH(k), dxh = r * ((dx[k] - mdx) - xh * s);
            double gx0 = r * (W(k) * gy[k] - mg - xh * m);
            double vdg = r * (W(k) * dgy[k] - mdg - xh * mdgx);
            out[k] = (float)(vdg - r * s * gx0 - r * (m * dxh + dm * xh));
        }
#undef XH
#undef W
    }
}

static void layernorm_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    ln_run(c, LN_FORWARD, y->shape[0], x[0]->data, NULL, NULL, NULL, y->data, NULL);
}

/* gx as ln_run; then dw += Σ_rows gy ⊙ xh and db += Σ_rows gy, one entry per
 * task summing the rows in order (the row statistics kept in scratch). */
static void layernorm_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                          const mr_tensor *gy, mr_tensor *const *gx)
{
    const layernorm_geom *g = c->cache;
    const int64_t N = gy->shape[0], D = g->D, rows = N * g->rows;
    mr_tensor *dw = c->param_grads && c->nparams >= 1 ? c->param_grads[0] : NULL;
    mr_tensor *db = c->param_grads && c->nparams >= 2 ? c->param_grads[1] : NULL;
    double *stats = (double *)c->scratch; /* the workspace's scratch is 64-byte aligned */
    if (gx[0])
        ln_run(c, LN_VJP, N, x[0]->data, gy->data, NULL, NULL, gx[0]->data, stats);
    if (!dw && !db)
        return;
    if (!gx[0]) {
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (rows * D > NORM_PAR_MIN)
        for (int64_t row = 0; row < rows; row++)
            ln_stats(x[0]->data + row * D, D, g->eps, &stats[2 * row], &stats[2 * row + 1]);
    }
    const float *xd = x[0]->data, *gd = gy->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (rows * D > NORM_PAR_MIN)
    for (int64_t k = 0; k < D; k++) {
        double sw = 0.0, sb = 0.0;
        for (int64_t row = 0; row < rows; row++) {
            double gk = gd[row * D + k];
            sw += gk * ((double)xd[row * D + k] - stats[2 * row]) * stats[2 * row + 1];
            sb += gk;
        }
        if (dw)
            dw->data[k] += (float)sw;
        if (db)
            db->data[k] += (float)sb;
    }
}

static void layernorm_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                          const mr_tensor *y, mr_tensor *dy)
{
    ln_run(c, LN_JVP, dy->shape[0], x[0]->data, NULL, dx[0]->data, NULL, dy->data, NULL);
}

static void layernorm_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                                  const mr_tensor *const *dx, const mr_tensor *y,
                                  const mr_tensor *dy, const mr_tensor *gy, const mr_tensor *dgy,
                                  mr_tensor *const *dgx)
{
    if (dgx[0])
        ln_run(c, LN_VJP_TANGENT, gy->shape[0], x[0]->data, gy->data, dx[0]->data, dgy->data,
               dgx[0]->data, NULL);
}

const mr_op_kernels mr_cpu_layernorm = {
    .forward = layernorm_forward,
    .vjp = layernorm_vjp,
    .jvp = layernorm_jvp,
    .vjp_tangent = layernorm_vjp_tangent,
};

/* ---------------------------------------------------------- reduce_mean */

/* y = the means of x. One task per output entry. */
static void rm_forward(const reduce_geom *g, int64_t N, const float *x, float *y)
{
    const int64_t per_in = g->in[0] * g->in[1] * g->in[2];
    const int64_t per_out = g->out[0] * g->out[1] * g->out[2], total = N * per_out;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (N * per_in > NORM_PAR_MIN)
    for (int64_t t = 0; t < total; t++) {
        int64_t n = t / per_out, o = t % per_out;
        int64_t o0 = o / (g->out[1] * g->out[2]), o1 = o / g->out[2] % g->out[1], o2 = o % g->out[2];
        const float *xn = x + n * per_in;
        double s = 0.0;
        for (int64_t i0 = g->red[0] ? 0 : o0; i0 < (g->red[0] ? g->in[0] : o0 + 1); i0++)
            for (int64_t i1 = g->red[1] ? 0 : o1; i1 < (g->red[1] ? g->in[1] : o1 + 1); i1++)
                for (int64_t i2 = g->red[2] ? 0 : o2; i2 < (g->red[2] ? g->in[2] : o2 + 1); i2++)
                    s += xn[(i0 * g->in[1] + i1) * g->in[2] + i2];
        y[t] = (float)(s / (double)g->count);
    }
}

/* gx[i] = gy[o(i)] / count. One task per input entry. */
static void rm_transpose(const reduce_geom *g, int64_t N, const float *gy, float *gx)
{
    const int64_t per_in = g->in[0] * g->in[1] * g->in[2], total = N * per_in;
    const int64_t per_out = g->out[0] * g->out[1] * g->out[2];
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (total > NORM_PAR_MIN)
    for (int64_t t = 0; t < total; t++) {
        int64_t n = t / per_in, i = t % per_in;
        int64_t i0 = i / (g->in[1] * g->in[2]), i1 = i / g->in[2] % g->in[1], i2 = i % g->in[2];
        int64_t o0 = g->red[0] ? 0 : i0, o1 = g->red[1] ? 0 : i1, o2 = g->red[2] ? 0 : i2;
        gx[t] = (float)((double)gy[n * per_out + (o0 * g->out[1] + o1) * g->out[2] + o2] /
                        (double)g->count);
    }
}

static void reduce_mean_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    rm_forward(c->cache, y->shape[0], x[0]->data, y->data);
}
static void reduce_mean_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                            const mr_tensor *gy, mr_tensor *const *gx)
{
    if (gx[0])
        rm_transpose(c->cache, gy->shape[0], gy->data, gx[0]->data);
}
static void reduce_mean_jvp(const mr_op_ctx *c, const mr_tensor *const *x,
                            const mr_tensor *const *dx, const mr_tensor *y, mr_tensor *dy)
{
    rm_forward(c->cache, dy->shape[0], dx[0]->data, dy->data);
}
static void reduce_mean_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                                    const mr_tensor *const *dx, const mr_tensor *y,
                                    const mr_tensor *dy, const mr_tensor *gy, const mr_tensor *dgy,
                                    mr_tensor *const *dgx)
{
    if (dgx[0])
        rm_transpose(c->cache, dgy->shape[0], dgy->data, dgx[0]->data);
}

const mr_op_kernels mr_cpu_reduce_mean = {
    .forward = reduce_mean_forward,
    .vjp = reduce_mean_vjp,
    .jvp = reduce_mean_jvp,
    .vjp_tangent = reduce_mean_vjp_tangent,
};
