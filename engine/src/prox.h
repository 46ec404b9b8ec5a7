/* prox.h — the prox kernels on raw vectors, shared by the solver and SmoothGrad. */
#ifndef MR_PROX_H
#define MR_PROX_H

#include "internal.h"

/* v = ST_a(v) over n entries. */
void mr_soft_threshold(float *v, int64_t n, float a);
/* v (one item, mr_groups_dim(g) entries) = GST_a(v). Uses g's scratch. */
void mr_group_soft_threshold(float *v, mr_groups *g, float a);

/* sum over groups S of ||v_S||_2 for one item. Uses g's scratch. */
double mr_group_norm_sum(const float *v, mr_groups *g);

#endif
