/*
 * onnx_graph.h — what the ONNX reader's mapping files share: the values of
 * the graph being mapped, where the batch axis N lies in each, and the
 * helpers every mapping uses. The files:
 *   onnx.c        mr_net_from_onnx: the graph checked as a whole and walked in
 *                 topological order; the value table, messages, attributes,
 *                 inputs and outputs, parameters (the helpers below)
 *   onnx_ops.c    the ops that compute (Conv, Gemm, MatMul, pooling,
 *                 normalizations, activations, arithmetic) and the dispatch
 *   onnx_shape.c  the ops that move or select entries (Flatten, Reshape,
 *                 Squeeze, Unsqueeze, Transpose, Concat, Expand, Gather, Slice)
 *   onnx_fold.c   constants and shapes folded when the graph is read, the
 *                 batch axis kept symbolic
 *   onnx_read.c   the file, protobuf-c, tensors and external data (onnx.h)
 */
#ifndef MR_ONNX_GRAPH_H
#define MR_ONNX_GRAPH_H

#include "onnx.h"
#include "../ops/op.h"

#include <string.h>

enum { V_NONE, V_NODE, V_CONST };

/* Where the batch axis N lies in a computed value as ONNX sees it: the value
 * has ONNX rank `rank`, and its axis bx has size o·N·m: for item n, index
 * u·N·m + n·m + j of that axis is per-sample index (u, j). The per-sample
 * shape is the ONNX shape with axis bx replaced by o and m (each left out
 * when 1), in order, so that the per-sample row-major order is ONNX's with n
 * fixed. Standard: bx = 0, o = m = 1 (the per-sample shape is ONNX's without
 * its first dim), as the graph input and every op needing N first. */
typedef struct ox_layout {
    int rank, bx;
    int64_t o, m;
} ox_layout;

typedef struct ox_value {
    const char *name;
    int kind;        /* V_NONE until produced */
    int node;        /* V_NODE: the engine node */
    mr_shape shape;  /* V_NODE: per-sample shape */
    ox_layout lay;   /* V_NODE: where N lies */
    ox_const *c;     /* V_CONST (owned by the value that created it, see own) */
    int own;         /* 1: free c with this value */
    int producer;    /* the ONNX node producing it; -1 for initializers and the input */
    const Onnx__TensorProto *init; /* an initializer, materialized on first use */
    int consumers;   /* ONNX nodes reading it (twice by one node counts twice) */
    int consumer;    /* the last of them */
    int is_output;   /* the graph output */
} ox_value;

typedef struct ox_ctx {
    ox_model m;
    const mr_onnx_options *opts;
    mr_net *net;
    Onnx__GraphProto *g;
    ox_value *vals;
    int nvals;
    int *table; /* open addressing over vals by name; size tcap (a power of 2), -1: empty */
    int tcap;
    int *done;  /* ONNX node i mapped (or folded into a pattern) */
    int nparams_made;
    /* concat chains built so far: the node concatenating values vals[0..n)
     * along axis, so that DenseNet's growing Concats reuse their prefix */
    struct ox_chain {
        int *vals, n, axis, node;
    } *chains;
    int nchains, chain_cap;
    int pattern_missed; /* map_mul: a constant factor outside the softplus pattern */
    int batch_one;      /* the graph input's batch axis is the fixed size 1, not symbolic */
} ox_ctx;

/* ------------------------------------------------- small helpers */

static inline const char *ox_node_name(const Onnx__NodeProto *n) { return n->name && *n->name ? n->name : "(unnamed)"; }

static inline ox_layout ox_lay_std(int ps_ndim)
{
    ox_layout l = {ps_ndim + 1, 0, 1, 1};
    return l;
}

static inline int ox_lay_is_std(const ox_layout *l) { return l->bx == 0 && l->o == 1 && l->m == 1; }

static inline int ox_lay_eq(const ox_layout *a, const ox_layout *b)
{
    return a->rank == b->rank && a->bx == b->bx && a->o == b->o && a->m == b->m;
}

/* Per-sample dims of ONNX axis bx (0, 1 or 2: o and m when > 1). */
static inline int ox_lay_group(const ox_layout *l) { return (l->o > 1) + (l->m > 1); }

/* The per-sample axis of ONNX axis a (a != bx). */
static inline int ox_lay_ps_axis(const ox_layout *l, int a) { return a < l->bx ? a : a - 1 + ox_lay_group(l); }

/* ONNX axis a of value v (negative: from the end) as a per-sample axis; -1
 * for the axis holding N, or out of range. */
static inline int ox_value_axis(const ox_value *v, int64_t a)
{
    if (a < 0)
        a += v->lay.rank;
    if (a < 0 || a >= v->lay.rank || a == v->lay.bx)
        return -1;
    return ox_lay_ps_axis(&v->lay, (int)a);
}

/* The ONNX dims of value v: dims[a], or coef[a]·N for the axis holding N
 * (coef 0 elsewhere). */
static inline void ox_value_dims(const ox_value *v, int64_t *dims, int64_t *coef)
{
    for (int a = 0; a < v->lay.rank; a++) {
        coef[a] = a == v->lay.bx ? v->lay.o * v->lay.m : 0;
        int pa = a == v->lay.bx ? -1 : ox_lay_ps_axis(&v->lay, a);
        dims[a] = pa >= 0 && pa < 3 ? v->shape.d[pa] : 0;
    }
}

static inline int ox_ninputs(const Onnx__NodeProto *n)
{
    int k = (int)n->n_input;
    while (k > 0 && !*n->input[k - 1]) /* trailing optional inputs may be "" */
        k--;
    return k;
}

static inline int ox_op_is(const Onnx__NodeProto *n, const char *op) { return n->op_type && !strcmp(n->op_type, op); }

/* ------------------------------------------- onnx.c: shared helpers */

/* The value named `name`, or -1. */
int ox_find_value(const ox_ctx *x, const char *name);
/* "onnx: FILE: node 'NAME' (#I, OP): " then the message; returns code. */
int ox_node_error(ox_ctx *x, int i, int code, const char *fmt, ...) MR_PRINTF(4, 5);
/* A tensor a node holds as an attribute (Constant's and ConstantOfShape's
 * value), read as ox_const_from_tensor does; an error names the node too. */
int ox_node_const(ox_ctx *x, int i, ox_const **out, const Onnx__TensorProto *t, int as_int);
const Onnx__AttributeProto *ox_attr(const Onnx__NodeProto *n, const char *name);
int ox_check_attrs(ox_ctx *x, int i, const char *const *known);
int ox_attr_int(ox_ctx *x, int i, const char *name, int64_t dflt, int64_t *out);
int ox_attr_float(ox_ctx *x, int i, const char *name, float dflt, float *out);
int ox_attr_ints(ox_ctx *x, int i, const char *name, int want, int64_t *out, int *n);
int ox_attr_string_is(ox_ctx *x, int i, const char *name, const char *const *allowed);
const char *ox_sym_dims_str(int n, const int64_t *dims, const int64_t *coef, char *buf, size_t len);
const char *ox_value_dims_str(const ox_value *v, char *buf, size_t len);
ox_value *ox_input_value(ox_ctx *x, int i, int k);
int ox_materialize(ox_ctx *x, ox_value *v);
int ox_in_node_any(ox_ctx *x, int i, int k, ox_value **out);
int ox_in_node(ox_ctx *x, int i, int k, ox_value **out);
int ox_sym_error(ox_ctx *x, int i, int k, const char *name);
int ox_in_const(ox_ctx *x, int i, int k, int optional, ox_const **out);
int ox_in_ints_any(ox_ctx *x, int i, int k, int optional, ox_const **out);
int ox_in_ints(ox_ctx *x, int i, int k, int optional, ox_const **out);
int ox_set_node_output_lay(ox_ctx *x, int i, int k, int node, const ox_layout *lay);
int ox_set_node_output(ox_ctx *x, int i, int k, int node);
void ox_alias_output(ox_ctx *x, int i, const ox_value *src);
int ox_only_first_output(ox_ctx *x, int i);
int ox_make_param(ox_ctx *x, const char *name, int ndim, const int64_t *dims, const float *data, int kind,
                  int *id);
int ox_const_param(ox_ctx *x, int i, ox_const *c, int kind, int *id);
int ox_add_node(ox_ctx *x, int i, const char *op, const int *in, int nin, const int *params, int np,
                const mr_op_attrs *a);
int ox_axes_of(ox_ctx *x, int i, int64_t opset_input, int64_t *axes, int *n);

/* ----------------------------------------------- the mapping files */

/* onnx_ops.c: maps ONNX node i (folding it first where its inputs are
 * constants); a `constant` node holding c broadcast against a value of
 * per-sample shape s with N where lay says. */
int ox_map_node(ox_ctx *x, int i);
int ox_const_node(ox_ctx *x, int i, const ox_const *c, const mr_shape *s, const ox_layout *lay, int gate,
                  float scale, int *node);
/* onnx_shape.c */
int ox_map_flatten(ox_ctx *x, int i);
int ox_map_reshape(ox_ctx *x, int i);
int ox_map_squeeze(ox_ctx *x, int i, int unsqueeze);
int ox_map_transpose(ox_ctx *x, int i);
int ox_map_concat(ox_ctx *x, int i);
int ox_map_expand(ox_ctx *x, int i);
int ox_map_gather(ox_ctx *x, int i);
int ox_map_slice(ox_ctx *x, int i);
/* onnx_fold.c: node i evaluated when its inputs are constants (*folded = 1),
 * else left to the mapping (*folded = 0). */
int ox_fold_node(ox_ctx *x, int i, int *folded);

#endif
