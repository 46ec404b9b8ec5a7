/* backend/cpu/elementwise.c — the CPU kernels of ops/elementwise.c (formulas there). */
#include "cpu.h"

#include <string.h>

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

/* acc[i mod 8] += p[i] q[i] for i < n - n mod 8, *tail += the rest, in double. */
static inline void dot8(double acc[8], double *tail, const float *p, const float *q, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += (double)p[i + j] * q[i + j];
    for (; i < n; i++)
        *tail += (double)p[i] * q[i];
}

/* gb[r] = Σ_i (p[r,i] q[r,i] + s[r,i] t[r,i]) over the row (s, t may be NULL), in double:
 * eight running sums (entry i to sum i mod 8, the last inner mod 8 to a ninth) added in
 * a fixed tree. One running sum is a dependent add per entry; eight vectorize. The
 * order depends on inner only: the same bits for any batch and thread count. */
static void mul_reduce(float *gb, const float *p, const float *q, const float *s, const float *t,
                       int64_t rows, int64_t inner)
{
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (rows * inner > 32768)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t o = r * inner;
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tail = 0.0;
        dot8(acc, &tail, p + o, q + o, inner);
        if (s)
            dot8(acc, &tail, s + o, t + o, inner);
        gb[r] = (float)(((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) +
                        tail);
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

const mr_op_kernels mr_cpu_add = {
    .forward = add_forward,
    .vjp = add_vjp,
    .jvp = add_jvp,
    .vjp_tangent = add_vjp_tangent,
};

const mr_op_kernels mr_cpu_mul = {
    .forward = mul_forward,
    .vjp = mul_vjp,
    .jvp = mul_jvp,
    .vjp_tangent = mul_vjp_tangent,
};
