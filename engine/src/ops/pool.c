/*
 * pool.c — 2-D pooling over (N, C, H, W), as PyTorch: "maxpool2d", "avgpool2d",
 * "adaptive_avgpool2d". No parameters.
 *
 * Windows, per axis (shown for H; W is the same), output index o:
 *   max/avg:   start = o s - p,  end = min(start + k, H + p),  rows [max(start,0), min(end,H))
 *              s = stride (0 -> k); outside the input counts as -inf (max) or 0 (avg)
 *   output:    OH = floor((H + 2p - k + (ceil_mode ? s - 1 : 0)) / s) + 1, and with
 *              ceil_mode one less if (OH - 1) s >= H + p (the last window must
 *              start inside the input or the left padding); p <= k/2
 *   adaptive:  rows [floor(o H / OH), ceil((o + 1) H / OH))
 *
 * maxpool2d   y[o] = x[a(o)], a(o) = the first maximum of the window in row-major
 *             order (a NaN wins, as PyTorch CPU). a is piecewise constant, so
 *             vjp  gx[i] = sum_{o: a(o) = i} gy[o]
 *             jvp  dy[o] = dx[a(o)]
 *             vjp_tangent dgx = vjp of dgy
 *             The argmax of the forward is kept in the node state.
 *             DeepLIFT (mr_maxpool2d_deeplift): per window, a = the argmax at
 *             x, b = the argmax at the baseline x0, Δ = value at x − value at x0.
 *             Then Δy = x[a] − x0[b], and with p = x[a] − x[b] ≥ 0 and
 *             q = x0[b] − x0[a] ≥ 0 (each side's winning margin),
 *               Δx[a] − Δx[b] = p + q,  Δy = Δx[b] + p,
 *             so the multipliers m[a] = t, m[b] = 1 − t, t = p / (p + q)
 *             (m[a] = 1 when a = b; t = 1/2 if p + q = 0, which the
 *             first-maximum rule never gives with a ≠ b) split Δy
 *             exactly: t Δx[a] + (1 − t) Δx[b] = Δy (summation-to-delta,
 *             Shrikumar et al. 2017). These are the multipliers the paper's
 *             Linear and Rescale rules give max(x[a], x[b]) written as
 *             x[b] + relu(x[a] − x[b]): relu's input moves from −q to p, its
 *             multiplier is p / (p + q) = t. Like the gradient (t e_a +
 *             (1 − t) e_b is a convex combination of the unit vectors of the
 *             two maxima), the weights lie in [0, 1] and sum to 1; at x0 = x
 *             the rule is the gradient. gx[i] = Σ_o gy[o] m_o[i].
 * avgpool2d   y[o] = (1/D(o)) sum_{i in window(o)} x[i],
 *             D = (end_h - start_h)(end_w - start_w) (window clipped to the padded
 *             input) with count_include_pad, else the number of input entries in it.
 * adaptive_avgpool2d  y[o] = mean of x over the adaptive window.
 *             Average pools are linear: vjp gx[i] = sum_{o: i in window(o)} gy[o] / D(o),
 *             jvp = the pool of dx, vjp_tangent = vjp of dgy.
 *
 * Parallel over (n, c) planes; each plane is computed in a fixed order.
 */
#include "op.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(int32_t) == sizeof(float), "the argmax is stored in float state slots");

enum { POOL_MAX, POOL_AVG, POOL_ADAPTIVE };

/* One axis of the pooling windows. */
typedef struct pool_axis {
    int64_t in, out, k, s, p;
    int adaptive, include_pad;
} pool_axis;

/* The window [lo, hi) of output index o over the input, and its divisor. */
static inline void axis_window(const pool_axis *ax, int64_t o, int64_t *lo, int64_t *hi, int64_t *cnt)
{
    if (ax->adaptive) {
        *lo = o * ax->in / ax->out;
        *hi = ((o + 1) * ax->in + ax->out - 1) / ax->out;
        *cnt = *hi - *lo;
        return;
    }
    int64_t start = o * ax->s - ax->p;
    int64_t end = MR_MIN(start + ax->k, ax->in + ax->p);
    *lo = MR_MAX(start, 0);
    *hi = MR_MIN(end, ax->in);
    *cnt = ax->include_pad ? end - start : *hi - *lo;
}

static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* PyTorch's pooling_output_shape (dilation 1). */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int ceil_mode)
{
    int64_t out = floor_div(in + 2 * p - (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
    if (ceil_mode && (out - 1) * s >= in + p)
        out--;
    return out;
}

static void make_axes(const mr_op_attrs *a, int kind, const mr_tensor *x, const mr_tensor *y,
                      pool_axis ax[2])
{
    for (int d = 0; d < 2; d++) {
        pool_axis *t = &ax[d];
        memset(t, 0, sizeof *t);
        t->in = x->shape[2 + d];
        t->out = y->shape[2 + d];
        t->adaptive = kind == POOL_ADAPTIVE;
        t->k = a->kernel[d];
        t->s = a->stride[d] ? a->stride[d] : a->kernel[d];
        t->p = a->padding[d];
        t->include_pad = kind == POOL_AVG && a->count_include_pad;
    }
}

/* ------------------------------------------------------------- shapes */

static int check_input(const char *op, const mr_shape *in)
{
    char buf[64];
    if (in->ndim != 3)
        return mr_error(MR_ESHAPE, "%s: expected input (N, C, H, W), got Nx%s", op,
                        mr_shape_str(in, buf, sizeof buf));
    return MR_OK;
}

static int window_infer(const char *op, const mr_op_attrs *a, const mr_shape *in, mr_shape *out)
{
    MR_TRY(check_input(op, in));
    const int32_t *k = a->kernel, *s = a->stride, *p = a->padding;
    if (k[0] < 1 || k[1] < 1)
        return mr_error(MR_EINVAL, "%s: kernel must be positive, got %dx%d", op, k[0], k[1]);
    if (s[0] < 0 || s[1] < 0)
        return mr_error(MR_EINVAL, "%s: stride must be >= 0 (0: the kernel), got %dx%d", op, s[0],
                        s[1]);
    if (p[0] < 0 || p[1] < 0)
        return mr_error(MR_EINVAL, "%s: padding must be >= 0, got %dx%d", op, p[0], p[1]);
    if (a->dilation[0] > 1 || a->dilation[1] > 1 || a->dilation[0] < 0 || a->dilation[1] < 0)
        return mr_error(MR_EINVAL, "%s: dilation %dx%d is not supported (only 1)", op,
                        a->dilation[0], a->dilation[1]);
    if (in->d[1] * in->d[2] > INT32_MAX)
        return mr_error(MR_ESHAPE, "%s: a %lldx%lld plane is too large", op, (long long)in->d[1],
                        (long long)in->d[2]);
    if (p[0] > k[0] / 2 || p[1] > k[1] / 2) {
        char pad[32];
        if (p[0] == p[1])
            snprintf(pad, sizeof pad, "%d", p[0]);
        else
            snprintf(pad, sizeof pad, "%dx%d", p[0], p[1]);
        return mr_error(MR_ESHAPE, "%s: kernel %dx%d with padding %s exceeds half the kernel", op,
                        k[0], k[1], pad);
    }
    int64_t oh = pool_out_size(in->d[1], k[0], s[0] ? s[0] : k[0], p[0], a->ceil_mode);
    int64_t ow = pool_out_size(in->d[2], k[1], s[1] ? s[1] : k[1], p[1], a->ceil_mode);
    if (oh < 1 || ow < 1) {
        char buf[64];
        return mr_error(MR_ESHAPE,
                        "%s: input %s with kernel %dx%d, stride %dx%d, padding %dx%d gives an "
                        "output of %lldx%lld",
                        op, mr_shape_str(in, buf, sizeof buf), k[0], k[1], s[0] ? s[0] : k[0],
                        s[1] ? s[1] : k[1], p[0], p[1], (long long)oh, (long long)ow);
    }
    out->ndim = 3;
    out->d[0] = in->d[0];
    out->d[1] = oh;
    out->d[2] = ow;
    return MR_OK;
}

static int maxpool_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                         int nparams, mr_shape *out)
{
    return window_infer("maxpool2d", a, in, out);
}

static int avgpool_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                         int nparams, mr_shape *out)
{
    return window_infer("avgpool2d", a, in, out);
}

/* out_size (oh, ow); 0 keeps that input dim (PyTorch's None). */
static int adaptive_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                          int nparams, mr_shape *out)
{
    MR_TRY(check_input("adaptive_avgpool2d", in));
    if (a->out_size[0] < 0 || a->out_size[1] < 0)
        return mr_error(MR_EINVAL, "adaptive_avgpool2d: out_size must be >= 0, got %dx%d",
                        a->out_size[0], a->out_size[1]);
    out->ndim = 3;
    out->d[0] = in->d[0];
    out->d[1] = a->out_size[0] ? a->out_size[0] : in->d[1];
    out->d[2] = a->out_size[1] ? a->out_size[1] : in->d[2];
    return MR_OK;
}

/* One int32 argmax per output entry. */
static size_t maxpool_state_floats(const mr_op_attrs *a, const mr_shape *in, const mr_shape *out,
                                   int64_t N)
{
    return (size_t)(N * mr_shape_numel(out));
}

/* ------------------------------------------------------------ maxpool */

static void maxpool_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    pool_axis ax[2];
    make_axes(c->attrs, POOL_MAX, x[0], y, ax);
    const int64_t H = ax[0].in, W = ax[1].in, OH = ax[0].out, OW = ax[1].out;
    const int64_t planes = y->shape[0] * y->shape[1];
    int32_t *arg = (int32_t *)(void *)c->state;
    const float *xd = x[0]->data;
    float *yd = y->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (x[0]->numel > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = xd + pl * H * W;
        float *yp = yd + pl * OH * OW;
        int32_t *ap = arg + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0, h1, cnt;
            axis_window(&ax[0], oh, &h0, &h1, &cnt);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0, w1;
                axis_window(&ax[1], ow, &w0, &w1, &cnt);
                float best = -INFINITY;
                int64_t bi = h0 * W + w0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) {
                        float v = xp[h * W + w];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = h * W + w;
                        }
                    }
                yp[oh * OW + ow] = best;
                ap[oh * OW + ow] = (int32_t)bi;
            }
        }
    }
}

/* gx = 0, then gx[a(o)] += g[o], plane by plane. */
static void maxpool_route(const mr_op_ctx *c, const mr_tensor *g, mr_tensor *gx)
{
    const int64_t planes = g->shape[0] * g->shape[1];
    const int64_t HW = gx->shape[2] * gx->shape[3], O = g->shape[2] * g->shape[3];
    const int32_t *arg = (const int32_t *)(const void *)c->state;
    const float *gd = g->data;
    float *od = gx->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (gx->numel > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *op = od + pl * HW;
        const float *gp = gd + pl * O;
        const int32_t *ap = arg + pl * O;
        memset(op, 0, (size_t)HW * sizeof(float));
        for (int64_t o = 0; o < O; o++)
            op[ap[o]] += gp[o];
    }
}

static void maxpool_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                        const mr_tensor *gy, mr_tensor *const *gx)
{
    if (gx[0])
        maxpool_route(c, gy, gx[0]);
}

void mr_maxpool2d_deeplift(const mr_op_attrs *a, const mr_tensor *x, const float *x0,
                           const int32_t *arg, const int32_t *arg0, const mr_tensor *gy,
                           mr_tensor *gx)
{
    (void)a; /* the windows are in the argmaxes */
    const int64_t planes = gy->shape[0] * gy->shape[1];
    const int64_t HW = gx->shape[2] * gx->shape[3], O = gy->shape[2] * gy->shape[3];
    const float *xd = x->data, *gd = gy->data;
    float *od = gx->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (gx->numel > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = xd + pl * HW, *x0p = x0 + pl * HW, *gp = gd + pl * O;
        const int32_t *ap = arg + pl * O, *bp = arg0 + pl * O;
        float *op = od + pl * HW;
        memset(op, 0, (size_t)HW * sizeof(float));
        for (int64_t o = 0; o < O; o++) {
            int32_t ia = ap[o], ib = bp[o];
            if (ia == ib) {
                op[ia] += gp[o];
                continue;
            }
            float p = xp[ia] - xp[ib], q = x0p[ib] - x0p[ia];
            float t = p + q > 0.f ? p / (p + q) : 0.5f;
            op[ia] += t * gp[o];
            op[ib] += (1.f - t) * gp[o];
        }
    }
}

static void maxpool_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                        const mr_tensor *y, mr_tensor *dy)
{
    const int64_t planes = y->shape[0] * y->shape[1];
    const int64_t HW = x[0]->shape[2] * x[0]->shape[3], O = y->shape[2] * y->shape[3];
    const int32_t *arg = (const int32_t *)(const void *)c->state;
    const float *dxd = dx[0]->data;
    float *dyd = dy->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (y->numel > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *ip = dxd + pl * HW;
        const int32_t *ap = arg + pl * O;
        float *op = dyd + pl * O;
        for (int64_t o = 0; o < O; o++)
            op[o] = ip[ap[o]];
    }
}

static void maxpool_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                                const mr_tensor *const *dx, const mr_tensor *y, const mr_tensor *dy,
                                const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *const *dgx)
{
    if (dgx[0])
        maxpool_route(c, dgy, dgx[0]);
}

/* ---------------------------------------------------- average pools */

/* y = the average pool of x (kind POOL_AVG or POOL_ADAPTIVE). */
static void avg_apply(const mr_op_attrs *a, int kind, const mr_tensor *x, mr_tensor *y)
{
    pool_axis ax[2];
    make_axes(a, kind, x, y, ax);
    const int64_t H = ax[0].in, W = ax[1].in, OH = ax[0].out, OW = ax[1].out;
    const int64_t planes = y->shape[0] * y->shape[1];
    const float *xd = x->data;
    float *yd = y->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (x->numel > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = xd + pl * H * W;
        float *yp = yd + pl * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0, h1, ch;
            axis_window(&ax[0], oh, &h0, &h1, &ch);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0, w1, cw;
                axis_window(&ax[1], ow, &w0, &w1, &cw);
                double sum = 0.0;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++)
                        sum += xp[h * W + w];
                yp[oh * OW + ow] = (float)(sum / (double)MR_MAX(ch * cw, 1));
            }
        }
    }
}

/* gx = J^T g of the average pool: each output spreads g / D over its window. */
static void avg_transpose(const mr_op_attrs *a, int kind, const mr_tensor *g, mr_tensor *gx)
{
    pool_axis ax[2];
    make_axes(a, kind, gx, g, ax);
    const int64_t H = ax[0].in, W = ax[1].in, OH = ax[0].out, OW = ax[1].out;
    const int64_t planes = g->shape[0] * g->shape[1];
    const float *gd = g->data;
    float *od = gx->data;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (gx->numel > 32768)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *op = od + pl * H * W;
        const float *gp = gd + pl * OH * OW;
        memset(op, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0, h1, ch;
            axis_window(&ax[0], oh, &h0, &h1, &ch);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0, w1, cw;
                axis_window(&ax[1], ow, &w0, &w1, &cw);
                float v = (float)((double)gp[oh * OW + ow] / (double)MR_MAX(ch * cw, 1));
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++)
                        op[h * W + w] += v;
            }
        }
    }
}

/* Average pools are linear in x: the JVP is the pool of dx and the VJP
 * tangent the transpose applied to dgy. The two kinds share these four
 * wrappers, written once by this macro. */
#define MR_AVG_POOL_PASSES(prefix, KIND)                                                         \
    static void prefix##_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)    \
    {                                                                                            \
        avg_apply(c->attrs, KIND, x[0], y);                                                      \
    }                                                                                            \
    static void prefix##_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,  \
                             const mr_tensor *gy, mr_tensor *const *gx)                          \
    {                                                                                            \
        if (gx[0])                                                                               \
            avg_transpose(c->attrs, KIND, gy, gx[0]);                                            \
    }                                                                                            \
    static void prefix##_jvp(const mr_op_ctx *c, const mr_tensor *const *x,                      \
                             const mr_tensor *const *dx, const mr_tensor *y, mr_tensor *dy)      \
    {                                                                                            \
        avg_apply(c->attrs, KIND, dx[0], dy);                                                    \
    }                                                                                            \
    static void prefix##_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,              \
                                     const mr_tensor *const *dx, const mr_tensor *y,             \
                                     const mr_tensor *dy, const mr_tensor *gy,                   \
                                     const mr_tensor *dgy, mr_tensor *const *dgx)                \
    {                                                                                            \
        if (dgx[0])                                                                              \
            avg_transpose(c->attrs, KIND, dgy, dgx[0]);                                          \
    }

MR_AVG_POOL_PASSES(avgpool, POOL_AVG)
MR_AVG_POOL_PASSES(adaptive, POOL_ADAPTIVE)

const mr_op_def mr_op_maxpool2d = {
    .name = "maxpool2d",
    .deeplift = MR_DL_MAX,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = maxpool_infer,
    .scratch_floats = NULL,
    .state_floats = maxpool_state_floats,
    .forward = maxpool_forward,
    .vjp = maxpool_vjp,
    .jvp = maxpool_jvp,
    .vjp_tangent = maxpool_vjp_tangent,
};

const mr_op_def mr_op_avgpool2d = {
    .name = "avgpool2d",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = avgpool_infer,
    .scratch_floats = NULL,
    .state_floats = NULL,
    .forward = avgpool_forward,
    .vjp = avgpool_vjp,
    .jvp = avgpool_jvp,
    .vjp_tangent = avgpool_vjp_tangent,
};

const mr_op_def mr_op_adaptive_avgpool2d = {
    .name = "adaptive_avgpool2d",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = adaptive_infer,
    .scratch_floats = NULL,
    .state_floats = NULL,
    .forward = adaptive_forward,
    .vjp = adaptive_vjp,
    .jvp = adaptive_jvp,
    .vjp_tangent = adaptive_vjp_tangent,
};
