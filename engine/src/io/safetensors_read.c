/*
 * safetensors_read.c — HuggingFace safetensors files: read and validate.
 *
 * Layout of a file:
 *
 *   bytes [0, 8)        N, the header length, unsigned little-endian
 *   bytes [8, 8+N)      UTF-8 JSON object:
 *                         "name": {"dtype": "F32", "shape": [d0, ...],
 *                                  "data_offsets": [begin, end]}, ...
 *                         "__metadata__": {"key": "value", ...}   (optional)
 *   bytes [8+N, size)   the data section; offsets are relative to its start.
 *                       Values are little-endian, row-major.
 *
 * Everything is validated before any tensor data is read, in this order: the
 * header length against the file size (and a 100 MB cap); the header as UTF-8
 * and as JSON (parsed by cJSON; no object may repeat a key, see safetensors.h);
 * every entry (a known dtype, a shape of non-negative integers whose byte size
 * does not overflow, begin <= end, and end - begin == numel * dtype size
 * exactly); then, with the entries sorted by offset, that they tile the data
 * section exactly, as the reference reader requires: no overlap, no hole,
 * nothing missing at the end (a truncated file) and nothing left over.
 *
 * The whole file is read into memory with stdio; mr_safetensors_get converts
 * F32, F64, F16 and BF16 to float32 on demand. Other dtypes are listed (their
 * names and shapes are readable) but cannot be converted. The writer is
 * safetensors_write.c; a network's parameters are loaded and saved by name in
 * safetensors_net.c.
 */
#include "safetensors.h"

#include "../internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- dtypes */

enum { ST_F32, ST_F64, ST_F16, ST_BF16, ST_OTHER };

typedef struct st_dtype {
    const char *name;
    int size;  /* bytes per element */
    int kind;  /* ST_F32 .. ST_BF16 convert to float32; ST_OTHER does not */
} st_dtype;

/* The dtypes of the reference format that have a whole number of bytes per
 * element. The sub-byte float formats (F4, F6_*) are reported as unknown. */
static const st_dtype dtypes[] = {
    {"F32", 4, ST_F32},     {"F64", 8, ST_F64},     {"F16", 2, ST_F16},
    {"BF16", 2, ST_BF16},   {"BOOL", 1, ST_OTHER},  {"U8", 1, ST_OTHER},
    {"I8", 1, ST_OTHER},    {"F8_E5M2", 1, ST_OTHER}, {"F8_E4M3", 1, ST_OTHER},
    {"F8_E8M0", 1, ST_OTHER}, {"I16", 2, ST_OTHER}, {"U16", 2, ST_OTHER},
    {"I32", 4, ST_OTHER},   {"U32", 4, ST_OTHER},   {"I64", 8, ST_OTHER},
    {"U64", 8, ST_OTHER},   {"C64", 8, ST_OTHER},
};
enum { NDTYPES = (int)(sizeof dtypes / sizeof dtypes[0]) };

static int dtype_find(const char *name)
{
    for (int i = 0; i < NDTYPES; i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return i;
    return -1;
}

/* ----------------------------------------------------------- the object */

typedef struct st_entry {
    char *name;
    int dtype;         /* index into dtypes */
    int ndim;          /* may exceed 4: such a tensor is listed, not converted */
    int64_t shape[4];  /* the first min(ndim, 4) dims */
    int64_t numel;
    uint64_t begin, end; /* byte range in the data section */
} st_entry;

struct mr_safetensors {
    char *path;
    unsigned char *file; /* the whole file */
    uint64_t size;
    const unsigned char *data; /* file + 8 + N */
    uint64_t data_size;
    st_entry *e; /* sorted by name */
    int n;
    char *metadata; /* JSON text of "__metadata__", "{}" if none */
};

static char *str_dup(const char *s)
{
    size_t len = strlen(s);
    char *d = mr_alloc(len + 1);
    if (d)
        memcpy(d, s, len + 1);
    return d;
}

void mr_safetensors_free(mr_safetensors *st)
{
    if (!st)
        return;
    for (int i = 0; i < st->n; i++)
        mr_free(st->e[i].name);
    mr_free(st->e);
    mr_free(st->file);
    mr_free(st->path);
    mr_free(st->metadata);
    mr_free(st);
}

/* ------------------------------------------------------------- reading */

/* Reads the whole file. Sets *buf (owned, NULL for an empty file) and *size. */
static int read_file(const char *path, unsigned char **buf, uint64_t *size)
{
    *buf = NULL;
    *size = 0;
    int not_regular;
    FILE *f = mr_fopen_regular(path, &not_regular);
    if (!f)
        return not_regular ? mr_error(MR_EIO, "%s: not a regular file", path)
                           : mr_error(MR_EIO, "%s: cannot open: %s", path, strerror(errno));
    int rc = MR_OK;
    off_t end = -1;
    if (fseeko(f, 0, SEEK_END) != 0 || (end = ftello(f)) < 0 || fseeko(f, 0, SEEK_SET) != 0) {
        rc = mr_error(MR_EIO, "%s: cannot determine the file size: %s", path, strerror(errno));
        goto done;
    }
    if (end > 0) {
        if ((uint64_t)end > (uint64_t)SIZE_MAX - 64) {
            rc = mr_error(MR_ENOMEM, "%s: file of %lld bytes does not fit in memory", path,
                          (long long)end);
            goto done;
        }
        /* The whole file is held while it is open: its size is what the budget judges. */
        if ((rc = mr_loader_check((int64_t)end, "mr_safetensors_load: '%s' is %lld bytes, all read "
                                  "into memory", path, (long long)end)) < 0)
            goto done;
        *buf = mr_alloc((size_t)end);
        if (!*buf) {
            rc = mr_error(MR_ENOMEM, "%s: out of memory reading %lld bytes", path, (long long)end);
            goto done;
        }
        size_t got = fread(*buf, 1, (size_t)end, f);
        if (got != (size_t)end) {
            rc = ferror(f) ? mr_error(MR_EIO, "%s: read failed: %s", path, strerror(errno))
                           : mr_error(MR_EIO, "%s: file shrank while being read (%zu of %lld bytes)",
                                      path, got, (long long)end);
            goto done;
        }
    } else if (fgetc(f) == EOF && ferror(f)) {
        /* a directory opens but does not read */
        rc = mr_error(MR_EIO, "%s: read failed: %s", path, strerror(errno));
        goto done;
    }
    *size = (uint64_t)end;
done:
    fclose(f);
    if (rc < 0) {
        mr_free(*buf);
        *buf = NULL;
    }
    return rc;
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* A JSON number that is a non-negative integer below 2^53. cJSON holds numbers
 * as doubles, and 2^53 + 1 parses to the same double as 2^53: from 2^53 on, the
 * value read need not be the value written, so it is refused. */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d >= MR_ST_INT_LIMIT || d != floor(d))
        return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Short text of a JSON value for messages: the value itself, cut to fit. */
static const char *json_text(const cJSON *v, char *buf, size_t len)
{
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    snprintf(buf, len, "%s", s ? s : "null");
    if (s && strlen(s) >= len && len > 4)
        memcpy(buf + len - 4, "...", 4);
    free(s);
    return buf;
}

/* Fills *e from the header entry `item` (its key is the tensor name). */
static int parse_entry(const char *path, const cJSON *item, st_entry *e)
{
    const char *name = item->string;
    char vbuf[64];
    if (!cJSON_IsObject(item))
        return mr_error(MR_EFORMAT, "%s: tensor '%s': entry is %s, not an object", path, name,
                        json_text(item, vbuf, sizeof vbuf));
    const cJSON **members, *dup;
    int nmembers;
    MR_TRY(mr_st_sorted_members(item, &members, &nmembers, &dup));
    mr_free(members);
    if (dup)
        return mr_error(MR_EFORMAT, "%s: tensor '%s' has \"%.32s\" twice", path, name, dup->string);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    if (!dt)
        return mr_error(MR_EFORMAT, "%s: tensor '%s' has no \"dtype\"", path, name);
    if (!cJSON_IsString(dt))
        return mr_error(MR_EFORMAT, "%s: tensor '%s': dtype %s is not a string", path, name,
                        json_text(dt, vbuf, sizeof vbuf));
    e->dtype = dtype_find(dt->valuestring);
    if (e->dtype < 0)
        return mr_error(MR_EFORMAT, "%s: tensor '%s' has unknown dtype '%.32s'", path, name,
                        dt->valuestring);
    const st_dtype *d = &dtypes[e->dtype];

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    if (!sh)
        return mr_error(MR_EFORMAT, "%s: tensor '%s' has no \"shape\"", path, name);
    if (!cJSON_IsArray(sh))
        return mr_error(MR_EFORMAT, "%s: tensor '%s': shape %s is not an array", path, name,
                        json_text(sh, vbuf, sizeof vbuf));
    int ndim = 0;
    uint64_t numel = 1;
    int overflow = 0;
    for (const cJSON *v = sh->child; v; v = v->next, ndim++) {
        uint64_t dim;
        if (!json_uint(v, &dim))
            return mr_error(MR_EFORMAT, "%s: tensor '%s': shape entry %d is %s, not an integer in [0, 2^53)",
                            path, name, ndim, json_text(v, vbuf, sizeof vbuf));
        if (ndim < 4)
            e->shape[ndim] = (int64_t)dim;
        if (dim == 0)
            numel = 0;
        else if (!overflow && numel > UINT64_MAX / dim)
            overflow = 1;
        else
            numel *= dim;
    }
    e->ndim = ndim;
    if (numel == 0)
        overflow = 0; /* a zero dim anywhere makes the tensor empty */
    if (overflow || numel > UINT64_MAX / (uint64_t)d->size || numel > (uint64_t)INT64_MAX)
        return mr_error(MR_EFORMAT, "%s: tensor '%s': shape %s has too many elements", path, name,
                        json_text(sh, vbuf, sizeof vbuf));
    e->numel = (int64_t)numel;
    uint64_t nbytes = numel * (uint64_t)d->size;

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!off)
        return mr_error(MR_EFORMAT, "%s: tensor '%s' has no \"data_offsets\"", path, name);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &e->begin) ||
        !json_uint(off->child->next, &e->end))
        return mr_error(MR_EFORMAT, "%s: tensor '%s': data_offsets %s are not two integers in [0, 2^53)",
                        path, name, json_text(off, vbuf, sizeof vbuf));
    if (e->begin > e->end)
        return mr_error(MR_EFORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] are out of range: begin exceeds end",
                        path, name, (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end - e->begin != nbytes) {
        char sbuf[64];
        return mr_error(MR_EFORMAT,
                        "%s: tensor '%s' data_offsets [%llu, %llu] do not match shape %s of %s "
                        "(%llu bytes)",
                        path, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                        mr_st_shape_str(ndim, e->shape, sbuf, sizeof sbuf), d->name,
                        (unsigned long long)nbytes);
    }
    return MR_OK;
}

/* The "__metadata__" object: string values only. Sets *out to its JSON text. */
static int parse_metadata(const char *path, const cJSON *meta, char **out)
{
    char vbuf[64];
    if (!cJSON_IsObject(meta))
        return mr_error(MR_EFORMAT, "%s: __metadata__ is %s, not an object", path,
                        json_text(meta, vbuf, sizeof vbuf));
    for (const cJSON *v = meta->child; v; v = v->next)
        if (!cJSON_IsString(v))
            return mr_error(MR_EFORMAT, "%s: __metadata__ value of '%s' is %s, not a string", path,
                            v->string, json_text(v, vbuf, sizeof vbuf));
    const cJSON **members, *dup;
    int nmembers;
    MR_TRY(mr_st_sorted_members(meta, &members, &nmembers, &dup));
    mr_free(members);
    if (dup)
        return mr_error(MR_EFORMAT, "%s: __metadata__ key '%s' appears twice", path, dup->string);
    char *text = cJSON_PrintUnformatted(meta);
    if (!text)
        return mr_error(MR_ENOMEM, "%s: out of memory printing the metadata", path);
    *out = str_dup(text);
    free(text);
    return *out ? MR_OK : MR_ENOMEM;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static int by_offset(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The entries must tile [0, data_size) exactly. Empty tensors take no bytes and
 * may sit anywhere inside it. */
static int check_layout(const mr_safetensors *st)
{
    const char *path = st->path;
    if (st->n == 0) {
        if (st->data_size != 0)
            return mr_error(MR_EFORMAT, "%s: %llu bytes of data but no tensors in the header", path,
                            (unsigned long long)st->data_size);
        return MR_OK;
    }
    const st_entry **order = mr_alloc((size_t)st->n * sizeof *order);
    if (!order)
        return MR_ENOMEM;
    for (int i = 0; i < st->n; i++)
        order[i] = &st->e[i];
    qsort(order, (size_t)st->n, sizeof *order, by_offset);
    int rc = MR_OK;
    uint64_t covered = 0; /* bytes [0, covered) belong to the tensors seen so far */
    const st_entry *last = NULL;
    for (int i = 0; i < st->n && rc == MR_OK; i++) {
        const st_entry *e = order[i];
        if (e->begin == e->end) {
            if (e->begin > st->data_size)
                rc = mr_error(MR_EFORMAT,
                              "%s: tensor '%s': data_offsets [%llu, %llu] are out of range: the data "
                              "section holds %llu bytes",
                              path, e->name, (unsigned long long)e->begin,
                              (unsigned long long)e->end, (unsigned long long)st->data_size);
            continue;
        }
        if (e->begin < covered)
            rc = mr_error(MR_EFORMAT, "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap",
                          path, last->name, (unsigned long long)last->begin,
                          (unsigned long long)last->end, e->name, (unsigned long long)e->begin,
                          (unsigned long long)e->end);
        else if (e->begin > covered)
            rc = mr_error(MR_EFORMAT, "%s: bytes [%llu, %llu) of the data section belong to no tensor",
                          path, (unsigned long long)covered, (unsigned long long)e->begin);
        else if (e->end > st->data_size)
            rc = mr_error(MR_EFORMAT,
                          "%s: truncated: tensor '%s' data_offsets [%llu, %llu] run past the end of "
                          "the data section (%llu bytes)",
                          path, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                          (unsigned long long)st->data_size);
        covered = e->end;
        last = e;
    }
    if (rc == MR_OK && covered < st->data_size)
        rc = mr_error(MR_EFORMAT, "%s: %llu bytes after the last tensor's data belong to no tensor",
                      path, (unsigned long long)(st->data_size - covered));
    mr_free(order);
    return rc;
}

/* Parses and checks the header; fills st->e, st->n, st->metadata. */
static int parse_header(mr_safetensors *st)
{
    const char *path = st->path;
    if (st->size == 0)
        return mr_error(MR_EFORMAT, "%s: empty file (not safetensors)", path);
    if (st->size < 8)
        return mr_error(MR_EFORMAT, "%s: truncated: %llu bytes, shorter than the 8-byte header length",
                        path, (unsigned long long)st->size);
    uint64_t hlen = le64(st->file);
    if (hlen > st->size - 8)
        return mr_error(MR_EFORMAT, "%s: header length %llu exceeds the file size %llu", path,
                        (unsigned long long)hlen, (unsigned long long)st->size);
    if (hlen > MR_ST_MAX_HEADER)
        return mr_error(MR_EFORMAT, "%s: header length %llu exceeds the limit of %llu bytes", path,
                        (unsigned long long)hlen, (unsigned long long)MR_ST_MAX_HEADER);
    const unsigned char *h = st->file + 8;
    st->data = h + hlen;
    st->data_size = st->size - 8 - hlen;

    int64_t bad = mr_st_utf8_invalid_at(h, hlen);
    if (bad >= 0)
        return mr_error(MR_EFORMAT, "%s: header is not valid UTF-8 (byte %lld of the header)", path,
                        (long long)bad);
    const void *nul = memchr(h, 0, (size_t)hlen);
    if (nul)
        return mr_error(MR_EFORMAT, "%s: header is not valid JSON (NUL byte at %lld of the header)",
                        path, (long long)((const unsigned char *)nul - h));

    /* cJSON wants a NUL-terminated text to reject trailing garbage. */
    char *text = mr_alloc((size_t)hlen + 1);
    if (!text)
        return MR_ENOMEM;
    memcpy(text, h, (size_t)hlen);
    text[hlen] = '\0';
    const char *stop = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)hlen + 1, &stop, 1);
    long long err_at = stop ? (long long)(stop - text) : 0;
    mr_free(text);
    if (!root)
        return mr_error(MR_EFORMAT, "%s: header is not valid JSON (error near byte %lld of the header)",
                        path, err_at);

    int rc = MR_OK;
    char vbuf[64];
    if (!cJSON_IsObject(root)) {
        rc = mr_error(MR_EFORMAT, "%s: header is %s, not a JSON object", path,
                      json_text(root, vbuf, sizeof vbuf));
        goto done;
    }
    int count = 0;
    for (const cJSON *it = root->child; it; it = it->next)
        if (strcmp(it->string, "__metadata__") != 0)
            count++;
    if (count > 0) {
        st->e = mr_calloc((size_t)count * sizeof *st->e);
        if (!st->e) {
            rc = MR_ENOMEM;
            goto done;
        }
    }
    int seen_meta = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) {
            if (seen_meta++) {
                rc = mr_error(MR_EFORMAT, "%s: __metadata__ appears twice in the header", path);
                goto done;
            }
            if ((rc = parse_metadata(path, it, &st->metadata)) < 0)
                goto done;
            continue;
        }
        st_entry *e = &st->e[st->n];
        if ((rc = parse_entry(path, it, e)) < 0)
            goto done;
        if (!(e->name = str_dup(it->string))) {
            rc = MR_ENOMEM;
            goto done;
        }
        st->n++;
    }
    if (st->n > 1) {
        qsort(st->e, (size_t)st->n, sizeof *st->e, by_name);
        for (int i = 1; i < st->n; i++)
            if (strcmp(st->e[i - 1].name, st->e[i].name) == 0) {
                rc = mr_error(MR_EFORMAT, "%s: tensor '%s' appears twice in the header", path,
                              st->e[i].name);
                goto done;
            }
    }
    if (!st->metadata && !(st->metadata = str_dup("{}"))) {
        rc = MR_ENOMEM;
        goto done;
    }
    rc = check_layout(st);
done:
    cJSON_Delete(root);
    return rc;
}

int mr_safetensors_load(mr_safetensors **out, const char *path)
{
    if (!out)
        return mr_error(MR_EINVAL, "mr_safetensors_load: out is NULL");
    *out = NULL;
    if (!path)
        return mr_error(MR_EINVAL, "mr_safetensors_load: path is NULL");
    mr_safetensors *st = mr_calloc(sizeof *st);
    if (!st)
        return MR_ENOMEM;
    int rc = MR_ENOMEM;
    if (!(st->path = str_dup(path)) || (rc = read_file(path, &st->file, &st->size)) < 0 ||
        (rc = parse_header(st)) < 0) {
        mr_safetensors_free(st);
        return rc;
    }
    *out = st;
    return MR_OK;
}

int mr_safetensors_count(const mr_safetensors *st) { return st ? st->n : 0; }

const char *mr_safetensors_name(const mr_safetensors *st, int i)
{
    return st && i >= 0 && i < st->n ? st->e[i].name : NULL;
}

int mr_safetensors_find(const mr_safetensors *st, const char *name)
{
    if (!st || !name)
        return mr_error(MR_EINVAL, "mr_safetensors_find: NULL argument");
    st_entry key = {.name = (char *)name};
    const st_entry *e = bsearch(&key, st->e, (size_t)st->n, sizeof *st->e, by_name);
    if (!e)
        return mr_error(MR_ENOTFOUND, "%s: no tensor named '%s'", st->path, name);
    return (int)(e - st->e);
}

static int check_index(const mr_safetensors *st, int i, const char *what)
{
    if (!st)
        return mr_error(MR_EINVAL, "%s: NULL safetensors", what);
    if (i < 0 || i >= st->n)
        return mr_error(MR_EINVAL, "%s: %s: no tensor %d (the file holds %d)", what, st->path, i, st->n);
    return MR_OK;
}

int mr_safetensors_shape(const mr_safetensors *st, int i, int *ndim, int64_t *shape)
{
    MR_TRY(check_index(st, i, "mr_safetensors_shape"));
    const st_entry *e = &st->e[i];
    if (e->ndim > MR_MAX_DIMS)
        return mr_error(MR_ESHAPE, "%s: tensor '%s' has %d dims; moreau handles at most %d", st->path,
                        e->name, e->ndim, MR_MAX_DIMS);
    if (ndim)
        *ndim = e->ndim;
    if (shape)
        for (int k = 0; k < e->ndim; k++)
            shape[k] = e->shape[k];
    return MR_OK;
}

const char *mr_safetensors_metadata(const mr_safetensors *st) { return st ? st->metadata : "{}"; }

/* ---------------------------------------------------------- conversion */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | man << 13; /* inf, NaN (payload kept) */
    } else if (exp != 0) {
        bits = sign | (exp + 112) << 23 | man << 13; /* rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign; /* signed zero */
    } else {
        /* subnormal: man * 2^-24, exact in float32 */
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float double_to_float(double d)
{
    /* Out-of-range double -> float conversion is undefined in C; round as IEEE
     * does: anything at or above FLT_MAX + half an ulp becomes infinite. */
    if (d >= 0x1.ffffffp+127)
        return INFINITY;
    if (d <= -0x1.ffffffp+127)
        return -INFINITY;
    return (float)d;
}

/* Why tensor e cannot become a float32 moreau tensor, or MR_OK. */
static int check_convertible(const mr_safetensors *st, const st_entry *e)
{
    const st_dtype *d = &dtypes[e->dtype];
    if (d->kind == ST_OTHER)
        return mr_error(MR_EFORMAT,
                        "%s: tensor '%s' has dtype %s, which does not convert to float32 (only F32, "
                        "F64, F16 and BF16 do)",
                        st->path, e->name, d->name);
    if (e->ndim > MR_MAX_DIMS)
        return mr_error(MR_ESHAPE, "%s: tensor '%s' has %d dims; moreau handles at most %d", st->path,
                        e->name, e->ndim, MR_MAX_DIMS);
    if (e->numel == 0) {
        char sbuf[64];
        return mr_error(MR_ESHAPE, "%s: tensor '%s' of shape %s is empty; moreau tensors have no zero dims",
                        st->path, e->name, mr_st_shape_str(e->ndim, e->shape, sbuf, sizeof sbuf));
    }
    return MR_OK;
}

/* dst[0, numel) = the values of tensor e as float32. */
static void convert(const mr_safetensors *st, const st_entry *e, float *dst)
{
    const unsigned char *p = st->data + e->begin;
    int64_t n = e->numel;
    switch (dtypes[e->dtype].kind) {
    case ST_F32:
        for (int64_t i = 0; i < n; i++, p += 4) {
            uint32_t b = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&dst[i], &b, 4);
        }
        break;
    case ST_F64:
        for (int64_t i = 0; i < n; i++, p += 8) {
            uint64_t b = le64(p);
            double d;
            memcpy(&d, &b, 8);
            dst[i] = double_to_float(d);
        }
        break;
    case ST_F16:
        for (int64_t i = 0; i < n; i++, p += 2)
            dst[i] = half_to_float((uint16_t)(p[0] | p[1] << 8));
        break;
    case ST_BF16:
        for (int64_t i = 0; i < n; i++, p += 2) {
            uint32_t b = ((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16;
            memcpy(&dst[i], &b, 4);
        }
        break;
    }
    mr_canonicalize_nans(dst, n); /* a file's NaN payloads never reach a tensor (internal.h) */
}

int mr_safetensors_get(mr_tensor **out, const mr_safetensors *st, int i)
{
    if (!out)
        return mr_error(MR_EINVAL, "mr_safetensors_get: out is NULL");
    *out = NULL;
    MR_TRY(check_index(st, i, "mr_safetensors_get"));
    const st_entry *e = &st->e[i];
    MR_TRY(check_convertible(st, e));
    /* The float32 copy takes numel * 4 bytes: twice the file's bytes for F16
     * and BF16. numel * dtype size fit int64 (parse_entry), numel * 4 may not. */
    int64_t bytes;
    char sbuf[64];
    if (mr_size_mul(e->numel, (int64_t)sizeof(float), &bytes))
        bytes = -1;
    MR_TRY(mr_loader_check(bytes, "mr_safetensors_get: '%s': tensor '%s' of shape %s (%s) takes %lld bytes "
                           "as float32", st->path, e->name, mr_st_shape_str(e->ndim, e->shape, sbuf, sizeof sbuf),
                           dtypes[e->dtype].name, (long long)bytes));
    int64_t one = 1;
    MR_TRY(mr_tensor_new(out, e->ndim ? e->ndim : 1, e->ndim ? e->shape : &one));
    convert(st, e, (*out)->data);
    return MR_OK;
}
