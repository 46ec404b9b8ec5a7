/*
 * batchnorm.c — batch normalization over channels ("batchnorm2d"), as PyTorch's
 * BatchNorm1d/2d.
 *
 * Input x (N, C, S...) with S the spatial dims: (N, C, H, W), (N, C, L) or none,
 * (N, C). Params, in order: w (C), b (C), running_mean m (C), running_var v (C);
 * the last two are buffers. eps = attrs.eps (0 -> 1e-5), momentum = attrs.momentum (0 -> 0.1).
 * Per channel c, over its M = N * prod(S) entries:
 *
 * Inference (running statistics), affine in x:
 *   s_c = 1 / sqrt(v_c + eps)
 *   y   = (x - m_c) s_c w_c + b_c          = x a_c + (b_c - m_c a_c),  a_c = s_c w_c
 *   gx  = gy a_c
 *   dw += sum gy (x - m_c) s_c,   db += sum gy
 *   jvp dy = dx a_c;  vjp_tangent dgx = dgy a_c   (J does not depend on x)
 *
 * Training (batch statistics):
 *   mu = (1/M) sum x,   var = (1/M) sum (x - mu)^2   (biased),  s = 1 / sqrt(var + eps)
 *   xh = (x - mu) s,    y = xh w + b
 *   m <- (1 - momentum) m + momentum mu
 *   v <- (1 - momentum) v + momentum var M / (M - 1)        (unbiased; M = 1: var)
 *   gx  = (w s) (gy - (1/M) sum gy - xh (1/M) sum gy xh)
 *   dw += sum gy xh,   db += sum gy
 * mu and s are saved in the node state for the reverse pass. Tangents exist in
 * inference mode only (the graph refuses them in training mode).
 *
 * The reverse pass differentiates the forward that actually ran: the state
 * records whether it used batch statistics. Sums run in double in a fixed
 * order, one channel per thread, so results do not depend on the thread count.
 */
#include "op.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int bn_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params, int nparams,
                    mr_shape *out, void *cache)
{
    char buf[64];
    if (in[0].ndim < 1 || in[0].ndim > 3)
        return mr_error(MR_ESHAPE, "batchnorm2d: expected input (N, C), (N, C, L) or (N, C, H, W), got Nx%s",
                        mr_shape_str(&in[0], buf, sizeof buf));
    if (!(a->eps >= 0.0f) || !(a->momentum >= 0.0f))
        return mr_error(MR_EINVAL, "batchnorm2d: eps %g and momentum %g must be >= 0",
                        (double)a->eps, (double)a->momentum);
    static const char *const names[] = {"weight", "bias", "running_mean", "running_var"};
    int64_t C = in[0].d[0];
    for (int k = 0; k < nparams; k++) {
        const mr_tensor *p = params[k];
        if (p->ndim != 1 || p->numel != C)
            return mr_error(MR_ESHAPE, "batchnorm2d: input has %lld channels, %s has %s",
                            (long long)C, names[k], mr_tensor_shape_str(p, buf, sizeof buf));
    }
    *out = in[0];
    return MR_OK;
}

/* state: mean (C), inverse std (C), and a flag: 1 if the forward used batch statistics. */
static size_t bn_state_floats(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                  int nparams, const mr_shape *out, const void *cache, int64_t N)
{
    return (size_t)(2 * in[0].d[0] + 1);
}

const mr_op_def mr_op_batchnorm2d = {
    .name = "batchnorm2d",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 4,
    .max_params = 4,
    .infer = bn_infer,
    .scratch_floats = NULL,
    .state_floats = bn_state_floats,
};
