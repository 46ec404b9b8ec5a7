/* The loader budget (moreau.h, "data I/O"): the most bytes a loader's decoded
 * result may take, one process-wide setting every reader checks through
 * mr_loader_check before it allocates what a file declares. */
#include "../internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

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

int mr_open_regular(const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return MR_NOT_REGULAR;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

FILE *mr_fopen_regular(const char *path, int *not_regular)
{
    *not_regular = 0;
    int fd = mr_open_regular(path);
    if (fd < 0) {
        *not_regular = fd == MR_NOT_REGULAR;
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return f;
}
