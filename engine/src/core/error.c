/* Thread-local one-line error messages (libgit2 style). */
#include "../internal.h"

#include <stdio.h>

static _Thread_local char last_error[512];

int mr_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

const char *mr_last_error(void) { return last_error; }

void mr_clear_error(void) { last_error[0] = '\0'; }

const char *mr_version(void) { return MOREAU_VERSION; }
