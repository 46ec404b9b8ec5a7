/*
 * elementwise.c — binary elementwise ops: add (residual connections) and
 * broadcast mul (squeeze-excitation gates).
 *
 * add: a, b of identical per-sample shape.
 *   forward      y   = a + b
 *   vjp          ga  = gy,            gb  = gy
 *   jvp          dy  = da + db
 *   vjp_tangent  dga = dgy,           dgb = dgy        (add is linear: no second-order term)
 *
 * mul: a is (N, C, H, W) and b is (N, C, 1, 1) (one gate per channel, broadcast
 * over H, W) or b has a's shape. With S the entries of a that share one b:
 *   forward      y   = a ⊙ b
 *   vjp          ga  = gy ⊙ b,                 gb  = Σ_S gy ⊙ a
 *   jvp          dy  = da ⊙ b + a ⊙ db
 *   vjp_tangent  dga = dgy ⊙ b + gy ⊙ db,      dgb = Σ_S (dgy ⊙ a + gy ⊙ da)
 * (the second derivatives of a bilinear map: ∂²y/∂a∂b = 1, ∂²y/∂a² = ∂²y/∂b² = 0).
 *
 * Both inputs are viewed as rows: b has `rows` entries and each one multiplies
 * `inner` consecutive entries of a (inner = H W in the broadcast form, 1 in the
 * same-shape form). Loops run over rows in parallel; each Σ_S is summed in
 * double by the one thread that owns its row, so results do not depend on the
 * thread count. Either input gradient may be NULL (not wanted): it is skipped.
 */
#include "op.h"

#include <string.h>

/* ------------------------------------------------------------------ add */

static int same_shape(const mr_shape *a, const mr_shape *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->d[i] != b->d[i])
            return 0;
    return 1;
}

static int add_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                     int nparams, mr_shape *out, void *cache)
{
    if (!same_shape(&in[0], &in[1])) {
        char s0[64], s1[64];
        return mr_error(MR_ESHAPE, "add: inputs must have the same shape, got Nx%s and Nx%s",
                        mr_shape_str(&in[0], s0, sizeof s0), mr_shape_str(&in[1], s1, sizeof s1));
    }
    *out = in[0];
    return MR_OK;
}

const mr_op_def mr_op_add = {
    .name = "add",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 2,
    .min_params = 0,
    .max_params = 0,
    .infer = add_infer,
};

/* ------------------------------------------------------------------ mul */

static int mul_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                     int nparams, mr_shape *out, void *cache)
{
    const mr_shape *s0 = &in[0], *s1 = &in[1];
    int gate = s0->ndim == 3 && s1->ndim == 3 && s1->d[0] == s0->d[0] && s1->d[1] == 1 &&
               s1->d[2] == 1;
    if (!same_shape(s0, s1) && !gate) {
        char b0[64], b1[64];
        return mr_error(MR_ESHAPE,
                        "mul: input 1 must be NxCx1x1 or shaped like input 0 (NxCxHxW), got "
                        "Nx%s and Nx%s",
                        mr_shape_str(s0, b0, sizeof b0), mr_shape_str(s1, b1, sizeof b1));
    }
    *out = *s0;
    return MR_OK;
}

const mr_op_def mr_op_mul = {
    .name = "mul",
    .deeplift = MR_DL_BILINEAR,
    .ninputs = 2,
    .min_params = 0,
    .max_params = 0,
    .infer = mul_infer,
};
