/* Aligned allocation with a process-wide counter, so tests can show that a
 * solver loop allocates nothing (mr_alloc_count before == after). */
#include "../internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_llong alloc_count;

enum { MR_ALIGN = 64 };

void *mr_alloc(size_t bytes)
{
    size_t rounded = (bytes + MR_ALIGN - 1) / MR_ALIGN * MR_ALIGN;
    void *p = aligned_alloc(MR_ALIGN, rounded ? rounded : MR_ALIGN);
    if (!p) {
        mr_error(MR_ENOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    atomic_fetch_add(&alloc_count, 1);
    return p;
}

void *mr_calloc(size_t bytes)
{
    void *p = mr_alloc(bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void mr_free(void *p) { free(p); }

int64_t mr_alloc_count(void) { return atomic_load(&alloc_count); }
