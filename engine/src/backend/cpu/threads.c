/* backend/cpu/threads.c — the team size of the engine's OpenMP loops and
 * oneDNN, and how it follows the cores that are actually free.
 *
 * OpenBLAS always runs on one thread: its multithreaded sgemm splits the
 * product differently for each thread count (with some kernels, e.g.
 * OPENBLAS_CORETYPE=Haswell, the sums then differ in the last bits), so the
 * engine's own OpenMP loops hand out the BLAS calls, one task per (item,
 * block) with a partition fixed by the shapes (see the invariance note at the
 * top of ops/conv2d.c and ops/linear.c).
 *
 * How OpenBLAS is kept on one thread: its OpenMP build takes its thread count
 * from omp_get_max_threads() at every call made outside an active parallel
 * region (openblas_set_num_threads alone does not hold: measured with
 * OpenBLAS 0.3.21), and runs on one thread inside one. So the OpenMP default
 * team size (nthreads-var) stays 1; every engine loop names its team size
 * (num_threads(mr_threads())), and oneDNN, which sizes its regions from
 * omp_get_max_threads(), gets mr_threads() for the length of its calls only
 * (conv2d_dnnl.c). This is the CPU backend's set-up: the engine core
 * calls none of OpenBLAS, oneDNN or OpenMP's set-up functions.
 *
 * Adaptive team size (docs/architecture.md, "Threads"). The loops split their
 * work statically and OpenMP threads spin at every barrier, so when another
 * process takes one of the cores, each of a pass's many parallel regions
 * waits for the descheduled thread: measured 3× slower with one busy process
 * on 2 cores (README, "Under load"), where one thread fewer runs at the speed
 * of one core. So before each op pass (cpu.c's run) the team size is checked
 * against the cores the rest of the machine leaves free, at most every
 * SAMPLE_SECONDS:
 *
 *     others = (busy time of the allowed CPUs − this process's CPU time) / wall time
 *     team   = clamp(limit − ceil(others − SLACK), 1, limit)
 *
 * busy time from /proc/stat (user + system + irq + softirq + steal of each CPU
 * in the affinity mask; "nice" too when this process is niced itself, since
 * otherwise niced processes yield to it), this process's CPU time from
 * CLOCK_PROCESS_CPUTIME_ID. Steal counts as taken: a vCPU the hypervisor
 * deschedules stalls a barrier as a busy neighbour does. Every result is
 * bit-identical for every team size (docs/determinism.md), so the choice
 * changes timings only. Without a readable /proc/stat the team is the limit.
 * mr_set_adaptive_threads(0), or MOREAU_ADAPTIVE_THREADS=0 in the
 * environment, keeps the team at the limit. */
#define _GNU_SOURCE
#include "cpu.h"

#include <cblas.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Seconds between two looks at /proc/stat: /proc/stat counts in clock ticks
 * (USER_HZ, 100 per second), so a 0.2 s window on 2 CPUs holds 40 ticks and
 * reads a busy core to about ±0.05 core. */
#define SAMPLE_SECONDS 0.2
/* A neighbour using up to SLACK of a core leaves the team whole: below that
 * the static partition loses less than a thread fewer would. */
#define SLACK 0.4
/* The longest window read as "now". */
#define MAX_WINDOW_SECONDS 2.0

static int limit_set;             /* mr_set_num_threads's n; 0: the default */
static _Atomic int team;          /* the loops' team size now; 0: not chosen yet */
static _Atomic int adaptive = -1; /* 1 on, 0 off, -1: MOREAU_ADAPTIVE_THREADS not read yet */
static atomic_flag sampling = ATOMIC_FLAG_INIT;

/* The last look at the machine. */
static struct {
    double look;     /* mr_wall_seconds() at the last look, whatever it found */
    int valid;       /* 1: the fields below hold a reading */
    double wall;     /* mr_wall_seconds() */
    double own;      /* this process's CPU seconds */
    double busy;     /* busy seconds of the allowed CPUs */
} last = {.look = -1e30};

/* Cores this process may use: its affinity mask, capped by a cgroup v2 CPU
 * quota (cpu.max "QUOTA PERIOD"; a container given 2 CPUs of a 64-core host
 * sees 64 in its mask). */
static int cores_allowed(void)
{
    int n = omp_get_num_procs(); /* the affinity mask's size */
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        char quota[32];
        long long period;
        if (fscanf(f, "%31s %lld", quota, &period) == 2 && strcmp(quota, "max") != 0 && period > 0) {
            long long q = atoll(quota);
            long long cap = (q + period - 1) / period;
            if (cap >= 1 && cap < n)
                n = (int)cap;
        }
        fclose(f);
    }
    return n > 0 ? n : 1;
}

/* The thread limit before any mr_set_num_threads: OMP_NUM_THREADS when it
 * starts with a positive integer (OpenMP's own variable, read here because
 * the engine keeps OpenMP's default team at 1, see above), else every core
 * allowed. */
static int default_threads(void)
{
    const char *s = getenv("OMP_NUM_THREADS");
    if (s) {
        char *end;
        long n = strtol(s, &end, 10);
        if (end != s && n > 0 && n <= MR_MAX_THREADS)
            return (int)n;
    }
    return cores_allowed();
}

/* The limit: mr_set_num_threads's n, else the default (read once, and again
 * after each mr_set_num_threads: the cgroup file is not read per pass). */
static _Atomic int default_limit;
static int limit(void)
{
    if (limit_set > 0)
        return limit_set;
    int d = atomic_load_explicit(&default_limit, memory_order_relaxed);
    if (d == 0) {
        d = default_threads();
        atomic_store(&default_limit, d);
    }
    return d;
}

/* OpenBLAS on one thread from the moment the library is loaded, before any
 * mr_set_num_threads (OpenBLAS and OpenMP start with every core). */
__attribute__((constructor)) static void blas_one_thread(void)
{
    openblas_set_num_threads(1);
    omp_set_num_threads(1);
}

int mr_threads(void)
{
    int t = atomic_load_explicit(&team, memory_order_relaxed);
    return t > 0 ? t : limit();
}

/* Busy seconds of the CPUs in this process's affinity mask, from /proc/stat's
 * "cpuN user nice system idle iowait irq softirq steal ..." lines (clock
 * ticks). 0 on success, -1 when /proc/stat cannot be read. */
static int busy_seconds(double *out)
{
    static char buf[1 << 16];
    int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0)
        return -1;
    buf[len] = '\0';
    cpu_set_t mask;
    int have_mask = sched_getaffinity(0, sizeof mask, &mask) == 0;
    int niced = getpriority(PRIO_PROCESS, 0) > 0;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        return -1;
    unsigned long long ticks = 0;
    int cpus = 0;
    for (char *line = buf; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        int cpu;
        unsigned long long user, nice, system, idle, iowait, irq, softirq, steal;
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &user, &nice, &system, &idle,
                   &iowait, &irq, &softirq, &steal) != 9)
            continue; /* the "cpu " total, and the lines after the CPUs */
        if (have_mask && (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &mask)))
            continue;
        ticks += user + system + irq + softirq + steal + (niced ? nice : 0);
        cpus++;
    }
    if (cpus == 0)
        return -1;
    *out = (double)ticks / (double)hz;
    return 0;
}

static double own_cpu_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return -1;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int mr_adaptive_threads_env(void)
{
    static const char *const off[] = {"0", "off", "false", "no"}, *const on[] = {"1", "on", "true", "yes"};
    const char *s = getenv("MOREAU_ADAPTIVE_THREADS");
    if (!s || !*s)
        return 1; /* unset or empty: the default */
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, off[i]) == 0)
            return 0;
        if (strcasecmp(s, on[i]) == 0)
            return 1;
    }
    return -1;
}

static int adaptive_on(void)
{
    int a = atomic_load_explicit(&adaptive, memory_order_relaxed);
    if (a < 0) {
        a = mr_adaptive_threads_env() != 0; /* an unknown value: on (the Lua face refuses it) */
        atomic_store(&adaptive, a);
    }
    return a;
}

void mr_threads_update(void)
{
    if (omp_in_parallel())
        return; /* the team of a region is fixed: only the driving thread chooses */
    int max = limit();
    if (!adaptive_on() || max <= 1) {
        atomic_store_explicit(&team, max, memory_order_relaxed);
        return;
    }
    double now = mr_wall_seconds();
    if (now - last.look < SAMPLE_SECONDS)
        return;
    if (atomic_flag_test_and_set(&sampling))
        return; /* another thread is looking */
    last.look = now;
    double busy, own = own_cpu_seconds();
    if (busy_seconds(&busy) != 0 || own < 0) {
        atomic_store_explicit(&team, max, memory_order_relaxed);
        last.valid = 0;
    } else {
        /* a window longer than MAX_WINDOW_SECONDS (the engine sat idle) is
         * an average of what was, not what is: start a fresh one */
        if (last.valid && now - last.wall <= MAX_WINDOW_SECONDS) {
            double others = ((busy - last.busy) - (own - last.own)) / (now - last.wall);
            int t = max - (int)ceil(others - SLACK);
            atomic_store_explicit(&team, t < 1 ? 1 : (t > max ? max : t), memory_order_relaxed);
        } else if (!last.valid) {
            atomic_store_explicit(&team, max, memory_order_relaxed);
        }
        last.valid = 1;
        last.wall = now;
        last.busy = busy;
        last.own = own;
    }
    atomic_flag_clear(&sampling);
}

int mr_set_num_threads(int n)
{
    if (n < 0 || n > MR_MAX_THREADS)
        return mr_error(MR_EINVAL, "threads: the count must be 0 (the default) or in 1..%d, got %d", MR_MAX_THREADS, n);
    limit_set = n;
    atomic_store(&default_limit, 0);
    atomic_store(&team, 0);
    last.valid = 0;
    last.look = -1e30;
    openblas_set_num_threads(1);
    omp_set_num_threads(1);
    return MR_OK;
}

int mr_get_num_threads(void) { return limit(); }

int mr_get_threads_in_use(void) { return mr_threads(); }

int mr_set_adaptive_threads(int on)
{
    atomic_store(&adaptive, on ? 1 : 0);
    atomic_store(&team, 0);
    last.valid = 0;
    last.look = -1e30;
    return MR_OK;
}

int mr_get_adaptive_threads(void) { return adaptive_on(); }

double mr_wall_seconds(void) { return omp_get_wtime(); }

int mr_stderr_is_terminal(void) { return isatty(2) == 1; }

const char *mr_backend_info(void)
{
    static char info[256];
    snprintf(info, sizeof info, "cpu: %s; %s", openblas_get_config(), mr_conv_backend_info());
    return info;
}
