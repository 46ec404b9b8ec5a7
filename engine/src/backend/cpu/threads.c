/* backend/cpu/threads.c — one thread count for the engine's OpenMP loops and oneDNN. OpenBLAS always
 * runs on one thread: its multithreaded sgemm splits the product differently
 * for each thread count (with some kernels, e.g. OPENBLAS_CORETYPE=Haswell,
 * the sums then differ in the last bits), so the engine's own OpenMP loops
 * hand out the BLAS calls, one task per (item, block) with a partition fixed
 * by the shapes (see the invariance note at the top of ops/conv2d.c and
 * ops/linear.c).
 *
 * How OpenBLAS is kept on one thread: its OpenMP build takes its thread count
 * from omp_get_max_threads() at every call made outside an active parallel
 * region (openblas_set_num_threads alone does not hold: measured with
 * OpenBLAS 0.3.21), and runs on one thread inside one. So the OpenMP default
 * team size (nthreads-var) stays 1; every engine loop names its team size
 * (num_threads(mr_threads())), and oneDNN, which sizes its regions from
 * omp_get_max_threads(), gets mr_threads() for the length of its calls only
 * (conv2d_dnnl.c). This is the CPU backend's set-up: the engine core
 * calls none of OpenBLAS, oneDNN or OpenMP's set-up functions. */
#include "cpu.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int num_threads = 0; /* 0: not set yet: OMP_NUM_THREADS, else all cores */

/* The thread count before any mr_set_num_threads: OMP_NUM_THREADS when it
 * starts with a positive integer (OpenMP's own variable, read here because
 * the engine keeps OpenMP's default team at 1, see above), else every core. */
static int default_threads(void)
{
    const char *s = getenv("OMP_NUM_THREADS");
    if (s) {
        char *end;
        long n = strtol(s, &end, 10);
        if (end != s && n > 0 && n <= 4096)
            return (int)n;
    }
    return omp_get_num_procs();
}

/* OpenBLAS on one thread from the moment the library is loaded, before any
 * mr_set_num_threads (OpenBLAS and OpenMP start with every core). */
__attribute__((constructor)) static void blas_one_thread(void)
{
    openblas_set_num_threads(1);
    omp_set_num_threads(1);
}

int mr_threads(void) { return num_threads > 0 ? num_threads : default_threads(); }

int mr_set_num_threads(int n)
{
    num_threads = n > 0 ? n : default_threads();
    openblas_set_num_threads(1);
    omp_set_num_threads(1);
    return MR_OK;
}

int mr_get_num_threads(void) { return mr_threads(); }

double mr_wall_seconds(void) { return omp_get_wtime(); }

int mr_stderr_is_terminal(void) { return isatty(2) == 1; }

const char *mr_backend_info(void)
{
    static char info[256];
    snprintf(info, sizeof info, "cpu: %s; %s", openblas_get_config(), mr_conv_backend_info());
    return info;
}
