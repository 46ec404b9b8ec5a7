/*
 * onnx_read.c — the ONNX file and its tensors: reading the model under a byte
 * budget, parsing it with protobuf-c (the code protoc-c generates from
 * onnx.proto at build time), and turning TensorProtos into checked constants.
 *
 * The budget (mr_onnx_options.max_bytes, else the loader budget) covers, as
 * one running sum: the file (checked against its size before it is read),
 * every byte the protobuf parser allocates (a counting allocator refuses the
 * allocation that would pass it, so a small file declaring many empty
 * messages cannot expand without bound), the external data read, and every
 * float32 or int64 copy of a tensor. A tensor's dims are checked (each >= 0,
 * at most 8, the product within int64) and its bytes charged before anything
 * is allocated for it; its data must be exactly numel x element size:
 * raw_data's length, the typed field's count (float_data, double_data,
 * int64_data, int32_data; FLOAT16 in int32_data as the ONNX spec stores it),
 * or the external file's length field and size (onnx.proto, TensorProto).
 */
#define _DEFAULT_SOURCE /* realpath */
#include "onnx.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int ox_charge(ox_model *m, int64_t bytes, const char *what)
{
    int64_t sum;
    if (bytes < 0 || mr_size_add(m->used, bytes, &sum) || sum > m->budget)
        return mr_error(MR_ENOMEM,
                        "onnx: %s: %s (%lld bytes, %lld taken before) is over the budget of %lld bytes "
                        "(mr_onnx_options.max_bytes; its default is the loader budget, mr_set_loader_budget, "
                        "plus four times the file)",
                        m->path, what, (long long)bytes, (long long)m->used, (long long)m->budget);
    m->used = sum;
    return MR_OK;
}

/* ------------------------------------------------- the counting allocator */

/* Each block carries its size in a 16-byte header, so frees give it back. */
static void *count_alloc(void *data, size_t size)
{
    ox_model *m = data;
    int64_t total = (int64_t)size + 16;
    if (size > (size_t)INT64_MAX - 16 || m->used + m->parse_bytes + total > m->budget)
        return NULL;
    unsigned char *p = malloc((size_t)total);
    if (!p)
        return NULL;
    memcpy(p, &total, sizeof total);
    m->parse_bytes += total;
    return p + 16;
}

static void count_free(void *data, void *ptr)
{
    ox_model *m = data;
    if (!ptr)
        return;
    unsigned char *p = (unsigned char *)ptr - 16;
    int64_t total;
    memcpy(&total, p, sizeof total);
    m->parse_bytes -= total;
    free(p);
}

/* ------------------------------------------------------------ the model */

int ox_model_open(ox_model *m, const char *path, int64_t budget)
{
    memset(m, 0, sizeof *m);
    m->path = path;
    m->budget = budget;
    int not_regular;
    FILE *f = mr_fopen_regular(path, &not_regular);
    if (!f)
        return not_regular ? mr_error(MR_EIO, "onnx: %s is not a regular file", path)
                           : mr_error(MR_EIO, "onnx: cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return mr_error(MR_EIO, "onnx: %s is not a regular file", path);
    }
    if (st.st_size == 0) {
        fclose(f);
        return mr_error(MR_EFORMAT, "onnx: %s: empty file", path);
    }
    /* budget 0: the loader budget plus four times the file (its bytes and
     * the parsed form at once, then the float32 constants and the engine's
     * parameters made from them: 3.2-3.9 times the file for the fixtures), so
     * what a model may take scales with what it holds on disk and a small
     * hostile file stays small */
    if (m->budget == 0 && (mr_size_mul(4, (int64_t)st.st_size, &m->budget) ||
                           mr_size_add(m->budget, mr_get_loader_budget(), &m->budget)))
        m->budget = INT64_MAX;
    int rc = ox_charge(m, (int64_t)st.st_size, "the file");
    if (rc < 0) {
        fclose(f);
        return rc;
    }
    unsigned char *buf = malloc((size_t)st.st_size);
    if (!buf) {
        fclose(f);
        return mr_error(MR_ENOMEM, "onnx: %s: out of memory for %lld bytes", path, (long long)st.st_size);
    }
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    if (got != (size_t)st.st_size) {
        free(buf);
        return mr_error(MR_EIO, "onnx: %s: read %zu of %lld bytes", path, got, (long long)st.st_size);
    }
    ProtobufCAllocator alloc = {count_alloc, count_free, m};
    m->proto = onnx__model_proto__unpack(&alloc, (size_t)st.st_size, buf);
    free(buf);
    m->used -= (int64_t)st.st_size; /* the file's bytes are given back; the parsed form stays */
    if (!m->proto) {
        return mr_error(MR_EFORMAT,
                        "onnx: %s: not a valid ONNX model (the protobuf does not parse: truncated, "
                        "corrupt, or more than the budget of %lld bytes once parsed)",
                        path, (long long)m->budget);
    }
    m->used += m->parse_bytes;
    m->parse_bytes = 0;
    /* the folder of external data: everything before the last '/' */
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 1;
    m->dir = malloc(n + 1);
    if (!m->dir)
        return mr_error(MR_ENOMEM, "onnx: out of memory");
    memcpy(m->dir, slash ? path : ".", n);
    m->dir[n] = 0;
    if (slash == path)
        strcpy(m->dir, "/");
    return MR_OK;
}

void ox_model_close(ox_model *m)
{
    if (m->proto) {
        ProtobufCAllocator alloc = {count_alloc, count_free, m};
        m->parse_bytes = 0;
        onnx__model_proto__free_unpacked(m->proto, &alloc);
    }
    free(m->dir);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------- tensors */

const char *ox_dims_str(int ndim, const int64_t *dims, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = 0;
    if (ndim == 0)
        snprintf(buf, len, "a scalar");
    for (int i = 0; i < ndim && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, i ? "x%lld" : "%lld", (long long)dims[i]);
    return buf;
}

void ox_const_free(ox_const *c)
{
    if (!c)
        return;
    free(c->f);
    free(c->i);
    free(c->nsym);
    free(c);
}

int ox_const_new(ox_const **out, ox_model *m, int ndim, const int64_t *dims, int is_int, const char *name)
{
    *out = NULL;
    char ds[160];
    if (ndim < 0 || ndim > OX_MAX_DIMS)
        return mr_error(MR_EFORMAT, "onnx: %s: tensor '%s' has %d dims (at most %d)", m->path, name, ndim,
                        OX_MAX_DIMS);
    int64_t numel = 1;
    for (int k = 0; k < ndim; k++)
        if (dims[k] < 0 || mr_size_mul(numel, dims[k], &numel))
            return mr_error(MR_EFORMAT, "onnx: %s: tensor '%s' has dims %s: %s", m->path, name,
                            ox_dims_str(ndim, dims, ds, sizeof ds),
                            dims[k] < 0 ? "a negative dim" : "their product overflows int64");
    int64_t bytes;
    if (mr_size_mul(numel, is_int ? 8 : 4, &bytes))
        return mr_error(MR_EFORMAT, "onnx: %s: tensor '%s' of %lld elements overflows int64 bytes", m->path,
                        name, (long long)numel);
    char what[200];
    snprintf(what, sizeof what, "tensor '%s' (%s)", name, ox_dims_str(ndim, dims, ds, sizeof ds));
    MR_TRY(ox_charge(m, bytes, what));
    ox_const *c = calloc(1, sizeof *c);
    void *data = calloc((size_t)(numel ? numel : 1), is_int ? 8 : 4);
    if (!c || !data) {
        free(c);
        free(data);
        return mr_error(MR_ENOMEM, "onnx: %s: out of memory for %s", m->path, what);
    }
    c->ndim = ndim;
    if (ndim > 0)
        memcpy(c->dims, dims, (size_t)ndim * sizeof *dims);
    c->numel = numel;
    if (is_int)
        c->i = data;
    else
        c->f = data;
    c->name = name;
    c->param = -1;
    *out = c;
    return MR_OK;
}

/* IEEE half -> float (exact). */
static float half_to_float(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, f = h & 1023;
    float v;
    if (e == 0)
        v = ldexpf((float)f, -24);
    else if (e == 31)
        v = f ? NAN : INFINITY;
    else
        v = ldexpf((float)(f | 1024), e - 25);
    return s ? -v : v;
}

static int elem_size(int32_t type)
{
    switch (type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
        return 4;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
        return 8;
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16:
        return 2;
    default:
        return 0;
    }
}

static const char *type_name(int32_t type)
{
    static const char *names[] = {"UNDEFINED", "FLOAT", "UINT8",  "INT8",   "UINT16",    "INT16",
                                  "INT32",     "INT64", "STRING", "BOOL",   "FLOAT16",   "DOUBLE",
                                  "UINT32",    "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16"};
    return type >= 0 && type < (int32_t)(sizeof names / sizeof *names) ? names[type] : "unknown";
}

/* Element k of a little-endian buffer of `type` as double / int64. */
static double elem_f(const unsigned char *p, int32_t type, int64_t k)
{
    switch (type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: {
        float v;
        memcpy(&v, p + 4 * k, 4);
        return v;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: {
        double v;
        memcpy(&v, p + 8 * k, 8);
        return v;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: {
        uint16_t v;
        memcpy(&v, p + 2 * k, 2);
        return half_to_float(v);
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: {
        int32_t v;
        memcpy(&v, p + 4 * k, 4);
        return v;
    }
    default: {
        int64_t v;
        memcpy(&v, p + 8 * k, 8);
        return (double)v;
    }
    }
}

static int64_t elem_i(const unsigned char *p, int32_t type, int64_t k)
{
    if (type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
        int32_t v;
        memcpy(&v, p + 4 * k, 4);
        return v;
    }
    int64_t v;
    memcpy(&v, p + 8 * k, 8);
    return v;
}

/* Reads the external data of t (location relative to the model's folder,
 * never leaving it) into *buf, exactly `bytes` long. */
static int read_external(unsigned char **buf, ox_model *m, const Onnx__TensorProto *t, int64_t bytes)
{
    const char *name = t->name ? t->name : "";
    const char *loc = NULL;
    int64_t offset = 0, length = -1;
    for (size_t k = 0; k < t->n_external_data; k++) {
        const char *key = t->external_data[k]->key, *val = t->external_data[k]->value;
        if (!key || !val)
            continue;
        char *end;
        if (!strcmp(key, "location"))
            loc = val;
        else if (!strcmp(key, "offset") || !strcmp(key, "length")) {
            errno = 0;
            long long v = strtoll(val, &end, 10);
            if (errno || end == val || *end || v < 0)
                return mr_error(MR_EFORMAT, "onnx: %s: tensor '%s': external data %s '%s' is not a size",
                                m->path, name, key, val);
            if (!strcmp(key, "offset"))
                offset = v;
            else
                length = v;
        }
    }
    if (!loc || !*loc)
        return mr_error(MR_EFORMAT, "onnx: %s: tensor '%s': external data without a location", m->path, name);
    /* a file, not a folder: some component other than '' and '.' ("/", "///",
     * "./" name the root or the model's folder) */
    int names_file = 0;
    for (const char *p = loc; *p && !names_file; p = strchr(p, '/') ? strchr(p, '/') + 1 : p + strlen(p))
        names_file = p[0] != '/' && !(p[0] == '.' && (p[1] == '/' || p[1] == 0));
    if (!names_file)
        return mr_error(MR_EFORMAT,
                        "onnx: %s: tensor '%s': external data location '%s' names a folder, not a file",
                        m->path, name, loc);
    /* relative, no '..' component: the file must lie in the model's folder */
    int escapes = loc[0] == '/';
    for (const char *p = loc; *p && !escapes; p = strchr(p, '/') ? strchr(p, '/') + 1 : p + strlen(p))
        if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == 0))
            escapes = 1;
    if (escapes)
        return mr_error(MR_EFORMAT,
                        "onnx: %s: tensor '%s': external data location '%s' leaves the model's folder "
                        "(it must be a relative path without '..')",
                        m->path, name, loc);
    size_t n = strlen(m->dir) + strlen(loc) + 2;
    char *full = malloc(n);
    if (!full)
        return mr_error(MR_ENOMEM, "onnx: out of memory");
    snprintf(full, n, "%s/%s", m->dir, loc);
    /* symbolic links may point elsewhere: compare the resolved paths */
    char *rdir = realpath(m->dir, NULL), *rfile = realpath(full, NULL);
    int inside = rdir && rfile && !strncmp(rdir, rfile, strlen(rdir)) && rfile[strlen(rdir)] == '/';
    free(rdir);
    if (!rfile) {
        int e = errno;
        free(full);
        return mr_error(MR_EIO, "onnx: %s: tensor '%s': cannot open external data '%s': %s", m->path, name,
                        loc, strerror(e));
    }
    free(rfile);
    if (!inside) {
        free(full);
        return mr_error(MR_EFORMAT,
                        "onnx: %s: tensor '%s': external data location '%s' resolves outside the model's "
                        "folder",
                        m->path, name, loc);
    }
    int not_regular;
    FILE *f = mr_fopen_regular(full, &not_regular);
    free(full);
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        if (f)
            fclose(f);
        return mr_error(MR_EIO, "onnx: %s: tensor '%s': cannot read external data '%s'", m->path, name, loc);
    }
    if (length < 0)
        length = (int64_t)st.st_size - offset;
    if (length != bytes || offset > (int64_t)st.st_size || length > (int64_t)st.st_size - offset) {
        fclose(f);
        return mr_error(MR_EFORMAT,
                        "onnx: %s: tensor '%s': external data '%s' holds %lld bytes at offset %lld of a "
                        "%lld-byte file; the tensor needs %lld",
                        m->path, name, loc, (long long)length, (long long)offset, (long long)st.st_size,
                        (long long)bytes);
    }
    char what[200];
    snprintf(what, sizeof what, "external data of tensor '%s'", name);
    int rc = ox_charge(m, bytes, what);
    if (rc < 0) {
        fclose(f);
        return rc;
    }
    *buf = malloc((size_t)(bytes ? bytes : 1));
    if (!*buf) {
        fclose(f);
        return mr_error(MR_ENOMEM, "onnx: out of memory for %s", what);
    }
    if (fseeko(f, (off_t)offset, SEEK_SET) != 0 || fread(*buf, 1, (size_t)bytes, f) != (size_t)bytes) {
        fclose(f);
        free(*buf);
        *buf = NULL;
        return mr_error(MR_EIO, "onnx: %s: tensor '%s': short read of external data '%s'", m->path, name, loc);
    }
    fclose(f);
    m->used -= bytes; /* the staging buffer is freed by the caller */
    return MR_OK;
}

int ox_const_from_tensor(ox_const **out, ox_model *m, const Onnx__TensorProto *t, int as_int)
{
    *out = NULL;
    const char *name = t->name ? t->name : "";
    int32_t type = t->has_data_type ? t->data_type : 0;
    int es = elem_size(type);
    if (!es)
        return mr_error(MR_ENOTFOUND,
                        "onnx: %s: tensor '%s' has data type %s (%d); moreau reads FLOAT, DOUBLE, FLOAT16, "
                        "INT64 and INT32",
                        m->path, name, type_name(type), (int)type);
    int is_inttype = type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    if (as_int && !is_inttype)
        return mr_error(MR_EFORMAT, "onnx: %s: tensor '%s' has data type %s where integers (INT64) are expected",
                        m->path, name, type_name(type));
    if (t->n_dims > OX_MAX_DIMS)
        return mr_error(MR_EFORMAT, "onnx: %s: tensor '%s' has %zu dims (at most %d)", m->path, name, t->n_dims,
                        OX_MAX_DIMS);
    ox_const *c;
    MR_TRY(ox_const_new(&c, m, (int)t->n_dims, t->dims, as_int, name));
    int64_t numel = c->numel, bytes = numel * es; /* within int64: numel * 8 was charged */
    const unsigned char *raw = NULL;
    unsigned char *ext = NULL;
    int external = t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    int rc = MR_OK;
    if (external) {
        rc = read_external(&ext, m, t, bytes);
        raw = ext;
    } else if (t->has_raw_data) {
        if ((int64_t)t->raw_data.len != bytes)
            rc = mr_error(MR_EFORMAT,
                          "onnx: %s: tensor '%s' (%s, %lld elements) has %zu bytes of raw_data, expected %lld",
                          m->path, name, type_name(type), (long long)numel, t->raw_data.len, (long long)bytes);
        raw = t->raw_data.data;
    } else {
        size_t have;
        switch (type) {
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: have = t->n_float_data; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: have = t->n_double_data; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: have = t->n_int64_data; break;
        default: have = t->n_int32_data; break; /* INT32, FLOAT16 (bits in the low half) */
        }
        if ((int64_t)have != numel)
            rc = mr_error(MR_EFORMAT, "onnx: %s: tensor '%s' (%s) has %zu values for %lld elements", m->path,
                          name, type_name(type), have, (long long)numel);
    }
    for (int64_t k = 0; rc == MR_OK && k < numel; k++) {
        if (raw) {
            if (as_int)
                c->i[k] = elem_i(raw, type, k);
            else
                c->f[k] = (float)elem_f(raw, type, k);
            continue;
        }
        switch (type) {
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: c->f[k] = t->float_data[k]; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: c->f[k] = (float)t->double_data[k]; break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16: c->f[k] = half_to_float((uint16_t)t->int32_data[k]); break;
        case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
            if (as_int)
                c->i[k] = t->int64_data[k];
            else
                c->f[k] = (float)t->int64_data[k];
            break;
        default:
            if (as_int)
                c->i[k] = t->int32_data[k];
            else
                c->f[k] = (float)t->int32_data[k];
        }
    }
    free(ext);
    /* A NaN or an infinity in a weight makes every logit NaN in PyTorch, and
     * a ReLU would hide it in the forward pass while the gradient still comes
     * out NaN: no explanation can be computed from such a network, so it is
     * refused here, naming the tensor (so no NaN payload of the file reaches
     * a tensor either; internal.h, mr_canonicalize_nans). */
    for (int64_t k = 0; rc == MR_OK && !as_int && k < numel; k++)
        if (!isfinite(c->f[k]))
            rc = mr_error(MR_EINVAL, "onnx: %s: tensor '%s' holds %s at element %lld; moreau refuses non-finite "
                          "weights and constants (PyTorch's output would hold NaN or inf)",
                          m->path, name, c->f[k] != c->f[k] ? "NaN" : c->f[k] > 0 ? "+inf" : "-inf", (long long)k);
    if (rc < 0) {
        ox_const_free(c);
        return rc;
    }
    *out = c;
    return MR_OK;
}
