/*
 * activation.c — elementwise activations: relu, softplus, silu, sigmoid, tanh.
 *
 * Each op is a scalar function f applied to every entry; with s(z) = 1/(1+e^-z):
 *
 *   relu      f = max(x, 0)        f' = [x > 0]          f'' = 0
 *   softplus  z = beta x (beta 0 means 1, threshold t 0 means 20), as PyTorch:
 *               z > t:  f = x                   f' = 1          f'' = 0
 *               else:   f = log(1 + e^z)/beta   f' = s(z)       f'' = beta s(z)(1 - s(z))
 *   silu      f = x s(x)           f' = s (1 + x (1 - s))
 *                                  f'' = s (1 - s) (2 + x (1 - 2 s))
 *   sigmoid   f = s(x)             f' = s (1 - s)        f'' = s (1 - s)(1 - 2 s)
 *   tanh      f = tanh(x)          f' = 1 - f^2          f'' = -2 f (1 - f^2)
 *             (1 - f^2 evaluated as 4e/(1 + e)^2, e = e^{-2|x|}, not by cancellation)
 *
 * and the four passes are the same for all of them:
 *
 *   forward      y   = f(x)
 *   vjp          gx  = f'(x) gy
 *   jvp          dy  = f'(x) dx
 *   vjp_tangent  dgx = f'(x) dgy + f''(x) dx gy
 *
 * One loop runs those passes for these ops and those of imported_act.c
 * (backend/cpu/pointwise_kernels.h); the ops differ only in f, f', f''.
 * Values are computed in double from the float input (tanh's exponential by
 * libm; silu's and sigmoid's e^{-|x|} by a vectorized double polynomial, and
 * softplus in float by vectorized polynomials: backend/cpu/activation.c gives
 * both kernels and their error bounds) with stable forms
 * (s(z) through e^-|z|, so neither s nor 1 - s cancels; softplus as
 * max(z, 0) + log1p(e^-|z|)), then rounded once. The relu derivative at 0 is 0,
 * as in PyTorch. Every output entry is independent, so the parallel loop is
 * bit-identical for any thread count.
 */
#include "pointwise.h"

#include <math.h>

/* softplus also checks its attributes: beta finite (0 means 1), threshold not NaN. */
static int softplus_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                          int nparams, mr_shape *out, void *cache)
{
    if (!isfinite(a->beta))
        return mr_error(MR_EINVAL, "softplus: beta must be finite, got %g", (double)a->beta);
    if (isnan(a->threshold))
        return mr_error(MR_EINVAL, "softplus: threshold is NaN");
    return mr_pointwise_infer(a, in, params, nparams, out, cache);
}

/* The shape half of the five ops (kernels: backend/cpu/activation.c). */
MR_POINTWISE_DEF(relu, mr_pointwise_infer)
MR_POINTWISE_DEF(softplus, softplus_infer)
MR_POINTWISE_DEF(silu, mr_pointwise_infer)
MR_POINTWISE_DEF(sigmoid, mr_pointwise_infer)
MR_POINTWISE_DEF(tanh, mr_pointwise_infer)
