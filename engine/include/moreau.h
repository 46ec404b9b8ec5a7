/*
 * moreau.h — the one public header of the moreau engine.
 *
 * This file is the manual. Every declaration says the shapes it expects, who
 * owns what it returns, and how it fails. The Lua bindings read the block
 * between MR_CDEF_BEGIN and MR_CDEF_END verbatim into ffi.cdef, so that block
 * holds plain C declarations only: no macros, no #if, no inline code.
 *
 * Conventions (see CONVENTIONS.md):
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
    MR_ESTATE = -7     /* called in the wrong order (e.g. backward before forward) */
};

/* The message of the last failed call on this thread ("" if none). Borrowed;
 * valid until the next failing call on the same thread. */
const char *mr_last_error(void);
/* Clears the message. */
void mr_clear_error(void);

/* The library version, "MAJOR.MINOR.PATCH". Static string. */
const char *mr_version(void);

/* Number of engine heap allocations made so far in this process (all threads).
 * Tests use it to show that solver loops allocate nothing. */
int64_t mr_alloc_count(void);

/* ------------------------------------------------------------- threading */

/* Sets the number of threads used by the engine's parallel loops and by BLAS.
 * n <= 0 means "all cores". Results are bit-identical for every n. */
int mr_set_num_threads(int n);
int mr_get_num_threads(void);
/* A one-line description of the backend and BLAS ("cpu: OpenBLAS 0.3.21 ..."). Static. */
const char *mr_backend_info(void);

/* ---------------------------------------------------------------- tensors */

enum { MR_MAX_DIMS = 4 };
enum { MR_DEVICE_CPU = 0, MR_DEVICE_CUDA = 1 };

/* A dense float32 tensor. Fields are read-only for users: create, reshape and
 * free it through the functions below. Unused trailing dims of shape are 1. */
typedef struct mr_tensor {
    float *data;        /* numel floats, 64-byte aligned when owned */
    int64_t shape[4];   /* dims outermost first */
    int64_t numel;      /* product of the first ndim dims */
    int32_t ndim;       /* 1..4 */
    int32_t device;     /* MR_DEVICE_* */
    int32_t owns_data;  /* 1: data is freed with the tensor */
    int32_t reserved;
} mr_tensor;

/* A new zero-filled tensor of the given shape (ndim 1..4, every dim >= 1).
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

/* -------------------------------------------------------------------- RNG */

/* Counter-based random numbers: Philox-4x32-10 keyed by seed, with counter
 * (block index, stream). Value number k of (seed, stream) depends on nothing
 * else: not on the thread count, not on how the request is split. Normals use
 * Box-Muller on pairs of uniforms. */

/* out[j] = value number (offset + j) of stream (seed, stream), uniform in (0, 1). */
int mr_rng_uniform(float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset);
/* out[j] = mean + std * value number (offset + j) of the standard normal stream (seed, stream). */
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
    float beta;           /* softplus beta (0 means 1) */
    float threshold;      /* softplus threshold (0 means 20) */
    float eps;            /* batchnorm eps (0 means 1e-5) */
    float momentum;       /* batchnorm momentum (0 means 0.1) */
    float p;              /* dropout probability (identity at inference) */
} mr_op_attrs;

enum { MR_PARAM_WEIGHT = 0, MR_PARAM_BUFFER = 1 };

int mr_net_new(mr_net **out);
void mr_net_free(mr_net *net);

/* Declares the input: the shape of one sample (ndim 1..3, e.g. {3, 32, 32}).
 * Returns the input's node id (>= 0) or a negative error. Once per network. */
int mr_net_input(mr_net *net, int ndim, const int64_t *sample_shape);

/* Adds a parameter (kind MR_PARAM_WEIGHT: trained; MR_PARAM_BUFFER: state such
 * as batchnorm running statistics) named as in a PyTorch state_dict, zero-filled.
 * Returns its id (>= 0) or a negative error (duplicate name, bad shape). */
int mr_net_param(mr_net *net, const char *name, int ndim, const int64_t *shape, int kind);

/* Adds a node applying op `op_name` (see mr_op_names) to the outputs of nodes
 * inputs[0..ninputs) with parameters params[0..nparams) (ids from mr_net_param,
 * in the order the op documents). Checks and infers shapes now. Returns the new
 * node's id or a negative error naming the op, label and shapes involved.
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
int mr_net_param_count(const mr_net *net);
const char *mr_net_param_name(const mr_net *net, int param);
int mr_net_param_kind(const mr_net *net, int param);
int mr_net_param_find(const mr_net *net, const char *name);   /* id, or MR_ENOTFOUND */
mr_tensor *mr_net_param_get(mr_net *net, int param);          /* borrowed; NULL if out of range */
mr_tensor *mr_net_param_grad_get(mr_net *net, int param);     /* borrowed; NULL for buffers */
/* Sets every parameter gradient to 0. */
int mr_net_zero_grad(mr_net *net);

/* Training mode changes batchnorm (batch statistics, running-stat updates) and
 * dropout. Default: inference. */
int mr_net_set_training(mr_net *net, int training);
/* Seed of the dropout masks in training mode (stream = node id, counter = call count). */
int mr_net_set_seed(mr_net *net, uint64_t seed);

/* Bytes of workspace currently held (activations, gradients, tangents, scratch). */
int64_t mr_net_workspace_bytes(const mr_net *net);

/* Forward pass of x (N, sample shape...). y receives the output (N, out shape...);
 * y may be NULL (use mr_net_output_get). */
int mr_net_forward(mr_net *net, const mr_tensor *x, mr_tensor *y);
/* The output of the last forward, borrowed (valid until the next call on net). */
mr_tensor *mr_net_output_get(mr_net *net);

/* Reverse pass after mr_net_forward: gx = J^T gy (gy shaped like the output, gx
 * like the input; gx may be NULL). With param_grads != 0, parameter gradients
 * are accumulated (+=) into the tensors of mr_net_param_grad_get. */
int mr_net_backward(mr_net *net, const mr_tensor *gy, mr_tensor *gx, int param_grads);

/* Forward pass with a tangent: y = F(x), dy = J(x) v. y or dy may be NULL. */
int mr_net_jvp(mr_net *net, const mr_tensor *x, const mr_tensor *v, mr_tensor *y, mr_tensor *dy);

/* Reverse pass after mr_net_jvp (forward-over-reverse): gx = J(x)^T gy and
 * dgx = d/de [ J(x + e v)^T (gy + e dgy) ] at e = 0, exactly. dgy may be NULL
 * (zero). Either output may be NULL. */
int mr_net_hvp_backward(mr_net *net, const mr_tensor *gy, const mr_tensor *dgy,
                        mr_tensor *gx, mr_tensor *dgx);

/* -------------------------------------------------------- gradient oracle */

/* The score of class c of item n of the network's output z (N, K):
 *   MR_SCORE_LOGIT        z[n, c]
 *   MR_SCORE_LOG_SOFTMAX  z[n, c] - logsumexp(z[n, :])
 *   MR_SCORE_SOFTMAX      exp of the above */
enum { MR_SCORE_LOGIT = 0, MR_SCORE_LOG_SOFTMAX = 1, MR_SCORE_SOFTMAX = 2 };

/* One forward + one reverse pass: scores[n] = f_{labels[n]}(x[n]) and
 * grad = d scores / d x (shaped like x). scores (N floats) or grad may be NULL.
 * labels: N class ids in [0, K). Fails on NaN/inf in x. */
int mr_oracle_grad(mr_net *net, const mr_tensor *x, const int32_t *labels, int score_kind,
                   float *scores, mr_tensor *grad);

/* Exact Hessian-vector product by forward-over-reverse:
 * hv[n] = (d^2 f_{labels[n]} / dx^2)(x[n]) v[n]. scores and grad, when not NULL,
 * receive what mr_oracle_grad would. */
int mr_oracle_hvp(mr_net *net, const mr_tensor *x, const int32_t *labels, int score_kind,
                  const mr_tensor *v, float *scores, mr_tensor *grad, mr_tensor *hv);

/* ----------------------------------------------------------- safetensors */

/* A safetensors file held in memory: the header is parsed and every entry's
 * dtype, shape and offsets are checked against the file size before any data
 * is touched. Only F32 (and F64/F16/BF16, converted to float32 on read) are
 * accepted as tensors. */
typedef struct mr_safetensors mr_safetensors;

int mr_safetensors_load(mr_safetensors **out, const char *path);
void mr_safetensors_free(mr_safetensors *st);
int mr_safetensors_count(const mr_safetensors *st);
const char *mr_safetensors_name(const mr_safetensors *st, int i);    /* borrowed */
/* Index of the tensor named `name`, or MR_ENOTFOUND. */
int mr_safetensors_find(const mr_safetensors *st, const char *name);
/* Shape of tensor i: writes ndim (0..4; a scalar has ndim 0) and shape. */
int mr_safetensors_shape(const mr_safetensors *st, int i, int *ndim, int64_t *shape);
/* A new float32 tensor with a copy of tensor i (a scalar becomes shape {1}). */
int mr_safetensors_get(mr_tensor **out, const mr_safetensors *st, int i);
/* The "__metadata__" object of the header as JSON text ("{}" if none). Borrowed. */
const char *mr_safetensors_metadata(const mr_safetensors *st);

/* Writes n float32 tensors with the given names (sorted by name in the file,
 * as the reference writer does) and an optional metadata JSON object of string
 * values (may be NULL). */
int mr_safetensors_save(const char *path, int n, const char *const *names,
                        const mr_tensor *const *tensors, const char *metadata_json);

/* Loads every parameter of net from a safetensors file by name. Every parameter
 * must be present with the same shape; with strict != 0 the file may not hold
 * tensors the net lacks (PyTorch's num_batches_tracked is always ignored). */
int mr_net_load(mr_net *net, const char *path, int strict);
/* Saves every parameter (weights and buffers) of net by name. */
int mr_net_save(const mr_net *net, const char *path, const char *metadata_json);

/* MR_CDEF_END */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* MOREAU_H */
