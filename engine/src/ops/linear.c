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
 * thread (backend/cpu/threads.c); the engine's OpenMP loop hands out the (item,
 * block) tasks. The parameter gradients sum over the batch: dW by blocks of
 * LINEAR_BLOCK rows, one sgemm each, and db one output per iteration summing
 * n in order, so they do not depend on the thread count.
 */
#include "op.h"

#include <string.h>

static int linear_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                        int nparams, mr_shape *out, void *cache)
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

const mr_op_def mr_op_linear = {
    .name = "linear",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 1,
    .max_params = 2,
    .infer = linear_infer,
    .scratch_floats = NULL,
    .state_floats = NULL,
};
