/*
 * binary.c — elementwise sub and div of two activations of the same
 * per-sample shape (ONNX Sub and Div between two computed tensors; with an
 * initializer operand use sub_param / div_param, ops/broadcast.c).
 *
 * sub: y = a - b, linear:
 *   vjp          ga  = gy,                     gb  = -gy
 *   jvp          dy  = da - db
 *   vjp_tangent  dga = dgy,                    dgb = -dgy
 * DeepLIFT: the linear rule.
 *
 * div: y = a / b (∂y/∂a = 1/b, ∂y/∂b = -a/b², ∂²y/∂a∂b = -1/b², ∂²y/∂b² = 2a/b³):
 *   vjp          ga  = gy / b,                 gb  = -gy a / b²
 *   jvp          dy  = da / b - a db / b²
 *   vjp_tangent  dga = dgy / b - gy db / b²
 *                dgb = -dgy a / b² - gy (da / b² - 2 a db / b³)
 * DeepLIFT: refused (no rule splits Δ(a/b) exactly when both move).
 *
 * y and ga are single float operations as PyTorch's; the other terms are
 * computed in double and rounded once. Every entry is independent, so the
 * loops are bit-identical for any thread count.
 */
#include "op.h"

static int same_infer(const char *name, const mr_shape *in, mr_shape *out)
{
    int ok = in[0].ndim == in[1].ndim;
    for (int i = 0; ok && i < in[0].ndim; i++)
        ok = in[0].d[i] == in[1].d[i];
    if (!ok) {
        char s0[64], s1[64];
        return mr_error(MR_ESHAPE,
                        "%s: inputs must have the same shape, got Nx%s and Nx%s (a constant operand: "
                        "%s_param)",
                        name, mr_shape_str(&in[0], s0, sizeof s0), mr_shape_str(&in[1], s1, sizeof s1),
                        name);
    }
    *out = in[0];
    return MR_OK;
}

static int sub_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                     int nparams, mr_shape *out, void *cache)
{
    return same_infer("sub", in, out);
}

static int div_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                     int nparams, mr_shape *out, void *cache)
{
    return same_infer("div", in, out);
}

const mr_op_def mr_op_sub = {
    .name = "sub",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 2,
    .min_params = 0,
    .max_params = 0,
    .infer = sub_infer,
};

const mr_op_def mr_op_div = {
    .name = "div",
    .deeplift = MR_DL_REFUSE,
    .ninputs = 2,
    .min_params = 0,
    .max_params = 0,
    .infer = div_infer,
};
