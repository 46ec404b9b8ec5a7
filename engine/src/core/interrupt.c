/*
 * interrupt.c — a process-wide interrupt request (Ctrl-C in the REPL).
 *
 * A SIGINT handler may only do async-signal-safe work, so it sets a flag and
 * returns; the engine's long loops (the Moreau solver per iteration, the
 * gradient and HVP oracles, which every sampling round, Integrated Gradients
 * chunk and attack step goes through, the optimizer per batch) read the flag
 * with mr_interrupt_check and return MR_EINTR, "interrupted", before they
 * change any state. The flag stays set until mr_interrupt_clear, so every
 * later check fails too and a caller that catches the first error still
 * unwinds: the REPL clears it once the evaluation is over.
 *
 * The flag is a lock-free atomic: C11 (7.14.1.1) lets a signal handler store
 * to one, and the solver's threads read it without a data race.
 */
#include "../internal.h"

#include <signal.h>
#include <stdatomic.h>
#include <string.h>

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the interrupt flag must be a lock-free atomic int");

static atomic_int requested;
static struct sigaction previous; /* SIGINT's disposition before mr_interrupt_install_sigint(1) */
static int installed;

void mr_interrupt_request(void) { atomic_store_explicit(&requested, 1, memory_order_relaxed); }

void mr_interrupt_clear(void) { atomic_store_explicit(&requested, 0, memory_order_relaxed); }

int mr_interrupted(void) { return atomic_load_explicit(&requested, memory_order_relaxed) != 0; }

int mr_interrupt_check(void)
{
    if (atomic_load_explicit(&requested, memory_order_relaxed))
        return mr_error(MR_EINTR, "interrupted");
    return MR_OK;
}

static void on_sigint(int sig)
{
    (void)sig;
    atomic_store_explicit(&requested, 1, memory_order_relaxed);
}

int mr_interrupt_install_sigint(int on)
{
    if (on && !installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigint;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0; /* no SA_RESTART: a blocking read returns EINTR, so a prompt sees the press */
        if (sigaction(SIGINT, &sa, &previous) != 0)
            return mr_error(MR_EINVAL, "interrupt: cannot install the SIGINT handler");
        installed = 1;
    } else if (!on && installed) {
        if (sigaction(SIGINT, &previous, NULL) != 0)
            return mr_error(MR_EINVAL, "interrupt: cannot restore the SIGINT handler");
        installed = 0;
    }
    return MR_OK;
}
