/*
 * imported_act.c — the elementwise activations of imported models: clip
 * (ReLU6 = clip to [0, 6]), hardsigmoid, hardswish, gelu (erf and tanh forms)
 * and erf.
 *
 * Each op is a scalar function f applied to every entry, and its four passes
 * are those of activation.c:
 *
 *   forward      y   = f(x)
 *   vjp          gx  = f'(x) gy
 *   jvp          dy  = f'(x) dx
 *   vjp_tangent  dgx = f'(x) dgy + f''(x) dx gy
 *
 * with (Φ and φ the standard normal CDF and density, ONNX and PyTorch
 * definitions):
 *
 *   clip         f = min(max(x, min), max)     f' = [min < x < max]     f'' = 0
 *   hardsigmoid  z = alpha x + beta, f = min(max(z, 0), 1)
 *                                              f' = alpha [0 < z < 1]   f'' = 0
 *                (ONNX HardSigmoid; PyTorch's is alpha = 1/6, beta = 1/2)
 *   hardswish    f = x min(max(x + 3, 0), 6) / 6 (Howard et al. 2019, "Searching
 *                for MobileNetV3"; PyTorch's Hardswish)
 *                f' = 0 (x < -3),  x/3 + 1/2 (-3 <= x <= 3),  1 (x > 3)
 *                f'' = 1/3 on -3 <= x <= 3, else 0
 *   gelu (erf)   f = x Φ(x) = x (1 + erf(x/√2)) / 2 (Hendrycks and Gimpel 2016,
 *                "Gaussian Error Linear Units")
 *                f' = Φ(x) + x φ(x)          f'' = φ(x) (2 - x²)
 *   gelu (tanh)  u = k (x + c x³), k = √(2/π), c = 0.044715, t = tanh(u):
 *                f = x (1 + t) / 2
 *                f' = (1 + t)/2 + x (1 - t²) u'/2,              u' = k (1 + 3 c x²)
 *                f'' = (1 - t²) [u' + x (u'' - 2 t u'²)/2],     u'' = 6 k c x
 *   erf          f = erf(x) = 2/√π ∫_0^x e^{-s²} ds
 *                f' = 2/√π e^{-x²}           f'' = -2 x f'
 *
 * The derivatives at the kinks are PyTorch's: clip and hardsigmoid take 0 on
 * the boundary (hardtanh's and hardsigmoid's backward), hardswish takes the
 * middle piece on both boundaries (its backward tests x < -3, then x <= 3).
 * Values are computed in double from the float input and rounded once; Φ of
 * a negative x is erfc(-x/√2)/2 and 1 + t is 2 σ(2u) (no cancellation in the
 * left tail). Every output entry is independent, so the parallel loop is
 * bit-identical for any thread count. DeepLIFT: the rescale rule.
 */
#include "pointwise.h"

#include <math.h>

static int clip_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                      int nparams, mr_shape *out, void *cache)
{
    if (isnan(a->min) || isnan(a->max))
        return mr_error(MR_EINVAL, "clip: min and max must not be NaN");
    if (!(a->min < a->max))
        return mr_error(MR_EINVAL,
                        "clip: min must be below max (-inf and inf for no bound), got %g and %g",
                        (double)a->min, (double)a->max);
    return mr_pointwise_infer(a, in, params, nparams, out, cache);
}

static int hardsigmoid_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                             int nparams, mr_shape *out, void *cache)
{
    if (!isfinite(a->alpha) || !isfinite(a->beta))
        return mr_error(MR_EINVAL, "hardsigmoid: alpha and beta must be finite, got %g and %g",
                        (double)a->alpha, (double)a->beta);
    return mr_pointwise_infer(a, in, params, nparams, out, cache);
}

static int gelu_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                      int nparams, mr_shape *out, void *cache)
{
    if (a->approximate != 0 && a->approximate != 1)
        return mr_error(MR_EINVAL,
                        "gelu: approximate must be 0 (erf form) or 1 (tanh form), got %d",
                        (int)a->approximate);
    return mr_pointwise_infer(a, in, params, nparams, out, cache);
}

/* The shape half of the five ops (kernels: backend/cpu/imported_act.c). */
MR_POINTWISE_DEF(clip, clip_infer)
MR_POINTWISE_DEF(hardsigmoid, hardsigmoid_infer)
MR_POINTWISE_DEF(hardswish, mr_pointwise_infer)
MR_POINTWISE_DEF(gelu, gelu_infer)
MR_POINTWISE_DEF(erf, mr_pointwise_infer)
