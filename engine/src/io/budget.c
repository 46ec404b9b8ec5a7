/* The loader budget (moreau.h, "data I/O"): the most bytes a loader's decoded
 * result may take, one process-wide setting every reader checks through
 * mr_loader_check before it allocates what a file declares. */
#include "../internal.h"

#include <stdatomic.h>
#include <stdio.h>

static atomic_llong loader_budget;

int mr_set_loader_budget(int64_t bytes)
{
    mr_budget_store(&loader_budget, bytes);
    return MR_OK;
}

int64_t mr_get_loader_budget(void) { return mr_budget_load(&loader_budget, (int64_t)MR_LOADER_BUDGET_MIB << 20); }

int mr_loader_check(int64_t bytes, const char *fmt, ...)
{
    int64_t budget = mr_get_loader_budget();
    if (bytes >= 0 && bytes <= budget)
        return MR_OK;
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return mr_error(MR_ENOMEM, "%s, over the loader budget of %lld bytes (mr_set_loader_budget)", what,
                    (long long)budget);
}
