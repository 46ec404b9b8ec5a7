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
                         int nparams, mr_shape *out, void *cache)
{
    out->ndim = 1;
    out->d[0] = mr_shape_numel(&in[0]);
    out->d[1] = out->d[2] = 0;
    return MR_OK;
}

const mr_op_def mr_op_flatten = {
    .name = "flatten",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = flatten_infer,
};

static int dropout_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                         int nparams, mr_shape *out, void *cache)
{
    if (!(a->p >= 0.0f && a->p < 1.0f))
        return mr_error(MR_EINVAL, "dropout: p must be in [0, 1), got %g", (double)a->p);
    *out = in[0];
    return MR_OK;
}

const mr_op_def mr_op_dropout = {
    .name = "dropout",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = dropout_infer,
};
