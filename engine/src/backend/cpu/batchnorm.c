/* backend/cpu/batchnorm.c — the CPU kernels of ops/batchnorm.c (formulas there). */
#include "cpu.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { P_W, P_B, P_MEAN, P_VAR };

static double bn_eps(const mr_op_attrs *a) { return a->eps != 0.0f ? (double)a->eps : 1e-5; }

static double bn_momentum(const mr_op_attrs *a)
{
    return a->momentum != 0.0f ? (double)a->momentum : 0.1;
}

/* Channels C and per-sample spatial size S of a batch tensor (N, C, ...). */
static void bn_dims(const mr_tensor *x, int64_t *N, int64_t *C, int64_t *S)
{
    *N = x->shape[0];
    *C = x->shape[1];
    *S = x->numel / (*N * *C);
}

/* Scale a_c = w_c / sqrt(v_c + eps) and shift b_c - m_c a_c of inference mode. */
static void bn_affine(const mr_op_ctx *c, int64_t ch, float *scale, float *shift)
{
    double s = 1.0 / sqrt((double)c->params[P_VAR]->data[ch] + bn_eps(c->attrs));
    double al = s * (double)c->params[P_W]->data[ch];
    *scale = (float)al;
    *shift = (float)((double)c->params[P_B]->data[ch] - (double)c->params[P_MEAN]->data[ch] * al);
}

/* y = x * scale_c + shift_c for every plane (n, c), inference statistics. */
static void bn_apply_inference(const mr_op_ctx *c, const float *x, float *y, int64_t N, int64_t C,
                               int64_t S, int with_shift)
{
    int64_t planes = N * C;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (N * C * S > 32768)
    for (int64_t p = 0; p < planes; p++) {
        float scale, shift;
        bn_affine(c, p % C, &scale, &shift);
        if (!with_shift)
            shift = 0.0f;
        const float *xp = x + p * S;
        float *yp = y + p * S;
        for (int64_t i = 0; i < S; i++)
            yp[i] = xp[i] * scale + shift;
    }
}

static void bn_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    int64_t N, C, S;
    bn_dims(x[0], &N, &C, &S);
    float *mean_s = c->state, *invstd_s = c->state + C;
    if (!c->training) {
        c->state[2 * C] = 0.0f;
        bn_apply_inference(c, x[0]->data, y->data, N, C, S, 1);
        return;
    }
    c->state[2 * C] = 1.0f;
    const double eps = bn_eps(c->attrs), mom = bn_momentum(c->attrs);
    const int64_t M = N * S;
    const float *xd = x[0]->data;
    float *yd = y->data;
    float *w = c->params[P_W]->data, *b = c->params[P_B]->data;
    float *rm = c->params[P_MEAN]->data, *rv = c->params[P_VAR]->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (N * C * S > 32768)
    for (int64_t ch = 0; ch < C; ch++) {
        double sum = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *xp = xd + (n * C + ch) * S;
            for (int64_t i = 0; i < S; i++)
                sum += xp[i];
        }
        double mu = sum / (double)M, ss = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *xp = xd + (n * C + ch) * S;
            for (int64_t i = 0; i < S; i++) {
                double d = xp[i] - mu;
                ss += d * d;
            }
        }
        double var = ss / (double)M;
        double s = 1.0 / sqrt(var + eps);
        double al = s * (double)w[ch];
        float scale = (float)al, shift = (float)((double)b[ch] - mu * al);
        for (int64_t n = 0; n < N; n++) {
            const float *xp = xd + (n * C + ch) * S;
            float *yp = yd + (n * C + ch) * S;
            for (int64_t i = 0; i < S; i++)
                yp[i] = xp[i] * scale + shift;
        }
        mean_s[ch] = (float)mu;
        invstd_s[ch] = (float)s;
        /* PyTorch's update; a single value per channel has no unbiased variance
         * (PyTorch refuses it), so the biased one (0) is used. */
        double unbiased = M > 1 ? ss / (double)(M - 1) : var;
        rm[ch] = (float)((1.0 - mom) * (double)rm[ch] + mom * mu);
        rv[ch] = (float)((1.0 - mom) * (double)rv[ch] + mom * unbiased);
    }
}

static void bn_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                   const mr_tensor *gy, mr_tensor *const *gx)
{
    int64_t N, C, S;
    bn_dims(x[0], &N, &C, &S);
    const int batch_stats = c->state[2 * C] != 0.0f;
    const float *xd = x[0]->data, *g = gy->data;
    float *gxd = gx[0] ? gx[0]->data : NULL;
    float *gw = c->param_grads ? c->param_grads[P_W]->data : NULL;
    float *gb = c->param_grads ? c->param_grads[P_B]->data : NULL;
    const float *w = c->params[P_W]->data;

    if (!batch_stats) {
        if (gxd)
            bn_apply_inference(c, g, gxd, N, C, S, 0);
        if (!gw && !gb)
            return;
        const float *rm = c->params[P_MEAN]->data, *rv = c->params[P_VAR]->data;
        const double eps = bn_eps(c->attrs);
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (N * C * S > 32768)
        for (int64_t ch = 0; ch < C; ch++) {
            double s = 1.0 / sqrt((double)rv[ch] + eps), mu = rm[ch];
            double sg = 0.0, sgx = 0.0;
            for (int64_t n = 0; n < N; n++) {
                const float *xp = xd + (n * C + ch) * S, *gp = g + (n * C + ch) * S;
                for (int64_t i = 0; i < S; i++) {
                    sg += gp[i];
                    sgx += gp[i] * (xp[i] - mu);
                }
            }
            if (gw)
                gw[ch] += (float)(sgx * s);
            if (gb)
                gb[ch] += (float)sg;
        }
        return;
    }

    const float *mean_s = c->state, *invstd_s = c->state + C;
    const double M = (double)(N * S);
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (N * C * S > 32768)
    for (int64_t ch = 0; ch < C; ch++) {
        double mu = mean_s[ch], s = invstd_s[ch];
        double sg = 0.0, sgxh = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *xp = xd + (n * C + ch) * S, *gp = g + (n * C + ch) * S;
            for (int64_t i = 0; i < S; i++) {
                sg += gp[i];
                sgxh += gp[i] * ((xp[i] - mu) * s);
            }
        }
        if (gw)
            gw[ch] += (float)sgxh;
        if (gb)
            gb[ch] += (float)sg;
        if (!gxd)
            continue;
        double k = (double)w[ch] * s, mg = sg / M, mgxh = sgxh / M;
        for (int64_t n = 0; n < N; n++) {
            const float *xp = xd + (n * C + ch) * S, *gp = g + (n * C + ch) * S;
            float *op = gxd + (n * C + ch) * S;
            for (int64_t i = 0; i < S; i++)
                op[i] = (float)(k * (gp[i] - mg - (xp[i] - mu) * s * mgxh));
        }
    }
}

/* Inference mode only: y is affine in x. */
static void bn_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                   const mr_tensor *y, mr_tensor *dy)
{
    int64_t N, C, S;
    bn_dims(x[0], &N, &C, &S);
    bn_apply_inference(c, dx[0]->data, dy->data, N, C, S, 0);
}

/* J does not depend on x, so the tangent of the VJP is the VJP of dgy. */
static void bn_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                           const mr_tensor *y, const mr_tensor *dy, const mr_tensor *gy,
                           const mr_tensor *dgy, mr_tensor *const *dgx)
{
    if (!dgx[0])
        return;
    int64_t N, C, S;
    bn_dims(x[0], &N, &C, &S);
    bn_apply_inference(c, dgy->data, dgx[0]->data, N, C, S, 0);
}

const mr_op_kernels mr_cpu_batchnorm2d = {
    .forward = bn_forward,
    .vjp = bn_vjp,
    .jvp = bn_jvp,
    .vjp_tangent = bn_vjp_tangent,
};
