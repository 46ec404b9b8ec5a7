/* backend/cpu/linear.c — the CPU kernels of ops/linear.c (formulas there). */
#include "cpu.h"

#include <cblas.h>
#include <string.h>

/* Outputs (forward, JVP) or inputs (gradients) per task: a partition fixed
 * by the weight's shape, never by the batch or the thread count. */
#define LINEAR_BLOCK 128

static int64_t blocks(int64_t n) { return (n + LINEAR_BLOCK - 1) / LINEAR_BLOCK; }

/* y (N, out) = x (N, in) W^T (+ b): per (item n, block [o0, o0 + rows) of
 * outputs), y[n, o0:] = W[o0:, :] x[n, :] (+ b[o0:]). The block is zeroed
 * first (beta = 0 must not read what the workspace held). */
static void linear_apply(const mr_tensor *w, const float *bias, const float *x, int64_t N, float *y)
{
    const int64_t nout = w->shape[0], nin = w->shape[1], nb = blocks(nout), tasks = N * nb;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (tasks > 1 && N * nout * nin > 32768)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t n = t / nb, o0 = (t % nb) * LINEAR_BLOCK, rows = MR_MIN(LINEAR_BLOCK, nout - o0);
        float *d = y + n * nout + o0;
        memset(d, 0, (size_t)rows * sizeof(float));
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)nin, 1.0f, w->data + o0 * nin,
                    (int)nin, x + n * nin, 1, 0.0f, d, 1);
        if (bias)
            for (int64_t o = 0; o < rows; o++)
                d[o] += bias[o0 + o];
    }
}

/* gx (N, in) = gy (N, out) W: per (item n, block [i0, i0 + cols) of inputs),
 * gx[n, i0:] = W[:, i0:]^T gy[n, :]. */
static void linear_adjoint(const mr_tensor *w, const float *gy, int64_t N, float *gx)
{
    const int64_t nout = w->shape[0], nin = w->shape[1], nb = blocks(nin), tasks = N * nb;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (tasks > 1 && N * nout * nin > 32768)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t n = t / nb, i0 = (t % nb) * LINEAR_BLOCK, cols = MR_MIN(LINEAR_BLOCK, nin - i0);
        float *d = gx + n * nin + i0;
        memset(d, 0, (size_t)cols * sizeof(float));
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)nout, (int)cols, 1.0f, w->data + i0, (int)nin,
                    gy + n * nout, 1, 0.0f, d, 1);
    }
}

static void linear_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    linear_apply(c->params[0], c->nparams > 1 ? c->params[1]->data : NULL, x[0]->data,
                 x[0]->shape[0], y->data);
}

static void linear_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                       const mr_tensor *gy, mr_tensor *const *gx)
{
    const mr_tensor *w = c->params[0];
    const int64_t N = x[0]->shape[0], nout = w->shape[0], nin = w->shape[1];
    if (gx[0])
        linear_adjoint(w, gy->data, N, gx[0]->data);
    if (!c->param_grads)
        return;
    if (c->param_grads[0]) { /* dW (out, in) += gy^T (out, N) x (N, in), by blocks of rows */
        const int64_t nb = blocks(nout);
        float *dw = c->param_grads[0]->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (nb > 1 && N * nout * nin > 32768)
        for (int64_t b = 0; b < nb; b++) {
            int64_t o0 = b * LINEAR_BLOCK, rows = MR_MIN(LINEAR_BLOCK, nout - o0);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)nin, (int)N, 1.0f,
                        gy->data + o0, (int)nout, x[0]->data, (int)nin, 1.0f, dw + o0 * nin,
                        (int)nin);
        }
    }
    if (c->nparams > 1 && c->param_grads[1]) {
        float *db = c->param_grads[1]->data;
        const float *g = gy->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (N * nout > 32768)
        for (int64_t o = 0; o < nout; o++) {
            double s = 0.0;
            for (int64_t n = 0; n < N; n++)
                s += g[n * nout + o];
            db[o] += (float)s;
        }
    }
}

static void linear_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                       const mr_tensor *y, mr_tensor *dy)
{
    linear_apply(c->params[0], NULL, dx[0]->data, x[0]->shape[0], dy->data);
}

static void linear_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                               const mr_tensor *const *dx, const mr_tensor *y, const mr_tensor *dy,
                               const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *const *dgx)
{
    if (!dgx[0])
        return;
    if (!dgy) {
        memset(dgx[0]->data, 0, (size_t)dgx[0]->numel * sizeof(float));
        return;
    }
    linear_adjoint(c->params[0], dgy->data, x[0]->shape[0], dgx[0]->data);
}

const mr_op_kernels mr_cpu_linear = {
    .forward = linear_forward,
    .vjp = linear_vjp,
    .jvp = linear_jvp,
    .vjp_tangent = linear_vjp_tangent,
};
