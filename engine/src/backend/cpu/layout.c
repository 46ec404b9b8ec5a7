/* backend/cpu/layout.c — the CPU kernels of ops/layout.c (formulas there).
 * Every op but constant is a 0/1 map P: forward and jvp apply P, vjp and
 * vjp_tangent apply P^T; each output entry is written by one thread. */
#include "cpu.h"

#include "../../ops/layout.h"

#include <string.h>

/* Parallel loops copy at least this many floats per task. */
#define LAYOUT_PAR_MIN 32768

static int64_t batch_of(const mr_tensor *t) { return t->shape[0]; }

/* ------------------------------------------------------------- reshape */

static void copy_all(float *dst, const float *src, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void reshape_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    copy_all(y->data, x[0]->data, y->numel);
}
static void reshape_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                        const mr_tensor *gy, mr_tensor *const *gx)
{
    if (gx[0])
        copy_all(gx[0]->data, gy->data, gy->numel);
}
static void reshape_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                        const mr_tensor *y, mr_tensor *dy)
{
    copy_all(dy->data, dx[0]->data, dy->numel);
}
static void reshape_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                                const mr_tensor *const *dx, const mr_tensor *y,
                                const mr_tensor *dy, const mr_tensor *gy, const mr_tensor *dgy,
                                mr_tensor *const *dgx)
{
    if (dgx[0])
        copy_all(dgx[0]->data, dgy->data, dgy->numel);
}

const mr_op_kernels mr_cpu_reshape = {
    .forward = reshape_forward,
    .vjp = reshape_vjp,
    .jvp = reshape_jvp,
    .vjp_tangent = reshape_vjp_tangent,
};

/* ----------------------------------------------------------- transpose */

/* dst (N, out) = the permutation of src (N, in) (inverse 0), or its transpose:
 * dst (N, in) from src (N, out) (inverse 1). Each task is one row (item, i0,
 * i1) of the output of the direction taken. */
static void permute(const layout_geom *g, int64_t N, const float *src, float *dst, int inverse)
{
    /* strides of the input in its own dims */
    int64_t is[3] = {g->in[1] * g->in[2], g->in[2], 1};
    /* the input stride of each output dim */
    int64_t os[3] = {is[g->perm[0]], is[g->perm[1]], is[g->perm[2]]};
    int64_t o0 = g->out[0], o1 = g->out[1], o2 = g->out[2];
    int64_t per = o0 * o1 * o2, rows = N * o0 * o1;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (N * per > LAYOUT_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = r / (o0 * o1), i0 = r / o1 % o0, i1 = r % o1;
        const int64_t base_in = n * per + i0 * os[0] + i1 * os[1];
        const int64_t base_out = r * o2;
        if (!inverse)
            for (int64_t i2 = 0; i2 < o2; i2++)
                dst[base_out + i2] = src[base_in + i2 * os[2]];
        else
            for (int64_t i2 = 0; i2 < o2; i2++)
                dst[base_in + i2 * os[2]] = src[base_out + i2];
    }
}

static void transpose_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    permute(c->cache, batch_of(y), x[0]->data, y->data, 0);
}
static void transpose_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                          const mr_tensor *gy, mr_tensor *const *gx)
{
    if (gx[0])
        permute(c->cache, batch_of(gy), gy->data, gx[0]->data, 1);
}
static void transpose_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                          const mr_tensor *y, mr_tensor *dy)
{
    permute(c->cache, batch_of(dy), dx[0]->data, dy->data, 0);
}
static void transpose_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                                  const mr_tensor *const *dx, const mr_tensor *y,
                                  const mr_tensor *dy, const mr_tensor *gy, const mr_tensor *dgy,
                                  mr_tensor *const *dgx)
{
    if (dgx[0])
        permute(c->cache, batch_of(dgy), dgy->data, dgx[0]->data, 1);
}

const mr_op_kernels mr_cpu_transpose = {
    .forward = transpose_forward,
    .vjp = transpose_vjp,
    .jvp = transpose_jvp,
    .vjp_tangent = transpose_vjp_tangent,
};

/* -------------------------------------------------------------- concat */

/* y rows = [a row, b row] (split 0), or a, b rows from y rows (split 1); a or
 * b may be NULL when splitting (that input needs no gradient). */
static void concat_rows(const concat_geom *g, int64_t N, float *a, float *b, float *y, int split)
{
    int64_t na = g->alen * g->inner, nb = g->blen * g->inner, rows = N * g->outer;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (rows * (na + nb) > LAYOUT_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        float *yr = y + r * (na + nb);
        if (!split) {
            memcpy(yr, a + r * na, (size_t)na * sizeof(float));
            memcpy(yr + na, b + r * nb, (size_t)nb * sizeof(float));
        } else {
            if (a)
                memcpy(a + r * na, yr, (size_t)na * sizeof(float));
            if (b)
                memcpy(b + r * nb, yr + na, (size_t)nb * sizeof(float));
        }
    }
}

static float *data_or_null(mr_tensor *t) { return t ? t->data : NULL; }

static void concat_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    concat_rows(c->cache, batch_of(y), x[0]->data, x[1]->data, y->data, 0);
}
static void concat_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                       const mr_tensor *gy, mr_tensor *const *gx)
{
    concat_rows(c->cache, batch_of(gy), data_or_null(gx[0]), data_or_null(gx[1]), gy->data, 1);
}
static void concat_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                       const mr_tensor *y, mr_tensor *dy)
{
    concat_rows(c->cache, batch_of(dy), dx[0]->data, dx[1]->data, dy->data, 0);
}
static void concat_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                               const mr_tensor *const *dx, const mr_tensor *y, const mr_tensor *dy,
                               const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *const *dgx)
{
    concat_rows(c->cache, batch_of(dgy), data_or_null(dgx[0]), data_or_null(dgx[1]), dgy->data, 1);
}

const mr_op_kernels mr_cpu_concat = {
    .forward = concat_forward,
    .vjp = concat_vjp,
    .jvp = concat_jvp,
    .vjp_tangent = concat_vjp_tangent,
};

/* ------------------------------------------------------- slice, gather */

/* y = the kept blocks of x (scatter 0), or x = y's blocks in place, zeros
 * elsewhere (scatter 1: P^T). One task per (item, outer row). */
static void slice_rows(const slice_geom *g, int64_t N, float *x, float *y, int scatter)
{
    int64_t rows = N * g->outer, in = g->inner;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (rows * g->len * in > LAYOUT_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * g->len * in, *yr = y + r * g->olen * in;
        if (scatter)
            memset(xr, 0, (size_t)(g->len * in) * sizeof(float));
        for (int64_t j = 0; j < g->olen; j++) {
            float *xb = xr + (g->start + j * g->step) * in, *yb = yr + j * in;
            if (scatter)
                memcpy(xb, yb, (size_t)in * sizeof(float));
            else
                memcpy(yb, xb, (size_t)in * sizeof(float));
        }
    }
}

static void slice_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    slice_rows(c->cache, batch_of(y), x[0]->data, y->data, 0);
}
static void slice_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                      const mr_tensor *gy, mr_tensor *const *gx)
{
    if (gx[0])
        slice_rows(c->cache, batch_of(gy), gx[0]->data, gy->data, 1);
}
static void slice_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                      const mr_tensor *y, mr_tensor *dy)
{
    slice_rows(c->cache, batch_of(dy), dx[0]->data, dy->data, 0);
}
static void slice_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                              const mr_tensor *const *dx, const mr_tensor *y, const mr_tensor *dy,
                              const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *const *dgx)
{
    if (dgx[0])
        slice_rows(c->cache, batch_of(dgy), dgx[0]->data, dgy->data, 1);
}

const mr_op_kernels mr_cpu_slice = {
    .forward = slice_forward,
    .vjp = slice_vjp,
    .jvp = slice_jvp,
    .vjp_tangent = slice_vjp_tangent,
};

/* gather is a slice of one block whose axis the shape half dropped. */
const mr_op_kernels mr_cpu_gather = {
    .forward = slice_forward,
    .vjp = slice_vjp,
    .jvp = slice_jvp,
    .vjp_tangent = slice_vjp_tangent,
};

/* ----------------------------------------------------------------- pad */

/* The input index that output index o of a dim reads: begin b, input size d;
 * -1 for a zero entry. */
static inline int64_t pad_source(int64_t o, int64_t b, int64_t d, int reflect)
{
    int64_t i = o - b;
    if (i >= 0 && i < d)
        return i;
    if (!reflect)
        return -1;
    return i < 0 ? -i : 2 * (d - 1) - i;
}

/* y = P x: one task per output row (item, o0, o1). */
static void pad_apply(const layout_geom *g, int64_t N, const float *x, float *y)
{
    int64_t rows = N * g->out[0] * g->out[1], per_in = g->in[0] * g->in[1] * g->in[2];
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (rows * g->out[2] > LAYOUT_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = r / (g->out[0] * g->out[1]), o0 = r / g->out[1] % g->out[0], o1 = r % g->out[1];
        int64_t i0 = pad_source(o0, g->begin[0], g->in[0], g->reflect);
        int64_t i1 = pad_source(o1, g->begin[1], g->in[1], g->reflect);
        float *yr = y + r * g->out[2];
        const float *xr = x + n * per_in + (i0 * g->in[1] + i1) * g->in[2];
        for (int64_t o2 = 0; o2 < g->out[2]; o2++) {
            int64_t i2 = pad_source(o2, g->begin[2], g->in[2], g->reflect);
            yr[o2] = (i0 < 0 || i1 < 0 || i2 < 0) ? 0.0f : xr[i2];
        }
    }
}

/* The output indices of a dim that read input index i (P's preimages), in
 * increasing order: the copy, and with reflect the mirror images. */
static int pad_preimages(int64_t i, int64_t b, int64_t e, int64_t d, int reflect, int64_t o[3])
{
    int k = 0;
    if (reflect && i >= 1 && i <= b)
        o[k++] = b - i;                 /* left mirror: o - b = -i */
    o[k++] = b + i;
    if (reflect && i >= d - 1 - e && i <= d - 2)
        o[k++] = b + 2 * (d - 1) - i;   /* right mirror: o - b = 2 (d - 1) - i */
    return k;
}

/* gx = P^T gy: each input entry sums (in double, in a fixed order) the
 * outputs that read it. One task per input row (item, i0, i1). */
static void pad_transpose(const layout_geom *g, int64_t N, const float *gy, float *gx)
{
    int64_t rows = N * g->in[0] * g->in[1], per_out = g->out[0] * g->out[1] * g->out[2];
    int64_t e[3];
    for (int k = 0; k < 3; k++)
        e[k] = g->out[k] - g->in[k] - g->begin[k];
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (rows * g->in[2] > LAYOUT_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = r / (g->in[0] * g->in[1]), i0 = r / g->in[1] % g->in[0], i1 = r % g->in[1];
        int64_t p0[3], p1[3], p2[3];
        int k0 = pad_preimages(i0, g->begin[0], e[0], g->in[0], g->reflect, p0);
        int k1 = pad_preimages(i1, g->begin[1], e[1], g->in[1], g->reflect, p1);
        const float *gn = gy + n * per_out;
        for (int64_t i2 = 0; i2 < g->in[2]; i2++) {
            int k2 = pad_preimages(i2, g->begin[2], e[2], g->in[2], g->reflect, p2);
            double s = 0.0;
            for (int a = 0; a < k0; a++)
                for (int b = 0; b < k1; b++)
                    for (int c = 0; c < k2; c++)
                        s += gn[(p0[a] * g->out[1] + p1[b]) * g->out[2] + p2[c]];
            gx[r * g->in[2] + i2] = (float)s;
        }
    }
}

static void pad_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    pad_apply(c->cache, batch_of(y), x[0]->data, y->data);
}
static void pad_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                    const mr_tensor *gy, mr_tensor *const *gx)
{
    if (gx[0])
        pad_transpose(c->cache, batch_of(gy), gy->data, gx[0]->data);
}
static void pad_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                    const mr_tensor *y, mr_tensor *dy)
{
    pad_apply(c->cache, batch_of(dy), dx[0]->data, dy->data);
}
static void pad_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                            const mr_tensor *const *dx, const mr_tensor *y, const mr_tensor *dy,
                            const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *const *dgx)
{
    if (dgx[0])
        pad_transpose(c->cache, batch_of(dgy), dgy->data, dgx[0]->data);
}

const mr_op_kernels mr_cpu_pad = {
    .forward = pad_forward,
    .vjp = pad_vjp,
    .jvp = pad_jvp,
    .vjp_tangent = pad_vjp_tangent,
};

/* ------------------------------------------------------------ constant */

static void constant_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    const mr_tensor *p = c->params[0];
    int64_t N = batch_of(y);
    for (int64_t n = 0; n < N; n++)
        memcpy(y->data + n * p->numel, p->data, (size_t)p->numel * sizeof(float));
}

static void zero_all(mr_tensor *t)
{
    if (t)
        memset(t->data, 0, (size_t)t->numel * sizeof(float));
}

/* gx = 0; dP += Σ_n gy[n], each entry summed over n in order (in double) by one thread. */
static void constant_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                         const mr_tensor *gy, mr_tensor *const *gx)
{
    zero_all(gx[0]);
    mr_tensor *dp = c->param_grads ? c->param_grads[0] : NULL;
    if (!dp)
        return;
    int64_t N = batch_of(gy), m = dp->numel;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (N * m > LAYOUT_PAR_MIN)
    for (int64_t i = 0; i < m; i++) {
        double s = 0.0;
        for (int64_t n = 0; n < N; n++)
            s += gy->data[n * m + i];
        dp->data[i] += (float)s;
    }
}
static void constant_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                         const mr_tensor *y, mr_tensor *dy)
{
    zero_all(dy);
}
static void constant_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                                 const mr_tensor *const *dx, const mr_tensor *y,
                                 const mr_tensor *dy, const mr_tensor *gy, const mr_tensor *dgy,
                                 mr_tensor *const *dgx)
{
    zero_all(dgx[0]);
}

const mr_op_kernels mr_cpu_constant = {
    .forward = constant_forward,
    .vjp = constant_vjp,
    .jvp = constant_jvp,
    .vjp_tangent = constant_vjp_tangent,
};
