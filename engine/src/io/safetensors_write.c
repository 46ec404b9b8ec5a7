/*
 * safetensors_write.c — HuggingFace safetensors files: write float32 tensors.
 *
 * The header is laid out as the reference writer lays it out: compact JSON,
 * "__metadata__" first (its keys sorted), then the tensors sorted by name, each
 * as {"dtype":"F32","shape":[...],"data_offsets":[begin,end]} with the data
 * packed in that order from offset 0; the header is padded with spaces to a
 * multiple of 8 bytes so the data section starts aligned. The same tensors and
 * metadata therefore always give the same bytes, whatever order they came in.
 * The layout itself is described in safetensors_read.c.
 */
#include "safetensors.h"

#include "../internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = mr_alloc(cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        if (b->s)
            memcpy(p, b->s, b->len);
        mr_free(b->s);
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* s as a JSON string literal (UTF-8 passes through). */
static void sb_json_string(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\', esc[1] = (char)*p;
            sb_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static void sb_u64(sbuf *b, uint64_t v)
{
    char num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    sb_str(b, num);
}

typedef struct save_item {
    const char *name;
    const mr_tensor *t;
} save_item;

static int item_by_name(const void *a, const void *b)
{
    return strcmp(((const save_item *)a)->name, ((const save_item *)b)->name);
}

/* Appends "__metadata__":{...} from a JSON object of string values, keys sorted
 * bytewise; nothing for an empty object. */
static int put_metadata(sbuf *b, const char *path, const char *metadata_json)
{
    if (mr_st_utf8_invalid_at((const unsigned char *)metadata_json, strlen(metadata_json)) >= 0)
        return mr_error(MR_EINVAL, "%s: metadata is not valid UTF-8", path);
    cJSON *meta = cJSON_ParseWithOpts(metadata_json, NULL, 1); /* 1: nothing may follow */
    if (!meta)
        return mr_error(MR_EINVAL, "%s: metadata is not valid JSON", path);
    int rc = MR_OK, n = 0;
    const cJSON **members = NULL, *dup = NULL;
    if (!cJSON_IsObject(meta)) {
        rc = mr_error(MR_EINVAL, "%s: metadata must be a JSON object of strings", path);
        goto done;
    }
    for (const cJSON *v = meta->child; v && rc == MR_OK; v = v->next)
        if (!cJSON_IsString(v))
            rc = mr_error(MR_EINVAL, "%s: metadata value of '%s' is not a string", path, v->string);
    if (rc < 0 || (rc = mr_st_sorted_members(meta, &members, &n, &dup)) < 0)
        goto done;
    if (dup) {
        rc = mr_error(MR_EINVAL, "%s: metadata key '%s' appears twice", path, dup->string);
        goto done;
    }
    if (n == 0)
        goto done;
    sb_str(b, "\"__metadata__\":{");
    for (int i = 0; i < n; i++) {
        sb_json_string(b, members[i]->string);
        sb_str(b, ":");
        sb_json_string(b, members[i]->valuestring);
        if (i + 1 < n)
            sb_str(b, ",");
    }
    sb_str(b, "}");
done:
    mr_free(members);
    cJSON_Delete(meta);
    return rc;
}

int mr_safetensors_save(const char *path, int n, const char *const *names,
                        const mr_tensor *const *tensors, const char *metadata_json)
{
    if (!path)
        return mr_error(MR_EINVAL, "mr_safetensors_save: path is NULL");
    if (n < 0 || (n > 0 && (!names || !tensors)))
        return mr_error(MR_EINVAL, "%s: %d tensors with NULL names or tensors", path, n);
    for (int i = 0; i < n; i++) {
        if (!names[i] || !*names[i])
            return mr_error(MR_EINVAL, "%s: tensor %d has no name", path, i);
        if (strcmp(names[i], "__metadata__") == 0)
            return mr_error(MR_EINVAL, "%s: '__metadata__' cannot name a tensor", path);
        if (!tensors[i] || !tensors[i]->data)
            return mr_error(MR_EINVAL, "%s: tensor '%s' is NULL", path, names[i]);
        if (tensors[i]->ndim < 1 || tensors[i]->ndim > MR_MAX_DIMS)
            return mr_error(MR_ESHAPE, "%s: tensor '%s' has ndim %d", path, names[i], tensors[i]->ndim);
        if (mr_st_utf8_invalid_at((const unsigned char *)names[i], strlen(names[i])) >= 0)
            return mr_error(MR_EINVAL, "%s: tensor name '%s' is not valid UTF-8", path, names[i]);
    }

    save_item *items = n ? mr_alloc((size_t)n * sizeof *items) : NULL;
    if (n && !items)
        return MR_ENOMEM;
    for (int i = 0; i < n; i++)
        items[i] = (save_item){names[i], tensors[i]};
    if (n > 1)
        qsort(items, (size_t)n, sizeof *items, item_by_name);

    int rc = MR_OK;
    sbuf h = {0};
    FILE *f = NULL;
    char *tmp = NULL;
    for (int i = 1; i < n; i++)
        if (strcmp(items[i - 1].name, items[i].name) == 0) {
            rc = mr_error(MR_EINVAL, "%s: two tensors are named '%s'", path, items[i].name);
            goto done;
        }

    /* The header, as the reference writer lays it out. */
    sb_str(&h, "{");
    if (metadata_json) {
        size_t before = h.len;
        if ((rc = put_metadata(&h, path, metadata_json)) < 0)
            goto done;
        if (h.len > before && n > 0)
            sb_str(&h, ",");
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const mr_tensor *t = items[i].t;
        sb_json_string(&h, items[i].name);
        sb_str(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int k = 0; k < t->ndim; k++) {
            if (k)
                sb_str(&h, ",");
            sb_u64(&h, (uint64_t)t->shape[k]);
        }
        sb_str(&h, "],\"data_offsets\":[");
        sb_u64(&h, offset);
        sb_str(&h, ",");
        offset += (uint64_t)t->numel * 4;
        sb_u64(&h, offset);
        sb_str(&h, i + 1 < n ? "]}," : "]}");
    }
    sb_str(&h, "}");
    /* Pad with spaces so the data section starts 8-byte aligned. */
    while (!h.oom && h.len % 8 != 0)
        sb_str(&h, " ");
    if (h.oom) {
        rc = MR_ENOMEM;
        goto done;
    }

    /* Write to a temporary file and rename it, so a failed save leaves any
     * existing file intact. */
    size_t plen = strlen(path);
    if (!(tmp = mr_alloc(plen + 8))) {
        rc = MR_ENOMEM;
        goto done;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp~", 6);
    if (!(f = fopen(tmp, "wb"))) {
        rc = mr_error(MR_EIO, "%s: cannot open for writing: %s", tmp, strerror(errno));
        goto done;
    }
    unsigned char len8[8];
    for (int k = 0; k < 8; k++)
        len8[k] = (unsigned char)((uint64_t)h.len >> (8 * k));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.s, 1, h.len, f) == h.len;
    for (int i = 0; i < n && ok; i++) {
        const mr_tensor *t = items[i].t;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        ok = fwrite(t->data, sizeof(float), (size_t)t->numel, f) == (size_t)t->numel;
#else
        for (int64_t j = 0; j < t->numel && ok; j++) {
            uint32_t b;
            memcpy(&b, &t->data[j], 4);
            unsigned char le[4] = {(unsigned char)b, (unsigned char)(b >> 8), (unsigned char)(b >> 16),
                                   (unsigned char)(b >> 24)};
            ok = fwrite(le, 1, 4, f) == 4;
        }
#endif
    }
    int err = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    f = NULL;
    if (!ok) {
        remove(tmp);
        rc = mr_error(MR_EIO, "%s: write failed: %s", tmp, strerror(err));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        remove(tmp);
        rc = mr_error(MR_EIO, "%s: cannot rename %s into place: %s", path, tmp, strerror(err));
        goto done;
    }
done:
    if (f)
        fclose(f);
    mr_free(tmp);
    mr_free(h.s);
    mr_free(items);
    return rc;
}
