/*
 * shape.c — ops that move entries without arithmetic: flatten, dropout.
 *
 * flatten: (N, C, H, W) -> (N, C H W) (any per-sample shape -> one dim), a copy
 * in the same row-major order. It is linear and its Jacobian is the identity:
 *   y = x,   gx = gy,   dy = dx,   dgx = dgy   (second derivative 0).
 *
 * dropout(p), 0 <= p < 1:
 *   inference:  y = x  (and every pass is a copy, as for flatten)
 *   training:   y = m ⊙ x / (1 - p),  m_i = [u_i >= p],  u_i ~ U(0, 1)
 *               gx = m ⊙ gy / (1 - p),  dy = m ⊙ dx / (1 - p),  dgx = m ⊙ dgy / (1 - p)
 * (linear in x for a fixed mask: no second-order term). As in PyTorch, entries
 * are kept with probability 1 - p and kept ones scaled by 1/(1 - p).
 *
 * The mask is not stored: u_i is value number counter·2^36 + i of the
 * counter-based stream (seed, stream) = (ctx->seed, node id), where counter is
 * the forward call number (forwards in the net's mode; inference-only passes,
 * which drop nothing, do not count) and i the entry's index in the batch. The reverse
 * passes after a forward see the same counter and so regenerate the same mask;
 * the next forward draws a fresh one. The u_i do not depend on the thread
 * count. (2^36 entries per batch and 2^28 calls before offsets wrap.)
 */
#include "op.h"

#include <math.h>
#include <string.h>

/* -------------------------------------------------------------- flatten */

static int flatten_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                         int nparams, mr_shape *out)
{
    out->ndim = 1;
    out->d[0] = mr_shape_numel(&in[0]);
    out->d[1] = out->d[2] = 0;
    return MR_OK;
}

static void copy(float *dst, const float *src, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void flatten_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    copy(y->data, x[0]->data, y->numel);
}

static void flatten_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                        const mr_tensor *gy, mr_tensor *const *gx)
{
    if (gx[0])
        copy(gx[0]->data, gy->data, gy->numel);
}

static void flatten_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                        const mr_tensor *y, mr_tensor *dy)
{
    copy(dy->data, dx[0]->data, dy->numel);
}

static void flatten_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                                const mr_tensor *const *dx, const mr_tensor *y,
                                const mr_tensor *dy, const mr_tensor *gy, const mr_tensor *dgy,
                                mr_tensor *const *dgx)
{
    if (dgx[0])
        copy(dgx[0]->data, dgy->data, dgy->numel);
}

const mr_op_def mr_op_flatten = {
    .name = "flatten",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = flatten_infer,
    .forward = flatten_forward,
    .vjp = flatten_vjp,
    .jvp = flatten_jvp,
    .vjp_tangent = flatten_vjp_tangent,
};

/* -------------------------------------------------------------- dropout */

enum { DROPOUT_CALL_SHIFT = 36 };

static int dropout_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                         int nparams, mr_shape *out)
{
    if (!(a->p >= 0.0f && a->p < 1.0f))
        return mr_error(MR_EINVAL, "dropout: p must be in [0, 1), got %g", (double)a->p);
    *out = in[0];
    return MR_OK;
}

/* out = mask ⊙ src / (1 - p) in training mode, out = src otherwise. The
 * uniforms are drawn into out first (it is ours to overwrite), then replaced. */
static void dropout_apply(const mr_op_ctx *c, float *out, const float *src, int64_t n)
{
    float p = c->attrs->p;
    if (!c->training || p == 0.0f) {
        copy(out, src, n);
        return;
    }
    uint64_t offset = c->counter << DROPOUT_CALL_SHIFT;
    mr_rng_uniform(out, n, c->seed, c->stream, offset); /* cannot fail: out != NULL, n >= 0 */
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > 32768)
    for (int64_t i = 0; i < n; i++)
        out[i] = out[i] >= p ? src[i] * scale : 0.0f;
}

static void dropout_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    dropout_apply(c, y->data, x[0]->data, y->numel);
}

static void dropout_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                        const mr_tensor *gy, mr_tensor *const *gx)
{
    if (gx[0])
        dropout_apply(c, gx[0]->data, gy->data, gy->numel);
}

static void dropout_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                        const mr_tensor *y, mr_tensor *dy)
{
    dropout_apply(c, dy->data, dx[0]->data, dy->numel);
}

static void dropout_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                                const mr_tensor *const *dx, const mr_tensor *y,
                                const mr_tensor *dy, const mr_tensor *gy, const mr_tensor *dgy,
                                mr_tensor *const *dgx)
{
    if (dgx[0])
        dropout_apply(c, dgx[0]->data, dgy->data, dgy->numel);
}

const mr_op_def mr_op_dropout = {
    .name = "dropout",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = dropout_infer,
    .forward = dropout_forward,
    .vjp = dropout_vjp,
    .jvp = dropout_jvp,
    .vjp_tangent = dropout_vjp_tangent,
};
