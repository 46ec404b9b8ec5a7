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

static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* PyTorch's pooling_output_shape (dilation 1). */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, int ceil_mode)
{
    int64_t out = floor_div(in + 2 * p - (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
    if (ceil_mode && (out - 1) * s >= in + p)
        out--;
    return out;
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
                         int nparams, mr_shape *out, void *cache)
{
    return window_infer("maxpool2d", a, in, out);
}

static int avgpool_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                         int nparams, mr_shape *out, void *cache)
{
    return window_infer("avgpool2d", a, in, out);
}

/* out_size (oh, ow); 0 keeps that input dim (PyTorch's None). */
static int adaptive_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                          int nparams, mr_shape *out, void *cache)
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
static size_t maxpool_state_floats(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                  int nparams, const mr_shape *out, const void *cache, int64_t N)
{
    int64_t floats; /* N is a plain number in mr_net_workspace_estimate: saturate, never wrap */
    return mr_size_mul(N, mr_shape_numel(out), &floats) ? (size_t)INT64_MAX : (size_t)floats;
}

const mr_op_def mr_op_maxpool2d = {
    .name = "maxpool2d",
    .deeplift = MR_DL_MAX,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = maxpool_infer,
    .scratch_floats = NULL,
    .state_floats = maxpool_state_floats,
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
};
