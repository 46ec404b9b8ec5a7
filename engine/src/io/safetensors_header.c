/*
 * safetensors_header.c — rules on the header's text shared by the reader and
 * the writer (see safetensors.h): UTF-8 validity, unique keys, shape strings.
 */
#include "safetensors.h"

#include "../internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t mr_st_utf8_invalid_at(const unsigned char *s, uint64_t n)
{
    uint64_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len;
        unsigned cp, min;
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return (int64_t)i;
        }
        if (n - i < (uint64_t)len)
            return (int64_t)i;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return (int64_t)i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return (int64_t)i;
        i += (uint64_t)len;
    }
    return -1;
}

static int by_key(const void *a, const void *b)
{
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

int mr_st_sorted_members(const cJSON *object, const cJSON ***sorted, int *n, const cJSON **dup)
{
    *sorted = NULL;
    *n = 0;
    *dup = NULL;
    int count = 0;
    for (const cJSON *v = object->child; v; v = v->next)
        count++;
    if (count == 0)
        return MR_OK;
    const cJSON **m = mr_alloc((size_t)count * sizeof *m);
    if (!m)
        return MR_ENOMEM;
    int i = 0;
    for (const cJSON *v = object->child; v; v = v->next)
        m[i++] = v;
    qsort(m, (size_t)count, sizeof *m, by_key);
    for (i = 1; i < count && !*dup; i++)
        if (strcmp(m[i - 1]->string, m[i]->string) == 0)
            *dup = m[i];
    *sorted = m;
    *n = count;
    return MR_OK;
}

const char *mr_st_shape_str(int ndim, const int64_t *shape, char *buf, size_t len)
{
    if (ndim == 0) {
        snprintf(buf, len, "scalar");
        return buf;
    }
    if (ndim > 4) {
        snprintf(buf, len, "a %d-dim shape", ndim);
        return buf;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? "x%lld" : "%lld", (long long)shape[i]);
    return buf;
}
