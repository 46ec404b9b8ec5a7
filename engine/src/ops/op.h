/*
 * op.h — the interface every op family implements. An op has two halves: the
 * shape half (mr_op_def, in ops/<family>.c: name, arity, infer, buffer sizes,
 * DeepLIFT rule), shared by every backend, and its kernels (mr_op_kernels, in
 * backend/<backend>/<family>.c), which the graph reaches only through the
 * network's backend (backend/backend.h). Adding an op: docs/architecture.md,
 * "How to add an op".
 *
 * An op sees whole batches: x[i] is (N, sample shape of input i...), y is
 * (N, sample shape of the output...). Each op gives four functions with the
 * same argument order:
 *
 *   forward      y   = F(x)
 *   vjp          gx  = J(x)^T gy                       input gradients OVERWRITE (=)
 *                dW += dF/dW^T gy                      parameter gradients ACCUMULATE (+=)
 *   jvp          dy  = J(x) dx                         (parameters held constant)
 *   vjp_tangent  dgx = d/de [ J(x + e dx)^T (gy + e dgy) ] at e = 0
 *                    = J(x)^T dgy + (d J(x)^T/dx [dx]) gy
 *
 * so that forward-over-reverse gives exact Hessian-vector products. gx[i] or
 * dgx[i] may be NULL: that input needs no gradient, skip it. The graph handles
 * fan-out (it sums when a node feeds several consumers), so an op never reads
 * what gx held before.
 *
 * Shape checks live once, in infer; the compute functions trust their shapes.
 * Parallel loops use `#pragma omp parallel for num_threads(mr_threads())` over
 * independent outputs only (never a reduction split across threads): results
 * must be bit-identical for every thread count. Every loop names its team size
 * (OpenMP's default stays 1, so that OpenBLAS runs on one thread: see
 * backend/cpu/threads.c). BLAS is called from inside those loops, one call per task,
 * with shapes fixed by the layer (never by the batch size N): an item's
 * forward, VJP, JVP and VJP tangent must not depend on N, on its position in
 * the batch or on the thread count (conv2d.c's opening note).
 */
#ifndef MR_OP_H
#define MR_OP_H

#include "../internal.h"

/* The per-sample shape of a node's output (the batch dim N is not included). */
typedef struct mr_shape {
    int ndim; /* 1..3 */
    int64_t d[3];
} mr_shape;

static inline int64_t mr_shape_numel(const mr_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        n *= s->d[i];
    return n;
}

/* Formats "3x32x32" into buf; returns buf. */
const char *mr_shape_str(const mr_shape *s, char *buf, size_t len);

/* Bytes an op may cache per node at build time (conv2d's geometry): infer
 * fills them, every pass reads them (mr_op_ctx.cache). */
enum { MR_OP_CACHE_BYTES = 192 };

typedef struct mr_op_ctx {
    const mr_op_attrs *attrs;
    mr_tensor *const *params;      /* the node's parameters, in the op's documented order */
    mr_tensor *const *param_grads; /* same order; NULL when parameter gradients are not wanted;
                                      an entry is NULL for buffers (running statistics) */
    int nparams;
    const void *cache; /* what infer cached for this node (MR_OP_CACHE_BYTES) */
    float *scratch;  /* scratch_floats(N) floats; contents not kept between calls */
    float *state;    /* state_floats(N) floats kept from forward to the reverse passes */
    int training;    /* 1 in training mode (batchnorm batch statistics, dropout) */
    uint64_t seed;   /* randomness of this call (dropout): stream = node id, */
    uint64_t stream; /* counter = forward call number */
    uint64_t counter;
} mr_op_ctx;

/* How DeepLIFT (deeplift.c) carries multipliers m = C/Δx back through an op,
 * with Δ = (value at x) − (value at the baseline x0); each rule keeps
 * Σ_i m_i Δx_i = Δy exactly (summation-to-delta, Shrikumar, Greenside and
 * Kundaje 2017, "Learning Important Features Through Propagating Activation
 * Differences"; README "DeepLIFT's rules"). */
enum {
    MR_DL_REFUSE = 0, /* no exact rule (softmax, log-softmax): DeepLIFT refuses the network */
    MR_DL_LINEAR,     /* affine in its inputs at inference: m = the vjp (the paper's Linear rule) */
    MR_DL_RESCALE,    /* elementwise y = f(x): m = Δy/Δx, f'(x) where |Δx| < 1e-6 (Rescale rule) */
    MR_DL_MAX,        /* max pooling: mr_maxpool2d_deeplift (pool.c) */
    MR_DL_BILINEAR,   /* bilinear y = B(a, b): m = the vjp at the midpoints ((a+a0)/2, (b+b0)/2) */
};

/* An op's backend-independent half: its name, arity, DeepLIFT rule, shape
 * checks and buffer sizes. The compute half (mr_op_kernels) lives per backend
 * (backend/<name>/), so a backend is added without touching this. */
typedef struct mr_op_def {
    const char *name;
    int deeplift;   /* MR_DL_*: DeepLIFT's rule for the op */
    int ninputs;    /* exact number of inputs */
    int min_params; /* parameters in the documented order; trailing optional ones */
    int max_params;
    /* Checks the inputs' per-sample shapes and the parameters' shapes, computes
     * the output's per-sample shape and may fill `cache` (MR_OP_CACHE_BYTES,
     * zeroed, kept with the node; the kernels read it as mr_op_ctx.cache). On
     * a mismatch returns MR_ESHAPE (MR_EINVAL for a bad attribute) with a
     * message naming the op and the shapes (the graph prefixes the node label). */
    int (*infer)(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params, int nparams,
                 mr_shape *out, void *cache);
    /* Floats of scratch / state needed for a batch of N (NULL: none), from the
     * same arguments infer saw and its cache. */
    size_t (*scratch_floats)(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                             int nparams, const mr_shape *out, const void *cache, int64_t N);
    size_t (*state_floats)(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                           int nparams, const mr_shape *out, const void *cache, int64_t N);
} mr_op_def;

/* An op's compute half on one backend: the four passes of the note above. */
typedef struct mr_op_kernels {
    void (*forward)(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y);
    void (*vjp)(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                const mr_tensor *gy, mr_tensor *const *gx);
    void (*jvp)(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                const mr_tensor *y, mr_tensor *dy);
    void (*vjp_tangent)(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                        const mr_tensor *y, const mr_tensor *dy, const mr_tensor *gy,
                        const mr_tensor *dgy, mr_tensor *const *dgx);
} mr_op_kernels;

/* The op list, one line per op: X(ENUM, name) gives MR_OP_ENUM, the shape half
 * `mr_op_name` (ops/) and the CPU kernels `mr_cpu_name` (backend/cpu/). The
 * enum, the op table (registry.c) and the CPU kernel table
 * (backend/cpu/kernels.c) are all generated from it, so an op cannot be
 * missing from a table: a line without its definitions fails to link.
 * Adding an op: docs/architecture.md, "How to add an op". */
#define MR_OP_LIST(X)                                     \
    X(CONV2D, conv2d)                                     \
    X(LINEAR, linear)                                     \
    X(BATCHNORM2D, batchnorm2d)                           \
    X(RELU, relu)                                         \
    X(SOFTPLUS, softplus)                                 \
    X(SILU, silu)                                         \
    X(SIGMOID, sigmoid)                                   \
    X(TANH, tanh)                                         \
    X(MAXPOOL2D, maxpool2d)                               \
    X(AVGPOOL2D, avgpool2d)                               \
    X(ADAPTIVE_AVGPOOL2D, adaptive_avgpool2d)             \
    X(ADD, add)                                           \
    X(MUL, mul)                                           \
    X(FLATTEN, flatten)                                   \
    X(DROPOUT, dropout)                                   \
    X(SOFTMAX, softmax)                                   \
    X(LOG_SOFTMAX, log_softmax)                           \
    X(CLIP, clip)                                         \
    X(HARDSIGMOID, hardsigmoid)                           \
    X(HARDSWISH, hardswish)                               \
    X(GELU, gelu)                                         \
    X(ERF, erf)                                           \
    X(RESHAPE, reshape)                                   \
    X(TRANSPOSE, transpose)                               \
    X(CONCAT, concat)                                     \
    X(SLICE, slice)                                       \
    X(GATHER, gather)                                     \
    X(PAD, pad)                                           \
    X(CONSTANT, constant)                                 \
    X(LAYERNORM, layernorm)                               \
    X(REDUCE_MEAN, reduce_mean)

#define MR_OP_ENUM_(E, n) MR_OP_##E,
enum { MR_OP_LIST(MR_OP_ENUM_) MR_OP_COUNT };
#undef MR_OP_ENUM_

#define MR_OP_EXTERN_(E, n) extern const mr_op_def mr_op_##n;
MR_OP_LIST(MR_OP_EXTERN_)
#undef MR_OP_EXTERN_

extern const mr_op_def *const mr_op_table[MR_OP_COUNT];

/* DeepLIFT's rule for max pooling (MR_DL_MAX; formula in backend/cpu/pool.c):
 * gx (like x) from gy (like y), the inputs x at the explained point and x0 at
 * the baseline, and the window argmaxes arg (the node state after the forward
 * at x) and arg0 (its copy after the forward at x0). */
void mr_maxpool2d_deeplift(const mr_op_attrs *a, const mr_tensor *x, const float *x0,
                           const int32_t *arg, const int32_t *arg0, const mr_tensor *gy,
                           mr_tensor *gx);

/* The op named `name`, or NULL. */
const mr_op_def *mr_op_find(const char *name);
/* The MR_OP_* index of def (a table entry). */
int mr_op_index(const mr_op_def *def);

#endif
