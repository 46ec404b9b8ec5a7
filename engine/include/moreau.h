/*
 * moreau.h — the one public header of the moreau engine.
 *
 * This file is the manual. Every declaration says the shapes it expects, who
 * owns what it returns, and how it fails. The Lua bindings read the block
 * between MR_CDEF_BEGIN and MR_CDEF_END verbatim into ffi.cdef, so that block
 * holds plain C declarations only: no macros, no #if, no inline code.
 *
 * Conventions (every declaration below follows them):
 *   - Every symbol is prefixed mr_ (types, functions) or MR_ (constants).
 *   - A fallible call returns int: 0 (MR_OK) or a negative MR_E* code, and sets a
 *     thread-local one-line message that mr_last_error() returns. Nothing here
 *     aborts or exits the process on bad input.
 *   - Out-parameters come first. _new/_load/_clone hand an owned object to the
 *     caller, who frees it with the matching _free; _get returns a borrowed
 *     pointer that lives as long as its owner. _free(NULL) is a no-op.
 *   - Tensors are float32, row-major, dims outermost first (N, C, H, W), batch
 *     first. Class ids are 0-based.
 */
#ifndef MOREAU_H
#define MOREAU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; what this header declares is its API. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* MR_CDEF_BEGIN */

/* ---------------------------------------------------------------- errors */

enum {
    MR_OK = 0,
    MR_EINVAL = -1,    /* a bad argument: NULL, out of range, NaN */
    MR_ESHAPE = -2,    /* tensor shapes do not fit together */
    MR_ENOMEM = -3,    /* allocation failed */
    MR_EIO = -4,       /* a file could not be opened, read or written */
    MR_EFORMAT = -5,   /* a file is truncated, corrupted or of the wrong kind */
    MR_ENOTFOUND = -6, /* an unknown name: op, parameter, layer */
    MR_ESTATE = -7,    /* called in the wrong order (e.g. backward before forward) */
    MR_EINTR = -8      /* interrupted on request (Ctrl-C in the REPL): see mr_interrupt_request */
};

/* The message of the last failed call on this thread ("" if none). Borrowed;
 * valid until the next failing call on the same thread. */
const char *mr_last_error(void);

/* The library version, "MAJOR.MINOR.PATCH". Static string. */
const char *mr_version(void);

/* Number of engine heap allocations made so far in this process (all threads).
 * Tests use it to show that solver loops allocate nothing. */
int64_t mr_alloc_count(void);
/* Bytes the engine's heap allocations hold now, and the most they have held
 * at once since the process started or the last mr_alloc_peak_reset (which
 * sets the peak to the live bytes). Requested sizes, headers not counted. */
int64_t mr_alloc_live_bytes(void);
int64_t mr_alloc_peak_bytes(void);
void mr_alloc_peak_reset(void);

/* ------------------------------------------------------------- threading */

/* Sets the number of threads used by the engine's parallel loops and oneDNN
 * (OpenBLAS runs on one thread, called from those loops; the process's OpenMP
 * default team size is left at 1). n = 0 means the default: OMP_NUM_THREADS
 * when it is set to a positive integer, else all cores (also the count before
 * any call). Results are bit-identical for every n, and an item's network
 * passes for every batch. */
int mr_set_num_threads(int n);
int mr_get_num_threads(void);
/* The most threads mr_set_num_threads and OMP_NUM_THREADS may ask for
 * (MR_EINVAL above it, or below 0; OMP_NUM_THREADS outside 1..MR_MAX_THREADS
 * is ignored). */
enum { MR_MAX_THREADS = 4096 };
/* Adaptive team size (on by default; MOREAU_ADAPTIVE_THREADS=0 (or off,
 * false, no) in the environment turns it off before the first call): before each op pass, at
 * most every 0.2 s, the team shrinks below mr_get_num_threads() by the cores
 * other processes keep busy (from /proc/stat, less this process's own CPU
 * time; a neighbour using under 0.4 of a core is ignored), and grows back when
 * they are free. Static loops with spinning barriers otherwise wait a
 * scheduler slice for a descheduled thread in every parallel region. Results
 * do not depend on the team size. docs/architecture.md, "Threads". */
int mr_set_adaptive_threads(int on);
int mr_get_adaptive_threads(void);
/* What MOREAU_ADAPTIVE_THREADS says: 1 unset, empty or "1"/"on"/"true"/"yes", 0
 * for "0"/"off"/"false"/"no" (any case), -1 for anything else (the engine
 * then keeps the adaptive team; the Lua face refuses the value). */
int mr_adaptive_threads_env(void);
/* The team size the engine's loops use now (1..mr_get_num_threads()). */
int mr_get_threads_in_use(void);
/* A one-line description of the backends ("cpu: OpenBLAS 0.3.21 ...; conv2d:
 * onednn (oneDNN 2.6.3, avx512_core)"). Static. */
const char *mr_backend_info(void);
/* Selects conv2d's forward and input-gradient kernels: "onednn" (oneDNN's JIT
 * kernels; the default when the engine was built with libdnnl) or "blas"
 * (im2col + OpenBLAS sgemm; the weight gradient always takes this path). The
 * two agree to float32 rounding, not bit for bit. Process-wide. MR_ENOTFOUND
 * for an unknown name, MR_EINVAL for "onednn" in a build without it. */
int mr_set_conv_backend(const char *name);
/* "onednn" or "blas". Static string. */
const char *mr_get_conv_backend(void);
/* Diagnostics, process-wide: conv2d passes (forward or input gradient) that
 * oneDNN computed, and passes it handed back to im2col + OpenBLAS while it was
 * the backend (a geometry it rejects, a failure). Either pointer may be NULL. */
void mr_conv_backend_counts(int64_t *onednn, int64_t *fallbacks);
/* Diagnostics, process-wide: the subnormal census. On (which zeroes the
 * counts), every pass the CPU backend runs scans what it wrote (forward: y;
 * vjp: each gx; jvp: dy; vjp_tangent: each dgx) for subnormal float32 values
 * (exponent bits 0, mantissa not 0: |v| < 2^-126 ≈ 1.18e-38), which some CPUs
 * compute far more slowly. Off by default (a scan per pass). Read per op (index
 * of mr_op_names()) and pass (MR_PASS_*): MR_EINVAL for either out of range.
 * scripts/bench's `denormals` section reports it; docs/promises.md,
 * "Subnormal numbers", what was found. */
void mr_set_subnormal_census(int on);
int mr_subnormal_census(int op, int pass, int64_t *subnormal, int64_t *values);
/* The arithmetic of conv2d's oneDNN passes (forward, hence JVP, and input
 * gradient), process-wide: "fp32" (the default) or "bf16", opt-in for
 * explanation passes where speed matters more than the last bits. In bf16,
 * each pass rounds its two inputs (x or the output gradient, and the weight)
 * to bfloat16 (8 significant bits; round to nearest even) and accumulates
 * the products in float32; its output, every other op (linear, batchnorm,
 * activations, pooling), the weight gradient and the solvers stay float32. A
 * geometry oneDNN has no bf16 kernel for runs in float32 (mr_conv_bf16_passes
 * counts the passes that ran bf16). Maps then differ from fp32 ones beyond
 * float32 rounding and from PyTorch's float32 ones beyond the tolerances of
 * docs/promises.md (section 9 there gives the measured error); thread-count
 * and batch invariance still hold. Errors: MR_ENOTFOUND for another name;
 * MR_EINVAL for "bf16" in a build without oneDNN or where oneDNN dispatches
 * no AVX-512 BF16 or AMX kernels (the message names the instruction set it
 * dispatches; never a silent or emulated float32 run); MR_ESTATE for "bf16"
 * while the conv backend is "blas" (mr_set_conv_backend("blas") in bf16 gets
 * MR_ESTATE too). */
int mr_set_precision(const char *name);
/* "fp32" or "bf16". Static string. */
const char *mr_get_precision(void);
/* Diagnostics, process-wide: conv2d passes oneDNN computed in bf16 (a part of
 * mr_conv_backend_counts's onednn count). */
int64_t mr_conv_bf16_passes(void);
/* Seconds on a monotonic wall clock (for timings: os.clock sums CPU time over threads). */
double mr_wall_seconds(void);
/* 1 if standard error is a terminal (progress bars redraw in place), else 0. */
int mr_stderr_is_terminal(void);

/* ------------------------------------------------------------ interrupts */

/* A process-wide interrupt request, the REPL's Ctrl-C. While it is pending,
 * the long loops (mr_moreau_run per iteration; mr_oracle_grad and
 * mr_oracle_hvp, hence every sampling round, Integrated Gradients chunk and
 * attack step; mr_optim_step per batch) fail with MR_EINTR and the message
 * "interrupted" before changing any state, so a solver interrupted between
 * iterations resumes exactly where it stopped. The request stays pending
 * until mr_interrupt_clear. The first three are async-signal-safe. */
void mr_interrupt_request(void);
void mr_interrupt_clear(void);
/* 1 while a request is pending, else 0. */
int mr_interrupted(void);
/* MR_EINTR ("interrupted") while a request is pending, else 0: the check the
 * loops make. */
int mr_interrupt_check(void);
/* on = 1: SIGINT sets the request (a C handler, no SA_RESTART, so a blocking
 * read returns EINTR); on = 0: SIGINT's previous disposition comes back.
 * Process-wide; MR_EINVAL if sigaction fails. */
int mr_interrupt_install_sigint(int on);

/* ------------------------------------------------------------- progress */

/* Progress lines of the long calls (mr_moreau_run per iteration, the
 * sampler of SmoothGrad and Sparsified SmoothGrad per chunk of copies) on
 * stderr: MR_PROGRESS_OFF, the default; MR_PROGRESS_TTY, a line redrawn in
 * place when stderr is a terminal and nothing otherwise (the moreau command
 * and the REPL set it); MR_PROGRESS_LINES, a line at each tenth of the work.
 * mr_progress_set returns the previous mode, MR_EINVAL for another value. */
enum { MR_PROGRESS_OFF = 0, MR_PROGRESS_TTY = 1, MR_PROGRESS_LINES = 2 };
int mr_progress_set(int mode);
int mr_progress_get(void);

/* ---------------------------------------------------------------- tensors */

enum { MR_MAX_DIMS = 4 };

/* A dense float32 tensor of 1..4 dims, an opaque handle: create, reshape and
 * free it through the functions below, read its shape and entries through
 * the accessors and transfers of the tensor math section. */
typedef struct mr_tensor mr_tensor;

/* A new zero-filled tensor of the given shape (ndim 1..4, every dim >= 1;
 * MR_ESHAPE, naming the shape, when numel * 4 bytes would pass int64).
 * Caller frees with mr_tensor_free. */
int mr_tensor_new(mr_tensor **out, int ndim, const int64_t *shape);
/* A new tensor holding a copy of src. */
int mr_tensor_clone(mr_tensor **out, const mr_tensor *src);
void mr_tensor_free(mr_tensor *t);
/* Changes the shape in place; the number of elements must stay the same. */
int mr_tensor_reshape(mr_tensor *t, int ndim, const int64_t *shape);
/* dst = src; both must have the same number of elements. */
int mr_tensor_copy(mr_tensor *dst, const mr_tensor *src);
/* "2x3x32x32" into buf (always NUL-terminated). Returns buf. */
const char *mr_tensor_shape_str(const mr_tensor *t, char *buf, size_t buflen);
/* MR_EINVAL naming `what` and the first offending index if any entry of t is NaN or infinite. */
int mr_tensor_check_finite(const mr_tensor *t, const char *what);

/* ------------------------------------------------------- tensor math */

/* The work the Lua face does on tensors (engine/src/core/tensor_math.c).
 * Arithmetic: elementwise ops compute in double from the float operands and
 * round once to float on the store; reductions accumulate in double in storage
 * order, single-threaded, so results depend on nothing but the inputs.
 * "Per item" means along dim 0: a tensor (N, ...) holds N items of
 * d = numel / N entries, and per-item results are arrays of N numbers that
 * the caller provides. Every call fails with MR_EINVAL on a NULL argument and
 * MR_ESHAPE when tensors that must match do not (same shape, or the same
 * number of entries where that is said). Functions ending in _ work in place. */

/* Accessors. ndim (1..4) and numel, or MR_EINVAL for NULL. mr_tensor_shape
 * writes shape[0..ndim) and returns ndim. mr_tensor_data is the escape hatch:
 * the raw numel floats, valid while t lives, unchecked (NULL for NULL). */
int mr_tensor_ndim(const mr_tensor *t);
int mr_tensor_shape(const mr_tensor *t, int64_t *shape);
int64_t mr_tensor_numel(const mr_tensor *t);
float *mr_tensor_data(mr_tensor *t);

/* Transfers between t's entries [offset, offset + n) and a caller buffer of n
 * floats. MR_EINVAL when the range leaves the tensor. */
int mr_tensor_read(float *dst, const mr_tensor *t, int64_t offset, int64_t n);
int mr_tensor_write(mr_tensor *t, int64_t offset, const float *src, int64_t n);
/* dst items [dst_item, dst_item + count) = src items [src_item, ...) (0-based);
 * the items of dst and src must have the same number of entries (MR_ESHAPE),
 * the ranges must lie inside both (MR_EINVAL). Overlap is allowed. */
int mr_tensor_copy_items(mr_tensor *dst, int64_t dst_item, const mr_tensor *src, int64_t src_item,
                         int64_t count);
/* PyTorch's index_select along dim 0: out item k = src item index[k] (0-based),
 * k < n; out has n items the size of src's (MR_ESHAPE), every index in
 * 0..N-1 (MR_EINVAL). */
int mr_tensor_index_select(mr_tensor *out, const mr_tensor *src, const int64_t *index, int64_t n);
/* PyTorch's repeat_interleave along dim 0: out item i * repeats + r = src item
 * i. out (N * repeats, ...) (MR_ESHAPE); repeats >= 1 (MR_EINVAL). */
int mr_tensor_repeat_interleave(mr_tensor *out, const mr_tensor *src, int64_t repeats);

/* t_i = float(value). */
int mr_tensor_fill_(mr_tensor *t, double value);
/* t_i = value number (offset + i) of mr_rng_normal(seed, stream) with mean and std.
 * MR_EINVAL when offset + numel - 1 passes 2^64 - 1 (the stream would wrap). */
int mr_tensor_normal_(mr_tensor *t, uint64_t seed, uint64_t stream, uint64_t offset, float mean, float std);
/* t_i = float(lo + (hi - lo) u_i), u_i value number (offset + i) of
 * mr_rng_uniform(seed, stream) (in (0, 1], so t_i may equal hi); (lo, hi) =
 * (0, 1) stores u_i itself. MR_EINVAL unless lo <= hi, both finite as floats
 * (|lo|, |hi| <= FLT_MAX) and hi - lo finite, or when offset + numel - 1
 * passes 2^64 - 1. */
int mr_tensor_uniform_(mr_tensor *t, uint64_t seed, uint64_t stream, uint64_t offset, double lo, double hi);

/* Elementwise, in place; other must have t's shape.
 *   add_scalar_  t_i = t_i + s            mul_scalar_  t_i = t_i * s
 *   add_         t_i = t_i + alpha y_i    mul_         t_i = t_i * y_i
 *   add_items_   t_i = t_i + alpha[n] y_i for entry i of item n (alpha: N numbers)
 *   add_item_    item `item` of t += alpha · item `src_item` of src (items of the same
 *                size, MR_ESHAPE; both in range, MR_EINVAL); the shapes may differ otherwise
 *   abs_         |t_i|                    sign_        1, -1 or 0 (0 for 0, -0 and NaN)
 *   clamp_       min(max(t_i, lo), hi), NaN kept; MR_EINVAL unless lo <= hi
 *   channel_affine_  t (N, C, H, W): t_nchw = scale[c] t_nchw + shift[c] (C numbers each) */
int mr_tensor_add_scalar_(mr_tensor *t, double s);
int mr_tensor_mul_scalar_(mr_tensor *t, double s);
int mr_tensor_add_(mr_tensor *t, const mr_tensor *other, double alpha);
int mr_tensor_mul_(mr_tensor *t, const mr_tensor *other);
int mr_tensor_add_items_(mr_tensor *t, const mr_tensor *other, const double *alpha);
int mr_tensor_add_item_(mr_tensor *t, int64_t item, const mr_tensor *src, int64_t src_item, double alpha);
int mr_tensor_abs_(mr_tensor *t);
int mr_tensor_sign_(mr_tensor *t);
int mr_tensor_clamp_(mr_tensor *t, double lo, double hi);
int mr_tensor_channel_affine_(mr_tensor *t, const double *scale, const double *shift);
/* Projection on the L-infinity ball of radius r around center (x's shape):
 * x_i = min(max(x_i, c_i - r), c_i + r), computed in double. MR_EINVAL unless
 * r is finite and >= 0. */
int mr_proj_linf_ball(mr_tensor *x, const mr_tensor *center, double radius);

/* Reductions over all entries in storage order, into *out.
 *   sum           Σ t_i
 *   min, max      the smallest / largest entry, NaN skipped (+inf / -inf if all NaN)
 *   dot           Σ a_i b_i (a and b: the same number of entries)
 *   max_abs_diff  max |a_i - b_i| (the same number of entries); NaN if any difference is NaN */
int mr_tensor_sum(double *out, const mr_tensor *t);
int mr_tensor_min(double *out, const mr_tensor *t);
int mr_tensor_max(double *out, const mr_tensor *t);
int mr_tensor_dot(double *out, const mr_tensor *a, const mr_tensor *b);
int mr_tensor_max_abs_diff(double *out, const mr_tensor *a, const mr_tensor *b);
/* Index of the first NaN or infinite entry, numel if there is none, or MR_EINVAL for NULL. */
int64_t mr_tensor_find_nonfinite(const mr_tensor *t);

/* Per item (out: N numbers); a and b of the same shape.
 *   dot_items       Σ_j a_nj b_nj
 *   sqdist_items    Σ_j (a_nj - b_nj)²
 *   argmax_items    the first j with the largest a_nj, NaN skipped (0 if every entry is NaN or -inf)
 *   count_zero_items  the number of entries equal to 0 (-0 included) */
int mr_tensor_dot_items(double *out, const mr_tensor *a, const mr_tensor *b);
int mr_tensor_sqdist_items(double *out, const mr_tensor *a, const mr_tensor *b);
int mr_tensor_argmax_items(int64_t *out, const mr_tensor *t);
int mr_tensor_count_zero_items(int64_t *out, const mr_tensor *t);

/* Statistics of explanation maps, per item (out: N numbers), as moreau.metrics
 * defines them (README, "The rules on hard cases").
 *   normalized_distance  ‖a/‖a‖ − b/‖b‖‖₂ (a zero item stays the zero vector)
 *   spearman  Pearson correlation of the average ranks (scipy.stats.spearmanr:
 *             tied entries, 0 and −0 included, share the mean of their places);
 *             NaN when an item is constant; MR_EINVAL if an entry is NaN
 *   gini      Hurley & Rickard (2009) of |a|: with c the ascending sorted |a|,
 *             1 − 2 Σ_k (c_k/‖c‖₁)(d − k + ½)/d, k = 1..d; 0 for a zero item;
 *             MR_EINVAL if an entry is NaN */
int mr_tensor_normalized_distance(double *out, const mr_tensor *a, const mr_tensor *b);
int mr_tensor_spearman(double *out, const mr_tensor *a, const mr_tensor *b);
int mr_tensor_gini(double *out, const mr_tensor *t);
/* Quantus's normalise_by_negative per item, in place: positives / max,
 * negatives / |min|; zeros (and a zero item) stay 0. */
int mr_tensor_normalise_by_negative_(mr_tensor *t);

/* The top-k features of item `item` as memberships m[0..d) in [0, 1]. The
 * features are the entries with key > 0 (key |v|, or v when signed_keys), so a
 * zero (and a NaN) entry is never one. With F features: F <= k gives each
 * feature membership 1 (*size = F, *share = 1); F > k, with v_k the k-th
 * largest key, gives the g entries with key > v_k membership 1 and each of the
 * t entries with key = v_k membership (k − g)/t, never breaking a tie by
 * position (*size = k, *share = (k − g)/t). MR_EINVAL for k < 1 or an item
 * out of range. */
int mr_tensor_topk_members(double *m, double *size, double *share, const mr_tensor *t, int64_t item, int64_t k,
                           int signed_keys);
/* Ghorbani et al. (2019)'s top-k intersection per item with the memberships
 * above: Σ_j min(m_a(j), m_b(j)) / size_a; NaN when a's item has no feature.
 * k in 1..d, or 0 for k = max(1, floor(frac · F)) with F the features of a's
 * item and frac in (0, 1]; MR_EINVAL otherwise. */
int mr_tensor_topk_intersection(double *out, const mr_tensor *a, const mr_tensor *b, int64_t k, double frac,
                                int signed_keys);

/* -------------------------------------------------------------------- RNG */

/* Counter-based random numbers: Philox-4x32-10 keyed by seed, with counter
 * (block index, stream). Value number k of (seed, stream) depends on nothing
 * else: not on the thread count, not on how the request is split. Normals use
 * Box-Muller on pairs of uniforms. */

/* out[j] = value number (offset + j) of stream (seed, stream): (u + 1/2) / 2^32
 * for a 32-bit Philox output u, rounded to float: in (0, 1]. The largest u
 * rounds to exactly 1.0f (e.g. seed 0, stream 0, value 44126575), so a caller
 * that needs u < 1 (an index floor(u * n), log(1 - u)) clamps, as the Lua
 * data.permutation and train.augment do. MR_EINVAL when offset + n - 1
 * passes 2^64 - 1 (the stream would wrap to its first values). */
int mr_rng_uniform(float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset);
/* out[j] = mean + std * value number (offset + j) of the standard normal stream (seed, stream).
 * MR_EINVAL as mr_rng_uniform for the offset, or unless mean and std are finite, std >= 0. */
int mr_rng_normal(float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset,
                  float mean, float std);
/* The raw Philox-4x32-10 block: out[0..3] for counter ctr[0..3] and key key[0..1]. */
void mr_philox4x32(uint32_t *out, const uint32_t *ctr, const uint32_t *key);

/* ------------------------------------------------------------- networks */

/* A network is a DAG of ops over one input, built node by node; nodes are
 * numbered in creation order, which is a topological order. Parameters carry
 * PyTorch state_dict names. The network owns a workspace sized for the largest
 * batch seen so far and reuses it: calls with a batch no larger than that
 * allocate nothing. */
typedef struct mr_net mr_net;

/* Attributes of one op; each op reads the fields it documents and ignores the
 * rest. Zero-initialize, then set what the op needs. */
typedef struct mr_op_attrs {
    int32_t kernel[2];    /* conv / pooling kernel (kh, kw) */
    int32_t stride[2];    /* conv / pooling stride; 0 means 1 for conv, kernel for pooling */
    int32_t padding[2];   /* zero padding (ph, pw) */
    int32_t dilation[2];  /* conv dilation; 0 means 1 */
    int32_t groups;       /* conv groups; 0 means 1 */
    int32_t out_size[2];  /* adaptive pooling output (oh, ow) */
    int32_t ceil_mode;    /* pooling: ceil instead of floor for the output size */
    int32_t count_include_pad; /* avg pooling: divide by the full kernel area */
    float beta;           /* softplus beta (0 means 1); hardsigmoid's offset (see alpha) */
    float threshold;      /* softplus threshold (0 means 20) */
    float eps;            /* batchnorm eps (0 means 1e-5) */
    float momentum;       /* batchnorm momentum (0 means 0.1) */
    float p;              /* dropout probability (identity at inference) */
    /* The ops of imported models (docs/architecture.md, "Ops for imported
     * models"). A per-sample axis counts the dims after N from 0; a negative
     * one counts from the end (-1: the last). */
    float min;            /* clip: lower bound (-INFINITY: none); min < max, both read as given */
    float max;            /* clip: upper bound (INFINITY: none) */
    float alpha;          /* hardsigmoid max(0, min(1, alpha x + beta)): alpha 0 means
                             PyTorch's (alpha, beta) = (1/6, 1/2), else alpha and beta as given */
    int32_t approximate;  /* gelu: 0 the erf form (PyTorch's "none"), 1 the tanh approximation */
    int32_t axis;         /* concat, slice, gather: the per-sample axis; softmax, log_softmax:
                             the normalized axis (0: the first per-sample dim, as before) */
    int64_t start;        /* slice: first index (negative: from the end; clamped as ONNX) */
    int64_t end;          /* slice: end index, exclusive (0 means the axis's size; clamped) */
    int64_t step;         /* slice: step >= 1 (0 means 1) */
    int64_t index;        /* gather: the one index taken along axis (negative: from the end) */
    int32_t perm[3];      /* transpose: output dim i is input dim perm[i] (per-sample dims) */
    int32_t shape_ndim;   /* reshape: the output's per-sample ndim (1..3) */
    int64_t shape[3];     /* reshape: the output's per-sample shape; one dim may be -1 (inferred) */
    int32_t pads[6];      /* pad: begin pads of the per-sample dims, then end pads (ONNX's order) */
    int32_t pad_mode;     /* pad: 0 constant zero, 1 reflect */
    int32_t axes;         /* reduce_mean: bit i set reduces per-sample axis i; 0 means all */
    int32_t keepdims;     /* reduce_mean: 1 keeps reduced axes as size 1 (0: drops them, PyTorch's default) */
} mr_op_attrs;

enum { MR_PARAM_WEIGHT = 0, MR_PARAM_BUFFER = 1 };

int mr_net_new(mr_net **out);
void mr_net_free(mr_net *net);

/* Declares the input: the shape of one sample (ndim 1..3, e.g. {3, 32, 32}).
 * Returns the input's node id (>= 0) or a negative error. Once per network.
 * A sample holds at most INT_MAX (2^31 - 1) entries, its dims' product
 * overflow-checked (MR_EINVAL naming the dims): the kernels pass per-sample
 * sizes to OpenBLAS's int parameters. */
int mr_net_input(mr_net *net, int ndim, const int64_t *sample_shape);

/* Adds a parameter (kind MR_PARAM_WEIGHT: trained; MR_PARAM_BUFFER: state such
 * as batchnorm running statistics) named as in a PyTorch state_dict, zero-filled.
 * Returns its id (>= 0) or a negative error (duplicate name, bad shape). */
int mr_net_param(mr_net *net, const char *name, int ndim, const int64_t *shape, int kind);

/* Adds a node applying op `op_name` (see mr_op_names) to the outputs of nodes
 * inputs[0..ninputs) with parameters params[0..nparams) (ids from mr_net_param,
 * in the order the op documents). Checks and infers shapes now. Returns the new
 * node's id or a negative error naming the op, label and shapes involved; an
 * output sample of more than INT_MAX entries is MR_EINVAL, as for the input.
 * label names the node in messages (may be NULL). */
int mr_net_node(mr_net *net, const char *op_name, const int *inputs, int ninputs,
                const int *params, int nparams, const mr_op_attrs *attrs, const char *label);

/* Marks the node whose output is the network's output (default: the last node). */
int mr_net_set_output(mr_net *net, int node);

/* Names of all ops, NULL-terminated. Static. */
const char *const *mr_op_names(void);

/* Introspection. Borrowed pointers, valid while the net lives. */
int mr_net_node_count(const mr_net *net);
const char *mr_net_node_op(const mr_net *net, int node);
const char *mr_net_node_label(const mr_net *net, int node);
/* Per-sample output shape of a node: writes ndim and shape[0..ndim). */
int mr_net_node_shape(const mr_net *net, int node, int *ndim, int64_t *shape);
/* The edges of a node: the ids of its input nodes (the input node, 0, has
 * none), or of its parameters in the op's order (conv2d, linear, matmul_param:
 * weight, then bias if any), written to ids[0..min(count, cap)). Returns the
 * count; MR_EINVAL for a node that does not exist or cap < 0. */
int mr_net_node_inputs(int *ids, int cap, const mr_net *net, int node);
int mr_net_node_params(int *ids, int cap, const mr_net *net, int node);
int mr_net_param_count(const mr_net *net);
const char *mr_net_param_name(const mr_net *net, int param);
int mr_net_param_kind(const mr_net *net, int param);
int mr_net_param_find(const mr_net *net, const char *name);   /* id, or MR_ENOTFOUND */
mr_tensor *mr_net_param_get(mr_net *net, int param);          /* borrowed; NULL if out of range */
mr_tensor *mr_net_param_grad_get(mr_net *net, int param);     /* borrowed; NULL for buffers */
/* Sets every parameter gradient to 0. */
int mr_net_zero_grad(mr_net *net);

/* Training mode changes batchnorm (batch statistics, running-stat updates) and
 * dropout in mr_net_forward / mr_net_backward, the training passes. Default:
 * inference. The explanation passes (mr_oracle_*, mr_smoothgrad, mr_deeplift,
 * mr_moreau_*) and mr_net_forward_inference ignore it (see the gradient oracle). */
int mr_net_set_training(mr_net *net, int training);
/* Seed of the dropout masks in training mode (stream = node id, counter = the
 * number of mr_net_forward / mr_net_jvp calls; inference-only passes do not count). */
int mr_net_set_seed(mr_net *net, uint64_t seed);

/* Bytes of workspace currently held (activations, gradients, tangents, scratch). */
int64_t mr_net_workspace_bytes(const mr_net *net);

/* Forward pass of x (N, sample shape...). y receives the output (N, out shape...);
 * y may be NULL (use mr_net_output_get). Every pass takes a batch of at most
 * INT_MAX items (MR_EINVAL: an OpenBLAS int dimension of the weight gradient). */
int mr_net_forward(mr_net *net, const mr_tensor *x, mr_tensor *y);
/* Forward pass of the inference-mode function, whatever mr_net_set_training
 * says: batchnorm normalizes with its running statistics, dropout is the
 * identity. Writes no parameter or buffer and does not advance the dropout
 * counter. Otherwise as mr_net_forward (a following mr_net_backward
 * differentiates this inference pass). */
int mr_net_forward_inference(mr_net *net, const mr_tensor *x, mr_tensor *y);
/* The output of the last forward, borrowed (valid until the next call on net). */
mr_tensor *mr_net_output_get(mr_net *net);

/* Reverse pass after mr_net_forward: gx = J^T gy (gy shaped like the output, gx
 * like the input; gx may be NULL). With param_grads != 0, parameter gradients
 * are accumulated (+=) into the tensors of mr_net_param_grad_get. */
int mr_net_backward(mr_net *net, const mr_tensor *gy, mr_tensor *gx, int param_grads);

/* Forward pass with a tangent: y = F(x), dy = J(x) v. y or dy may be NULL.
 * Inference mode only: MR_ESTATE in training mode (the oracle's HVPs run
 * the inference-mode function whatever the mode). */
int mr_net_jvp(mr_net *net, const mr_tensor *x, const mr_tensor *v, mr_tensor *y, mr_tensor *dy);

/* Reverse pass after mr_net_jvp (forward-over-reverse): gx = J(x)^T gy and
 * dgx = d/de [ J(x + e v)^T (gy + e dgy) ] at e = 0, exactly. dgy may be NULL
 * (zero). Either output may be NULL. */
int mr_net_hvp_backward(mr_net *net, const mr_tensor *gy, const mr_tensor *dgy,
                        mr_tensor *gx, mr_tensor *dgx);

/* -------------------------------------------------------------- backends */

/* A backend computes a network's passes: it owns the memory of the network's
 * workspace (activations, gradients, scratch, op state) and the ops' kernels.
 * Every network starts on "cpu" (OpenBLAS, oneDNN and OpenMP loops; always
 * registered); mr_net_set_backend moves it to another registered backend.
 * Ops are named by their index in mr_op_names(); passes by MR_PASS_*.
 * Fallback rule: a pass of an op whose backend's `supports` returns 0 runs on
 * the "cpu" backend instead, and mr_net_node_ran_on says so. The memory
 * entries therefore hand out host memory that the CPU kernels can read.
 * docs/architecture.md, "How to add a backend", lists what a backend gives. */
enum { MR_PASS_FORWARD = 0, MR_PASS_VJP = 1, MR_PASS_JVP = 2, MR_PASS_VJP_TANGENT = 3, MR_PASS_COUNT = 4 };

/* One pass of one node, as the graph hands it to a backend: opaque; a backend
 * that delegates passes it on unchanged. */
typedef struct mr_op_call mr_op_call;

typedef struct mr_backend {
    const char *name; /* unique, e.g. "cpu" */
    void *ctx;        /* handed back as the first argument of every entry */
    /* Workspace memory: `bytes` bytes, 64-byte aligned, NULL when out of
     * memory; free(NULL) is a no-op. */
    void *(*alloc)(void *ctx, size_t bytes);
    void (*free)(void *ctx, void *p);
    /* dst[0..n) = src[0..n) (the ranges may overlap); dst[0..n) = 0;
     * dst[i] += src[i] for i < n, in float, each entry on its own. */
    void (*copy)(void *ctx, float *dst, const float *src, int64_t n);
    void (*zero)(void *ctx, float *dst, int64_t n);
    void (*add)(void *ctx, float *dst, const float *src, int64_t n);
    /* dst[j] = mean + std * value (offset + j) of the standard normal stream
     * (seed, stream), j < n: the values of mr_rng_normal. 0 or MR_E*; on
     * MR_E* the engine reports "backend 'NAME': fill_normal failed (MR_E...)". */
    int (*fill_normal)(void *ctx, float *dst, int64_t n, uint64_t seed, uint64_t stream,
                       uint64_t offset, float mean, float std);
    /* 1 if the backend computes pass `pass` (MR_PASS_*) of op `op` (an index
     * of mr_op_names()), else 0 (the pass falls back to "cpu"). */
    int (*supports)(void *ctx, int op, int pass);
    /* Computes that pass for one node (only asked when supports said 1).
     * 0, or MR_E* when it could not: the pass stops and returns that code,
     * with the message "backend 'NAME': PASS of OP failed (MR_E...)". */
    int (*run)(void *ctx, int op, int pass, const mr_op_call *call);
} mr_backend;

/* Registers b under b->name. b is borrowed: it, its name and the code of its
 * entries must stay valid for the life of the process, so a backend in a
 * shared library must keep that library loaded: link it with
 * -Wl,-z,nodelete, or, from LuaJIT, keep the ffi.load namespace referenced
 * (a collected namespace unloads the library, and the next pass on the
 * backend crashes). MR_EINVAL when b, its name or an entry is NULL, or the
 * name is taken; MR_ENOMEM past 16 backends. */
int mr_backend_register(const mr_backend *b);
/* The backend registered as `name`, or NULL. Borrowed. */
const mr_backend *mr_backend_get(const char *name);
/* The built-in CPU backend (never NULL), for backends that delegate to it. */
const mr_backend *mr_backend_cpu(void);
/* Moves the network to the backend registered as `name` (MR_ENOTFOUND if
 * none). Frees the workspace: the next pass must be a forward (or jvp). */
int mr_net_set_backend(mr_net *net, const char *name);
/* The name of the network's backend. Static while the backend lives. */
const char *mr_net_backend_name(const mr_net *net);
/* The name of the backend that ran the node's most recent pass (its own or,
 * by the fallback rule, "cpu"); NULL for the input node, a node no pass has
 * reached, or no such node. */
const char *mr_net_node_ran_on(const mr_net *net, int node);

/* -------------------------------------------------------- gradient oracle */

/* Training mode. Every explanation pass evaluates the inference-mode function
 * and never touches the model: the oracle (scores, gradients, HVPs), and so
 * SmoothGrad and every sampler, the Moreau solver and DeepLIFT, run batchnorm
 * with its running statistics and dropout as the identity whether or not the
 * net is in training mode (mr_net_set_training), and write no parameter, no
 * buffer (running_mean, running_var) and no dropout counter. A map computed
 * after mr_net_set_training(net, 1) is bit-identical to one computed in
 * inference mode, and the model is bit-identical before and after. Only
 * mr_net_forward / mr_net_backward (training) follow the net's mode. */

/* The score of class c of item n of the network's output z (N, K):
 *   MR_SCORE_LOGIT        z[n, c]
 *   MR_SCORE_LOG_SOFTMAX  z[n, c] - logsumexp(z[n, :])
 *   MR_SCORE_SOFTMAX      exp of the above */
enum { MR_SCORE_LOGIT = 0, MR_SCORE_LOG_SOFTMAX = 1, MR_SCORE_SOFTMAX = 2 };

/* One forward + one reverse pass: scores[n] = f_{labels[n]}(x[n]) and
 * grad = d scores / d x (shaped like x). scores (N floats) or grad may be NULL.
 * labels: N class ids in [0, K). Fails on NaN/inf in x; MR_EINTR, computing
 * nothing, while an interrupt is pending (mr_interrupt_request). */
int mr_oracle_grad(mr_net *net, const mr_tensor *x, const int32_t *labels, int score_kind,
                   float *scores, mr_tensor *grad);

/* Exact Hessian-vector product by forward-over-reverse:
 * hv[n] = (d^2 f_{labels[n]} / dx^2)(x[n]) v[n]. scores and grad, when not NULL,
 * receive what mr_oracle_grad would. MR_EINTR as mr_oracle_grad. */
int mr_oracle_hvp(mr_net *net, const mr_tensor *x, const int32_t *labels, int score_kind,
                  const mr_tensor *v, float *scores, mr_tensor *grad, mr_tensor *hv);

/* ------------------------------------------------- prox operators */

/* Group maps for the group soft-threshold: entry j of a sample (j < d, the
 * sample's C*H*W entries in row-major order) belongs to group map[j] in
 * [0, ngroups). Each group also holds a scratch vector for its norms, so one
 * group map must not be used by two threads at once. */
typedef struct mr_groups mr_groups;

/* Non-overlapping gh x gw spatial blocks spanning all C channels of a
 * (C, H, W) sample, numbered row-major over the block grid; when H or W is not
 * a multiple of the block, the last partial blocks are groups too. */
int mr_groups_new_blocks(mr_groups **out, int64_t C, int64_t H, int64_t W, int64_t gh, int64_t gw);
/* Any map: map[j] in [0, ngroups) for j < d (copied). */
int mr_groups_new(mr_groups **out, int64_t d, const int32_t *map, int32_t ngroups);
void mr_groups_free(mr_groups *g);
int32_t mr_groups_count(const mr_groups *g);
int64_t mr_groups_dim(const mr_groups *g);

/* Soft-threshold in place: v_i = sign(v_i) max(|v_i| - a, 0), a >= 0. */
int mr_prox_soft_threshold(mr_tensor *v, float a);
/* Group soft-threshold in place, each batch item separately (the map covers
 * one item: numel / N == mr_groups_dim(g)): v_S = max(1 - a / ||v_S||_2, 0) v_S. */
int mr_prox_group_soft_threshold(mr_tensor *v, mr_groups *g, float a);
/* Projection of each batch item of x onto the L2 ball of radius r around the
 * matching item of center (x and center of the same shape). */
int mr_proj_l2_ball(mr_tensor *x, const mr_tensor *center, float radius);
/* Projection onto the box [lo, hi] (entrywise clamp). */
int mr_proj_box(mr_tensor *x, float lo, float hi);

/* ---------------------------------------------- noisy gradients, SmoothGrad */

/* Every noisy method (SmoothGrad and its variants, MoreauGrad with m > 0)
 * draws item n's noise from the Philox stream named by the item's 64-bit
 * noise key K_n, never by its position in the batch, so an item's map depends
 * only on (its image, its label, the options, the seed) or, with a key the
 * caller gives, on (image, label, options, seed, key); docs/determinism.md
 * states the promise. Sample i of item n at round t is
 *     x_n + s_n z,   z = values (t * samples + i) * d .. + d - 1 of the
 *                        standard normal stream (seed, K_n)
 * with s_n = sigma * (max x_n - min x_n) (Smilkov et al. 2017: noise relative
 * to the item's value range), computed in float32. A constant item has
 * s_n = 0: every sample is x_n itself, so SmoothGrad is the gradient and
 * VarGrad is 0 there (a documented choice: the range-relative level has no
 * scale to borrow from; docs/determinism.md). The same on every thread count
 * and for every chunk size. */

/* keys[n] (N of them) for the items of x (N, ...): ids[n] when ids is not
 * NULL (the caller's keys, e.g. the clean image's key for its attacked copy),
 * else the content key
 *     K_n = mix(FNV-1a 64 over the bytes of: the per-item dims (ndim - 1
 *           int64, little-endian), then the d float32 values of x_n
 *           (little-endian))
 * with FNV-1a 64 (offset 0xcbf29ce484222325, prime 0x100000001b3) and mix the
 * SplitMix64 finalizer (Steele et al. 2014; z ^= z >> 30, z *= 0xbf58476d1ce4e5b9,
 * z ^= z >> 27, z *= 0x94d049bb133111eb, z ^= z >> 31). -0.0 and 0.0 are
 * different bytes and give different keys. The label is not part of the key:
 * the maps of several classes of one image share its noise (so a map of a
 * linear combination of scores is that combination of maps). MR_EINVAL for a
 * NULL argument. */
int mr_item_keys(uint64_t *keys, const mr_tensor *x, const uint64_t *ids);
/* scales[n] = s_n = sigma * (max x_n - min x_n) in float32, for the N items
 * of x; imax[n], imin[n] (either may be NULL) = the first index of the
 * largest and of the smallest entry inside item n. MR_EINVAL for a NULL
 * argument, a non-finite x or sigma < 0. */
int mr_noise_scales(float *scales, int64_t *imax, int64_t *imin, const mr_tensor *x, float sigma);
/* The noisy copies that mr_smoothgrad draws, for callers that need them
 * again (the Lua explain_vjp): xb (k, sample shape of x) receives copies
 * p0 .. p0 + k - 1 of the order item n = p / samples, sample i = p % samples,
 * copy (n, i) = x_n + s_n z, z ~ N(0, I) from (seed, stream = keys[n],
 * offset = i * d), the noise of mr_smoothgrad bit for bit; eps (k * d floats,
 * or NULL) receives z. scales: the N s_n of mr_noise_scales; keys: the N
 * keys of mr_item_keys. MR_EINVAL for a NULL argument, samples < 1 or copies
 * past N * samples (p0 + k and N * samples overflow-checked), or samples * d
 * past int64; MR_ESHAPE when xb is not (k, sample shape of x). */
int mr_noise_copies(mr_tensor *xb, float *eps, const mr_tensor *x, const float *scales, const uint64_t *keys,
                    uint64_t seed, int32_t samples, int64_t p0);
/* Sparsified SmoothGrad's counts for d entries: *clip_k = max(1, floor(clip_frac d)),
 * *keep_k = max(1, floor(keep_frac d)), the product taken in float32 as
 * mr_smoothgrad takes it, and capped at d (past 2^24 float(d) may round above
 * d). MR_EINVAL for a NULL argument, d < 1 or a fraction outside (0, 1]. */
int mr_sparsify_counts(int64_t *clip_k, int64_t *keep_k, int64_t d, float clip_frac, float keep_frac);
/* Sparsified SmoothGrad's selection of one gradient g (d floats), as
 * mr_smoothgrad makes it: *tau = the clip_k-th largest |g|, *keep = the
 * keep_k-th largest (kept: |g| >= *keep and |g| > 0). scratch: d floats the
 * call may overwrite. MR_EINVAL for a NULL argument or a count outside [1, d]. */
int mr_sparsify_thresholds(float *tau, float *keep, const float *g, int64_t d, int64_t clip_k, int64_t keep_k,
                           float *scratch);

/* Memory budget of the automatic chunk (chunk = 0) of every sampling method,
 * in bytes: the network's workspace for one pass of k copies plus the
 * method's own per-copy buffers stay within it. Default MR_MEMORY_BUDGET_MIB
 * MiB; bytes <= 0 restores the default. Process-wide. */
enum { MR_MEMORY_BUDGET_MIB = 256 };
int mr_set_memory_budget(int64_t bytes);
int64_t mr_get_memory_budget(void);
/* *bytes = the workspace (bytes) mr_net would hold for a batch of N: the
 * buffers of gradient passes (tangents = 0) or of Hessian-vector products
 * (tangents = 1), on top of the kinds of buffer it already holds. Allocates
 * nothing but the slot map (computed once per output node). MR_EINVAL when
 * that size passes 2^63 bytes. */
int mr_net_workspace_estimate(int64_t *bytes, mr_net *net, int64_t N, int tangents);
/* *chunk = the most copies per pass, k in 1..copies, with
 * workspace_estimate(k) + conv_arena(k) + k * per_copy_bytes <= budget
 * (budget <= 0: the global budget), conv_arena(k) bounding the blocked
 * copies oneDNN's conv makes outside the workspace (0 with the BLAS
 * backend); 1 when even one copy does not fit. The cost is summed
 * overflow-checked: a cost past int64 fits no budget. */
int mr_auto_chunk(int64_t *chunk, mr_net *net, int64_t copies, int tangents, int64_t per_copy_bytes,
                  int64_t budget);

enum { MR_SG_MEAN = 0, MR_SG_SQUARE = 1, MR_SG_VAR = 2, MR_SG_SPARSIFIED = 3 };

typedef struct mr_smoothgrad_opts {
    int32_t samples;    /* t, noise samples per item (>= 1) */
    int32_t chunk;      /* most items x samples per forward pass (0: automatic, from the memory budget) */
    int32_t mode;       /* MR_SG_*: mean of g, of g^2, variance of g, Sparsified SmoothGrad */
    int32_t score_kind; /* MR_SCORE_* */
    float sigma;        /* noise level relative to the item's value range */
    float clip_frac;    /* sparsified: clip |g| at its (clip_frac*d)-th largest value tau, divide by tau */
    float keep_frac;    /* sparsified: keep the (keep_frac*d) largest entries, zero the rest */
    uint64_t seed;
    const uint64_t *keys;   /* N noise keys (mr_item_keys), borrowed; NULL: the content keys */
    int64_t memory_budget;  /* bytes for chunk = 0; 0: mr_get_memory_budget() */
} mr_smoothgrad_opts;

/* out (like x) = the SmoothGrad map of each item over t = opts->samples
 * noisy copies g_1..g_t (gradients at the samples above), copies batched
 * through the network chunk at a time:
 *   mean        (1/t) sum_i g_i                          (Smilkov et al. 2017)
 *   square      (1/t) sum_i g_i^2
 *   var         (1/t) sum_i (g_i - mean)^2, by Welford's one-pass update
 *               with increments delta^2 (k-1)/k >= 0, so never negative
 *               (Adebayo et al. 2018, VarGrad; population variance)
 *   sparsified  (1/t) sum_i S(|g_i|) (Levine et al. 2019) with tau = the
 *               (clip_frac d)-th largest |g_i|, kept = the entries with
 *               |g| >= the (keep_frac d)-th largest |g_i| and |g| > 0 (every
 *               entry tied at the threshold is kept: the rule depends on
 *               values only, never on positions), and on kept entries
 *               S(a) = 1 if a >= tau, a / tau otherwise (0 elsewhere); so
 *               tau = 0 (fewer than clip_frac d nonzero entries) clips every
 *               kept nonzero entry to 1 instead of dropping the sample.
 * An item's map depends on its own noise key, never on the batch. */
int mr_smoothgrad(mr_tensor *out, mr_net *net, const mr_tensor *x, const int32_t *labels,
                  const mr_smoothgrad_opts *opts);

/* --------------------------------------------------------------- DeepLIFT */

/* out (like x) = DeepLIFT attributions of the class logit (Shrikumar et al.
 * 2017): (x - x0) times the multipliers of one reverse pass in which linear
 * ops keep their vjp, elementwise nonlinearities use the rescale rule
 * (f(x) - f(x0)) / (x - x0), max pooling and products their exact splits
 * (README "DeepLIFT's rules"), so that each item's attributions sum to
 * f_c(x) - f_c(x0). baseline: like x, or NULL for zeros.
 * Errors: MR_EINVAL naming the node when the output depends on an op without
 * an exact rule (softmax, log-softmax). Runs the inference-mode network
 * whatever mr_net_set_training says, like the oracle. */
int mr_deeplift(mr_tensor *out, mr_net *net, const mr_tensor *x, const mr_tensor *baseline,
                const int32_t *labels);

/* ---------------------------------------------------- the Moreau solver */

/* Proximal gradient on  f_c(x + d) + ||d||^2 / (2 rho) + eta R(d)  (docs/methods.md §7):
 *   g_t     = (1/m) sum_i grad f_c(x + d_t + z_i)   (m > 0, fresh z every iteration)
 *           = grad f_c(x + d_t)                      (m = 0)
 *   d_{t+1} = prox_{gamma eta R}(d_t - gamma (g_t + d_t / rho))
 * with R = 0 (vanilla), ||.||_1 (soft-threshold) or ||.||_{2,1} (group).
 * The map is -mean(d_{T-K+1..T}) / rho (output gradient) or that mean itself
 * (output delta, the authors' code). FISTA with gradient restart and a
 * stopping tolerance are options, off by default. */

enum { MR_REG_NONE = 0, MR_REG_L1 = 1, MR_REG_GROUP = 2 };
enum { MR_MG_GRADIENT = 0, MR_MG_DELTA = 1 };

typedef struct mr_moreau_opts {
    float rho;          /* > 0 */
    float eta;          /* >= 0; the threshold applied is gamma * eta */
    float gamma;        /* step size > 0 */
    float sigma;        /* noise level relative to the item's value range (m > 0) */
    float tol;          /* item n stops (freezes) when ||d_{t+1} - d_t|| <= tol * max(1, ||d_t||) (0: run T) */
    int32_t T;          /* iterations */
    int32_t m;          /* noise samples per iteration (0: unregularized) */
    int32_t K;          /* tail average over the last K iterates (1: the last) */
    int32_t reg;        /* MR_REG_* */
    int32_t output;     /* MR_MG_* */
    int32_t score_kind; /* MR_SCORE_* */
    int32_t chunk;      /* most items x samples per forward pass (0: automatic, from the memory budget) */
    int32_t accelerated;/* 1: FISTA with gradient restart */
    uint64_t seed;
    const uint64_t *keys;   /* N noise keys (mr_item_keys), borrowed; NULL: the content keys */
    int64_t memory_budget;  /* bytes for chunk = 0; 0: mr_get_memory_budget() */
} mr_moreau_opts;

/* Per-item state after the last iteration. */
typedef struct mr_moreau_stats {
    int32_t iter;      /* iterations done */
    int32_t converged; /* 1 if the tolerance was met */
    float score;       /* f_c(x + d_t) (mean over the noise samples when m > 0) */
    float objective;   /* score + ||d_t||^2 / (2 rho) + eta R(d_t) */
    float grad_norm;   /* ||g_t + d_t / rho||_2, the smooth part's gradient */
    float delta_norm;  /* ||d_t||_2 */
    float step_norm;   /* ||d_t - d_{t-1}||_2 */
    float sparsity;    /* fraction of entries of d_t that are exactly 0 */
} mr_moreau_stats;

typedef struct mr_moreau mr_moreau;

/* A solver for the batch x (N, ...) with one class per item (MR_EINVAL when
 * the noise offsets T * m * d of an item's stream would pass int64). groups is
 * required for MR_REG_GROUP (borrowed: it must outlive the solver). net, x
 * and labels are borrowed too. All buffers are allocated here: steps allocate
 * nothing. */
int mr_moreau_new(mr_moreau **out, mr_net *net, const mr_tensor *x, const int32_t *labels,
                  const mr_moreau_opts *opts, mr_groups *groups);
void mr_moreau_free(mr_moreau *s);
/* One iteration (returns 1 when all items have converged or T is reached, else 0).
 * MR_ESTATE when an item diverged: its delta or objective is not finite, or
 * ||delta_t|| > 1000 rho max_{s<=t} ||g_s|| (a bound every run with gamma <= rho
 * keeps with factor 1; moreau.c); the message names gamma and rho, and the
 * solver then refuses further steps and its result. */
int mr_moreau_step(mr_moreau *s);
/* Iterates until T or convergence (errors as mr_moreau_step); MR_EINTR between
 * iterations while an interrupt is pending (mr_interrupt_request). */
int mr_moreau_run(mr_moreau *s);
/* out (x's shape exactly, MR_ESHAPE otherwise) = the map from the tail average
 * (the current iterate when no tail iterate has been reached yet); MR_ESTATE
 * after a diverged step. */
int mr_moreau_result(mr_moreau *s, mr_tensor *out);
/* Borrowed views of the current iterate d_t and the last gradient g_t. */
mr_tensor *mr_moreau_delta_get(mr_moreau *s);
mr_tensor *mr_moreau_grad_get(mr_moreau *s);
int mr_moreau_stats_get(const mr_moreau *s, int item, mr_moreau_stats *out);
/* Changes rho, eta or gamma between iterations (the REPL's knobs). */
int mr_moreau_set(mr_moreau *s, float rho, float eta, float gamma);

/* ----------------------------------------------------------- safetensors */

/* A safetensors file (HuggingFace format) held in memory. Loading reads the
 * whole file and checks, before any data is touched: the header length against
 * the file size (and a 100 MB cap); the header as UTF-8 JSON (an object in
 * which no object repeats a key); each entry's dtype (known), shape (integers
 * in [0, 2^53), no overflow) and data_offsets (integers in [0, 2^53), begin <=
 * end, end - begin == numel x dtype size); and that the entries tile
 * the data section exactly (no overlap, hole, truncation or leftover bytes);
 * "__metadata__", if present, must map strings to strings. Every message names
 * the file and the tensor. Entries are listed sorted by name. F32 tensors load
 * as they are; F64, F16 and BF16 are converted to float32; other dtypes (I64,
 * U8, ...) are listed but mr_safetensors_get refuses them. The file's size
 * must fit the loader budget (mr_set_loader_budget) before it is read.
 * Errors: MR_EINVAL (NULL argument), MR_EIO (cannot open / read), MR_ENOMEM
 * (out of memory; the file over the loader budget, naming its size and the
 * budget), MR_EFORMAT (anything wrong in the file). Caller frees with
 * mr_safetensors_free. */
typedef struct mr_safetensors mr_safetensors;

int mr_safetensors_load(mr_safetensors **out, const char *path);
void mr_safetensors_free(mr_safetensors *st);
int mr_safetensors_count(const mr_safetensors *st);
/* Name of tensor i (0 <= i < count; names are sorted). Borrowed; NULL if out of range. */
const char *mr_safetensors_name(const mr_safetensors *st, int i);
/* Index of the tensor named `name`, or MR_ENOTFOUND. */
int mr_safetensors_find(const mr_safetensors *st, const char *name);
/* Shape of tensor i: writes ndim (0..4; a scalar has ndim 0) and shape[0..ndim).
 * MR_ESHAPE for a tensor of more than 4 dims (listed, not usable). */
int mr_safetensors_shape(const mr_safetensors *st, int i, int *ndim, int64_t *shape);
/* A new float32 tensor with a copy of tensor i (a scalar becomes shape {1}).
 * Fails (MR_EFORMAT) on dtypes that do not convert to float32, (MR_ESHAPE)
 * on tensors with a zero dim or more than 4 dims, and (MR_ENOMEM) when the
 * copy's numel * 4 bytes (twice the file's bytes for F16 and BF16) are over
 * the loader budget. Caller frees. */
int mr_safetensors_get(mr_tensor **out, const mr_safetensors *st, int i);
/* The "__metadata__" object of the header as JSON text ("{}" if none). Borrowed. */
const char *mr_safetensors_metadata(const mr_safetensors *st);

/* Writes n float32 tensors with the given unique names (sorted by name in
 * the file, header padded with spaces to a multiple of 8 bytes, as the
 * reference writer does) and an optional metadata JSON object of string values
 * with unique keys (may be NULL; written with its keys sorted, so the bytes do
 * not depend on the order of the input). The file is written beside path as
 * "<path>.tmp~" and renamed over path only when complete, so a failed save
 * leaves an old file intact.
 * Errors: MR_EINVAL (NULL/duplicate/empty name, a name "__metadata__", bad
 * metadata), MR_EIO, MR_ENOMEM. */
int mr_safetensors_save(const char *path, int n, const char *const *names,
                        const mr_tensor *const *tensors, const char *metadata_json);

/* The value of parameter `param` (0 <= param < mr_net_param_count), weight or
 * buffer, read-only: mr_net_param_get for a const network, which with
 * mr_net_param_count and mr_net_param_name walks the network's state_dict
 * without touching it. Borrowed, valid while the net lives; NULL if out of range. */
const mr_tensor *mr_net_param_value(const mr_net *net, int param);

/* Loads every parameter of net (weights and buffers) from a safetensors file by
 * name. Every parameter must be present (MR_ENOTFOUND "missing parameter 'x' in
 * FILE") with the same shape (MR_ESHAPE naming both shapes; a scalar in the file
 * matches shape {1}) and a dtype that converts to float32; with strict != 0 the
 * file may not hold tensors the net lacks (MR_ENOTFOUND), except names ending
 * in num_batches_tracked (PyTorch's counters), which are always ignored. All or
 * nothing: everything is checked before any parameter is written, so on error
 * the net is unchanged. */
int mr_net_load(mr_net *net, const char *path, int strict);
/* Saves every parameter (weights and buffers) of net by name, with optional
 * metadata as mr_safetensors_save. */
int mr_net_save(const mr_net *net, const char *path, const char *metadata_json);

/* ------------------------------------------------------------------ ONNX */

/* Options of mr_net_from_onnx. Zero-initialize (or pass NULL) for the defaults. */
typedef struct mr_onnx_options {
    float softplus_beta; /* > 0: every Relu becomes softplus(beta) = log(1 + e^(beta x)) / beta
                            (curvature for the attacks); 0 (default): keep ReLU */
    int64_t max_bytes;   /* the most bytes the model may take: the file, its parsed form,
                            external data and every float32 copy of a tensor, summed;
                            0 (default): the loader budget (mr_set_loader_budget) plus
                            four times the file's size */
} mr_onnx_options;

/* A network from an ONNX model file (a float32 image or feature classifier:
 * one graph input (N, sample shape) whose batch axis N is symbolic or 1, one
 * output). The graph's ops map onto the engine's ops (docs/models.md, "ONNX
 * import", lists them with the attributes and opsets accepted); parameters
 * are named after the initializers. Initializers in raw_data or in the typed
 * fields (float_data, double_data, int64_data, int32_data) and in external
 * data files beside the model (a relative path that stays inside the model's
 * folder; offset and length checked against the file) are read; Constant and
 * Identity nodes are folded; softplus(beta) exported as Mul -> Softplus -> Div
 * becomes one softplus node. Nodes the output does not depend on are dropped.
 * Everything is checked before it is used: the file size against the budget
 * before it is read, each tensor's declared dims (>= 0, product within int64
 * and the budget) against the bytes that hold it, every node input produced
 * by a node, an initializer or the graph input, and no cycle.
 * out: a new network in inference mode; caller frees with mr_net_free.
 * opts: NULL for the defaults.
 * Errors: MR_EINVAL (NULL argument, a negative or NaN option), MR_EIO (cannot
 * open or read the file or an external data file), MR_ENOMEM (over the
 * budget, naming the size and the budget), MR_EFORMAT (not a valid ONNX
 * model: truncated, a tensor whose data does not match its dims, hostile
 * dims, a dangling input, a cycle, an external path leaving the folder),
 * MR_ENOTFOUND (an op, attribute or attribute value the engine does not
 * map, naming the node, its index, its op type and the attribute), MR_ESHAPE
 * (shapes that do not fit, naming the node). Every message starts with
 * "onnx: FILE: ". */
int mr_net_from_onnx(mr_net **out, const char *path, const mr_onnx_options *opts);

/* ------------------------------------------------------------ data I/O */

/* Readers check every size in a file against the bytes actually present
 * before using them; failures name the file and the expected and found
 * counts. Pixels come out as float32 in [0, 1] (byte / 255, as torchvision's
 * ToTensor); labels as 0-based int32 class ids. */

/* Loader budget: the most bytes a loader's decoded result may take, checked
 * against the sizes a file's header declares before anything is allocated.
 * Images: the float32 samples H * W * max(C_file, C) * 4 (and the resized
 * result H' * W' * C * 4); IDX: the float32 tensor N * rows * cols * 4, or
 * the N int32 labels; CIFAR: N records of 3072 * 4 + 4 = 12292 bytes;
 * safetensors: the whole file (read into memory) and each tensor's float32
 * copy, numel * 4. Products are overflow-checked. Independently of the
 * budget, a header is refused when the file is too small to hold what it
 * declares: uncompressed data (PNM, BMP, plain IDX) must be in the file;
 * compressed data may expand at most by its codec's ratio (deflate 1032:1 for
 * PNG and gzip IDX, 2731 pixels per byte for GIF's LZW, 1024 pixels per byte
 * for JPEG). Default MR_LOADER_BUDGET_MIB MiB; bytes <= 0 restores the
 * default. Process-wide. */
enum { MR_LOADER_BUDGET_MIB = 256 };
int mr_set_loader_budget(int64_t bytes);
int64_t mr_get_loader_budget(void);

/* Images of an IDX file (MNIST / Fashion-MNIST; magic 0x00000803: unsigned
 * bytes, 3 dims N, rows, cols), plain or gzip-compressed (read through zlib,
 * so "x.gz" and "x" both work). out: a new (N, 1, rows, cols) tensor in
 * [0, 1]; caller frees with mr_tensor_free.
 * Errors: MR_EINVAL (NULL argument), MR_EIO (cannot open / read the file),
 * MR_EFORMAT (empty file, wrong magic, data type other than unsigned byte,
 * wrong number of dims, a zero or absurd size, data shorter or longer than the
 * header says, corrupt gzip stream; a declared size more than the file can
 * hold), MR_ENOMEM (the declared size is over the loader budget; see
 * mr_set_loader_budget). */
int mr_idx_load_images(mr_tensor **out, const char *path);

/* Labels of an IDX file (magic 0x00000801: unsigned bytes, 1 dim N), plain or
 * gzip. out: a new array of *n int32 labels (0..255 as stored); caller frees
 * it with mr_labels_free. Errors as mr_idx_load_images. */
int mr_idx_load_labels(int32_t **out, int64_t *n, const char *path);

/* Frees a label array from mr_idx_load_labels or mr_cifar_load. NULL: no-op. */
void mr_labels_free(int32_t *labels);

/* A CIFAR-10 binary batch (data_batch_*.bin, test_batch.bin): records of one
 * label byte then 3072 pixel bytes (R, G, B planes of 32x32). images: a new
 * (N, 3, 32, 32) tensor in [0, 1] (free with mr_tensor_free); labels: a new
 * array of N int32 in 0..9 (free with mr_labels_free); n: N. On failure all
 * three are NULL / 0.
 * Errors: MR_EINVAL (NULL argument), MR_EIO (cannot open or read; not a
 * regular file), MR_EFORMAT (empty; size not a multiple of 3073; a label
 * outside 0..9, naming the record and its byte offset), MR_ENOMEM (N * 12292
 * bytes over the loader budget, checked before anything is allocated). */
int mr_cifar_load(mr_tensor **images, int32_t **labels, int64_t *n, const char *path);

/* An image file: PNG (libpng), JPEG (libjpeg-turbo) or binary PNM (P5, P6),
 * told by its magic number; GIF and BMP are refused by name, other formats
 * are unknown. The header is read first and checked against the loader
 * budget and the file's size (mr_set_loader_budget) before any pixel is
 * decoded. out: a new (1, C, H, W) tensor in [0, 1] (a sample s / its maximum
 * M: 255 for 8 bits, 65535 for 16, a PNM's own M); caller frees with
 * mr_tensor_free. channels: 1 (grey), 3 (RGB), 2 / 4 (with alpha), or 0 to
 * keep the file's count (a palette PNG is RGB, or RGBA with tRNS; a CMYK JPEG
 * is RGB); grey = the integer BT.601 luma (77 R + 150 G + 29 B) >> 8, or a
 * YCbCr JPEG's own Y.
 * height, width: both 0 to keep the file's size, or both in 1..32768 to resize
 * (bilinear, antialiased when shrinking, clamped to [0, 1]).
 * Errors: MR_EINVAL (NULL, bad channels or size), MR_EIO (cannot open),
 * MR_EFORMAT (unknown or refused format; a corrupt or truncated image, with
 * the decoder's reason; a 0-pixel image; a declared size more than the file
 * can hold), MR_ENOMEM (declared size over the loader budget, naming the file,
 * the size and the budget). */
int mr_image_load(mr_tensor **out, const char *path, int channels, int height, int width);

/* Writes img, (C, H, W) or (1, C, H, W) with C in {1, 3, 4} (grey, RGB, RGBA;
 * 2 = grey + alpha also works), as an 8-bit PNG: each value v becomes
 * round(255 * clamp(v, 0, 1)); NaN becomes 0.
 * Errors: MR_EINVAL (NULL), MR_ESHAPE (other shapes, a side
 * over 32768, or (W * C + 1) * H over 2^29 bytes: the PNG writer, stb_image_write,
 * sizes its buffers in int), MR_EIO (cannot create or write the file). */
int mr_image_write_png(const char *path, const mr_tensor *img);

/* Writes 8-bit pixels as a PNG: pixels holds height rows of width pixels of
 * `channels` interleaved bytes (HWC; 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA),
 * no row padding. Borrowed; not kept.
 * Errors: MR_EINVAL (NULL, channels outside 1..4, a side outside 1..32768,
 * (width * channels + 1) * height over 2^29 bytes, as mr_image_write_png),
 * MR_EIO (cannot create or write the file). */
int mr_png_write_rgb8(const char *path, const uint8_t *pixels, int width, int height,
                      int channels);

/* -------------------------------------------------------------- training */

/* Cross-entropy of class scores, as PyTorch's nn.CrossEntropyLoss with mean
 * reduction and label_smoothing e in [0, 1]: with p = softmax(z_n) and the
 * target q_n = (1 - e) onehot(labels[n]) + e / K,
 *   loss = (1/N) sum_n sum_k q_nk (logsumexp(z_n) - z_nk)
 *   grad_logits = (p - q) / N
 * logits: (N, K); labels: N class ids in [0, K); loss (may be NULL)
 * receives the mean; grad_logits (may be NULL) is overwritten, same numel as
 * logits. Log-sum-exp is stabilized by the row maximum; sums run in double.
 * Errors: MR_EINVAL (NULL logits or labels, a label outside 0..K-1 naming the
 * item, e outside [0, 1], "loss is NaN" when a logit is NaN or infinite),
 * MR_ESHAPE (logits not 2-D, grad_logits of another size). */
int mr_cross_entropy(float *loss, mr_tensor *grad_logits, const mr_tensor *logits,
                     const int32_t *labels, float label_smoothing);

/* Number of items whose top-1 class (the first of tied maxima, as torch.argmax)
 * equals its label. logits (N, K), labels N ids in [0, K). Errors as
 * mr_cross_entropy. */
int mr_accuracy_count(int64_t *correct, const mr_tensor *logits, const int32_t *labels);

/* An optimizer over the trained weights (MR_PARAM_WEIGHT parameters; buffers
 * are never touched) of a network, as torch.optim, reading the gradients of
 * mr_net_param_grad_get:
 *   MR_OPTIM_SGD   momentum mu in [0, 1), dampening 0, L2 weight decay wd:
 *                  d = g + wd w;  b = d (first step) or mu b + d;
 *                  w -= lr (d + mu b) with nesterov, lr b without (lr d if mu = 0)
 *   MR_OPTIM_ADAM  beta1, beta2 in [0, 1), eps 1e-8, L2 weight decay wd:
 *                  d = g + wd w;  m = b1 m + (1 - b1) d;  v = b2 v + (1 - b2) d^2;
 *                  w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * The state (momentum buffers, moments) is allocated by mr_optim_new, zeroed;
 * steps allocate nothing. The optimizer borrows net, which must outlive it.
 * Gradients are not zeroed by a step: call mr_net_zero_grad before each backward. */
typedef struct mr_optim mr_optim;
enum { MR_OPTIM_SGD = 0, MR_OPTIM_ADAM = 1 };

/* momentum_or_beta1: SGD momentum or Adam beta1; beta2: Adam only (ignored by
 * SGD); nesterov: SGD only. Caller frees with mr_optim_free.
 * Errors: MR_EINVAL (NULL, unknown kind, lr or weight_decay negative or not
 * finite, momentum / betas outside [0, 1), nesterov without momentum or with
 * Adam, a network without weights), MR_ENOMEM. */
int mr_optim_new(mr_optim **out, mr_net *net, int kind, float lr, float momentum_or_beta1,
                 float beta2, float weight_decay, int nesterov);
/* One update of every weight from its gradient. Refuses the whole step, changing
 * nothing, if any gradient entry is NaN or infinite (MR_EINVAL naming the
 * parameter and entry); MR_ESTATE if parameters were added to the net since;
 * MR_EINTR, changing nothing, while an interrupt is pending. */
int mr_optim_step(mr_optim *o);
/* Sets the learning rate of the next steps (schedules call it before each step).
 * Errors: MR_EINVAL (NULL, negative or not finite). */
int mr_optim_set_lr(mr_optim *o, float lr);
/* The current learning rate; 0 for NULL. */
float mr_optim_get_lr(const mr_optim *o);
/* Number of steps taken so far; 0 for NULL. */
int64_t mr_optim_steps(const mr_optim *o);
void mr_optim_free(mr_optim *o);

/* MR_CDEF_END */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* MOREAU_H */
