/*
 * matmul.c — matrix products of imported models: matmul of two activations
 * (attention's Q K^T and P V) and matmul_param, an activation times a weight
 * (ONNX MatMul with an initializer, as exporters write a Linear layer applied
 * to tokens).
 *
 * matmul: a (B, n, k) and b (B, k, m) per sample (B products per item), or a
 * (n, k) and b (k, m); y = a b, (B, n, m) or (n, m). Bilinear, so
 *   forward      y   = a b
 *   vjp          ga  = gy b^T,                 gb  = a^T gy
 *   jvp          dy  = da b + a db
 *   vjp_tangent  dga = dgy b^T + gy db^T,      dgb = a^T dgy + da^T gy
 * (the second derivatives of a bilinear map: the cross terms only). DeepLIFT:
 * the bilinear rule (deeplift.c), exact for any bilinear map.
 *
 * matmul_param: x (..., k) per sample (1..3 dims, the last is k), parameters
 * weight W (k, m) (ONNX MatMul's B as stored: no transpose) and an optional
 * bias b (m); y (..., m) = x W + b, row by row. Affine in x:
 *   vjp          gx  = gy W^T,   dW += Σ x^T gy,   db += Σ_rows gy
 *   jvp          dy  = dx W       vjp_tangent  dgx = dgy W^T
 * DeepLIFT: the linear rule.
 *
 * Invariance (as linear.c): every product is one sgemm per task with shapes
 * fixed by the layer (one (item, product) pair for matmul; one block of
 * MATMUL_ROWS rows of an item for matmul_param), never by N or the thread
 * count; dW sums the items in order, one block of MATMUL_COLS columns per
 * task, and db one entry per task, in double.
 */
#include "matmul.h"

static int matmul_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                        int nparams, mr_shape *out, void *cache)
{
    const mr_shape *s0 = &in[0], *s1 = &in[1];
    int nd = s0->ndim, ok = nd == s1->ndim && (nd == 2 || nd == 3);
    int o = nd - 2; /* offset of the matrix dims */
    if (ok)
        ok = s0->d[o + 1] == s1->d[o] && (nd == 2 || s0->d[0] == s1->d[0]);
    if (!ok) {
        char b0[64], b1[64];
        return mr_error(MR_ESHAPE,
                        "matmul: inputs must be NxBxnxk and NxBxkxm (or Nxnxk and Nxkxm), got Nx%s "
                        "and Nx%s",
                        mr_shape_str(s0, b0, sizeof b0), mr_shape_str(s1, b1, sizeof b1));
    }
    matmul_geom *g = cache;
    g->B = nd == 3 ? s0->d[0] : 1;
    g->n = s0->d[o];
    g->k = s0->d[o + 1];
    g->m = s1->d[o + 1];
    *out = *s0;
    out->d[o + 1] = g->m;
    return MR_OK;
}

const mr_op_def mr_op_matmul = {
    .name = "matmul",
    .deeplift = MR_DL_BILINEAR,
    .ninputs = 2,
    .min_params = 0,
    .max_params = 0,
    .infer = matmul_infer,
};

static int matmul_param_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                              int nparams, mr_shape *out, void *cache)
{
    char xs[64], ws[64];
    mr_shape_str(&in[0], xs, sizeof xs);
    const mr_tensor *w = params[0];
    int64_t k = in[0].d[in[0].ndim - 1];
    if (w->ndim != 2 || w->shape[0] != k)
        return mr_error(MR_ESHAPE, "matmul_param: weight must be (%lld, m) for input Nx%s, got %s",
                        (long long)k, xs, mr_tensor_shape_str(w, ws, sizeof ws));
    if (nparams > 1 && (params[1]->ndim != 1 || params[1]->shape[0] != w->shape[1]))
        return mr_error(MR_ESHAPE, "matmul_param: bias must be (%lld), got %s",
                        (long long)w->shape[1], mr_tensor_shape_str(params[1], ws, sizeof ws));
    matmul_geom *g = cache;
    g->B = 1;
    g->k = k;
    g->m = w->shape[1];
    g->rows = mr_shape_numel(&in[0]) / k;
    g->n = g->rows;
    *out = in[0];
    out->d[in[0].ndim - 1] = g->m;
    return MR_OK;
}

const mr_op_def mr_op_matmul_param = {
    .name = "matmul_param",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 1,
    .max_params = 2,
    .infer = matmul_param_infer,
};
