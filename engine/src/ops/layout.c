/*
 * layout.c — ops that move entries without arithmetic, for imported models:
 * reshape, transpose, concat, slice, gather, pad, and constant (a parameter
 * broadcast over the batch). Shapes are per sample (the batch dim N is never
 * touched); an axis counts the per-sample dims from 0, a negative one from
 * the end.
 *
 * All but constant are linear maps y = P x with P a 0/1 matrix, so
 *   forward      y   = P x
 *   vjp          gx  = P^T gy
 *   jvp          dy  = P dx
 *   vjp_tangent  dgx = P^T dgy          (second derivative 0)
 * and DeepLIFT's linear rule is exact for them.
 *
 * reshape    y = x with the per-sample shape `shape` (shape_ndim dims, one may
 *            be -1: inferred), row-major order kept (ONNX Reshape, Flatten,
 *            Squeeze and Unsqueeze all lower to it). A copy, as flatten: every
 *            node owns its output buffer (graph.h).
 * transpose  y[i0, i1, i2] = x[j] with j[perm[k]] = i_k (ONNX Transpose of the
 *            per-sample dims; torch.permute). A copy.
 * concat     two inputs equal but along `axis`: y = [a, b] along axis (an
 *            n-ary ONNX Concat is a chain of binary ones: docs/architecture.md,
 *            "Ops for imported models").
 * slice      y = x[start : end : step] along axis (ONNX Slice of one axis:
 *            negative start/end count from the end, both clamped to [0, dim];
 *            end 0 means dim; step >= 1). P^T scatters gy and zeros the rest.
 * gather     y = x[index] along axis, the axis dropped (ONNX Gather with one
 *            scalar index: the class token x[:, 0] of a ViT).
 * pad        pads[k] entries before per-sample dim k and pads[3 + k] after it
 *            (ONNX Pad without the N dim); pad_mode 0 fills zeros, 1 reflects
 *            (x[-i] = x[i], x[d - 1 + i] = x[d - 1 - i]; pads < dim). Reflect's
 *            P^T sums the gradient of every output that copies an input.
 * constant   y[n] = P for every item n, with P the op's one parameter (its
 *            shape is the per-sample output shape, 1..3 dims); the input only
 *            sets N. gx = 0, dP += Σ_n gy[n], dy = 0, dgx = 0: constant in x,
 *            so DeepLIFT's linear rule holds (Δy = 0). It lets a graph's
 *            initializers (ViT's class token and position embedding,
 *            normalization constants) enter binary ops.
 *
 * Every loop writes each output entry from one thread (P^T of reflect sums
 * an input's preimages in a fixed order), so results do not depend on the
 * thread count.
 */
#include "layout.h"

#include <string.h>

/* axis in [-ndim, ndim) to [0, ndim), or -1. */
static int norm_axis(int axis, int ndim)
{
    if (axis < 0)
        axis += ndim;
    return axis >= 0 && axis < ndim ? axis : -1;
}

static int64_t prod(const mr_shape *s, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++)
        p *= s->d[i];
    return p;
}

/* -------------------------------------------------------------- reshape */

static int reshape_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                         int nparams, mr_shape *out, void *cache)
{
    char b[64];
    int nd = a->shape_ndim;
    if (nd < 1 || nd > 3)
        return mr_error(MR_EINVAL, "reshape: shape_ndim must be 1..3 (per-sample dims), got %d", nd);
    int64_t numel = mr_shape_numel(&in[0]), known = 1;
    int infer_at = -1;
    out->ndim = nd;
    out->d[0] = out->d[1] = out->d[2] = 0;
    for (int i = 0; i < nd; i++) {
        int64_t d = a->shape[i];
        if (d == -1 && infer_at < 0) {
            infer_at = i;
        } else if (d < 1) {
            return mr_error(MR_EINVAL,
                            "reshape: dim %d of the shape must be positive or the one -1, got %lld",
                            i, (long long)d);
        } else {
            if (d > numel || known > numel / d)
                return mr_error(MR_ESHAPE,
                                "reshape: the shape holds more than the %lld entries per sample of "
                                "Nx%s (dim %d is %lld)",
                                (long long)numel, mr_shape_str(&in[0], b, sizeof b), i, (long long)d);
            known *= d;
        }
        out->d[i] = d;
    }
    if (infer_at >= 0) {
        if (numel % known)
            return mr_error(MR_ESHAPE, "reshape: %lld entries of Nx%s do not split into parts of %lld",
                            (long long)numel, mr_shape_str(&in[0], b, sizeof b), (long long)known);
        out->d[infer_at] = numel / known;
    } else if (known != numel) {
        char o[64];
        return mr_error(MR_ESHAPE, "reshape: Nx%s has %lld entries per sample, the shape Nx%s %lld",
                        mr_shape_str(&in[0], b, sizeof b), (long long)numel,
                        mr_shape_str(out, o, sizeof o), (long long)known);
    }
    return MR_OK;
}

const mr_op_def mr_op_reshape = {
    .name = "reshape",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = reshape_infer,
};

/* ------------------------------------------------------------ transpose */

/* Pads a shape to three dims with leading 1s. */
static void pad3(const mr_shape *s, int64_t d[3])
{
    int lead = 3 - s->ndim;
    for (int i = 0; i < 3; i++)
        d[i] = i < lead ? 1 : s->d[i - lead];
}

static int transpose_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                           int nparams, mr_shape *out, void *cache)
{
    int nd = in[0].ndim, seen = 0;
    for (int i = 0; i < nd; i++) {
        int p = a->perm[i];
        if (p < 0 || p >= nd || (seen >> p & 1)) {
            char b[64];
            return mr_error(MR_EINVAL,
                            "transpose: perm must be a permutation of the %d per-sample dims of "
                            "Nx%s, got %d at %d",
                            nd, mr_shape_str(&in[0], b, sizeof b), p, i);
        }
        seen |= 1 << p;
        out->d[i] = in[0].d[p];
    }
    out->ndim = nd;
    for (int i = nd; i < 3; i++)
        out->d[i] = 0;
    layout_geom *g = cache;
    pad3(&in[0], g->in);
    pad3(out, g->out);
    int lead = 3 - nd;
    for (int i = 0; i < 3; i++)
        g->perm[i] = i < lead ? i : lead + a->perm[i - lead];
    return MR_OK;
}

const mr_op_def mr_op_transpose = {
    .name = "transpose",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = transpose_infer,
};

/* --------------------------------------------------------------- concat */

static int concat_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                        int nparams, mr_shape *out, void *cache)
{
    const mr_shape *s0 = &in[0], *s1 = &in[1];
    int ax = norm_axis(a->axis, s0->ndim);
    char b0[64], b1[64];
    mr_shape_str(s0, b0, sizeof b0);
    mr_shape_str(s1, b1, sizeof b1);
    if (ax < 0)
        return mr_error(MR_EINVAL, "concat: axis %d is not a per-sample axis of Nx%s", (int)a->axis, b0);
    int ok = s0->ndim == s1->ndim;
    for (int i = 0; ok && i < s0->ndim; i++)
        ok = i == ax || s0->d[i] == s1->d[i];
    if (!ok)
        return mr_error(MR_ESHAPE, "concat: inputs must agree but along axis %d, got Nx%s and Nx%s",
                        ax, b0, b1);
    *out = *s0;
    out->d[ax] = s0->d[ax] + s1->d[ax];
    concat_geom *g = cache;
    g->outer = prod(s0, 0, ax);
    g->alen = s0->d[ax];
    g->blen = s1->d[ax];
    g->inner = prod(s0, ax + 1, s0->ndim);
    return MR_OK;
}

const mr_op_def mr_op_concat = {
    .name = "concat",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 2,
    .min_params = 0,
    .max_params = 0,
    .infer = concat_infer,
};

/* ---------------------------------------------------------- slice, gather */

/* ONNX's clamping of a start or end index: negative counts from the end, then into [0, dim]. */
static int64_t clamp_index(int64_t i, int64_t dim)
{
    if (i < 0)
        i += dim;
    return i < 0 ? 0 : i > dim ? dim : i;
}

static int slice_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                       int nparams, mr_shape *out, void *cache)
{
    char b[64];
    mr_shape_str(&in[0], b, sizeof b);
    int ax = norm_axis(a->axis, in[0].ndim);
    if (ax < 0)
        return mr_error(MR_EINVAL, "slice: axis %d is not a per-sample axis of Nx%s", (int)a->axis, b);
    if (a->step < 0)
        return mr_error(MR_EINVAL, "slice: step must be positive (0 means 1), got %lld",
                        (long long)a->step);
    int64_t dim = in[0].d[ax], step = a->step ? a->step : 1;
    int64_t start = clamp_index(a->start, dim), end = a->end ? clamp_index(a->end, dim) : dim;
    if (end <= start)
        return mr_error(MR_ESHAPE, "slice: [%lld:%lld] of axis %d of Nx%s is empty",
                        (long long)a->start, (long long)a->end, ax, b);
    slice_geom *g = cache;
    g->outer = prod(&in[0], 0, ax);
    g->len = dim;
    g->inner = prod(&in[0], ax + 1, in[0].ndim);
    g->start = start;
    g->step = step;
    g->olen = (end - start + step - 1) / step;
    *out = in[0];
    out->d[ax] = g->olen;
    return MR_OK;
}

static int gather_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                        int nparams, mr_shape *out, void *cache)
{
    char b[64];
    mr_shape_str(&in[0], b, sizeof b);
    int ax = norm_axis(a->axis, in[0].ndim);
    if (in[0].ndim < 2)
        return mr_error(MR_ESHAPE, "gather: the input needs 2..3 per-sample dims (one is dropped), got Nx%s", b);
    if (ax < 0)
        return mr_error(MR_EINVAL, "gather: axis %d is not a per-sample axis of Nx%s", (int)a->axis, b);
    int64_t dim = in[0].d[ax], idx = a->index < 0 ? a->index + dim : a->index;
    if (idx < 0 || idx >= dim)
        return mr_error(MR_EINVAL, "gather: index %lld is outside per-sample axis %d (size %lld) of Nx%s",
                        (long long)a->index, ax, (long long)dim, b);
    slice_geom *g = cache;
    g->outer = prod(&in[0], 0, ax);
    g->len = dim;
    g->inner = prod(&in[0], ax + 1, in[0].ndim);
    g->start = idx;
    g->step = 1;
    g->olen = 1;
    out->ndim = in[0].ndim - 1;
    out->d[2] = 0;
    for (int i = 0, k = 0; i < in[0].ndim; i++)
        if (i != ax)
            out->d[k++] = in[0].d[i];
    return MR_OK;
}

const mr_op_def mr_op_slice = {
    .name = "slice",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = slice_infer,
};

const mr_op_def mr_op_gather = {
    .name = "gather",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = gather_infer,
};

/* ------------------------------------------------------------------ pad */

static int pad_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                     int nparams, mr_shape *out, void *cache)
{
    char b[64];
    mr_shape_str(&in[0], b, sizeof b);
    int nd = in[0].ndim;
    if (a->pad_mode != 0 && a->pad_mode != 1)
        return mr_error(MR_EINVAL, "pad: pad_mode must be 0 (zeros) or 1 (reflect), got %d",
                        (int)a->pad_mode);
    for (int i = 0; i < 3; i++) {
        int lo = a->pads[i], hi = a->pads[3 + i];
        if (i >= nd && (lo || hi))
            return mr_error(MR_EINVAL, "pad: pads name dim %d, but Nx%s has %d per-sample dims", i, b, nd);
        if (i >= nd)
            continue;
        if (lo < 0 || hi < 0)
            return mr_error(MR_EINVAL, "pad: pads must be >= 0 (no cropping), got %d and %d for dim %d",
                            lo, hi, i);
        if (a->pad_mode == 1 && (lo >= in[0].d[i] || hi >= in[0].d[i]))
            return mr_error(MR_EINVAL,
                            "pad: reflect pads must be below the dim, got %d and %d for dim %d of Nx%s",
                            lo, hi, i, b);
        if (in[0].d[i] > INT32_MAX - (int64_t)lo - hi)
            return mr_error(MR_EINVAL, "pad: dim %d of Nx%s grows past INT_MAX", i, b);
    }
    *out = in[0];
    for (int i = 0; i < nd; i++)
        out->d[i] = in[0].d[i] + a->pads[i] + a->pads[3 + i];
    layout_geom *g = cache;
    pad3(&in[0], g->in);
    pad3(out, g->out);
    int lead = 3 - nd;
    for (int i = 0; i < 3; i++)
        g->begin[i] = i < lead ? 0 : a->pads[i - lead];
    g->reflect = a->pad_mode == 1;
    return MR_OK;
}

const mr_op_def mr_op_pad = {
    .name = "pad",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 0,
    .max_params = 0,
    .infer = pad_infer,
};

/* ------------------------------------------------------------- constant */

static int constant_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                          int nparams, mr_shape *out, void *cache)
{
    const mr_tensor *p = params[0];
    if (p->ndim > 3) {
        char b[64];
        return mr_error(MR_ESHAPE, "constant: the parameter is the per-sample value (1..3 dims), got %s",
                        mr_tensor_shape_str(p, b, sizeof b));
    }
    out->ndim = p->ndim;
    for (int i = 0; i < 3; i++)
        out->d[i] = i < p->ndim ? p->shape[i] : 0;
    return MR_OK;
}

const mr_op_def mr_op_constant = {
    .name = "constant",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 1,
    .max_params = 1,
    .infer = constant_infer,
};
