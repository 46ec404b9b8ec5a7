/* backend/cpu/binary.c — the CPU kernels of ops/binary.c (formulas there). */
#include "cpu.h"

#define BINARY_PAR_MIN 32768

/* ------------------------------------------------------------------ sub */

/* out = a - b (b may be NULL: out = sign a). */
static void sub_run(int64_t n, const float *a, const float *b, float sign, float *out)
{
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > BINARY_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = b ? a[i] - b[i] : sign * a[i];
}

static void sub_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    sub_run(y->numel, x[0]->data, x[1]->data, 1.0f, y->data);
}
static void sub_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                    const mr_tensor *gy, mr_tensor *const *gx)
{
    if (gx[0])
        sub_run(gy->numel, gy->data, NULL, 1.0f, gx[0]->data);
    if (gx[1])
        sub_run(gy->numel, gy->data, NULL, -1.0f, gx[1]->data);
}
static void sub_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                    const mr_tensor *y, mr_tensor *dy)
{
    sub_run(dy->numel, dx[0]->data, dx[1]->data, 1.0f, dy->data);
}
static void sub_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                            const mr_tensor *const *dx, const mr_tensor *y, const mr_tensor *dy,
                            const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *const *dgx)
{
    if (dgx[0])
        sub_run(dgy->numel, dgy->data, NULL, 1.0f, dgx[0]->data);
    if (dgx[1])
        sub_run(dgy->numel, dgy->data, NULL, -1.0f, dgx[1]->data);
}

const mr_op_kernels mr_cpu_sub = {
    .forward = sub_forward,
    .vjp = sub_vjp,
    .jvp = sub_jvp,
    .vjp_tangent = sub_vjp_tangent,
};

/* ------------------------------------------------------------------ div */

static void div_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    const float *a = x[0]->data, *b = x[1]->data;
    float *o = y->data;
    const int64_t n = y->numel;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > BINARY_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        o[i] = a[i] / b[i];
}

static void div_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                    const mr_tensor *gy, mr_tensor *const *gx)
{
    const float *a = x[0]->data, *b = x[1]->data, *g = gy->data;
    float *ga = gx[0] ? gx[0]->data : NULL, *gb = gx[1] ? gx[1]->data : NULL;
    const int64_t n = gy->numel;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > BINARY_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        if (ga)
            ga[i] = g[i] / b[i];
        if (gb)
            gb[i] = (float)(-(double)g[i] * a[i] / ((double)b[i] * b[i]));
    }
}

static void div_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                    const mr_tensor *y, mr_tensor *dy)
{
    const float *a = x[0]->data, *b = x[1]->data, *da = dx[0]->data, *db = dx[1]->data;
    float *o = dy->data;
    const int64_t n = dy->numel;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > BINARY_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        double bi = b[i];
        o[i] = (float)(da[i] / bi - (double)a[i] * db[i] / (bi * bi));
    }
}

static void div_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                            const mr_tensor *const *dx, const mr_tensor *y, const mr_tensor *dy,
                            const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *const *dgx)
{
    const float *a = x[0]->data, *b = x[1]->data, *da = dx[0]->data, *db = dx[1]->data;
    const float *g = gy->data, *dg = dgy->data;
    float *dga = dgx[0] ? dgx[0]->data : NULL, *dgb = dgx[1] ? dgx[1]->data : NULL;
    const int64_t n = gy->numel;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > BINARY_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        double ai = a[i], bi = b[i], b2 = bi * bi;
        if (dga)
            dga[i] = (float)(dg[i] / bi - (double)g[i] * db[i] / b2);
        if (dgb)
            dgb[i] = (float)(-(double)dg[i] * ai / b2 -
                             (double)g[i] * (da[i] / b2 - 2.0 * ai * db[i] / (b2 * bi)));
    }
}

const mr_op_kernels mr_cpu_div = {
    .forward = div_forward,
    .vjp = div_vjp,
    .jvp = div_jvp,
    .vjp_tangent = div_vjp_tangent,
};
