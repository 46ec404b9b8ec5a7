/* conv2d.h — the geometry shared by conv2d.c (checks, the OpenBLAS paths) and
 * conv2d_dnnl.c (the oneDNN path). */
#ifndef MR_CONV2D_H
#define MR_CONV2D_H

#include "op.h"

typedef struct conv_geom {
    int64_t C, H, W;   /* input channels and size */
    int64_t K, kh, kw; /* output channels, kernel */
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t G, cg, kg; /* groups, input and output channels per group */
    int64_t Ho, Wo;
} conv_geom;

/* The oneDNN path (conv2d_dnnl.c). Each call returns 1 when it computed the
 * result, 0 when the caller must use its own path: the engine was built
 * without oneDNN, the backend is set to "blas", or oneDNN rejected or failed
 * this geometry (remembered, not retried).
 *   forward        y  = conv(x) (+ bias when bias != NULL)
 *   backward_data  gx = conv_transpose(gy)                                      */
int mr_conv_dnnl_forward(const conv_geom *g, int64_t N, const float *x, const float *w,
                         const float *bias, float *y);
int mr_conv_dnnl_backward_data(const conv_geom *g, int64_t N, const float *gy, const float *w,
                               float *gx);

#endif
