/* Thread-local one-line error messages (libgit2 style). */
#include "../internal.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[512];
static _Thread_local unsigned long serial; /* messages set so far on this thread */

int mr_error(int code, const char *fmt, ...)
{
    /* Format into a local buffer first: callers often pass mr_last_error()
     * itself as an argument, to prefix context to a message. */
    char buf[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(last_error, buf, sizeof buf);
    serial++;
    return code;
}

unsigned long mr_error_serial(void) { return serial; }

const char *mr_last_error(void) { return last_error; }

const char *mr_version(void) { return MOREAU_VERSION; }
