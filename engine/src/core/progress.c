/*
 * progress.c — progress lines of the engine's long calls, on stderr.
 *
 * A MoreauGrad explanation runs T iterations of m noisy gradients each and
 * takes minutes at the paper's settings; SmoothGrad's hundreds of copies take
 * long too. The loops that do this work report it here (the solver once per
 * iteration, the sampler once per chunk of copies), and this file decides
 * whether and how to show it:
 *
 *   MR_PROGRESS_OFF    nothing (the default: a library prints nothing unasked)
 *   MR_PROGRESS_TTY    one line redrawn in place, at most 5 times a second,
 *                      when stderr is a terminal; nothing otherwise (the
 *                      `moreau` command and the REPL use this)
 *   MR_PROGRESS_LINES  a line at each tenth of the work, for logs
 *
 * The line: "  moreaugrad: iteration 37/300  12.4/s  21 s left": where the
 * call is out of the whole (a resumed solver counts on from where it stopped),
 * the rate and the time left from the work done in this call (wall clock). A finished call's
 * line is erased on a terminal, so the caller's own summary follows cleanly.
 * Only the calling thread reports: the loops call in between their parallel
 * regions.
 */
#include "../internal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static atomic_int mode; /* MR_PROGRESS_* */

int mr_progress_set(int m)
{
    if (m < MR_PROGRESS_OFF || m > MR_PROGRESS_LINES)
        return mr_error(MR_EINVAL, "progress: mode must be MR_PROGRESS_OFF, _TTY or _LINES (0..2), got %d", m);
    return atomic_exchange(&mode, m);
}

int mr_progress_get(void) { return atomic_load(&mode); }

void mr_progress_begin(mr_progress *p, const char *what, const char *unit, int64_t first, int64_t total)
{
    memset(p, 0, sizeof *p);
    int m = atomic_load(&mode);
    if (m == MR_PROGRESS_OFF || total <= first || (m == MR_PROGRESS_TTY && !mr_stderr_is_terminal()))
        return;
    p->on = m;
    p->what = what;
    p->unit = unit;
    p->first = first;
    p->total = total;
    p->t0 = p->last = mr_wall_seconds();
}

void mr_progress_update(mr_progress *p, int64_t done)
{
    int64_t work = done - p->first; /* done in this call (a resumed solver starts past 0) */
    if (!p->on || work <= 0)
        return;
    double now = mr_wall_seconds(), el = now - p->t0;
    int tenth = (int)(10 * work / (p->total - p->first));
    if (p->on == MR_PROGRESS_TTY ? now - p->last < 0.2 && done < p->total : tenth <= p->tenth)
        return;
    p->last = now;
    p->tenth = tenth;
    double rate = el > 0 ? (double)work / el : 0, left = rate > 0 ? (double)(p->total - done) / rate : 0;
    char line[160];
    snprintf(line, sizeof line, "  %s: %s %lld/%lld  %.1f/s  %.0f s left", p->what, p->unit, (long long)done,
             (long long)p->total, rate, left);
    if (p->on == MR_PROGRESS_TTY) {
        fprintf(stderr, "\r%-79s", line);
        p->drawn = 1;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

void mr_progress_end(mr_progress *p)
{
    if (p->on == MR_PROGRESS_TTY && p->drawn) {
        fprintf(stderr, "\r%79s\r", "");
        fflush(stderr);
    }
    p->on = 0;
}
