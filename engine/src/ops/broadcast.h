/* broadcast.h — the geometry that the parameter-operand binary ops of
 * ops/broadcast.c cache per node for their CPU kernels (backend/cpu/broadcast.c). */
#ifndef MR_BROADCAST_H
#define MR_BROADCAST_H

#include "op.h"

/* x's per-sample dims padded to 3 with leading 1s, P's dims aligned to them
 * the same way, and P's stride along each (0 where P is broadcast). */
typedef struct bcast_geom {
    int64_t x[3], p[3], ps[3];
} bcast_geom;

_Static_assert(sizeof(bcast_geom) <= MR_OP_CACHE_BYTES, "bcast_geom must fit the op cache");

#endif
