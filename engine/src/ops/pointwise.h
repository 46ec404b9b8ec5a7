/* pointwise.h — the shape half the elementwise activations share
 * (ops/activation.c and ops/imported_act.c): one input, no parameters, an
 * output shaped like the input, and DeepLIFT's rescale rule (exact for any
 * scalar function applied entry by entry). */
#ifndef MR_OPS_POINTWISE_H
#define MR_OPS_POINTWISE_H

#include "op.h"

/* infer of an elementwise op with no attribute to check: y shaped like x. */
static inline int mr_pointwise_infer(const mr_op_attrs *a, const mr_shape *in,
                                     mr_tensor *const *params, int nparams, mr_shape *out,
                                     void *cache)
{
    *out = in[0];
    return MR_OK;
}

/* The definition mr_op_<op> of an elementwise op whose infer is INFER (an
 * op with attributes checks them there, then shapes y like x). Kernels:
 * backend/cpu/pointwise_kernels.h. */
#define MR_POINTWISE_DEF(op, INFER)                                                             \
    const mr_op_def mr_op_##op = {                                                              \
        .name = #op,                                                                            \
        .deeplift = MR_DL_RESCALE,                                                              \
        .ninputs = 1,                                                                           \
        .min_params = 0,                                                                        \
        .max_params = 0,                                                                        \
        .infer = INFER,                                                                         \
    };

#endif
