/* matmul.h — the geometry that matmul and matmul_param (ops/matmul.c) cache
 * per node for their CPU kernels (backend/cpu/matmul.c). */
#ifndef MR_MATMUL_H
#define MR_MATMUL_H

#include "op.h"

/* matmul: every item holds B products (n, k) x (k, m). matmul_param: every
 * item is `rows` rows of k entries times the weight (k, m). */
typedef struct matmul_geom {
    int64_t B, n, k, m, rows;
} matmul_geom;

_Static_assert(sizeof(matmul_geom) <= MR_OP_CACHE_BYTES, "matmul_geom must fit the op cache");

#endif
