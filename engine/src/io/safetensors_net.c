/*
 * safetensors_net.c — a network's parameters (weights and buffers) loaded from
 * and saved to safetensors files by their PyTorch state_dict names.
 *
 * A client of two public APIs of moreau.h and nothing more: the network's
 * named parameters (mr_net_param_count, _name, _get, _value) and the file
 * (mr_safetensors_load, _find, _shape, _get, _save). It knows neither the
 * network's layout nor the file's.
 *
 * Loading is all or nothing: every parameter is found, shape-checked and
 * converted to float32 into a tensor of its own before the first one is
 * copied into the network, so any failure, including running out of memory,
 * leaves the network as it was. That costs a second copy of the parameters for
 * the duration of the call.
 */
#include "safetensors.h"

#include "../internal.h"

#include <string.h>

/* PyTorch's batchnorm step counter (an int64 in every BatchNorm state_dict),
 * which the engine does not keep. */
static int is_batch_counter(const char *name)
{
    static const char suffix[] = "num_batches_tracked";
    size_t a = strlen(name), b = sizeof suffix - 1;
    return a >= b && strcmp(name + a - b, suffix) == 0;
}

/* A file tensor of shape shape[0, ndim) fits parameter t when the shapes are
 * equal; a file scalar (ndim 0) fits shape {1}. */
static int fits(int ndim, const int64_t *shape, const mr_tensor *t)
{
    if (ndim == 0)
        return t->ndim == 1 && t->shape[0] == 1;
    if (ndim != t->ndim)
        return 0;
    for (int k = 0; k < ndim; k++)
        if (shape[k] != t->shape[k])
            return 0;
    return 1;
}

int mr_net_load(mr_net *net, const char *path, int strict)
{
    if (!net || !path)
        return mr_error(MR_EINVAL, "mr_net_load: NULL %s", net ? "path" : "net");
    mr_safetensors *st;
    MR_TRY(mr_safetensors_load(&st, path));
    int np = mr_net_param_count(net), nt = mr_safetensors_count(st);
    int rc = MR_OK;
    int *idx = np ? mr_alloc((size_t)np * sizeof *idx) : NULL;         /* param -> file tensor */
    mr_tensor **value = np ? mr_calloc((size_t)np * sizeof *value) : NULL; /* converted */
    unsigned char *used = nt ? mr_calloc((size_t)nt) : NULL;           /* file tensor -> claimed */
    if ((np && (!idx || !value)) || (nt && !used)) {
        rc = MR_ENOMEM;
        goto done;
    }

    /* Every parameter is in the file... */
    int missing = 0, first_missing = -1;
    for (int p = 0; p < np; p++) {
        idx[p] = mr_safetensors_find(st, mr_net_param_name(net, p));
        if (idx[p] == MR_ENOTFOUND) {
            if (missing++ == 0)
                first_missing = p;
        } else if (idx[p] < 0) {
            rc = idx[p];
            goto done;
        } else {
            used[idx[p]] = 1;
        }
    }
    if (missing) {
        const char *name = mr_net_param_name(net, first_missing);
        if (missing == 1)
            rc = mr_error(MR_ENOTFOUND, "missing parameter '%s' in %s", name, path);
        else
            rc = mr_error(MR_ENOTFOUND, "missing parameter '%s' in %s (and %d more)", name, path,
                          missing - 1);
        goto done;
    }
    /* ...with the parameter's shape and a dtype that converts to float32... */
    for (int p = 0; p < np; p++) {
        int ndim;
        int64_t shape[MR_MAX_DIMS];
        if ((rc = mr_safetensors_shape(st, idx[p], &ndim, shape)) < 0)
            goto done;
        const mr_tensor *t = mr_net_param_get(net, p);
        if (!fits(ndim, shape, t)) {
            char a[64], b[64];
            rc = mr_error(MR_ESHAPE, "%s: %s: shape %s in file, %s in the network", path,
                          mr_net_param_name(net, p), mr_st_shape_str(ndim, shape, a, sizeof a),
                          mr_tensor_shape_str(t, b, sizeof b));
            goto done;
        }
        if ((rc = mr_safetensors_get(&value[p], st, idx[p])) < 0)
            goto done;
    }
    /* ...and, when strict, the file holds nothing else but batch counters. */
    if (strict) {
        int extra = 0, first_extra = -1;
        for (int i = 0; i < nt; i++)
            if (!used[i] && !is_batch_counter(mr_safetensors_name(st, i)) && extra++ == 0)
                first_extra = i;
        if (extra) {
            const char *name = mr_safetensors_name(st, first_extra);
            if (extra == 1)
                rc = mr_error(MR_ENOTFOUND, "%s: tensor '%s' is not a parameter of the network (strict load)",
                              path, name);
            else
                rc = mr_error(MR_ENOTFOUND,
                              "%s: tensor '%s' and %d more are not parameters of the network (strict load)",
                              path, name, extra - 1);
            goto done;
        }
    }

    /* Same shapes: the copies cannot fail. */
    for (int p = 0; p < np && rc == MR_OK; p++)
        rc = mr_tensor_copy(mr_net_param_get(net, p), value[p]);
done:
    for (int p = 0; value && p < np; p++)
        mr_tensor_free(value[p]);
    mr_free(value);
    mr_free(idx);
    mr_free(used);
    mr_safetensors_free(st);
    return rc;
}

int mr_net_save(const mr_net *net, const char *path, const char *metadata_json)
{
    if (!net || !path)
        return mr_error(MR_EINVAL, "mr_net_save: NULL %s", net ? "path" : "net");
    int n = mr_net_param_count(net);
    const char **names = n ? mr_alloc((size_t)n * sizeof *names) : NULL;
    const mr_tensor **values = n ? mr_alloc((size_t)n * sizeof *values) : NULL;
    int rc = MR_ENOMEM;
    if (!n || (names && values)) {
        for (int p = 0; p < n; p++) {
            names[p] = mr_net_param_name(net, p);
            values[p] = mr_net_param_value(net, p);
        }
        rc = mr_safetensors_save(path, n, names, values, metadata_json);
    }
    mr_free(names);
    mr_free(values);
    return rc;
}
