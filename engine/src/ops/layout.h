/* layout.h — the geometry that the layout ops of ops/layout.c (reshape,
 * transpose, concat, slice, gather, pad, constant) cache per node for their
 * CPU kernels (backend/cpu/layout.c). */
#ifndef MR_LAYOUT_H
#define MR_LAYOUT_H

#include "op.h"

/* concat: every item is `outer` rows; a row of y is a row of a (alen * inner
 * floats) followed by a row of b (blen * inner floats). */
typedef struct concat_geom {
    int64_t outer, alen, blen, inner;
} concat_geom;

/* slice and gather: every item is `outer` rows of `len` blocks of `inner`
 * floats; y keeps blocks start, start + step, ... (olen of them). */
typedef struct slice_geom {
    int64_t outer, len, inner, start, step, olen;
} slice_geom;

/* transpose and pad: the input's and output's per-sample dims, padded to 3
 * with leading 1s (so that every loop is three deep). transpose: output dim
 * i is input dim perm[i]. pad: begin[i] entries before input dim i. */
typedef struct layout_geom {
    int64_t in[3], out[3];
    int32_t perm[3];
    int64_t begin[3];
    int32_t reflect;
} layout_geom;

_Static_assert(sizeof(concat_geom) <= MR_OP_CACHE_BYTES, "concat_geom must fit the op cache");
_Static_assert(sizeof(slice_geom) <= MR_OP_CACHE_BYTES, "slice_geom must fit the op cache");
_Static_assert(sizeof(layout_geom) <= MR_OP_CACHE_BYTES, "layout_geom must fit the op cache");

#endif
