/* normalize.h — the geometry that layernorm and reduce_mean (ops/normalize.c)
 * cache per node for their CPU kernels (backend/cpu/normalize.c). */
#ifndef MR_NORMALIZE_H
#define MR_NORMALIZE_H

#include "op.h"

/* layernorm: every item is `rows` rows of D entries. */
typedef struct layernorm_geom {
    int64_t D, rows;
    double eps;
} layernorm_geom;

/* reduce_mean: the input's per-sample dims padded to 3 with leading 1s, the
 * reduced ones (red), the output's dims (1 where reduced) and the number of
 * entries each output averages. */
typedef struct reduce_geom {
    int64_t in[3], out[3], count;
    int32_t red[3];
} reduce_geom;

_Static_assert(sizeof(layernorm_geom) <= MR_OP_CACHE_BYTES, "layernorm_geom must fit the op cache");
_Static_assert(sizeof(reduce_geom) <= MR_OP_CACHE_BYTES, "reduce_geom must fit the op cache");

#endif
