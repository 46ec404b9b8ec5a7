/* Aligned allocation with process-wide counters, so tests can show that a
 * solver loop allocates nothing (mr_alloc_count before == after) and that a
 * method's memory stays under its budget (mr_alloc_peak_bytes).
 *
 * Each block carries a 64-byte header holding its requested size, so mr_free
 * can take it off the live total; the pointer returned is 64-byte aligned. */
#include "../internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_llong alloc_count, live_bytes, peak_bytes;

enum { MR_ALIGN = 64 };

void *mr_alloc(size_t bytes)
{
    size_t rounded = (bytes + MR_ALIGN - 1) / MR_ALIGN * MR_ALIGN;
    if (rounded < bytes || rounded > SIZE_MAX - MR_ALIGN) {
        mr_error(MR_ENOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    char *base = aligned_alloc(MR_ALIGN, rounded + MR_ALIGN);
    if (!base) {
        mr_error(MR_ENOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    memcpy(base, &bytes, sizeof bytes);
    atomic_fetch_add(&alloc_count, 1);
    long long live = atomic_fetch_add(&live_bytes, (long long)bytes) + (long long)bytes;
    long long peak = atomic_load(&peak_bytes);
    while (live > peak && !atomic_compare_exchange_weak(&peak_bytes, &peak, live))
        ;
    return base + MR_ALIGN;
}

void *mr_calloc(size_t bytes)
{
    void *p = mr_alloc(bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void mr_free(void *p)
{
    if (!p)
        return;
    char *base = (char *)p - MR_ALIGN;
    size_t bytes;
    memcpy(&bytes, base, sizeof bytes);
    atomic_fetch_sub(&live_bytes, (long long)bytes);
    free(base);
}

int64_t mr_alloc_count(void) { return atomic_load(&alloc_count); }

int64_t mr_alloc_live_bytes(void) { return atomic_load(&live_bytes); }

int64_t mr_alloc_peak_bytes(void) { return atomic_load(&peak_bytes); }

void mr_alloc_peak_reset(void) { atomic_store(&peak_bytes, atomic_load(&live_bytes)); }
