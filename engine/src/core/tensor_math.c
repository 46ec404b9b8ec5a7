/*
 * tensor_math.c — the work the Lua face does on tensors, in C: accessors,
 * transfers to and from caller buffers, item copies and gathers, elementwise
 * ops, reductions, and the per-item ranking and top-k of the metrics.
 *
 * Arithmetic: every elementwise op computes in double from the float operands
 * and rounds once to float on the store,
 *     add_(x, y, alpha):  x_i = float(x_i + alpha * y_i)
 * and every reduction accumulates in double in storage order (i = 0, 1, ...),
 * so the results are those of the same loop written over doubles (the Lua face
 * computed them that way before this file existed). No sum is reordered or
 * split over threads: the results do not depend on the thread count. The file
 * is compiled in ISO C mode, where GCC does not contract a * b + c into a fused
 * multiply-add, so each product is rounded before it is added.
 *
 * Items: "per item" means along the batch dim 0: a tensor of shape (N, ...)
 * holds N items of d = numel / N entries each, and per-item results are arrays
 * of N numbers. An offset item * d (item < N) is at most numel, whose product
 * of dims mr_tensor_new checked; other size products go through mr_size_mul. The ranking rules (average ranks for ties; the top-k rule that
 * never breaks a tie by position) are the README's "The rules on hard cases".
 */
#include "../internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- helpers */

#define SHAPE_ERR(what, a, b)                                                              \
    do {                                                                                   \
        char sa_[64], sb_[64];                                                             \
        return mr_error(MR_ESHAPE, "%s: shapes %s and %s differ", what,                    \
                        mr_tensor_shape_str(a, sa_, sizeof sa_),                           \
                        mr_tensor_shape_str(b, sb_, sizeof sb_));                          \
    } while (0)

static int need(const void *p, const char *what, const char *name)
{
    return p ? MR_OK : mr_error(MR_EINVAL, "%s: %s is NULL", what, name);
}

/* Items and entries per item of t. */
static void items_of(const mr_tensor *t, int64_t *N, int64_t *d)
{
    *N = t->shape[0];
    *d = t->numel / t->shape[0];
}

/* A scratch array of n elements of `size` bytes (n >= 1), with the size
 * product checked. NULL (error set) on overflow or allocation failure. */
static void *scratch(int64_t n, size_t size, const char *what)
{
    int64_t bytes;
    if (mr_bytes_of(&bytes, what, "scratch", n, (int64_t)size) < 0)
        return NULL;
    return mr_alloc((size_t)bytes);
}

/* ----------------------------------------------------------- accessors */

int mr_tensor_ndim(const mr_tensor *t)
{
    MR_TRY(need(t, "mr_tensor_ndim", "tensor"));
    return t->ndim;
}

int mr_tensor_shape(const mr_tensor *t, int64_t *shape)
{
    MR_TRY(need(t, "mr_tensor_shape", "tensor"));
    MR_TRY(need(shape, "mr_tensor_shape", "shape"));
    for (int i = 0; i < t->ndim; i++)
        shape[i] = t->shape[i];
    return t->ndim;
}

int64_t mr_tensor_numel(const mr_tensor *t)
{
    MR_TRY(need(t, "mr_tensor_numel", "tensor"));
    return t->numel;
}

float *mr_tensor_data(mr_tensor *t) { return t ? t->data : NULL; }

/* ----------------------------------------------------------- transfers */

static int range_ok(const mr_tensor *t, int64_t offset, int64_t n, const char *what)
{
    if (offset < 0 || n < 0 || offset > t->numel || n > t->numel - offset) {
        /* The end offset + n is printed only when it is an int64 (it can
         * overflow for a bad n, and the message must not). */
        if (n >= 0 ? offset <= INT64_MAX - n : offset >= INT64_MIN - n)
            return mr_error(MR_EINVAL, "%s: entries [%lld, %lld) outside the %lld of the tensor", what,
                            (long long)offset, (long long)(offset + n), (long long)t->numel);
        return mr_error(MR_EINVAL, "%s: %lld entries from entry %lld: outside the %lld of the tensor", what,
                        (long long)n, (long long)offset, (long long)t->numel);
    }
    return MR_OK;
}

int mr_tensor_read(float *dst, const mr_tensor *t, int64_t offset, int64_t n)
{
    MR_TRY(need(t, "mr_tensor_read", "tensor"));
    MR_TRY(range_ok(t, offset, n, "mr_tensor_read"));
    if (n == 0)
        return MR_OK;
    MR_TRY(need(dst, "mr_tensor_read", "dst"));
    memcpy(dst, t->data + offset, (size_t)n * sizeof(float));
    mr_canonicalize_nans(dst, n); /* towards Lua: no NaN payloads (internal.h) */
    return MR_OK;
}

int mr_tensor_write(mr_tensor *t, int64_t offset, const float *src, int64_t n)
{
    MR_TRY(need(t, "mr_tensor_write", "tensor"));
    MR_TRY(range_ok(t, offset, n, "mr_tensor_write"));
    if (n == 0)
        return MR_OK;
    MR_TRY(need(src, "mr_tensor_write", "src"));
    memcpy(t->data + offset, src, (size_t)n * sizeof(float));
    mr_canonicalize_nans(t->data + offset, n); /* from Lua buffers and store blobs (internal.h) */
    return MR_OK;
}

/* Entries per item of a and b, which must agree. */
static int same_item_size(const mr_tensor *dst, const mr_tensor *src, const char *what, int64_t *d)
{
    int64_t dd, ds, nd, ns;
    items_of(dst, &nd, &dd);
    items_of(src, &ns, &ds);
    if (dd != ds) {
        char a[64], b[64];
        return mr_error(MR_ESHAPE, "%s: items of %s and %s differ in size (%lld and %lld entries)", what,
                        mr_tensor_shape_str(dst, a, sizeof a), mr_tensor_shape_str(src, b, sizeof b),
                        (long long)dd, (long long)ds);
    }
    *d = dd;
    return MR_OK;
}

int mr_tensor_copy_items(mr_tensor *dst, int64_t dst_item, const mr_tensor *src, int64_t src_item,
                         int64_t count)
{
    MR_TRY(need(dst, "mr_tensor_copy_items", "dst"));
    MR_TRY(need(src, "mr_tensor_copy_items", "src"));
    int64_t d = 0;
    MR_TRY(same_item_size(dst, src, "mr_tensor_copy_items", &d));
    if (count < 0 || dst_item < 0 || src_item < 0 || dst_item > dst->shape[0] ||
        count > dst->shape[0] - dst_item || src_item > src->shape[0] || count > src->shape[0] - src_item)
        return mr_error(MR_EINVAL,
                        "mr_tensor_copy_items: %lld items from item %lld of %lld into item %lld of %lld "
                        "are out of range",
                        (long long)count, (long long)src_item, (long long)src->shape[0], (long long)dst_item,
                        (long long)dst->shape[0]);
    if (count > 0)
        memmove(dst->data + dst_item * d, src->data + src_item * d, (size_t)(count * d) * sizeof(float));
    return MR_OK;
}

int mr_tensor_index_select(mr_tensor *out, const mr_tensor *src, const int64_t *index, int64_t n)
{
    MR_TRY(need(out, "mr_tensor_index_select", "out"));
    MR_TRY(need(src, "mr_tensor_index_select", "src"));
    MR_TRY(need(index, "mr_tensor_index_select", "index"));
    int64_t d = 0;
    MR_TRY(same_item_size(out, src, "mr_tensor_index_select", &d));
    if (n != out->shape[0])
        return mr_error(MR_ESHAPE, "mr_tensor_index_select: %lld indices for %lld output items", (long long)n,
                        (long long)out->shape[0]);
    for (int64_t k = 0; k < n; k++)
        if (index[k] < 0 || index[k] >= src->shape[0])
            return mr_error(MR_EINVAL, "mr_tensor_index_select: index %lld is %lld, outside 0..%lld",
                            (long long)k, (long long)index[k], (long long)src->shape[0] - 1);
    for (int64_t k = 0; k < n; k++)
        memcpy(out->data + k * d, src->data + index[k] * d, (size_t)d * sizeof(float));
    return MR_OK;
}

int mr_tensor_repeat_interleave(mr_tensor *out, const mr_tensor *src, int64_t repeats)
{
    MR_TRY(need(out, "mr_tensor_repeat_interleave", "out"));
    MR_TRY(need(src, "mr_tensor_repeat_interleave", "src"));
    if (repeats < 1)
        return mr_error(MR_EINVAL, "mr_tensor_repeat_interleave: repeats must be >= 1, got %lld",
                        (long long)repeats);
    int64_t d = 0, n = src->shape[0], total;
    MR_TRY(same_item_size(out, src, "mr_tensor_repeat_interleave", &d));
    if (mr_size_mul(n, repeats, &total) || total != out->shape[0])
        return mr_error(MR_ESHAPE, "mr_tensor_repeat_interleave: %lld items x %lld repeats for %lld output items",
                        (long long)n, (long long)repeats, (long long)out->shape[0]);
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = 0; r < repeats; r++)
            memcpy(out->data + (i * repeats + r) * d, src->data + i * d, (size_t)d * sizeof(float));
    return MR_OK;
}

/* ------------------------------------------------------- fill and RNG */

int mr_tensor_fill_(mr_tensor *t, double value)
{
    MR_TRY(need(t, "mr_tensor_fill_", "tensor"));
    float v = (float)value;
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = v;
    return MR_OK;
}

int mr_tensor_normal_(mr_tensor *t, uint64_t seed, uint64_t stream, uint64_t offset, float mean, float std)
{
    MR_TRY(need(t, "mr_tensor_normal_", "tensor"));
    return mr_rng_normal(t->data, t->numel, seed, stream, offset, mean, std);
}

int mr_tensor_uniform_(mr_tensor *t, uint64_t seed, uint64_t stream, uint64_t offset, double lo, double hi)
{
    MR_TRY(need(t, "mr_tensor_uniform_", "tensor"));
    if (!isfinite(lo) || !isfinite(hi) || !(lo <= hi))
        return mr_error(MR_EINVAL, "mr_tensor_uniform_: need finite lo <= hi, got [%g, %g]", lo, hi);
    /* The entries are floats in [lo, hi]: bounds past the float range (or a
     * width hi - lo that overflows) would fill infinities. */
    if (!isfinite((float)lo) || !isfinite((float)hi) || !isfinite(hi - lo))
        return mr_error(MR_EINVAL,
                        "mr_tensor_uniform_: bounds [%g, %g] lie outside the float range (|bound| <= %g)", lo, hi,
                        (double)FLT_MAX);
    MR_TRY(mr_rng_uniform(t->data, t->numel, seed, stream, offset));
    if (lo != 0 || hi != 1) {
        double w = hi - lo;
        for (int64_t i = 0; i < t->numel; i++)
            t->data[i] = (float)(lo + w * (double)t->data[i]);
    }
    return MR_OK;
}

/* --------------------------------------------------------- elementwise */

int mr_tensor_add_scalar_(mr_tensor *t, double s)
{
    MR_TRY(need(t, "mr_tensor_add_scalar_", "tensor"));
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = (float)((double)t->data[i] + s);
    return MR_OK;
}

int mr_tensor_mul_scalar_(mr_tensor *t, double s)
{
    MR_TRY(need(t, "mr_tensor_mul_scalar_", "tensor"));
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = (float)((double)t->data[i] * s);
    return MR_OK;
}

static int same_shape(const mr_tensor *a, const mr_tensor *b, const char *what)
{
    MR_TRY(need(a, what, "tensor"));
    MR_TRY(need(b, what, "other"));
    if (!mr_same_shape(a, b))
        SHAPE_ERR(what, a, b);
    return MR_OK;
}

static int same_numel(const mr_tensor *a, const mr_tensor *b, const char *what)
{
    MR_TRY(need(a, what, "tensor"));
    MR_TRY(need(b, what, "other"));
    if (a->numel != b->numel)
        SHAPE_ERR(what, a, b);
    return MR_OK;
}

int mr_tensor_add_(mr_tensor *t, const mr_tensor *other, double alpha)
{
    MR_TRY(same_shape(t, other, "add_"));
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = (float)((double)t->data[i] + alpha * (double)other->data[i]);
    return MR_OK;
}

int mr_tensor_mul_(mr_tensor *t, const mr_tensor *other)
{
    MR_TRY(same_shape(t, other, "mul_"));
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = (float)((double)t->data[i] * (double)other->data[i]);
    return MR_OK;
}

int mr_tensor_add_items_(mr_tensor *t, const mr_tensor *other, const double *alpha)
{
    MR_TRY(same_shape(t, other, "add_items_"));
    MR_TRY(need(alpha, "add_items_", "alpha"));
    int64_t N, d;
    items_of(t, &N, &d);
    for (int64_t n = 0; n < N; n++) {
        float *p = t->data + n * d;
        const float *q = other->data + n * d;
        for (int64_t j = 0; j < d; j++)
            p[j] = (float)((double)p[j] + alpha[n] * (double)q[j]);
    }
    return MR_OK;
}

int mr_tensor_add_item_(mr_tensor *t, int64_t item, const mr_tensor *src, int64_t src_item, double alpha)
{
    MR_TRY(need(t, "add_item_", "tensor"));
    MR_TRY(need(src, "add_item_", "src"));
    int64_t d = 0;
    MR_TRY(same_item_size(t, src, "add_item_", &d));
    if (item < 0 || item >= t->shape[0] || src_item < 0 || src_item >= src->shape[0])
        return mr_error(MR_EINVAL, "add_item_: item %lld of %lld or source item %lld of %lld out of range",
                        (long long)item, (long long)t->shape[0], (long long)src_item, (long long)src->shape[0]);
    float *p = t->data + item * d;
    const float *q = src->data + src_item * d;
    for (int64_t j = 0; j < d; j++)
        p[j] = (float)((double)p[j] + alpha * (double)q[j]);
    return MR_OK;
}

int mr_tensor_abs_(mr_tensor *t)
{
    MR_TRY(need(t, "mr_tensor_abs_", "tensor"));
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = fabsf(t->data[i]);
    return MR_OK;
}

int mr_tensor_sign_(mr_tensor *t)
{
    MR_TRY(need(t, "mr_tensor_sign_", "tensor"));
    for (int64_t i = 0; i < t->numel; i++) {
        float v = t->data[i];
        t->data[i] = v > 0 ? 1.0f : (v < 0 ? -1.0f : 0.0f); /* NaN and -0 give 0 */
    }
    return MR_OK;
}

int mr_tensor_clamp_(mr_tensor *t, double lo, double hi)
{
    MR_TRY(need(t, "mr_tensor_clamp_", "tensor"));
    if (isnan(lo) || isnan(hi) || !(lo <= hi))
        return mr_error(MR_EINVAL, "clamp_: need lo <= hi, got [%g, %g]", lo, hi);
    for (int64_t i = 0; i < t->numel; i++) {
        double v = t->data[i];
        if (v < lo)
            v = lo;
        else if (v > hi)
            v = hi;
        t->data[i] = (float)v;
    }
    return MR_OK;
}

int mr_proj_linf_ball(mr_tensor *x, const mr_tensor *center, double radius)
{
    MR_TRY(same_shape(x, center, "proj_linf_ball"));
    if (!(radius >= 0) || !isfinite(radius))
        return mr_error(MR_EINVAL, "proj_linf_ball: radius must be finite and >= 0, got %g", radius);
    for (int64_t i = 0; i < x->numel; i++) {
        double c = center->data[i], v = x->data[i];
        double lo = c - radius, hi = c + radius;
        if (v < lo)
            v = lo;
        if (v > hi)
            v = hi;
        x->data[i] = (float)v;
    }
    return MR_OK;
}

int mr_tensor_channel_affine_(mr_tensor *t, const double *scale, const double *shift)
{
    MR_TRY(need(t, "channel_affine_", "tensor"));
    MR_TRY(need(scale, "channel_affine_", "scale"));
    MR_TRY(need(shift, "channel_affine_", "shift"));
    if (t->ndim != 4) {
        char s[64];
        return mr_error(MR_ESHAPE, "channel_affine_: expected (N, C, H, W), got %s",
                        mr_tensor_shape_str(t, s, sizeof s));
    }
    int64_t C = t->shape[1], plane = t->shape[2] * t->shape[3];
    float *p = t->data;
    for (int64_t n = 0; n < t->shape[0]; n++)
        for (int64_t c = 0; c < C; c++, p += plane)
            for (int64_t k = 0; k < plane; k++)
                p[k] = (float)(scale[c] * (double)p[k] + shift[c]);
    return MR_OK;
}

/* ---------------------------------------------------------- reductions */

int mr_tensor_sum(double *out, const mr_tensor *t)
{
    MR_TRY(need(out, "mr_tensor_sum", "out"));
    MR_TRY(need(t, "mr_tensor_sum", "tensor"));
    double s = 0;
    for (int64_t i = 0; i < t->numel; i++)
        s += t->data[i];
    *out = s;
    return MR_OK;
}

int mr_tensor_min(double *out, const mr_tensor *t)
{
    MR_TRY(need(out, "mr_tensor_min", "out"));
    MR_TRY(need(t, "mr_tensor_min", "tensor"));
    double m = INFINITY;
    for (int64_t i = 0; i < t->numel; i++)
        if (t->data[i] < m)
            m = t->data[i];
    *out = m;
    return MR_OK;
}

int mr_tensor_max(double *out, const mr_tensor *t)
{
    MR_TRY(need(out, "mr_tensor_max", "out"));
    MR_TRY(need(t, "mr_tensor_max", "tensor"));
    double m = -INFINITY;
    for (int64_t i = 0; i < t->numel; i++)
        if (t->data[i] > m)
            m = t->data[i];
    *out = m;
    return MR_OK;
}

int mr_tensor_dot(double *out, const mr_tensor *a, const mr_tensor *b)
{
    MR_TRY(need(out, "dot", "out"));
    MR_TRY(same_numel(a, b, "dot"));
    double s = 0;
    for (int64_t i = 0; i < a->numel; i++)
        s += (double)a->data[i] * (double)b->data[i];
    *out = s;
    return MR_OK;
}

int mr_tensor_max_abs_diff(double *out, const mr_tensor *a, const mr_tensor *b)
{
    MR_TRY(need(out, "max_abs_diff", "out"));
    MR_TRY(same_numel(a, b, "max_abs_diff"));
    double m = 0;
    for (int64_t i = 0; i < a->numel; i++) {
        double d = fabs((double)a->data[i] - (double)b->data[i]);
        if (d > m || isnan(d))
            m = d;
    }
    *out = m;
    return MR_OK;
}

int64_t mr_tensor_find_nonfinite(const mr_tensor *t)
{
    MR_TRY(need(t, "mr_tensor_find_nonfinite", "tensor"));
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(t->data[i]))
            return i;
    return t->numel;
}

int mr_tensor_dot_items(double *out, const mr_tensor *a, const mr_tensor *b)
{
    MR_TRY(need(out, "dot_items", "out"));
    MR_TRY(same_shape(a, b, "dot_items"));
    int64_t N, d;
    items_of(a, &N, &d);
    for (int64_t n = 0; n < N; n++) {
        const float *p = a->data + n * d, *q = b->data + n * d;
        double s = 0;
        for (int64_t j = 0; j < d; j++)
            s += (double)p[j] * (double)q[j];
        out[n] = s;
    }
    return MR_OK;
}

int mr_tensor_sqdist_items(double *out, const mr_tensor *a, const mr_tensor *b)
{
    MR_TRY(need(out, "sqdist_items", "out"));
    MR_TRY(same_shape(a, b, "sqdist_items"));
    int64_t N, d;
    items_of(a, &N, &d);
    for (int64_t n = 0; n < N; n++) {
        const float *p = a->data + n * d, *q = b->data + n * d;
        double s = 0;
        for (int64_t j = 0; j < d; j++) {
            double e = (double)p[j] - (double)q[j];
            s += e * e;
        }
        out[n] = s;
    }
    return MR_OK;
}

int mr_tensor_argmax_items(int64_t *out, const mr_tensor *t)
{
    MR_TRY(need(out, "argmax_items", "out"));
    MR_TRY(need(t, "argmax_items", "tensor"));
    int64_t N, d;
    items_of(t, &N, &d);
    for (int64_t n = 0; n < N; n++) {
        const float *p = t->data + n * d;
        double best = -INFINITY;
        int64_t arg = 0;
        for (int64_t j = 0; j < d; j++)
            if (p[j] > best) {
                best = p[j];
                arg = j;
            }
        out[n] = arg;
    }
    return MR_OK;
}

/* ------------------------------------------------- map statistics */

int mr_tensor_normalized_distance(double *out, const mr_tensor *a, const mr_tensor *b)
{
    MR_TRY(need(out, "normalized_distance", "out"));
    MR_TRY(same_shape(a, b, "normalized_distance"));
    int64_t N, d;
    items_of(a, &N, &d);
    for (int64_t n = 0; n < N; n++) {
        const float *p = a->data + n * d, *q = b->data + n * d;
        double na = 0, nb = 0;
        for (int64_t j = 0; j < d; j++) {
            na += (double)p[j] * (double)p[j];
            nb += (double)q[j] * (double)q[j];
        }
        na = sqrt(na);
        nb = sqrt(nb);
        double sa = na > 0 ? 1 / na : 0, sb = nb > 0 ? 1 / nb : 0, s = 0;
        for (int64_t j = 0; j < d; j++) {
            double e = (double)p[j] * sa - (double)q[j] * sb;
            s += e * e;
        }
        out[n] = sqrt(s);
    }
    return MR_OK;
}

int mr_tensor_normalise_by_negative_(mr_tensor *t)
{
    MR_TRY(need(t, "normalise_by_negative_", "tensor"));
    int64_t N, d;
    items_of(t, &N, &d);
    for (int64_t n = 0; n < N; n++) {
        float *p = t->data + n * d;
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t j = 0; j < d; j++) {
            if (p[j] < lo)
                lo = p[j];
            if (p[j] > hi)
                hi = p[j];
        }
        for (int64_t j = 0; j < d; j++) {
            double v = p[j];
            if (v > 0)
                p[j] = (float)(v / hi);
            else if (v < 0)
                p[j] = (float)(v / -lo);
        }
    }
    return MR_OK;
}

static int cmp_float_desc(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a < b) - (a > b);
}

static int cmp_float_asc(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

static int item_index(const mr_tensor *t, int64_t item, const char *what, int64_t *d)
{
    int64_t N;
    items_of(t, &N, d);
    if (item < 0 || item >= N)
        return mr_error(MR_EINVAL, "%s: item %lld outside 0..%lld", what, (long long)item, (long long)N - 1);
    return MR_OK;
}

/* Top-k memberships of the d entries p (see mr_tensor_topk_members), with
 * keys: scratch of d floats. */
static void topk_members(double *m, double *size, double *f, const float *p, int64_t d, int64_t k,
                         int signed_keys, float *keys)
{
    int64_t F = 0;
    for (int64_t j = 0; j < d; j++) {
        float v = signed_keys ? p[j] : fabsf(p[j]);
        if (v > 0)
            keys[F++] = v;
    }
    if (F <= k) {
        for (int64_t j = 0; j < d; j++)
            m[j] = (signed_keys ? p[j] : fabsf(p[j])) > 0 ? 1 : 0;
        *size = (double)F;
        *f = 1;
        return;
    }
    qsort(keys, (size_t)F, sizeof *keys, cmp_float_desc);
    float vk = keys[k - 1];
    int64_t g = 0, tied = 0;
    for (int64_t i = 0; i < F; i++) {
        if (keys[i] > vk)
            g++;
        else if (keys[i] == vk)
            tied++;
    }
    double share = (double)(k - g) / (double)tied;
    for (int64_t j = 0; j < d; j++) {
        float v = signed_keys ? p[j] : fabsf(p[j]);
        m[j] = v > vk ? 1 : (v == vk ? share : 0);
    }
    *size = (double)k;
    *f = share;
}

int mr_tensor_topk_members(double *m, double *size, double *share, const mr_tensor *t, int64_t item, int64_t k,
                           int signed_keys)
{
    MR_TRY(need(m, "topk_members", "m"));
    MR_TRY(need(size, "topk_members", "size"));
    MR_TRY(need(share, "topk_members", "share"));
    MR_TRY(need(t, "topk_members", "tensor"));
    if (k < 1)
        return mr_error(MR_EINVAL, "topk_members: k must be >= 1, got %lld", (long long)k);
    int64_t d = 0;
    MR_TRY(item_index(t, item, "topk_members", &d));
    float *keys = scratch(d, sizeof(float), "topk_members");
    if (!keys)
        return MR_ENOMEM;
    topk_members(m, size, share, t->data + item * d, d, k, signed_keys, keys);
    mr_free(keys);
    return MR_OK;
}

int mr_tensor_topk_intersection(double *out, const mr_tensor *a, const mr_tensor *b, int64_t k, double frac,
                                int signed_keys)
{
    MR_TRY(need(out, "topk_intersection", "out"));
    MR_TRY(same_shape(a, b, "topk_intersection"));
    int64_t N, d;
    items_of(a, &N, &d);
    if (k < 0 || k > d)
        return mr_error(MR_EINVAL, "topk_intersection: k must be in 0..%lld (0: from frac), got %lld", (long long)d,
                        (long long)k);
    if (k == 0 && !(frac > 0 && frac <= 1))
        return mr_error(MR_EINVAL, "topk_intersection: frac must be in (0, 1], got %g", frac);
    double *ma = scratch(d, sizeof(double), "topk_intersection");
    double *mb = scratch(d, sizeof(double), "topk_intersection");
    float *keys = scratch(d, sizeof(float), "topk_intersection");
    if (!ma || !mb || !keys) {
        mr_free(ma);
        mr_free(mb);
        mr_free(keys);
        return MR_ENOMEM;
    }
    for (int64_t n = 0; n < N; n++) {
        const float *p = a->data + n * d, *q = b->data + n * d;
        int64_t kn = k;
        if (kn == 0) {
            int64_t F = 0;
            for (int64_t j = 0; j < d; j++)
                F += (signed_keys ? p[j] : fabsf(p[j])) > 0;
            kn = (int64_t)floor(frac * (double)F);
            if (kn < 1)
                kn = 1;
        }
        double size, fa, fb, sb;
        topk_members(ma, &size, &fa, p, d, kn, signed_keys, keys);
        if (size == 0) {
            out[n] = NAN;
            continue;
        }
        topk_members(mb, &sb, &fb, q, d, kn, signed_keys, keys);
        /* Σ_j min(m_a(j), m_b(j)), grouped by the pair of memberships (1 or
         * the tied share of each map): integer counts, so the order of the
         * positions cannot change a bit. */
        int64_t c11 = 0, c1f = 0, cf1 = 0, cff = 0;
        for (int64_t j = 0; j < d; j++) {
            double x = ma[j], y = mb[j];
            if (x == 0 || y == 0)
                continue;
            if (x == 1 && y == 1)
                c11++;
            else if (x == 1)
                c1f++;
            else if (y == 1)
                cf1++;
            else
                cff++;
        }
        double fmin = fa < fb ? fa : fb;
        out[n] = ((double)c11 + (double)c1f * fb + (double)cf1 * fa + (double)cff * fmin) / size;
    }
    mr_free(ma);
    mr_free(mb);
    mr_free(keys);
    return MR_OK;
}

/* Sort key of the ranking: value, then position. */
typedef struct {
    float v;
    int64_t j;
} rank_key;

static int cmp_rank_key(const void *x, const void *y)
{
    const rank_key *a = x, *b = y;
    if (a->v != b->v)
        return a->v < b->v ? -1 : 1;
    return (a->j > b->j) - (a->j < b->j);
}

/* Average ranks (1-based) of the d entries p into r; keys: scratch of d. */
static void average_ranks(double *r, const float *p, int64_t d, rank_key *keys)
{
    for (int64_t j = 0; j < d; j++) {
        keys[j].v = p[j];
        keys[j].j = j;
    }
    qsort(keys, (size_t)d, sizeof *keys, cmp_rank_key);
    for (int64_t i = 0; i < d;) {
        int64_t e = i;
        while (e + 1 < d && keys[e + 1].v == keys[i].v)
            e++;
        double avg = ((double)(i + 1) + (double)(e + 1)) / 2;
        for (int64_t q = i; q <= e; q++)
            r[keys[q].j] = avg;
        i = e + 1;
    }
}

static int check_no_nan(const mr_tensor *t, const char *what)
{
    for (int64_t i = 0; i < t->numel; i++)
        if (isnan(t->data[i]))
            return mr_error(MR_EINVAL, "%s: entry %lld is NaN, which has no rank", what, (long long)i);
    return MR_OK;
}

int mr_tensor_spearman(double *out, const mr_tensor *a, const mr_tensor *b)
{
    MR_TRY(need(out, "spearman", "out"));
    MR_TRY(same_shape(a, b, "spearman"));
    MR_TRY(check_no_nan(a, "spearman"));
    MR_TRY(check_no_nan(b, "spearman"));
    int64_t N, d;
    items_of(a, &N, &d);
    double *ra = scratch(d, sizeof(double), "spearman");
    double *rb = scratch(d, sizeof(double), "spearman");
    rank_key *keys = scratch(d, sizeof(rank_key), "spearman");
    if (!ra || !rb || !keys) {
        mr_free(ra);
        mr_free(rb);
        mr_free(keys);
        return MR_ENOMEM;
    }
    double mean = ((double)d + 1) / 2;
    for (int64_t n = 0; n < N; n++) {
        average_ranks(ra, a->data + n * d, d, keys);
        average_ranks(rb, b->data + n * d, d, keys);
        double sab = 0, saa = 0, sbb = 0;
        for (int64_t j = 0; j < d; j++) {
            double x = ra[j] - mean, y = rb[j] - mean;
            sab += x * y;
            saa += x * x;
            sbb += y * y;
        }
        out[n] = (saa > 0 && sbb > 0) ? sab / sqrt(saa * sbb) : NAN;
    }
    mr_free(ra);
    mr_free(rb);
    mr_free(keys);
    return MR_OK;
}

int mr_tensor_gini(double *out, const mr_tensor *t)
{
    MR_TRY(need(out, "gini", "out"));
    MR_TRY(need(t, "gini", "tensor"));
    MR_TRY(check_no_nan(t, "gini"));
    /* An infinite entry makes the l1 norm infinite and c_k / l1 NaN. */
    for (int64_t i = 0; i < t->numel; i++)
        if (isinf(t->data[i]))
            return mr_error(MR_EINVAL, "gini: entry %lld is %s, the index needs finite entries", (long long)i,
                            t->data[i] > 0 ? "inf" : "-inf");
    int64_t N, d;
    items_of(t, &N, &d);
    float *c = scratch(d, sizeof(float), "gini");
    if (!c)
        return MR_ENOMEM;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t j = 0; j < d; j++)
            c[j] = fabsf(t->data[n * d + j]);
        qsort(c, (size_t)d, sizeof *c, cmp_float_asc);
        double l1 = 0;
        for (int64_t j = 0; j < d; j++)
            l1 += c[j];
        if (l1 == 0) {
            out[n] = 0;
            continue;
        }
        double s = 0;
        for (int64_t k = 1; k <= d; k++)
            s += ((double)c[k - 1] / l1) * (((double)d - (double)k + 0.5) / (double)d);
        out[n] = 1 - 2 * s;
    }
    mr_free(c);
    return MR_OK;
}

int mr_tensor_count_zero_items(int64_t *out, const mr_tensor *t)
{
    MR_TRY(need(out, "count_zero_items", "out"));
    MR_TRY(need(t, "count_zero_items", "tensor"));
    int64_t N, d;
    items_of(t, &N, &d);
    for (int64_t n = 0; n < N; n++) {
        int64_t z = 0;
        for (int64_t j = 0; j < d; j++)
            z += t->data[n * d + j] == 0;
        out[n] = z;
    }
    return MR_OK;
}
