/*
 * softmax.c — softmax and log-softmax over dim 1: the K entries of (N, K), or
 * the C channels at every position of (N, C, H, W) (any sample shape: the
 * first per-sample dim is the one normalized), or over the per-sample axis
 * `axis` (attrs; 0, the default, is that first dim; -1 the last, as an
 * attention's scores (heads, queries, keys) need).
 *
 * Along one row x (K entries), with p = softmax(x), lse = log Σ_k e^{x_k},
 * and <u, v> = Σ_k u_k v_k:
 *
 * softmax, y = p, J = diag(p) - p p^T (symmetric):
 *   forward      p   = e^{x - lse}
 *   vjp          gx  = p ⊙ (gy - <p, gy>)
 *   jvp          dp  = p ⊙ (dx - <p, dx>)
 *   vjp_tangent  differentiating gx along dx (dp as above) and adding the vjp of dgy:
 *                dgx = dp ⊙ (gy - <p, gy>) - p <dp, gy> + p ⊙ (dgy - <p, dgy>)
 *                with <dp, gy> = <p ⊙ dx, gy> - <p, dx> <p, gy>
 *
 * log-softmax, y = x - lse, J = I - 1 p^T:
 *   forward      y   = x - lse
 *   vjp          gx  = gy - p Σ gy
 *   jvp          dy  = dx - <p, dx>
 *   vjp_tangent  dgx = dgy - p Σ dgy - dp Σ gy
 *
 * Numerics: lse = m + log Σ e^{x_k - m} with m = max x (no overflow), every
 * sum in double, p_k recomputed in double from x (not read back from the
 * rounded y). Rows are independent and each row is reduced by one thread, so
 * results are identical for every thread count.
 */
#include "op.h"

static int softmax_infer_named(const char *name, const mr_op_attrs *a, const mr_shape *in,
                               mr_shape *out)
{
    if (in[0].ndim < 1) {
        char b[64];
        return mr_error(MR_ESHAPE, "%s: input must be NxK or NxCxHxW, got Nx%s", name,
                        mr_shape_str(&in[0], b, sizeof b));
    }
    if (a->axis < -in[0].ndim || a->axis >= in[0].ndim) {
        char b[64];
        return mr_error(MR_EINVAL, "%s: axis %d is not a per-sample axis of Nx%s", name,
                        (int)a->axis, mr_shape_str(&in[0], b, sizeof b));
    }
    *out = in[0];
    return MR_OK;
}

static int softmax_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                         int nparams, mr_shape *out, void *cache)
{
    return softmax_infer_named("softmax", a, in, out);
}

static int log_softmax_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                             int nparams, mr_shape *out, void *cache)
{
    return softmax_infer_named("log_softmax", a, in, out);
}

const mr_op_def mr_op_softmax = {
    .name = "softmax",
    .deeplift = MR_DL_REFUSE,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = softmax_infer,
};

const mr_op_def mr_op_log_softmax = {
    .name = "log_softmax",
    .deeplift = MR_DL_REFUSE,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = log_softmax_infer,
};
