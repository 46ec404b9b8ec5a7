/*
 * normalize.c — layernorm over the last per-sample dim and reduce_mean over
 * per-sample axes, for imported models.
 *
 * layernorm (Ba, Kiros and Hinton 2016, "Layer Normalization"; PyTorch's
 * LayerNorm over the last dim, ONNX LayerNormalization with axis -1). Params:
 * weight w (D), bias b (D), both optional (none: w = 1, b = 0). Each row x of
 * D entries (the last dim; ConvNeXt's channels after its permute, a ViT
 * token's features), with eps (attrs; 0 means PyTorch's 1e-5):
 *   μ = Σ x / D,  xc = x - μ,  σ² = Σ xc² / D (biased),  r = (σ² + eps)^-1/2,
 *   xh = r xc,  y = w ⊙ xh + b
 *   vjp          g = w ⊙ gy,  gx = r (g - mean(g) - xh mean(g ⊙ xh))
 *                dw += Σ_rows gy ⊙ xh,  db += Σ_rows gy
 *   jvp          dxc = dx - mean(dx),  s = mean(xh ⊙ dxc),
 *                dxh = r (dxc - xh s),  dy = w ⊙ dxh
 *   vjp_tangent  with gx0 the vjp of gy and m = mean(g ⊙ xh), differentiating
 *                gx = r (g - mean(g) - xh m) along dx (dr = -r² s,
 *                dm = mean(g ⊙ dxh)) and adding the vjp of dgy:
 *                dgx = vjp(dgy) - r s gx0 - r (m dxh + dm xh)
 * Every row's sums are in double, by the one thread that owns the row; the
 * parameter gradients sum the rows in order, one entry per task. DeepLIFT:
 * refused (no rule splits Δy of a normalization exactly).
 *
 * reduce_mean (ONNX ReduceMean, torch.mean over dims): the mean over the
 * per-sample axes whose bit is set in `axes` (0: all of them), keeping them
 * as size 1 when keepdims is 1; reducing every axis without keepdims leaves
 * one entry per sample (shape (1)). With c the number of entries averaged:
 *   forward      y[o] = Σ_{i -> o} x[i] / c         jvp  dy = the same of dx
 *   vjp          gx[i] = gy[o(i)] / c               vjp_tangent  dgx = the same of dgy
 * (linear: DeepLIFT's linear rule). Each output sums its inputs in double in
 * row-major order, by one thread.
 */
#include "normalize.h"

#include <math.h>

/* ------------------------------------------------------------ layernorm */

static int layernorm_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                           int nparams, mr_shape *out, void *cache)
{
    char b[64], p[64];
    mr_shape_str(&in[0], b, sizeof b);
    int64_t D = in[0].d[in[0].ndim - 1];
    for (int k = 0; k < nparams; k++) {
        const mr_tensor *t = params[k];
        if (t->ndim != 1 || t->shape[0] != D)
            return mr_error(MR_ESHAPE, "layernorm: %s must be (%lld), the last dim of Nx%s, got %s",
                            k == 0 ? "weight" : "bias", (long long)D, b,
                            mr_tensor_shape_str(t, p, sizeof p));
    }
    if (!(a->eps >= 0.0f) || !isfinite(a->eps))
        return mr_error(MR_EINVAL, "layernorm: eps must be finite and >= 0 (0 means 1e-5), got %g",
                        (double)a->eps);
    layernorm_geom *g = cache;
    g->D = D;
    g->rows = mr_shape_numel(&in[0]) / D;
    g->eps = a->eps > 0.0f ? (double)a->eps : 1e-5;
    *out = in[0];
    return MR_OK;
}

/* Two doubles (μ, r) per row, for the parameter gradients of the vjp. */
static size_t layernorm_scratch(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                                int nparams, const mr_shape *out, const void *cache, int64_t N)
{
    const layernorm_geom *g = cache;
    return (size_t)(4 * N * g->rows);
}

const mr_op_def mr_op_layernorm = {
    .name = "layernorm",
    .deeplift = MR_DL_REFUSE,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 2,
    .infer = layernorm_infer,
    .scratch_floats = layernorm_scratch,
};

/* ---------------------------------------------------------- reduce_mean */

static int reduce_mean_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                             int nparams, mr_shape *out, void *cache)
{
    char b[64];
    int nd = in[0].ndim;
    int axes = a->axes ? a->axes : (1 << nd) - 1;
    if (axes < 0 || axes >= (1 << nd))
        return mr_error(MR_EINVAL,
                        "reduce_mean: axes (bit i: per-sample axis i) must name axes of Nx%s, got %d",
                        mr_shape_str(&in[0], b, sizeof b), (int)a->axes);
    if (a->keepdims != 0 && a->keepdims != 1)
        return mr_error(MR_EINVAL, "reduce_mean: keepdims must be 0 or 1, got %d", (int)a->keepdims);
    reduce_geom *g = cache;
    int lead = 3 - nd;
    g->count = 1;
    out->ndim = 0;
    for (int i = 0; i < 3; i++) {
        int k = i - lead; /* the per-sample axis of padded dim i */
        g->in[i] = k < 0 ? 1 : in[0].d[k];
        g->red[i] = k >= 0 && (axes >> k & 1);
        g->out[i] = g->red[i] ? 1 : g->in[i];
        if (g->red[i])
            g->count *= g->in[i];
        if (k >= 0 && (!g->red[i] || a->keepdims))
            out->d[out->ndim++] = g->out[i];
    }
    if (out->ndim == 0)
        out->d[out->ndim++] = 1;
    for (int i = out->ndim; i < 3; i++)
        out->d[i] = 0;
    return MR_OK;
}

const mr_op_def mr_op_reduce_mean = {
    .name = "reduce_mean",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = reduce_mean_infer,
};
