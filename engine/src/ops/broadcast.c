/*
 * broadcast.c — elementwise ops between an activation x and a parameter P
 * broadcast into x's per-sample shape: add_param, sub_param, mul_param,
 * div_param (ONNX Add, Sub, Mul, Div with an initializer as the second
 * operand: input normalization (x - mean) / std with per-channel (C, 1, 1)
 * constants, GELU's split form's scalars, ConvNeXt's layer scale (C, 1, 1), a
 * ViT's position embedding (tokens, dim)).
 *
 * P's dims align with x's trailing dims (numpy's rule, no leading batch 1:
 * the reader strips it); each is 1 (broadcast) or x's. The output is shaped
 * like x. With p = P at the entry's broadcast index:
 *
 *   op          y          ∂y/∂x     ∂y/∂p
 *   add_param   x + p      1         1
 *   sub_param   x - p      1         -1
 *   mul_param   x p        p         x
 *   div_param   x / p      1/p       -x/p²
 *
 *   vjp          gx  = ∂y/∂x ⊙ gy,    dP += Σ_{n, broadcast} ∂y/∂p gy
 *   jvp          dy  = ∂y/∂x ⊙ dx
 *   vjp_tangent  dgx = ∂y/∂x ⊙ dgy   (each is affine in x: no second-order term)
 *
 * y, gx, dy and dgx are single float operations, as PyTorch's (x / p is
 * divided, not multiplied by 1/p); each P gradient entry sums its terms in
 * double, in order, in one task. DeepLIFT: the linear rule (affine in x).
 * c - x is sub_param then mul_param by -1 (exact); c / x has no op.
 */
#include "broadcast.h"

static int bcast_infer(const char *name, const mr_shape *in, mr_tensor *const *params,
                       mr_shape *out, void *cache)
{
    const mr_tensor *p = params[0];
    char xs[64], ps[64];
    mr_shape_str(&in[0], xs, sizeof xs);
    mr_tensor_shape_str(p, ps, sizeof ps);
    int nd = in[0].ndim, ok = p->ndim <= nd;
    for (int i = 0; ok && i < p->ndim; i++) {
        int64_t pd = p->shape[p->ndim - 1 - i], xd = in[0].d[nd - 1 - i];
        ok = pd == 1 || pd == xd;
    }
    if (!ok)
        return mr_error(MR_ESHAPE,
                        "%s: the parameter (%s) must broadcast into the input's per-sample shape "
                        "Nx%s (trailing dims 1 or equal)",
                        name, ps, xs);
    bcast_geom *g = cache;
    for (int i = 0; i < 3; i++) {
        int kx = i - (3 - nd), kp = i - (3 - p->ndim);
        g->x[i] = kx < 0 ? 1 : in[0].d[kx];
        g->p[i] = kp < 0 ? 1 : p->shape[kp];
    }
    g->ps[2] = g->p[2] == 1 ? 0 : 1;
    g->ps[1] = g->p[1] == 1 ? 0 : g->p[2];
    g->ps[0] = g->p[0] == 1 ? 0 : g->p[1] * g->p[2];
    *out = in[0];
    return MR_OK;
}

#define MR_BCAST_DEF(op)                                                                        \
    static int op##_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,   \
                          int nparams, mr_shape *out, void *cache)                              \
    {                                                                                           \
        return bcast_infer(#op, in, params, out, cache);                                        \
    }                                                                                           \
    const mr_op_def mr_op_##op = {                                                              \
        .name = #op,                                                                            \
        .deeplift = MR_DL_LINEAR,                                                               \
        .ninputs = 1,                                                                           \
        .min_params = 1,                                                                        \
        .max_params = 1,                                                                        \
        .infer = op##_infer,                                                                    \
    };

MR_BCAST_DEF(add_param)
MR_BCAST_DEF(sub_param)
MR_BCAST_DEF(mul_param)
MR_BCAST_DEF(div_param)
