/* Overflow-checked size arithmetic with the engine's messages (internal.h,
 * "sizes"): products of dims and counts, byte sizes, and sizes cut to int. */
#include "../internal.h"

#include <limits.h>
#include <stdio.h>

/* "a*b*c" into buf, for a message. */
static const char *operands(char *buf, size_t len, int n, const int64_t *ops)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? "*%lld" : "%lld", (long long)ops[i]);
    return buf;
}

int mr_size_prod(int64_t *out, const char *fn, const char *what, int n, const int64_t *ops)
{
    int64_t p = 1;
    int negative = 0, overflow = 0;
    for (int i = 0; i < n; i++) {
        if (ops[i] < 0)
            negative = 1;
        else if (!overflow && mr_size_mul(p, ops[i], &p))
            overflow = 1;
    }
    /* A zero operand makes the product 0, whatever overflowed before it. */
    for (int i = 0; i < n && overflow && !negative; i++)
        if (ops[i] == 0)
            overflow = 0, p = 0;
    if (negative || overflow) {
        char buf[160];
        return mr_error(MR_EINVAL, "%s: %s = %s %s", fn, what, operands(buf, sizeof buf, n, ops),
                        negative ? "has a negative operand" : "overflows int64");
    }
    *out = p;
    return MR_OK;
}

int mr_bytes_of(int64_t *out, const char *fn, const char *what, int64_t count, int64_t elem_size)
{
    int64_t b;
    if (count < 0)
        return mr_error(MR_EINVAL, "%s: %s: a count of %lld elements is negative", fn, what, (long long)count);
    if (mr_size_mul(count, elem_size, &b) || (uint64_t)b > (uint64_t)SIZE_MAX)
        return mr_error(MR_ENOMEM, "%s: %s: %lld elements of %lld bytes overflow int64", fn, what,
                        (long long)count, (long long)elem_size);
    *out = b;
    return MR_OK;
}

int mr_size_int(const char *fn, const char *what, int64_t v)
{
    if (v < 0)
        return mr_error(MR_EINVAL, "%s: %s = %lld is negative", fn, what, (long long)v);
    if (v > INT_MAX)
        return mr_error(MR_EINVAL, "%s: %s = %lld is over INT_MAX (%d), the most an int size parameter "
                        "(OpenBLAS, oneDNN's int arguments, loop bounds) takes", fn, what, (long long)v, INT_MAX);
    return MR_OK;
}
