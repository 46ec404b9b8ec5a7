/* cpu.h — what the CPU backend's files share: the kernels of every op
 * (generated from MR_OP_LIST), the oneDNN path of conv2d, and the thread count
 * of the engine's OpenMP loops (threads.c). */
#ifndef MR_CPU_H
#define MR_CPU_H

#include "../backend.h"

#define MR_CPU_EXTERN_(E, n) extern const mr_op_kernels mr_cpu_##n;
MR_OP_LIST(MR_CPU_EXTERN_)
#undef MR_CPU_EXTERN_

struct conv_geom;
/* The oneDNN path (conv2d_dnnl.c). Each call returns 1 when it computed the
 * result, 0 when the caller must use its own path: the engine was built
 * without oneDNN, the conv backend is set to "blas", or oneDNN rejected or
 * failed this geometry (remembered, not retried).
 *   forward        y  = conv(x) (+ bias when bias != NULL)
 *   backward_data  gx = conv_transpose(gy)                                      */
int mr_conv_dnnl_forward(const struct conv_geom *g, int64_t N, const float *x, const float *w,
                         const float *bias, float *y);
int mr_conv_dnnl_backward_data(const struct conv_geom *g, int64_t N, const float *gy, const float *w,
                               float *gx);
/* conv2d's path, one line, for mr_backend_info (conv2d_dnnl.c). */
const char *mr_conv_backend_info(void);

/* Looks, at most every 0.2 s, at the cores other processes leave free and
 * sets the team size mr_threads() returns (threads.c). Called before each op
 * pass, from outside parallel regions. */
void mr_threads_update(void);

/* Asks for transparent huge pages under a block of 4 MiB or more (a hint; cpu.c). */
void mr_cpu_advise_huge(void *p, size_t bytes);

/* MR_ESTATE naming the op when a row of the CPU kernel table lacks a pass. */
int mr_cpu_kernels_check(void);

#endif
