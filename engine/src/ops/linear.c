/*
 * linear.c — fully connected layer, as PyTorch's nn.Linear.
 *
 * Params: weight W (out, in), optional bias b (out).
 * Input x (N, in): samples must be 1-D, as in PyTorch (flatten first).
 *   forward      y   = x W^T + b                 (N, out)
 *   vjp          gx  = gy W                      (N, in)    =
 *                dW += gy^T x                    (out, in)  +=
 *                db += sum_n gy[n, :]            (out)      +=
 *   jvp          dy  = dx W^T                    (y is affine in x)
 *   vjp_tangent  dgx = dgy W                     (J = W does not depend on x)
 *
 * Invariance (README, "How correctness is shown": batch invariance): item
 * n's y, gx, dy and dgx are the same bits whatever the batch size, the item's
 * position in the batch and the thread count. One sgemm over the batch would
 * not keep it (its kernels block the N rows differently for each N, and row
 * r's sums change in the last bits), so every per-item product is an sgemv on
 * that item alone, over a fixed block of LINEAR_BLOCK outputs (or inputs, for
 * gx): the partition depends on the weight's shape only. OpenBLAS runs on one
 * thread (core/threads.c); the engine's OpenMP loop hands out the (item,
 * block) tasks. The parameter gradients sum over the batch: dW by blocks of
 * LINEAR_BLOCK rows, one sgemm each, and db one output per iteration summing
 * n in order, so they do not depend on the thread count.
 */
#include "op.h"

#include <cblas.h>
#include <string.h>

/* Outputs (forward, JVP) or inputs (gradients) per task: a partition fixed
 * by the weight's shape, never by the batch or the thread count. */
#define LINEAR_BLOCK 128

static int64_t blocks(int64_t n) { return (n + LINEAR_BLOCK - 1) / LINEAR_BLOCK; }

static int linear_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                        int nparams, mr_shape *out)
{
    char xs[64], ws[64];
    mr_shape_str(&in[0], xs, sizeof xs);
    const mr_tensor *w = params[0];
    mr_tensor_shape_str(w, ws, sizeof ws);
    if (in[0].ndim != 1)
        return mr_error(MR_ESHAPE,
                        "linear: input samples must be 1-D (features), got %s; flatten them first",
                        xs);
    if (w->ndim != 2)
        return mr_error(MR_ESHAPE, "linear: weight must be 2-D (out, in), got %s", ws);
    if (w->shape[1] != in[0].d[0])
        return mr_error(MR_ESHAPE,
                        "linear: input has %lld features, weight expects %lld (weight %s)",
                        (long long)in[0].d[0], (long long)w->shape[1], ws);
    if (nparams > 1) {
        const mr_tensor *b = params[1];
        if (b->ndim != 1 || b->shape[0] != w->shape[0]) {
            char bs[64];
            return mr_error(MR_ESHAPE, "linear: bias has shape %s, expected %lld (weight %s)",
                            mr_tensor_shape_str(b, bs, sizeof bs), (long long)w->shape[0], ws);
        }
    }
    out->ndim = 1;
    out->d[0] = w->shape[0];
    return MR_OK;
}

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

const mr_op_def mr_op_linear = {
    .name = "linear",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 1,
    .max_params = 2,
    .infer = linear_infer,
    .scratch_floats = NULL,
    .state_floats = NULL,
    .forward = linear_forward,
    .vjp = linear_vjp,
    .jvp = linear_jvp,
    .vjp_tangent = linear_vjp_tangent,
};
