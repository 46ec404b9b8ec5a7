/* One thread count for the engine's OpenMP loops, OpenBLAS and oneDNN (whose
 * regions take it from the OpenMP runtime). Engine loops never call BLAS or
 * oneDNN from inside a parallel region, so they all take turns in one pool
 * instead of fighting. */
#include "../internal.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <unistd.h>

static int num_threads = 0; /* 0: not set yet, use all cores */

int mr_threads(void) { return num_threads > 0 ? num_threads : omp_get_num_procs(); }

int mr_set_num_threads(int n)
{
    num_threads = n > 0 ? n : omp_get_num_procs();
    openblas_set_num_threads(num_threads);
    omp_set_num_threads(num_threads);
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
