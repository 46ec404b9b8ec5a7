/* backend/cpu/shape.c — the CPU kernels of ops/shape.c (formulas there). */
#include "cpu.h"

#include <math.h>
#include <string.h>

static void copy(float *dst, const float *src, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void flatten_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    copy(y->data, x[0]->data, y->numel);
}

static void flatten_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                        const mr_tensor *gy, mr_tensor *const *gx)
{
    if (gx[0])
        copy(gx[0]->data, gy->data, gy->numel);
}

static void flatten_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                        const mr_tensor *y, mr_tensor *dy)
{
    copy(dy->data, dx[0]->data, dy->numel);
}

static void flatten_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                                const mr_tensor *const *dx, const mr_tensor *y,
                                const mr_tensor *dy, const mr_tensor *gy, const mr_tensor *dgy,
                                mr_tensor *const *dgx)
{
    if (dgx[0])
        copy(dgx[0]->data, dgy->data, dgy->numel);
}

/* -------------------------------------------------------------- dropout */

enum { DROPOUT_CALL_SHIFT = 36 };

/* out = mask ⊙ src / (1 - p) in training mode, out = src otherwise. The
 * uniforms are drawn into out first (it is ours to overwrite), then replaced. */
static void dropout_apply(const mr_op_ctx *c, float *out, const float *src, int64_t n)
{
    float p = c->attrs->p;
    if (!c->training || p == 0.0f) {
        copy(out, src, n);
        return;
    }
    uint64_t offset = c->counter << DROPOUT_CALL_SHIFT;
    mr_rng_uniform(out, n, c->seed, c->stream, offset); /* cannot fail: out != NULL, n >= 0 */
    const float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > 32768)
    for (int64_t i = 0; i < n; i++)
        out[i] = out[i] >= p ? src[i] * scale : 0.0f;
}

static void dropout_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    dropout_apply(c, y->data, x[0]->data, y->numel);
}

static void dropout_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                        const mr_tensor *gy, mr_tensor *const *gx)
{
    if (gx[0])
        dropout_apply(c, gx[0]->data, gy->data, gy->numel);
}

static void dropout_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                        const mr_tensor *y, mr_tensor *dy)
{
    dropout_apply(c, dy->data, dx[0]->data, dy->numel);
}

static void dropout_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                                const mr_tensor *const *dx, const mr_tensor *y,
                                const mr_tensor *dy, const mr_tensor *gy, const mr_tensor *dgy,
                                mr_tensor *const *dgx)
{
    if (dgx[0])
        dropout_apply(c, dgx[0]->data, dgy->data, dgy->numel);
}

const mr_op_kernels mr_cpu_flatten = {
    .forward = flatten_forward,
    .vjp = flatten_vjp,
    .jvp = flatten_jvp,
    .vjp_tangent = flatten_vjp_tangent,
};

const mr_op_kernels mr_cpu_dropout = {
    .forward = dropout_forward,
    .vjp = dropout_vjp,
    .jvp = dropout_jvp,
    .vjp_tangent = dropout_vjp_tangent,
};
