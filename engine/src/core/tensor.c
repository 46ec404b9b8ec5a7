/* Dense float32 tensors: creation, copy, reshape, checks. */
#include "../internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int shape_numel(int ndim, const int64_t *shape, int64_t *numel)
{
    if (ndim < 1 || ndim > MR_MAX_DIMS)
        return mr_error(MR_ESHAPE, "tensor: ndim must be 1..%d, got %d", MR_MAX_DIMS, ndim);
    if (!shape)
        return mr_error(MR_EINVAL, "tensor: shape is NULL");
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1)
            return mr_error(MR_ESHAPE, "tensor: dim %d is %lld, must be >= 1", i,
                            (long long)shape[i]);
        /* numel * sizeof(float) bytes must fit int64 (and so size_t): every
         * item offset and byte count derived from a tensor then fits too. */
        if (mr_size_mul(n, shape[i], &n) || n > INT64_MAX / (int64_t)sizeof(float)) {
            char buf[128];
            size_t used = 0;
            for (int k = 0; k < ndim && used < sizeof buf; k++)
                used += (size_t)snprintf(buf + used, sizeof buf - used, k ? "x%lld" : "%lld", (long long)shape[k]);
            return mr_error(MR_ESHAPE, "tensor: shape %s has more than 2^61 entries (numel*4 bytes overflows int64)",
                            buf);
        }
    }
    *numel = n;
    return MR_OK;
}

int mr_tensor_new(mr_tensor **out, int ndim, const int64_t *shape)
{
    if (!out)
        return mr_error(MR_EINVAL, "mr_tensor_new: out is NULL");
    *out = NULL;
    int64_t numel;
    MR_TRY(shape_numel(ndim, shape, &numel));
    mr_tensor *t = mr_calloc(sizeof *t);
    if (!t)
        return MR_ENOMEM;
    t->data = mr_calloc((size_t)numel * sizeof(float));
    if (!t->data) {
        mr_free(t);
        return MR_ENOMEM;
    }
    for (int i = 0; i < MR_MAX_DIMS; i++)
        t->shape[i] = i < ndim ? shape[i] : 1;
    t->ndim = ndim;
    t->numel = numel;
    t->owns_data = 1;
    *out = t;
    return MR_OK;
}

int mr_tensor_clone(mr_tensor **out, const mr_tensor *src)
{
    if (!src)
        return mr_error(MR_EINVAL, "mr_tensor_clone: src is NULL");
    MR_TRY(mr_tensor_new(out, src->ndim, src->shape));
    memcpy((*out)->data, src->data, (size_t)src->numel * sizeof(float));
    return MR_OK;
}

void mr_tensor_free(mr_tensor *t)
{
    if (!t)
        return;
    if (t->owns_data)
        mr_free(t->data);
    mr_free(t);
}

int mr_tensor_reshape(mr_tensor *t, int ndim, const int64_t *shape)
{
    if (!t)
        return mr_error(MR_EINVAL, "mr_tensor_reshape: tensor is NULL");
    int64_t numel;
    MR_TRY(shape_numel(ndim, shape, &numel));
    if (numel != t->numel) {
        char buf[64];
        return mr_error(MR_ESHAPE, "reshape: %lld elements cannot take shape with %lld (from %s)",
                        (long long)t->numel, (long long)numel,
                        mr_tensor_shape_str(t, buf, sizeof buf));
    }
    for (int i = 0; i < MR_MAX_DIMS; i++)
        t->shape[i] = i < ndim ? shape[i] : 1;
    t->ndim = ndim;
    return MR_OK;
}

int mr_tensor_copy(mr_tensor *dst, const mr_tensor *src)
{
    if (!dst || !src)
        return mr_error(MR_EINVAL, "mr_tensor_copy: NULL tensor");
    if (dst->numel != src->numel) {
        char a[64], b[64];
        return mr_error(MR_ESHAPE, "copy: destination %s and source %s differ in size",
                        mr_tensor_shape_str(dst, a, sizeof a), mr_tensor_shape_str(src, b, sizeof b));
    }
    if (dst->data != src->data)
        memmove(dst->data, src->data, (size_t)src->numel * sizeof(float));
    return MR_OK;
}

const char *mr_tensor_shape_str(const mr_tensor *t, char *buf, size_t buflen)
{
    if (!buf || buflen == 0)
        return buf;
    buf[0] = '\0';
    if (!t) {
        snprintf(buf, buflen, "(null)");
        return buf;
    }
    size_t used = 0;
    for (int i = 0; i < t->ndim && used < buflen; i++)
        used += (size_t)snprintf(buf + used, buflen - used, i ? "x%lld" : "%lld",
                                 (long long)t->shape[i]);
    return buf;
}

int mr_tensor_check_finite(const mr_tensor *t, const char *what)
{
    if (!t)
        return mr_error(MR_EINVAL, "%s: tensor is NULL", what ? what : "tensor");
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(t->data[i]))
            return mr_error(MR_EINVAL, "%s: entry %lld is %s", what ? what : "tensor", (long long)i,
                            isnan(t->data[i]) ? "NaN" : "infinite");
    return MR_OK;
}
