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
                     int nparams, mr_shape *out)
{
    if (!same_shape(&in[0], &in[1])) {
        char s0[64], s1[64];
        return mr_error(MR_ESHAPE, "add: inputs must have the same shape, got Nx%s and Nx%s",
                        mr_shape_str(&in[0], s0, sizeof s0), mr_shape_str(&in[1], s1, sizeof s1));
    }
    *out = in[0];
    return MR_OK;
}

/* out = p + q over n entries. */
static void sum2(float *out, const float *p, const float *q, int64_t n)
{
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > 32768)
    for (int64_t i = 0; i < n; i++)
        out[i] = p[i] + q[i];
}

static void copy_if(mr_tensor *dst, const mr_tensor *src)
{
    if (dst)
        memcpy(dst->data, src->data, (size_t)src->numel * sizeof(float));
}

static void add_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    sum2(y->data, x[0]->data, x[1]->data, y->numel);
}

static void add_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                    const mr_tensor *gy, mr_tensor *const *gx)
{
    copy_if(gx[0], gy);
    copy_if(gx[1], gy);
}

static void add_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                    const mr_tensor *y, mr_tensor *dy)
{
    sum2(dy->data, dx[0]->data, dx[1]->data, dy->numel);
}

static void add_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                            const mr_tensor *const *dx, const mr_tensor *y, const mr_tensor *dy,
                            const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *const *dgx)
{
    copy_if(dgx[0], dgy);
    copy_if(dgx[1], dgy);
}

const mr_op_def mr_op_add = {
    .name = "add",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 2,
    .min_params = 0,
    .max_params = 0,
    .infer = add_infer,
    .forward = add_forward,
    .vjp = add_vjp,
    .jvp = add_jvp,
    .vjp_tangent = add_vjp_tangent,
};

/* ------------------------------------------------------------------ mul */

static int mul_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                     int nparams, mr_shape *out)
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

/* Entries of a per entry of b: H W in the broadcast form, 1 in the same-shape form. */
static int64_t mul_inner(const mr_tensor *a, const mr_tensor *b) { return a->numel / b->numel; }

/* y = a ⊙ b, or with the tangent dy = da ⊙ b + a ⊙ db (da, db non-NULL). */
static void mul_rows(float *out, const float *a, const float *b, const float *da, const float *db,
                     int64_t rows, int64_t inner)
{
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (rows * inner > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const float *ar = a + r * inner;
        float *o = out + r * inner;
        if (!da) {
            for (int64_t i = 0; i < inner; i++)
                o[i] = ar[i] * b[r];
        } else {
            const float *dar = da + r * inner;
            for (int64_t i = 0; i < inner; i++)
                o[i] = dar[i] * b[r] + ar[i] * db[r];
        }
    }
}

/* gb[r] = Σ_i (p[r,i] q[r,i] + s[r,i] t[r,i]) over the row (s, t may be NULL), in double. */
static void mul_reduce(float *gb, const float *p, const float *q, const float *s, const float *t,
                       int64_t rows, int64_t inner)
{
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (rows * inner > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t o = r * inner;
        double acc = 0;
        for (int64_t i = 0; i < inner; i++)
            acc += (double)p[o + i] * q[o + i];
        if (s)
            for (int64_t i = 0; i < inner; i++)
                acc += (double)s[o + i] * t[o + i];
        gb[r] = (float)acc;
    }
}

static void mul_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    mul_rows(y->data, x[0]->data, x[1]->data, NULL, NULL, x[1]->numel, mul_inner(x[0], x[1]));
}

static void mul_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                    const mr_tensor *gy, mr_tensor *const *gx)
{
    int64_t rows = x[1]->numel, inner = mul_inner(x[0], x[1]);
    if (gx[0]) /* ga = gy ⊙ b */
        mul_rows(gx[0]->data, gy->data, x[1]->data, NULL, NULL, rows, inner);
    if (gx[1]) /* gb = Σ gy ⊙ a */
        mul_reduce(gx[1]->data, gy->data, x[0]->data, NULL, NULL, rows, inner);
}

static void mul_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                    const mr_tensor *y, mr_tensor *dy)
{
    /* dy = da ⊙ b + a ⊙ db */
    mul_rows(dy->data, x[0]->data, x[1]->data, dx[0]->data, dx[1]->data, x[1]->numel,
             mul_inner(x[0], x[1]));
}

static void mul_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                            const mr_tensor *const *dx, const mr_tensor *y, const mr_tensor *dy,
                            const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *const *dgx)
{
    int64_t rows = x[1]->numel, inner = mul_inner(x[0], x[1]);
    if (dgx[0]) /* dga = dgy ⊙ b + gy ⊙ db: mul_rows' tangent form with (a, da) = (gy, dgy) */
        mul_rows(dgx[0]->data, gy->data, x[1]->data, dgy->data, dx[1]->data, rows, inner);
    if (dgx[1]) /* dgb = Σ (dgy ⊙ a + gy ⊙ da) */
        mul_reduce(dgx[1]->data, dgy->data, x[0]->data, gy->data, dx[0]->data, rows, inner);
}

const mr_op_def mr_op_mul = {
    .name = "mul",
    .deeplift = MR_DL_BILINEAR,
    .ninputs = 2,
    .min_params = 0,
    .max_params = 0,
    .infer = mul_infer,
    .forward = mul_forward,
    .vjp = mul_vjp,
    .jvp = mul_jvp,
    .vjp_tangent = mul_vjp_tangent,
};
