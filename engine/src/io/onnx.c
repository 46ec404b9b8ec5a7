/*
 * onnx.c — mr_net_from_onnx: an ONNX graph mapped onto the engine's ops
 * (docs/models.md, "ONNX import"; the operator semantics are those of the
 * ONNX operator specification, https://onnx.ai/onnx/operators/).
 *
 * The graph is checked as a whole before any op is mapped: one float32
 * graph input whose first (batch) axis is symbolic or 1, one output; every
 * value produced once; every node input produced by a node, an initializer
 * or the graph input (else "dangling"); the nodes sorted topologically
 * (Kahn's algorithm; a node left over lies on a cycle). Only the nodes the
 * output depends on are mapped, in that order, so the output node is the
 * last one built.
 *
 * Values are either engine nodes, whose shapes are per sample (the batch
 * axis N implicit, as everywhere in the engine), or constants (initializers,
 * Constant nodes, and what the reader folds from them). Parameters are the
 * initializers, named as in the file; where the mapping rewrites one (Gemm's
 * transB and alpha, a MatMul's weight, which the engine stores as (out, in))
 * the rewritten copy keeps the name.
 *
 * Where N lies (ox_layout): exporters write attention over (L, N, E) and
 * merge N with the heads, (L, N*H, d), or with the tokens, (L*N, E). Each
 * computed value records the ONNX axis holding N and what that axis merges
 * N with, so that a Transpose that moves N is no op at all, a Reshape that
 * keeps N's place in the row-major order is a per-sample reshape, and an op
 * over other axes is the per-sample op over the matching axis. An op that
 * would mix N with the other dims (a Flatten at axis 0, a Reshape that moves
 * N in the row-major order, a product or a softmax over N) is refused,
 * naming the node; the ops that need N first (Conv, pooling, ...) say so.
 *
 * Shapes that count N (PyTorch's dynamic batch axis: Shape -> Gather ->
 * Unsqueeze -> Concat -> Reshape, Expand of the class token) are folded when
 * the graph is read, N kept symbolic: an int64 entry k·N (ox_const.nsym)
 * goes through Shape, Gather, Slice, Concat, (Un)Squeeze, Reshape,
 * Transpose, Cast, Identity, Where, and through Mul, Div, Add, Sub, Equal
 * where the result is exact for every N >= 1 (k·N·c, k·N / c with c | k,
 * k·N + 0, k·N = c false for c < k); anything else on it is refused.
 *
 * Patterns exporters split:
 *   softplus(beta): PyTorch exports F.softplus(x, beta) as
 *     Div(Softplus(Mul(x, beta)), beta) = log(1 + e^(beta x)) / beta,
 *     mapped to one softplus node with that beta;
 *   Linear as MatMul(x, W) then Add(., b) (no Gemm): one linear node.
 */
#include "onnx.h"
#include "../ops/op.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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
} ox_ctx;

/* ----------------------------------------------------------- value table */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int find_value(const ox_ctx *x, const char *name)
{
    for (uint64_t h = hash_str(name) & (uint64_t)(x->tcap - 1);; h = (h + 1) & (uint64_t)(x->tcap - 1)) {
        int v = x->table[h];
        if (v < 0 || !strcmp(x->vals[v].name, name))
            return v;
    }
}

/* The value named `name`, added if new; its index. */
static int add_value(ox_ctx *x, const char *name)
{
    uint64_t h = hash_str(name) & (uint64_t)(x->tcap - 1);
    while (x->table[h] >= 0) {
        if (!strcmp(x->vals[x->table[h]].name, name))
            return x->table[h];
        h = (h + 1) & (uint64_t)(x->tcap - 1);
    }
    int v = x->nvals++;
    memset(&x->vals[v], 0, sizeof x->vals[v]);
    x->vals[v].name = name;
    x->vals[v].producer = -1;
    x->vals[v].consumer = -1;
    x->table[h] = v;
    return v;
}

/* ------------------------------------------------------------ messages */

static const char *node_name(const Onnx__NodeProto *n) { return n->name && *n->name ? n->name : "(unnamed)"; }

/* "onnx: FILE: node 'NAME' (#I, OP): " then the message. */
static int node_error(ox_ctx *x, int i, int code, const char *fmt, ...) MR_PRINTF(4, 5);
static int node_error(ox_ctx *x, int i, int code, const char *fmt, ...)
{
    const Onnx__NodeProto *n = x->g->node[i];
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mr_error(code, "onnx: %s: node '%s' (#%d, %s): %s", x->m.path, node_name(n), i,
                    n->op_type ? n->op_type : "?", msg);
}

/* ----------------------------------------------------------- attributes */

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name)
{
    for (size_t k = 0; k < n->n_attribute; k++)
        if (n->attribute[k]->name && !strcmp(n->attribute[k]->name, name))
            return n->attribute[k];
    return NULL;
}

/* Refuses any attribute not in the NULL-terminated list `known`. */
static int check_attrs(ox_ctx *x, int i, const char *const *known)
{
    const Onnx__NodeProto *n = x->g->node[i];
    for (size_t k = 0; k < n->n_attribute; k++) {
        const char *name = n->attribute[k]->name ? n->attribute[k]->name : "";
        int ok = 0;
        for (const char *const *p = known; *p && !ok; p++)
            ok = !strcmp(*p, name);
        if (!ok)
            return node_error(x, i, MR_ENOTFOUND, "attribute '%s' is not supported", name);
    }
    return MR_OK;
}

static int attr_int(ox_ctx *x, int i, const char *name, int64_t dflt, int64_t *out)
{
    const Onnx__AttributeProto *a = attr(x->g->node[i], name);
    *out = dflt;
    if (!a)
        return MR_OK;
    if (!a->has_i || (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT))
        return node_error(x, i, MR_EFORMAT, "attribute '%s' must be an integer", name);
    *out = a->i;
    return MR_OK;
}

static int attr_float(ox_ctx *x, int i, const char *name, float dflt, float *out)
{
    const Onnx__AttributeProto *a = attr(x->g->node[i], name);
    *out = dflt;
    if (!a)
        return MR_OK;
    if (!a->has_f || (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT))
        return node_error(x, i, MR_EFORMAT, "attribute '%s' must be a float", name);
    *out = a->f;
    return MR_OK;
}

/* An INTS attribute of exactly `want` entries (or absent: *n = 0). */
static int attr_ints(ox_ctx *x, int i, const char *name, int want, int64_t *out, int *n)
{
    const Onnx__AttributeProto *a = attr(x->g->node[i], name);
    *n = 0;
    if (!a)
        return MR_OK;
    if ((int64_t)a->n_ints != want)
        return node_error(x, i, MR_ENOTFOUND, "attribute '%s' has %zu entries; moreau maps 2-D ops (%d)", name,
                          a->n_ints, want);
    for (int k = 0; k < want; k++)
        out[k] = a->ints[k];
    *n = want;
    return MR_OK;
}

static int attr_string_is(ox_ctx *x, int i, const char *name, const char *const *allowed)
{
    const Onnx__AttributeProto *a = attr(x->g->node[i], name);
    if (!a)
        return MR_OK;
    char s[64] = "";
    if (a->has_s)
        snprintf(s, sizeof s, "%.*s", (int)MR_MIN(a->s.len, 60), (const char *)a->s.data);
    for (const char *const *p = allowed; *p; p++)
        if (!strcmp(s, *p))
            return MR_OK;
    return node_error(x, i, MR_ENOTFOUND, "attribute '%s' = '%s' is not supported", name, s);
}

/* --------------------------------------------------------- layouts */

static ox_layout lay_std(int ps_ndim)
{
    ox_layout l = {ps_ndim + 1, 0, 1, 1};
    return l;
}

static int lay_is_std(const ox_layout *l) { return l->bx == 0 && l->o == 1 && l->m == 1; }

static int lay_eq(const ox_layout *a, const ox_layout *b)
{
    return a->rank == b->rank && a->bx == b->bx && a->o == b->o && a->m == b->m;
}

/* Per-sample dims of ONNX axis bx (0, 1 or 2: o and m when > 1). */
static int lay_group(const ox_layout *l) { return (l->o > 1) + (l->m > 1); }

/* The per-sample axis of ONNX axis a (a != bx). */
static int lay_ps_axis(const ox_layout *l, int a) { return a < l->bx ? a : a - 1 + lay_group(l); }

/* ONNX axis a of value v (negative: from the end) as a per-sample axis; -1
 * for the axis holding N, or out of range. */
static int value_axis(const ox_value *v, int64_t a)
{
    if (a < 0)
        a += v->lay.rank;
    if (a < 0 || a >= v->lay.rank || a == v->lay.bx)
        return -1;
    return lay_ps_axis(&v->lay, (int)a);
}

/* The ONNX dims of value v: dims[a], or coef[a]·N for the axis holding N
 * (coef 0 elsewhere). */
static void value_dims(const ox_value *v, int64_t *dims, int64_t *coef)
{
    for (int a = 0; a < v->lay.rank; a++) {
        coef[a] = a == v->lay.bx ? v->lay.o * v->lay.m : 0;
        int pa = a == v->lay.bx ? -1 : lay_ps_axis(&v->lay, a);
        dims[a] = pa >= 0 && pa < 3 ? v->shape.d[pa] : 0;
    }
}

/* ONNX dims with N: "Nx3x4", "5x(N*2)x16", "(5*N)x32". */
static const char *sym_dims_str(int n, const int64_t *dims, const int64_t *coef, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = 0;
    if (n == 0)
        snprintf(buf, len, "a scalar");
    for (int a = 0; a < n && k < len; a++) {
        const char *sep = a ? "x" : "";
        if (coef && coef[a] == 1)
            k += (size_t)snprintf(buf + k, len - k, "%sN", sep);
        else if (coef && coef[a] > 1)
            k += (size_t)snprintf(buf + k, len - k, "%s(%lld*N)", sep, (long long)coef[a]);
        else
            k += (size_t)snprintf(buf + k, len - k, "%s%lld", sep, (long long)dims[a]);
    }
    return buf;
}

/* Value v's ONNX dims, the merge of N spelled out: "5x(N*2)x16". */
static const char *value_dims_str(const ox_value *v, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = 0;
    for (int a = 0; a < v->lay.rank && k < len; a++) {
        const char *sep = a ? "x" : "";
        if (a != v->lay.bx)
            k += (size_t)snprintf(buf + k, len - k, "%s%lld", sep, (long long)v->shape.d[lay_ps_axis(&v->lay, a)]);
        else if (v->lay.o > 1 && v->lay.m > 1)
            k += (size_t)snprintf(buf + k, len - k, "%s(%lld*N*%lld)", sep, (long long)v->lay.o, (long long)v->lay.m);
        else if (v->lay.o > 1)
            k += (size_t)snprintf(buf + k, len - k, "%s(%lld*N)", sep, (long long)v->lay.o);
        else if (v->lay.m > 1)
            k += (size_t)snprintf(buf + k, len - k, "%s(N*%lld)", sep, (long long)v->lay.m);
        else
            k += (size_t)snprintf(buf + k, len - k, "%sN", sep);
    }
    return buf;
}

/* ------------------------------------------------------ inputs, outputs */

static int ninputs(const Onnx__NodeProto *n)
{
    int k = (int)n->n_input;
    while (k > 0 && !*n->input[k - 1]) /* trailing optional inputs may be "" */
        k--;
    return k;
}

static ox_value *input_value(ox_ctx *x, int i, int k)
{
    const Onnx__NodeProto *n = x->g->node[i];
    if (k >= (int)n->n_input || !*n->input[k])
        return NULL;
    return &x->vals[find_value(x, n->input[k])];
}

static int materialize(ox_ctx *x, ox_value *v)
{
    if (v->kind == V_NONE && v->init) {
        MR_TRY(ox_const_from_tensor(&v->c, &x->m, v->init, 0));
        v->kind = V_CONST;
        v->own = 1;
    }
    return MR_OK;
}

/* Input k as an engine node, N anywhere (ops that follow the layout). */
static int in_node_any(ox_ctx *x, int i, int k, ox_value **out)
{
    ox_value *v = input_value(x, i, k);
    if (!v)
        return node_error(x, i, MR_EFORMAT, "input %d is missing", k);
    if (v->kind != V_NODE)
        return node_error(x, i, MR_ENOTFOUND,
                          "input %d ('%s') is a constant; moreau maps this op on values computed from the "
                          "graph input",
                          k, v->name);
    *out = v;
    return MR_OK;
}

/* Input k as an engine node with N first (the standard layout). */
static int in_node(ox_ctx *x, int i, int k, ox_value **out)
{
    MR_TRY(in_node_any(x, i, k, out));
    if (!lay_is_std(&(*out)->lay)) {
        char ds[160];
        return node_error(x, i, MR_ENOTFOUND,
                          "input %d ('%s') is %s: the batch axis N is not its first dim alone; moreau maps this "
                          "op with N first",
                          k, (*out)->name, value_dims_str(*out, ds, sizeof ds));
    }
    return MR_OK;
}

/* The refusal of a constant that counts N where a number is needed. */
static int sym_error(ox_ctx *x, int i, int k, const char *name)
{
    return node_error(x, i, MR_ENOTFOUND,
                      "input %d ('%s') counts the batch axis N (a shape taken from a computed value); moreau "
                      "needs a number known when the graph is read",
                      k, name);
}

/* Input k as a float constant (NULL if absent and optional). */
static int in_const(ox_ctx *x, int i, int k, int optional, ox_const **out)
{
    ox_value *v = input_value(x, i, k);
    *out = NULL;
    if (!v) {
        if (optional)
            return MR_OK;
        return node_error(x, i, MR_EFORMAT, "input %d is missing", k);
    }
    MR_TRY(materialize(x, v));
    if (v->kind != V_CONST)
        return node_error(x, i, MR_ENOTFOUND, "input %d ('%s') must be a constant (an initializer)", k,
                          v->name);
    if (v->c->nsym)
        return sym_error(x, i, k, v->name);
    if (!v->c->f) {
        /* an integer constant used as floats: convert once */
        float *f = calloc((size_t)(v->c->numel ? v->c->numel : 1), sizeof *f);
        if (!f)
            return mr_error(MR_ENOMEM, "onnx: out of memory");
        for (int64_t j = 0; j < v->c->numel; j++)
            f[j] = (float)v->c->i[j];
        v->c->f = f;
    }
    *out = v->c;
    return MR_OK;
}

/* Input k as an int64 constant, entries counting N allowed (Reshape and
 * Expand targets). */
static int in_ints_any(ox_ctx *x, int i, int k, int optional, ox_const **out)
{
    ox_value *v = input_value(x, i, k);
    *out = NULL;
    if (!v) {
        if (optional)
            return MR_OK;
        return node_error(x, i, MR_EFORMAT, "input %d is missing", k);
    }
    if (v->kind == V_NONE && v->init) {
        MR_TRY(ox_const_from_tensor(&v->c, &x->m, v->init, 1));
        v->kind = V_CONST;
        v->own = 1;
    }
    if (v->kind != V_CONST || !v->c->i)
        return node_error(x, i, MR_ENOTFOUND, "input %d ('%s') must be a constant INT64 tensor", k, v->name);
    *out = v->c;
    return MR_OK;
}

/* Input k as an int64 constant of plain numbers (shapes, axes, pads). */
static int in_ints(ox_ctx *x, int i, int k, int optional, ox_const **out)
{
    MR_TRY(in_ints_any(x, i, k, optional, out));
    if (*out && (*out)->nsym)
        return sym_error(x, i, k, input_value(x, i, k)->name);
    return MR_OK;
}

/* Output k of node i becomes engine node `node`, N where lay says (NULL:
 * first). */
static int set_node_output_lay(ox_ctx *x, int i, int k, int node, const ox_layout *lay)
{
    ox_value *v = &x->vals[find_value(x, x->g->node[i]->output[k])];
    int ndim;
    int64_t s[8];
    MR_TRY(mr_net_node_shape(x->net, node, &ndim, s));
    v->kind = V_NODE;
    v->node = node;
    v->shape.ndim = ndim;
    for (int d = 0; d < ndim; d++)
        v->shape.d[d] = s[d];
    v->lay = lay ? *lay : lay_std(ndim);
    if (v->lay.rank - 1 + lay_group(&v->lay) != ndim) /* a mapping's own mistake, never the file's */
        return node_error(x, i, MR_EINVAL, "internal: layout of rank %d for a per-sample shape of %d dims",
                          v->lay.rank, ndim);
    return MR_OK;
}

static int set_node_output(ox_ctx *x, int i, int k, int node) { return set_node_output_lay(x, i, k, node, NULL); }

static void alias_output(ox_ctx *x, int i, const ox_value *src)
{
    ox_value *v = &x->vals[find_value(x, x->g->node[i]->output[0])];
    v->kind = src->kind;
    v->node = src->node;
    v->shape = src->shape;
    v->lay = src->lay;
    v->c = src->c;
    v->own = 0;
}

/* Outputs past the first must be unused (Dropout's mask, MaxPool's indices,
 * BatchNormalization's training statistics). */
static int only_first_output(ox_ctx *x, int i)
{
    const Onnx__NodeProto *n = x->g->node[i];
    for (size_t k = 1; k < n->n_output; k++) {
        if (!*n->output[k])
            continue;
        ox_value *v = &x->vals[find_value(x, n->output[k])];
        if (v->consumers || v->is_output)
            return node_error(x, i, MR_ENOTFOUND, "output %zu ('%s') is used; moreau maps only the first", k,
                              v->name);
    }
    return MR_OK;
}

/* ------------------------------------------------------------ parameters */

/* An engine parameter named `name` (suffixed "#2", "#3"... if taken) holding
 * a copy of data. */
static int make_param(ox_ctx *x, const char *name, int ndim, const int64_t *dims, const float *data, int kind,
                      int *id)
{
    char nm[512];
    snprintf(nm, sizeof nm, "%s", *name ? name : "param");
    for (int k = 2; mr_net_param_find(x->net, nm) >= 0; k++)
        snprintf(nm, sizeof nm, "%s#%d", *name ? name : "param", k);
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++)
        numel *= dims[d];
    char what[600];
    snprintf(what, sizeof what, "parameter '%s'", nm);
    MR_TRY(ox_charge(&x->m, numel * 4, what));
    int p = mr_net_param(x->net, nm, ndim, dims, kind);
    if (p < 0)
        return p;
    memcpy(mr_net_param_get(x->net, p)->data, data, (size_t)numel * sizeof(float));
    *id = p;
    return MR_OK;
}

/* The parameter holding constant c unchanged (made once, shared by its uses). */
static int const_param(ox_ctx *x, int i, ox_const *c, int kind, int *id)
{
    if (c->param < 0) {
        if (c->ndim < 1 || c->ndim > 4)
            return node_error(x, i, MR_ESHAPE, "constant '%s' has %d dims; a parameter has 1 to 4", c->name,
                              c->ndim);
        MR_TRY(make_param(x, c->name, c->ndim, c->dims, c->f, kind, &c->param));
    }
    *id = c->param;
    return MR_OK;
}

static int add_node(ox_ctx *x, int i, const char *op, const int *in, int nin, const int *params, int np,
                    const mr_op_attrs *a)
{
    char label[96];
    snprintf(label, sizeof label, "%s", node_name(x->g->node[i]));
    int id = mr_net_node(x->net, op, in, nin, params, np, a, label);
    if (id < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", mr_last_error());
        return node_error(x, i, id, "%s", msg);
    }
    return id;
}

/* ------------------------------------------------------------ the ops */

static int scalar_of(const ox_const *c, float *v)
{
    if (!c || c->numel != 1 || c->nsym)
        return 0;
    *v = c->f ? c->f[0] : (float)c->i[0];
    return 1;
}

/* The sole consumer of node i's first output, or -1. */
static int sole_consumer(ox_ctx *x, int i)
{
    const ox_value *v = &x->vals[find_value(x, x->g->node[i]->output[0])];
    return v->consumers == 1 && !v->is_output ? v->consumer : -1;
}

static int op_is(const Onnx__NodeProto *n, const char *op) { return n->op_type && !strcmp(n->op_type, op); }

static int map_conv(ox_ctx *x, int i)
{
    static const char *const known[] = {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad", NULL};
    static const char *const pads_ok[] = {"NOTSET", "VALID", NULL};
    MR_TRY(check_attrs(x, i, known));
    MR_TRY(attr_string_is(x, i, "auto_pad", pads_ok));
    ox_value *xv = NULL;
    ox_const *w, *b;
    MR_TRY(in_node(x, i, 0, &xv));
    MR_TRY(in_const(x, i, 1, 0, &w));
    MR_TRY(in_const(x, i, 2, 1, &b));
    char ds[160];
    if (w->ndim != 4)
        return node_error(x, i, MR_ENOTFOUND, "weight '%s' is %s; moreau maps 2-D convolutions (4-D weights)",
                          w->name, ox_dims_str(w->ndim, w->dims, ds, sizeof ds));
    int64_t ks[2], st[2] = {1, 1}, pd[4] = {0, 0, 0, 0}, dl[2] = {1, 1}, group;
    int n;
    MR_TRY(attr_ints(x, i, "kernel_shape", 2, ks, &n));
    if (n && (ks[0] != w->dims[2] || ks[1] != w->dims[3]))
        return node_error(x, i, MR_ESHAPE, "kernel_shape %lldx%lld does not match weight '%s' (%s)",
                          (long long)ks[0], (long long)ks[1], w->name, ox_dims_str(4, w->dims, ds, sizeof ds));
    MR_TRY(attr_ints(x, i, "strides", 2, st, &n));
    MR_TRY(attr_ints(x, i, "pads", 4, pd, &n));
    MR_TRY(attr_ints(x, i, "dilations", 2, dl, &n));
    MR_TRY(attr_int(x, i, "group", 1, &group));
    if (pd[0] != pd[2] || pd[1] != pd[3])
        return node_error(x, i, MR_ENOTFOUND,
                          "attribute 'pads' = [%lld, %lld, %lld, %lld] is asymmetric; moreau maps equal padding on "
                          "both sides",
                          (long long)pd[0], (long long)pd[1], (long long)pd[2], (long long)pd[3]);
    int64_t vals[] = {st[0], st[1], pd[0], pd[1], dl[0], dl[1], group};
    const char *names[] = {"strides", "strides", "pads", "pads", "dilations", "dilations", "group"};
    for (int k = 0; k < 7; k++)
        if (vals[k] < (k == 2 || k == 3 ? 0 : 1) || vals[k] > 65536)
            return node_error(x, i, MR_EFORMAT, "attribute '%s' has the value %lld", names[k], (long long)vals[k]);
    mr_op_attrs a = {0};
    a.stride[0] = (int32_t)st[0], a.stride[1] = (int32_t)st[1];
    a.padding[0] = (int32_t)pd[0], a.padding[1] = (int32_t)pd[1];
    a.dilation[0] = (int32_t)dl[0], a.dilation[1] = (int32_t)dl[1];
    a.groups = (int32_t)group;
    int p[2], np = 1;
    MR_TRY(const_param(x, i, w, MR_PARAM_WEIGHT, &p[0]));
    if (b) {
        MR_TRY(const_param(x, i, b, MR_PARAM_WEIGHT, &p[1]));
        np = 2;
    }
    int id = add_node(x, i, "conv2d", &xv->node, 1, p, np, &a);
    MR_TRY(id);
    return set_node_output(x, i, 0, id);
}

/* linear: y = x W^T + b from W given as (out, in) or transposed (in, out),
 * scaled by alpha, and a bias c (out) / (1, out) / scalar scaled by beta. */
static int linear_from(ox_ctx *x, int i, ox_value *xv, const ox_const *w, int w_is_in_out, float alpha,
                       const ox_const *c, float beta, int out_node_of)
{
    char ds[160];
    if (w->ndim != 2)
        return node_error(x, i, MR_ESHAPE, "weight '%s' is %s, expected 2-D", w->name,
                          ox_dims_str(w->ndim, w->dims, ds, sizeof ds));
    int64_t fout = w_is_in_out ? w->dims[1] : w->dims[0], fin = w_is_in_out ? w->dims[0] : w->dims[1];
    if (xv->shape.ndim != 1 || xv->shape.d[0] != fin)
        return node_error(x, i, MR_ESHAPE, "input is Nx%s, expected Nx%lld for weight '%s' (%s)",
                          mr_shape_str(&xv->shape, ds, sizeof ds), (long long)fin, w->name,
                          w_is_in_out ? "in x out" : "out x in");
    int64_t wd[2] = {fout, fin};
    float *wt = malloc((size_t)(fout * fin) * sizeof *wt);
    float *bt = c ? malloc((size_t)fout * sizeof *bt) : NULL;
    if (!wt || (c && !bt)) {
        free(wt);
        free(bt);
        return mr_error(MR_ENOMEM, "onnx: out of memory");
    }
    for (int64_t o = 0; o < fout; o++)
        for (int64_t k = 0; k < fin; k++)
            wt[o * fin + k] = alpha * (w_is_in_out ? w->f[k * fout + o] : w->f[o * fin + k]);
    int rc = MR_OK;
    if (c) {
        int okshape = c->numel == 1 || (c->numel == fout && (c->ndim == 1 || (c->ndim == 2 && c->dims[0] == 1)));
        if (!okshape)
            rc = node_error(x, i, MR_ESHAPE, "bias '%s' is %s, expected %lld (or 1x%lld, or a scalar)", c->name,
                            ox_dims_str(c->ndim, c->dims, ds, sizeof ds), (long long)fout, (long long)fout);
        for (int64_t o = 0; rc == MR_OK && o < fout; o++)
            bt[o] = beta * c->f[c->numel == 1 ? 0 : o];
    }
    int p[2], np = 0;
    if (rc == MR_OK)
        rc = make_param(x, w->name, 2, wd, wt, MR_PARAM_WEIGHT, &p[np++]);
    if (rc == MR_OK && c)
        rc = make_param(x, c->name, 1, &fout, bt, MR_PARAM_WEIGHT, &p[np++]);
    free(wt);
    free(bt);
    MR_TRY(rc);
    mr_op_attrs a = {0};
    int id = add_node(x, i, "linear", &xv->node, 1, p, np, &a);
    MR_TRY(id);
    return set_node_output(x, out_node_of, 0, id);
}

static int matmul_param_of(ox_ctx *x, int i, ox_value *xv, const ox_const *w, int w_is_out_in, float alpha,
                           const ox_const *c, float beta, int out_of);

static int map_gemm(ox_ctx *x, int i)
{
    static const char *const known[] = {"alpha", "beta", "transA", "transB", "broadcast", NULL};
    MR_TRY(check_attrs(x, i, known));
    int64_t ta, tb;
    float alpha, beta;
    MR_TRY(attr_int(x, i, "transA", 0, &ta));
    MR_TRY(attr_int(x, i, "transB", 0, &tb));
    MR_TRY(attr_float(x, i, "alpha", 1, &alpha));
    MR_TRY(attr_float(x, i, "beta", 1, &beta));
    if (ta)
        return node_error(x, i, MR_ENOTFOUND,
                          "attribute 'transA' = %lld transposes the batch axis; moreau maps transA = 0", (long long)ta);
    ox_value *xv = NULL;
    ox_const *w, *c;
    MR_TRY(in_node_any(x, i, 0, &xv));
    MR_TRY(in_const(x, i, 1, 0, &w));
    MR_TRY(in_const(x, i, 2, 1, &c));
    if (!lay_is_std(&xv->lay)) /* rows holding N merged with tokens: (L*N, E) */
        return matmul_param_of(x, i, xv, w, tb != 0, alpha, c, beta, i);
    return linear_from(x, i, xv, w, !tb, alpha, c, beta, i);
}

/* MatMul(x, W) of a per-sample (H, W, K) or (T, K) value by a constant
 * W (K, M) (a Linear over the last axis: ConvNeXt's MLP, a ViT's tokens):
 * y = x W + b as a 1x1 convolution between transposes,
 *   (H,W,K) -> transpose (K,H,W) -> conv 1x1 -> (M,H,W) -> transpose (H,W,M),
 *   (T,K)   -> transpose (K,T) -> reshape (K,T,1) -> conv -> (M,T,1) -> (M,T) -> (T,M),
 * every step exact (a copy or the same dot products). */
static int matmul_tokens(ox_ctx *x, int i, ox_value *xv, const ox_const *w, const ox_const *c, int out_of)
{
    char xs[64], ws[160];
    int nd = xv->shape.ndim;
    int64_t K = xv->shape.d[nd - 1];
    if (w->ndim != 2 || w->dims[0] != K || nd > 3)
        return node_error(x, i, MR_ESHAPE, "input Nx%s times weight '%s' (%s) is not supported",
                          mr_shape_str(&xv->shape, xs, sizeof xs), w->name, ox_dims_str(w->ndim, w->dims, ws, sizeof ws));
    int64_t M = w->dims[1];
    if (c && c->numel != M)
        return node_error(x, i, MR_ESHAPE, "bias '%s' has %lld entries, expected %lld", c->name, (long long)c->numel,
                          (long long)M);
    int64_t wd[4] = {M, K, 1, 1};
    float *wt = malloc((size_t)(M * K) * sizeof *wt);
    if (!wt)
        return mr_error(MR_ENOMEM, "onnx: out of memory");
    for (int64_t o = 0; o < M; o++)
        for (int64_t k = 0; k < K; k++)
            wt[o * K + k] = w->f[k * M + o];
    int p[2], np = 0;
    int rc = make_param(x, w->name, 4, wd, wt, MR_PARAM_WEIGHT, &p[np++]);
    free(wt);
    MR_TRY(rc);
    if (c)
        MR_TRY(make_param(x, c->name, 1, &M, c->f, MR_PARAM_WEIGHT, &p[np++]));
    mr_op_attrs t1 = {0}, t2 = {0}, r1 = {0}, r2 = {0}, cv = {0};
    int node = xv->node;
    if (nd == 3) {
        t1.perm[0] = 2, t1.perm[1] = 0, t1.perm[2] = 1;
        MR_TRY(node = add_node(x, i, "transpose", &node, 1, NULL, 0, &t1));
        MR_TRY(node = add_node(x, i, "conv2d", &node, 1, p, np, &cv));
        t2.perm[0] = 1, t2.perm[1] = 2, t2.perm[2] = 0;
        MR_TRY(node = add_node(x, i, "transpose", &node, 1, NULL, 0, &t2));
    } else {
        int64_t T = xv->shape.d[0];
        t1.perm[0] = 1, t1.perm[1] = 0;
        MR_TRY(node = add_node(x, i, "transpose", &node, 1, NULL, 0, &t1));
        r1.shape_ndim = 3, r1.shape[0] = K, r1.shape[1] = T, r1.shape[2] = 1;
        MR_TRY(node = add_node(x, i, "reshape", &node, 1, NULL, 0, &r1));
        MR_TRY(node = add_node(x, i, "conv2d", &node, 1, p, np, &cv));
        r2.shape_ndim = 2, r2.shape[0] = M, r2.shape[1] = T;
        MR_TRY(node = add_node(x, i, "reshape", &node, 1, NULL, 0, &r2));
        MR_TRY(node = add_node(x, i, "transpose", &node, 1, NULL, 0, &t1));
    }
    return set_node_output(x, out_of, 0, node);
}

/* y = alpha x W + beta c over the last ONNX axis of x, N anywhere else
 * (attention's projections over (L, N, E) and (L*N, E)): matmul_param with
 * W (K, M) as ONNX MatMul stores it; w_is_out_in: W given (M, K) (Gemm's
 * transB). The initializers are shared unchanged where no rewrite is needed;
 * a rewritten copy keeps the name. */
static int matmul_param_of(ox_ctx *x, int i, ox_value *xv, const ox_const *w, int w_is_out_in, float alpha,
                           const ox_const *c, float beta, int out_of)
{
    char xs[160], ws[160];
    value_dims_str(xv, xs, sizeof xs);
    int nd = xv->shape.ndim;
    if (value_axis(xv, -1) != nd - 1)
        return node_error(x, i, MR_ENOTFOUND, "the last axis of the input %s holds the batch axis N", xs);
    int64_t K = xv->shape.d[nd - 1];
    if (w->ndim != 2 || w->dims[w_is_out_in ? 1 : 0] != K)
        return node_error(x, i, MR_ESHAPE, "input %s times weight '%s' (%s%s) is not supported", xs, w->name,
                          ox_dims_str(w->ndim, w->dims, ws, sizeof ws), w_is_out_in ? ", transposed" : "");
    int64_t M = w->dims[w_is_out_in ? 0 : 1];
    if (c && !(c->numel == 1 || (c->numel == M && (c->ndim == 1 || (c->ndim == 2 && c->dims[0] == 1)))))
        return node_error(x, i, MR_ESHAPE, "bias '%s' is %s, expected %lld (or 1x%lld, or a scalar)", c->name,
                          ox_dims_str(c->ndim, c->dims, ws, sizeof ws), (long long)M, (long long)M);
    int p[2], np = 0;
    if (!w_is_out_in && alpha == 1) {
        MR_TRY(const_param(x, i, (ox_const *)w, MR_PARAM_WEIGHT, &p[np++]));
    } else {
        float *wt = malloc((size_t)(K * M) * sizeof *wt);
        if (!wt)
            return mr_error(MR_ENOMEM, "onnx: out of memory");
        for (int64_t k = 0; k < K; k++)
            for (int64_t o = 0; o < M; o++)
                wt[k * M + o] = alpha * (w_is_out_in ? w->f[o * K + k] : w->f[k * M + o]);
        int64_t wd[2] = {K, M};
        int rc = make_param(x, w->name, 2, wd, wt, MR_PARAM_WEIGHT, &p[np++]);
        free(wt);
        MR_TRY(rc);
    }
    if (c && c->numel == M && c->ndim == 1 && beta == 1) {
        MR_TRY(const_param(x, i, (ox_const *)c, MR_PARAM_WEIGHT, &p[np++]));
    } else if (c) {
        float *bt = malloc((size_t)M * sizeof *bt);
        if (!bt)
            return mr_error(MR_ENOMEM, "onnx: out of memory");
        for (int64_t o = 0; o < M; o++)
            bt[o] = beta * c->f[c->numel == 1 ? 0 : o];
        int rc = make_param(x, c->name, 1, &M, bt, MR_PARAM_WEIGHT, &p[np++]);
        free(bt);
        MR_TRY(rc);
    }
    mr_op_attrs a = {0};
    int id = add_node(x, i, "matmul_param", &xv->node, 1, p, np, &a);
    MR_TRY(id);
    return set_node_output_lay(x, out_of, 0, id, &xv->lay);
}

/* MatMul of two computed values (attention's Q K^T and P V): batched over
 * the leading axes, the one holding N among them, as the engine's matmul
 * does per sample. Both must hold N alike; no broadcasting between them. */
static int matmul_nodes(ox_ctx *x, int i, ox_value *a, ox_value *b)
{
    char d0[160], d1[160];
    value_dims_str(a, d0, sizeof d0);
    value_dims_str(b, d1, sizeof d1);
    if (!lay_eq(&a->lay, &b->lay))
        return node_error(x, i, MR_ENOTFOUND,
                          "inputs '%s' (%s) and '%s' (%s) hold the batch axis N in different places", a->name, d0,
                          b->name, d1);
    int r = a->lay.rank;
    if (r < 3 || a->lay.bx >= r - 2)
        return node_error(x, i, MR_ENOTFOUND,
                          "the product of %s and %s runs along the batch axis N; moreau maps products batched "
                          "over a leading axis that holds N",
                          d0, d1);
    int64_t ad[OX_MAX_DIMS], ac[OX_MAX_DIMS], bd[OX_MAX_DIMS], bc[OX_MAX_DIMS];
    value_dims(a, ad, ac);
    value_dims(b, bd, bc);
    for (int k = 0; k < r - 2; k++)
        if (ad[k] != bd[k] || ac[k] != bc[k])
            return node_error(x, i, MR_ENOTFOUND,
                              "the leading dims of %s and %s differ (moreau does not broadcast between computed "
                              "values)",
                              d0, d1);
    int in[2] = {a->node, b->node};
    mr_op_attrs at = {0};
    int id = add_node(x, i, "matmul", in, 2, NULL, 0, &at);
    MR_TRY(id);
    return set_node_output_lay(x, i, 0, id, &a->lay);
}

/* MatMul(x, W) with W (in, out) constant; an Add of a constant bias that
 * follows it alone becomes the linear's bias. MatMul(a, b) of two computed
 * values: matmul_nodes. */
static int map_matmul(ox_ctx *x, int i)
{
    static const char *const none[] = {NULL};
    MR_TRY(check_attrs(x, i, none));
    ox_value *xv = NULL, *bv0 = input_value(x, i, 1);
    ox_const *w, *c = NULL;
    MR_TRY(in_node_any(x, i, 0, &xv));
    if (bv0)
        MR_TRY(materialize(x, bv0));
    if (bv0 && bv0->kind == V_NODE)
        return matmul_nodes(x, i, xv, bv0);
    MR_TRY(in_const(x, i, 1, 0, &w));
    int out_of = i, j = sole_consumer(x, i);
    if (j >= 0 && op_is(x->g->node[j], "Add") && x->g->node[j]->n_attribute == 0 && ninputs(x->g->node[j]) == 2) {
        const Onnx__NodeProto *add = x->g->node[j];
        int other = !strcmp(add->input[0], x->g->node[i]->output[0]) ? 1 : 0;
        ox_value *bv = &x->vals[find_value(x, add->input[other])];
        MR_TRY(materialize(x, bv));
        if (bv->kind == V_CONST && bv->c->f && bv->c->numel == (w->ndim == 2 ? w->dims[1] : -1)) {
            c = bv->c;
            out_of = j;
            x->done[j] = 1;
        }
    }
    if (!lay_is_std(&xv->lay))
        return matmul_param_of(x, i, xv, w, 0, 1.0f, c, 1.0f, out_of);
    if (xv->shape.ndim >= 2)
        return matmul_tokens(x, i, xv, w, c, out_of);
    return linear_from(x, i, xv, w, 1, 1.0f, c, 1.0f, out_of);
}

static int map_batchnorm(ox_ctx *x, int i)
{
    static const char *const known[] = {"epsilon", "momentum", "spatial", "training_mode", "is_test",
                                        "consumed_inputs", NULL};
    MR_TRY(check_attrs(x, i, known));
    MR_TRY(only_first_output(x, i));
    int64_t spatial, training;
    float eps, mom;
    MR_TRY(attr_int(x, i, "spatial", 1, &spatial));
    MR_TRY(attr_int(x, i, "training_mode", 0, &training));
    MR_TRY(attr_float(x, i, "epsilon", 1e-5f, &eps));
    MR_TRY(attr_float(x, i, "momentum", 0.9f, &mom));
    if (spatial != 1)
        return node_error(x, i, MR_ENOTFOUND, "attribute 'spatial' = %lld is not supported (only 1)", (long long)spatial);
    if (training)
        return node_error(x, i, MR_ENOTFOUND, "attribute 'training_mode' = %lld: export the model in eval mode",
                          (long long)training);
    if (!(eps >= 0) || !isfinite(eps))
        return node_error(x, i, MR_EFORMAT, "attribute 'epsilon' = %g must be finite and >= 0", (double)eps);
    ox_value *xv = NULL;
    ox_const *c[4];
    MR_TRY(in_node(x, i, 0, &xv));
    int p[4];
    for (int k = 0; k < 4; k++) {
        MR_TRY(in_const(x, i, k + 1, 0, &c[k]));
        MR_TRY(const_param(x, i, c[k], k < 2 ? MR_PARAM_WEIGHT : MR_PARAM_BUFFER, &p[k]));
    }
    mr_op_attrs a = {0};
    a.eps = eps > 0 ? eps : 1e-45f; /* the engine reads 0 as its default 1e-5: the smallest float instead */
    int id = add_node(x, i, "batchnorm2d", &xv->node, 1, p, 4, &a);
    MR_TRY(id);
    return set_node_output(x, i, 0, id);
}

static int map_pool(ox_ctx *x, int i, int is_max)
{
    static const char *const kmax[] = {"kernel_shape", "strides", "pads", "ceil_mode", "dilations",
                                       "storage_order", "auto_pad", NULL};
    static const char *const kavg[] = {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad",
                                       "auto_pad", NULL};
    static const char *const pads_ok[] = {"NOTSET", "VALID", NULL};
    MR_TRY(check_attrs(x, i, is_max ? kmax : kavg));
    MR_TRY(attr_string_is(x, i, "auto_pad", pads_ok));
    MR_TRY(only_first_output(x, i));
    ox_value *xv = NULL;
    MR_TRY(in_node(x, i, 0, &xv));
    int64_t ks[2], st[2] = {0, 0}, pd[4] = {0, 0, 0, 0}, dl[2] = {1, 1}, ceil, cip, so;
    int n;
    MR_TRY(attr_ints(x, i, "kernel_shape", 2, ks, &n));
    if (!n)
        return node_error(x, i, MR_EFORMAT, "attribute 'kernel_shape' is missing");
    MR_TRY(attr_ints(x, i, "strides", 2, st, &n));
    if (!n)
        st[0] = st[1] = 1; /* ONNX's default stride is 1, not the kernel */
    MR_TRY(attr_ints(x, i, "pads", 4, pd, &n));
    MR_TRY(attr_ints(x, i, "dilations", 2, dl, &n));
    MR_TRY(attr_int(x, i, "ceil_mode", 0, &ceil));
    MR_TRY(attr_int(x, i, "count_include_pad", 0, &cip));
    MR_TRY(attr_int(x, i, "storage_order", 0, &so));
    if (pd[0] != pd[2] || pd[1] != pd[3])
        return node_error(x, i, MR_ENOTFOUND, "attribute 'pads' is asymmetric; moreau maps equal padding on both sides");
    if (dl[0] != 1 || dl[1] != 1)
        return node_error(x, i, MR_ENOTFOUND, "attribute 'dilations' = %lldx%lld is not supported (only 1)",
                          (long long)dl[0], (long long)dl[1]);
    if (so)
        return node_error(x, i, MR_ENOTFOUND, "attribute 'storage_order' = %lld is not supported (only 0)", (long long)so);
    int64_t vals[] = {ks[0], ks[1], st[0], st[1], pd[0], pd[1]};
    for (int k = 0; k < 6; k++)
        if (vals[k] < (k >= 4 ? 0 : 1) || vals[k] > 65536)
            return node_error(x, i, MR_EFORMAT, "attribute '%s' has the value %lld",
                              k < 2 ? "kernel_shape" : k < 4 ? "strides" : "pads", (long long)vals[k]);
    mr_op_attrs a = {0};
    a.kernel[0] = (int32_t)ks[0], a.kernel[1] = (int32_t)ks[1];
    a.stride[0] = (int32_t)st[0], a.stride[1] = (int32_t)st[1];
    a.padding[0] = (int32_t)pd[0], a.padding[1] = (int32_t)pd[1];
    a.ceil_mode = ceil != 0;
    a.count_include_pad = cip != 0;
    int id = add_node(x, i, is_max ? "maxpool2d" : "avgpool2d", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return set_node_output(x, i, 0, id);
}

/* An elementwise op with the engine attributes a (the ONNX attributes
 * checked by the caller); N stays where it is. */
static int map_unary_attrs(ox_ctx *x, int i, const char *op, const mr_op_attrs *a)
{
    ox_value *xv = NULL;
    MR_TRY(in_node_any(x, i, 0, &xv));
    int id = add_node(x, i, op, &xv->node, 1, NULL, 0, a);
    MR_TRY(id);
    return set_node_output_lay(x, i, 0, id, &xv->lay);
}

/* Elementwise ops without attributes (and Relu -> softplus on request). */
static int map_unary(ox_ctx *x, int i, const char *op, const mr_op_attrs *a)
{
    static const char *const none[] = {NULL};
    MR_TRY(check_attrs(x, i, none));
    mr_op_attrs zero = {0};
    return map_unary_attrs(x, i, op, a ? a : &zero);
}

static int map_global_avgpool(ox_ctx *x, int i)
{
    static const char *const none[] = {NULL};
    MR_TRY(check_attrs(x, i, none));
    ox_value *xv = NULL;
    MR_TRY(in_node(x, i, 0, &xv));
    mr_op_attrs a = {0};
    a.out_size[0] = a.out_size[1] = 1;
    int id = add_node(x, i, "adaptive_avgpool2d", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return set_node_output(x, i, 0, id);
}

/* Mul: two computed values (same shape, or a (C,1,1) gate), or the
 * Mul(x, b) -> Softplus -> Div(., b) pattern of softplus(beta). */
static int map_mul(ox_ctx *x, int i)
{
    static const char *const none[] = {NULL};
    MR_TRY(check_attrs(x, i, none));
    ox_value *a0 = input_value(x, i, 0), *a1 = input_value(x, i, 1);
    if (!a0 || !a1)
        return node_error(x, i, MR_EFORMAT, "needs two inputs");
    MR_TRY(materialize(x, a0));
    MR_TRY(materialize(x, a1));
    if (a0->kind == V_NODE && a1->kind == V_NODE) {
        x->pattern_missed = 1;
        return MR_ENOTFOUND;
    }
    ox_value *xv = a0->kind == V_NODE ? a0 : a1, *cv = a0->kind == V_NODE ? a1 : a0;
    float beta, beta2;
    int j = sole_consumer(x, i), k = j >= 0 ? sole_consumer(x, j) : -1;
    if (xv->kind == V_NODE && scalar_of(cv->c, &beta) && j >= 0 && k >= 0 && op_is(x->g->node[j], "Softplus") &&
        op_is(x->g->node[k], "Div") && ninputs(x->g->node[k]) == 2 &&
        !strcmp(x->g->node[k]->input[0], x->g->node[j]->output[0])) {
        ox_value *dv = input_value(x, k, 1);
        MR_TRY(materialize(x, dv));
        if (dv->kind == V_CONST && scalar_of(dv->c, &beta2) && beta2 == beta && beta > 0 && isfinite(beta)) {
            mr_op_attrs a = {0};
            a.beta = beta;
            int id = add_node(x, k, "softplus", &xv->node, 1, NULL, 0, &a);
            MR_TRY(id);
            x->done[j] = x->done[k] = 1;
            return set_node_output_lay(x, k, 0, id, &xv->lay);
        }
    }
    x->pattern_missed = 1; /* not softplus(beta): a product with a constant (map_binary) */
    return MR_ENOTFOUND;
}

/* Flatten / Reshape to (N, P): the engine's flatten; to the same shape: an alias. */
static int map_flatten(ox_ctx *x, int i)
{
    static const char *const known[] = {"axis", NULL};
    MR_TRY(check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(in_node(x, i, 0, &xv));
    int64_t axis;
    MR_TRY(attr_int(x, i, "axis", 1, &axis));
    int rank = xv->shape.ndim + 1;
    if (axis < 0)
        axis += rank;
    if (axis != 1)
        return node_error(x, i, MR_ENOTFOUND,
                          "attribute 'axis' = %lld %s; moreau maps Flatten at axis 1 (N, everything else)",
                          (long long)axis, axis == 0 ? "merges the batch axis N" : "merges N with the first dims");
    mr_op_attrs a = {0};
    int id = add_node(x, i, "flatten", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return set_node_output(x, i, 0, id);
}

static int reshape_to(ox_ctx *x, int i, ox_value *xv, int nt, const int64_t *t, const ox_layout *lay);

/* Reshape to ONNX dims t[0..nt), entry p being coef·N (the other entries
 * numbers, one of them possibly -1). Row-major, item n of the input is the
 * run of entries whose flat index is (u·N + n)·I + v, u < U counting the
 * per-sample entries before N; the reshape is per sample exactly when the
 * target puts N at the same place: the dims before entry p multiply to P0
 * with U = P0·o' and o' dividing coef (entry p = o'·N·m'). Anything else
 * mixes N with the other dims. */
static int reshape_sym(ox_ctx *x, int i, ox_value *xv, int nt, int64_t *t, const int64_t *coef, int p)
{
    char ts[200], xs[160];
    sym_dims_str(nt, t, coef, ts, sizeof ts);
    value_dims_str(xv, xs, sizeof xs);
    int64_t P = mr_shape_numel(&xv->shape), known = coef[p];
    int minus = -1;
    for (int k = 0; k < nt; k++) {
        if (k == p)
            continue;
        if (coef[k] > 0)
            return node_error(x, i, MR_ENOTFOUND, "target shape %s of the input %s counts N twice", ts, xs);
        if (t[k] == -1) {
            if (minus >= 0)
                return node_error(x, i, MR_EFORMAT, "target %s has two -1", ts);
            minus = k;
        } else if (t[k] < 1 || mr_size_mul(known, t[k], &known)) {
            return node_error(x, i, MR_EFORMAT, "target %s has the dim %lld", ts, (long long)t[k]);
        }
    }
    if (minus >= 0) {
        if (P % known)
            return node_error(x, i, MR_ESHAPE, "target %s does not fit the input %s", ts, xs);
        t[minus] = P / known;
        known = P;
    }
    if (known != P)
        return node_error(x, i, MR_ESHAPE, "target %s does not fit the input %s", ts, xs);
    int64_t U = xv->lay.o, P0 = 1;
    for (int k = 0; k < xv->lay.bx; k++)
        U *= xv->shape.d[k];
    for (int k = 0; k < p; k++)
        P0 *= t[k];
    if (U % P0 || coef[p] % (U / P0)) {
        sym_dims_str(nt, t, coef, ts, sizeof ts);
        return node_error(x, i, MR_ENOTFOUND,
                          "target shape %s of the input %s mixes the batch axis N with other dims (N does not keep "
                          "its place in the row-major order); moreau maps reshapes within each item",
                          ts, xs);
    }
    ox_layout lay = {nt, p, U / P0, coef[p] / (U / P0)};
    int64_t ps[OX_MAX_DIMS + 2];
    int nps = 0;
    for (int k = 0; k < nt; k++) {
        if (k != p)
            ps[nps++] = t[k];
        else {
            if (lay.o > 1)
                ps[nps++] = lay.o;
            if (lay.m > 1)
                ps[nps++] = lay.m;
        }
    }
    if (nps < 1 || nps > 3) {
        char pss[160];
        return node_error(x, i, MR_ENOTFOUND, "a per-sample shape of %d dims (%s) is not supported (1 to 3)", nps,
                          ox_dims_str(nps, ps, pss, sizeof pss));
    }
    return reshape_to(x, i, xv, nps, ps, &lay);
}

static int map_reshape(ox_ctx *x, int i)
{
    static const char *const known[] = {"allowzero", "shape", NULL};
    MR_TRY(check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(in_node_any(x, i, 0, &xv));
    int64_t allowzero;
    MR_TRY(attr_int(x, i, "allowzero", 0, &allowzero));
    int64_t t[OX_MAX_DIMS], coef[OX_MAX_DIMS] = {0};
    int nt;
    const Onnx__AttributeProto *sa = attr(x->g->node[i], "shape"); /* opset < 5 */
    if (sa) {
        if (sa->n_ints > OX_MAX_DIMS)
            return node_error(x, i, MR_ENOTFOUND, "a target of %zu dims", sa->n_ints);
        nt = (int)sa->n_ints;
        if (nt < 1)
            return node_error(x, i, MR_EFORMAT, "attribute 'shape' has no entries");
        memcpy(t, sa->ints, (size_t)nt * sizeof *t);
    } else {
        ox_const *s;
        MR_TRY(in_ints_any(x, i, 1, 0, &s));
        if (s->ndim != 1 || s->numel > OX_MAX_DIMS || s->numel < 1)
            return node_error(x, i, MR_ENOTFOUND, "the target shape '%s' must be 1-D with 1 to %d entries", s->name,
                              OX_MAX_DIMS);
        nt = (int)s->numel;
        memcpy(t, s->i, (size_t)nt * sizeof *t);
        if (s->nsym)
            memcpy(coef, s->nsym, (size_t)nt * sizeof *coef);
    }
    /* a target that says where N goes: an entry counting N, or a 0 copying
     * the input's dim holding N */
    int p = -1;
    for (int k = 0; k < nt && p < 0; k++)
        if (coef[k] > 0 || (t[k] == 0 && !allowzero && k == xv->lay.bx && k < xv->lay.rank))
            p = k;
    if (p >= 0) {
        int64_t xd[OX_MAX_DIMS], xc[OX_MAX_DIMS];
        value_dims(xv, xd, xc);
        for (int k = 0; k < nt; k++) {
            if (coef[k] > 0 || t[k] != 0 || allowzero)
                continue;
            if (k >= xv->lay.rank) {
                char ts[200], xs[160];
                return node_error(x, i, MR_EFORMAT, "target %s copies dim %d of the input %s",
                                  sym_dims_str(nt, t, coef, ts, sizeof ts), k, value_dims_str(xv, xs, sizeof xs));
            }
            t[k] = xd[k];
            coef[k] = xc[k];
        }
        return reshape_sym(x, i, xv, nt, t, coef, p);
    }
    if (!lay_is_std(&xv->lay)) {
        char ts[200], xs[160];
        return node_error(x, i, MR_ENOTFOUND,
                          "target shape %s of the input %s does not say where the batch axis N goes (no entry "
                          "taken from the input's shape)",
                          ox_dims_str(nt, t, ts, sizeof ts), value_dims_str(xv, xs, sizeof xs));
    }
    int64_t P = mr_shape_numel(&xv->shape), rest = 1;
    int minus = -1;
    char ts[160], xs[64];
    ox_dims_str(nt, t, ts, sizeof ts);
    mr_shape_str(&xv->shape, xs, sizeof xs);
    /* resolve 0 (copy the input's dim) and find -1; index 0 is the batch axis */
    for (int k = 1; k < nt; k++) {
        if (t[k] == 0 && !allowzero) {
            if (k - 1 >= xv->shape.ndim)
                return node_error(x, i, MR_EFORMAT, "target %s copies dim %d of an Nx%s input", ts, k, xs);
            t[k] = xv->shape.d[k - 1];
        }
        if (t[k] == -1) {
            if (minus >= 0)
                return node_error(x, i, MR_EFORMAT, "target %s has two -1", ts);
            minus = k;
        } else if (t[k] < 1 || mr_size_mul(rest, t[k], &rest)) {
            return node_error(x, i, MR_EFORMAT, "target %s has the dim %lld", ts, (long long)t[k]);
        }
    }
    int batch_kept = t[0] == 0 || (t[0] == -1 && minus < 0 && rest == P) || t[0] == 1 /* batch 1 exports */;
    if (!batch_kept || (t[0] == -1 && minus >= 0))
        return node_error(x, i, MR_ENOTFOUND,
                          "target shape %s of an Nx%s input merges the batch axis N with others; moreau maps "
                          "reshapes that keep N as the first dim",
                          ts, xs);
    if (minus >= 0) {
        if (rest == 0 || P % rest)
            return node_error(x, i, MR_ESHAPE, "target %s does not fit an Nx%s input", ts, xs);
        t[minus] = P / rest;
        rest = P;
    }
    if (rest != P)
        return node_error(x, i, MR_ESHAPE, "target %s does not fit an Nx%s input", ts, xs);
    return reshape_to(x, i, xv, nt - 1, t + 1, NULL);
}

static int map_softmax(ox_ctx *x, int i, const char *op)
{
    static const char *const known[] = {"axis", NULL};
    MR_TRY(check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(in_node_any(x, i, 0, &xv));
    int rank = xv->lay.rank;
    /* before opset 13 the input is coerced to 2-D at axis (default 1) and the
     * softmax runs over everything after it; from 13 over the one axis (default -1) */
    int64_t axis;
    MR_TRY(attr_int(x, i, "axis", x->m.opset < 13 ? 1 : -1, &axis));
    if (axis < 0)
        axis += rank;
    /* before 13 the flattened tail must be one dim: the last */
    int ok = x->m.opset < 13 ? lay_is_std(&xv->lay) && axis >= 1 && axis == rank - 1
                             : value_axis(xv, axis) >= 0;
    if (!ok)
        return node_error(x, i, MR_ENOTFOUND,
                          "attribute 'axis' = %lld on an input of rank %d (opset %lld) is not supported (only "
                          "an axis after N%s)",
                          (long long)axis, rank, (long long)x->m.opset,
                          x->m.opset < 13 ? " being the last" : "");
    mr_op_attrs a = {0};
    a.axis = value_axis(xv, axis);
    int id = add_node(x, i, op, &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return set_node_output_lay(x, i, 0, id, &xv->lay);
}

static int map_constant(ox_ctx *x, int i)
{
    const Onnx__NodeProto *n = x->g->node[i];
    if (n->n_attribute != 1)
        return node_error(x, i, MR_EFORMAT, "a Constant needs exactly one attribute, has %zu", n->n_attribute);
    const Onnx__AttributeProto *a = n->attribute[0];
    const char *an = a->name ? a->name : "";
    ox_value *v = &x->vals[find_value(x, n->output[0])];
    ox_const *c = NULL;
    if (!strcmp(an, "value") && a->t) {
        int32_t type = a->t->has_data_type ? a->t->data_type : 0;
        int as_int = type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
        MR_TRY(ox_const_from_tensor(&c, &x->m, a->t, as_int));
    } else if (!strcmp(an, "value_float") || !strcmp(an, "value_int")) {
        int is_int = an[6] == 'i';
        MR_TRY(ox_const_new(&c, &x->m, 0, NULL, is_int, n->output[0]));
        if (is_int)
            c->i[0] = a->i;
        else
            c->f[0] = a->f;
    } else if (!strcmp(an, "value_floats") || !strcmp(an, "value_ints")) {
        int is_int = an[6] == 'i';
        int64_t d = is_int ? (int64_t)a->n_ints : (int64_t)a->n_floats;
        MR_TRY(ox_const_new(&c, &x->m, 1, &d, is_int, n->output[0]));
        for (int64_t k = 0; k < d; k++) {
            if (is_int)
                c->i[k] = a->ints[k];
            else
                c->f[k] = a->floats[k];
        }
    } else {
        return node_error(x, i, MR_ENOTFOUND, "attribute '%s' is not supported", an);
    }
    c->name = n->output[0];
    v->kind = V_CONST;
    v->c = c;
    v->own = 1;
    return MR_OK;
}

static int map_identity(ox_ctx *x, int i, int dropout)
{
    static const char *const kdrop[] = {"ratio", "seed", "is_test", NULL};
    static const char *const none[] = {NULL};
    MR_TRY(check_attrs(x, i, dropout ? kdrop : none));
    MR_TRY(only_first_output(x, i));
    ox_value *v = input_value(x, i, 0);
    if (!v)
        return node_error(x, i, MR_EFORMAT, "input 0 is missing");
    if (dropout && ninputs(x->g->node[i]) == 3) { /* opset 12: training_mode must be false */
        ox_value *tm = input_value(x, i, 2);
        MR_TRY(materialize(x, tm));
        if (tm->kind != V_CONST || (tm->c->f && tm->c->f[0] != 0))
            return node_error(x, i, MR_ENOTFOUND, "input 'training_mode' must be a constant false");
    }
    MR_TRY(materialize(x, v));
    alias_output(x, i, v);
    return MR_OK;
}

/* ------------------------------------------------ ops of imported models */

/* ONNX axis a over (N, sample...) of rank ndim + 1 as a per-sample axis
 * (0-based), or -1 for the batch axis or out of range. */
static int sample_axis(int64_t a, int ndim)
{
    if (a < 0)
        a += ndim + 1;
    return a >= 1 && a <= ndim ? (int)a - 1 : -1;
}

/* A `constant` node holding c broadcast (numpy rules) against a value of
 * per-sample shape s with N where lay says; gate: a (C,1,1) constant may
 * stay (C,1,1) against a standard Nx(C,H,W) (mul's gate). scale multiplies
 * every entry (-1 for Sub, 1/c for Div: recip). */
static int const_node(ox_ctx *x, int i, const ox_const *c, const mr_shape *s, const ox_layout *lay, int gate,
                      float scale, int recip, int *node)
{
    char cs[160], ss[160];
    int r = lay->rank;
    ox_value like = {0};
    like.shape = *s;
    like.lay = *lay;
    if (c->ndim > r)
        return node_error(x, i, MR_ESHAPE, "the constant '%s' (%s) has more dims than the %s it meets", c->name,
                          ox_dims_str(c->ndim, c->dims, cs, sizeof cs), value_dims_str(&like, ss, sizeof ss));
    /* c's dims right-aligned with the value's ONNX dims: the one facing N must be 1 */
    int64_t cd[OX_MAX_DIMS] = {1, 1, 1, 1, 1, 1, 1, 1}, vd[OX_MAX_DIMS] = {0}, vc[OX_MAX_DIMS] = {0};
    value_dims(&like, vd, vc);
    for (int a = 0; a < r; a++)
        cd[a] = a < r - c->ndim ? 1 : c->dims[a - (r - c->ndim)];
    int ok = cd[lay->bx] == 1;
    int is_gate = gate && lay_is_std(lay) && s->ndim == 3 && cd[1] == s->d[0] && cd[2] == 1 && cd[3] == 1;
    for (int a = 0; ok && a < r; a++)
        ok = a == lay->bx || cd[a] == 1 || cd[a] == vd[a];
    if (!ok)
        return node_error(x, i, MR_ESHAPE, "the constant '%s' (%s) does not broadcast against %s", c->name,
                          ox_dims_str(c->ndim, c->dims, cs, sizeof cs), value_dims_str(&like, ss, sizeof ss));
    int64_t pd[3];
    int nd = s->ndim;
    for (int k = 0; k < nd; k++)
        pd[k] = is_gate && k > 0 ? 1 : s->d[k];
    int64_t numel = 1;
    for (int k = 0; k < nd; k++)
        numel *= pd[k];
    float *v = malloc((size_t)numel * sizeof *v);
    if (!v)
        return mr_error(MR_ENOMEM, "onnx: out of memory");
    /* entry e of the per-sample result: index c by the broadcast coordinates
     * (N's own per-sample dims face a 1 of c) */
    for (int64_t e = 0; e < numel; e++) {
        int64_t rem = e, src = 0, stride = 1, idx[3] = {0, 0, 0};
        for (int k = nd - 1; k >= 0; k--) {
            idx[k] = rem % pd[k];
            rem /= pd[k];
        }
        for (int a = r - 1; a >= 0; a--) {
            if (a != lay->bx && cd[a] != 1)
                src += idx[lay_ps_axis(lay, a)] * stride;
            stride *= cd[a];
        }
        float val = c->f[src];
        v[e] = recip ? scale / val : scale * val;
    }
    int p, rc = make_param(x, c->name, nd, pd, v, MR_PARAM_WEIGHT, &p);
    free(v);
    MR_TRY(rc);
    mr_op_attrs a = {0};
    int in0 = 0; /* the graph input: it only sets N */
    int id = add_node(x, i, "constant", &in0, 1, &p, 1, &a);
    MR_TRY(id);
    *node = id;
    return MR_OK;
}

/* A value of node i's input k as an engine node: a computed value as it is,
 * a constant as a `constant` node broadcast against `like` (scale, recip as
 * const_node). */
static int operand(ox_ctx *x, int i, ox_value *v, const ox_value *like, int gate, float scale, int recip, int *node)
{
    MR_TRY(materialize(x, v));
    if (v->kind == V_NODE && scale == 1 && !recip) {
        *node = v->node;
        return MR_OK;
    }
    if (v->kind == V_CONST && v->c->nsym)
        return node_error(x, i, MR_ENOTFOUND,
                          "input '%s' counts the batch axis N (a shape taken from a computed value); moreau "
                          "maps arithmetic on it only between shapes",
                          v->name);
    if (v->kind != V_CONST || !v->c->f)
        return node_error(x, i, MR_ENOTFOUND, "input '%s' is not supported here", v->name);
    return const_node(x, i, v->c, &like->shape, &like->lay, gate, scale, recip, node);
}

static int scalar_near(ox_ctx *x, ox_value *v, double want)
{
    float f;
    if (!v || materialize(x, v) < 0 || v->kind != V_CONST || !v->c->f || !scalar_of(v->c, &f))
        return 0;
    return fabs(f - want) <= 1e-6 * fabs(want);
}

/* GELU as PyTorch exports it before opset 20:
 *   y = Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5) = x Phi(x)
 * matched from the Div; 1 when matched and mapped. */
static int try_gelu(ox_ctx *x, int i, int *matched)
{
    *matched = 0;
    const Onnx__NodeProto *n = x->g->node[i];
    if (ninputs(n) != 2 || !scalar_near(x, input_value(x, i, 1), 1.4142135623730951))
        return MR_OK;
    int j = sole_consumer(x, i), k = j >= 0 ? sole_consumer(x, j) : -1, l = k >= 0 ? sole_consumer(x, k) : -1,
        o = l >= 0 ? sole_consumer(x, l) : -1;
    if (o < 0 || !op_is(x->g->node[j], "Erf") || !op_is(x->g->node[k], "Add") || !op_is(x->g->node[l], "Mul") ||
        !op_is(x->g->node[o], "Mul") || ninputs(x->g->node[k]) != 2 || ninputs(x->g->node[l]) != 2 ||
        ninputs(x->g->node[o]) != 2)
        return MR_OK;
    const Onnx__NodeProto *add = x->g->node[k], *m1 = x->g->node[l], *m2 = x->g->node[o];
    int ka = !strcmp(add->input[0], x->g->node[j]->output[0]) ? 1 : 0;
    int kl = !strcmp(m1->input[0], add->output[0]) ? 1 : 0;
    int ko = !strcmp(m2->input[0], m1->output[0]) ? 1 : 0;
    if (!scalar_near(x, input_value(x, k, ka), 1.0) || strcmp(m1->input[kl], n->input[0]) ||
        !scalar_near(x, input_value(x, o, ko), 0.5))
        return MR_OK;
    ox_value *xv = NULL;
    MR_TRY(in_node_any(x, i, 0, &xv));
    mr_op_attrs a = {0};
    int id = add_node(x, o, "gelu", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    x->done[j] = x->done[k] = x->done[l] = x->done[o] = 1;
    *matched = 1;
    return set_node_output_lay(x, o, 0, id, &xv->lay);
}

/* Add, Sub, Mul, Div: two computed values, or one and a constant (a
 * `constant` node broadcast to the value's shape; Sub and Div by a constant
 * become Add of -c and Mul by 1/c; Sub of a computed b becomes a + (-1) b). */
static int map_binary(ox_ctx *x, int i, const char *op)
{
    static const char *const none[] = {NULL};
    MR_TRY(check_attrs(x, i, none));
    int is_sub = !strcmp(op, "Sub"), is_div = !strcmp(op, "Div"), is_mul = !strcmp(op, "Mul");
    if (is_div) {
        int matched;
        MR_TRY(try_gelu(x, i, &matched));
        if (matched)
            return MR_OK;
    }
    ox_value *a0 = input_value(x, i, 0), *a1 = input_value(x, i, 1);
    if (!a0 || !a1)
        return node_error(x, i, MR_EFORMAT, "needs two inputs");
    MR_TRY(materialize(x, a0));
    MR_TRY(materialize(x, a1));
    if (a0->kind != V_NODE && a1->kind != V_NODE)
        return node_error(x, i, MR_ENOTFOUND, "both inputs are constants");
    int n0, n1;
    const char *eng = is_mul || is_div ? "mul" : "add";
    const ox_layout *lay = a0->kind == V_NODE ? &a0->lay : &a1->lay;
    if (a0->kind == V_NODE && a1->kind == V_NODE) {
        if (is_div)
            return node_error(x, i, MR_ENOTFOUND, "dividing by a computed value is not supported");
        if (!lay_eq(&a0->lay, &a1->lay)) {
            char d0[160], d1[160];
            return node_error(x, i, MR_ENOTFOUND,
                              "inputs '%s' (%s) and '%s' (%s) hold the batch axis N in different places",
                              a0->name, value_dims_str(a0, d0, sizeof d0), a1->name,
                              value_dims_str(a1, d1, sizeof d1));
        }
        n0 = a0->node;
        n1 = a1->node;
        if (is_sub) { /* a - b = a + (-1) b */
            ox_const m1 = {0};
            float minus = -1;
            m1.f = &minus;
            m1.numel = 1;
            m1.name = "minus_one";
            m1.param = -1;
            int c;
            MR_TRY(const_node(x, i, &m1, &a1->shape, &a1->lay, 0, 1, 0, &c));
            mr_op_attrs z = {0};
            int in[2] = {a1->node, c};
            n1 = add_node(x, i, "mul", in, 2, NULL, 0, &z);
            MR_TRY(n1);
        }
        /* mul's gate (C,1,1) must be its second input */
        if (is_mul && a0->shape.ndim == 3 && a1->shape.ndim == 3 && a0->shape.d[1] == 1 && a0->shape.d[2] == 1 &&
            !(a1->shape.d[1] == 1 && a1->shape.d[2] == 1)) {
            int t = n0;
            n0 = n1;
            n1 = t;
        }
    } else {
        ox_value *xv = a0->kind == V_NODE ? a0 : a1, *cv = a0->kind == V_NODE ? a1 : a0;
        if ((is_sub || is_div) && xv == a1)
            return node_error(x, i, MR_ENOTFOUND, "%s a computed value from the constant '%s' is not supported",
                              is_sub ? "subtracting" : "dividing by", cv->name);
        n0 = xv->node;
        MR_TRY(operand(x, i, cv, xv, is_mul || is_div, is_sub ? -1.0f : 1.0f, is_div, &n1));
    }
    int in[2] = {n0, n1};
    mr_op_attrs a = {0};
    int id = add_node(x, i, eng, in, 2, NULL, 0, &a);
    MR_TRY(id);
    return set_node_output_lay(x, i, 0, id, lay);
}

static int map_clip(ox_ctx *x, int i)
{
    static const char *const known[] = {"min", "max", NULL};
    MR_TRY(check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(in_node_any(x, i, 0, &xv));
    mr_op_attrs a = {0};
    a.min = -INFINITY;
    a.max = INFINITY;
    if (x->m.opset < 11) {
        MR_TRY(attr_float(x, i, "min", -INFINITY, &a.min));
        MR_TRY(attr_float(x, i, "max", INFINITY, &a.max));
    } else {
        for (int k = 1; k <= 2; k++) {
            ox_const *c;
            MR_TRY(in_const(x, i, k, 1, &c));
            float v;
            if (c && !scalar_of(c, &v))
                return node_error(x, i, MR_ENOTFOUND, "input '%s' of Clip must be a scalar", c->name);
            if (c)
                *(k == 1 ? &a.min : &a.max) = v;
        }
    }
    int id = add_node(x, i, "clip", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return set_node_output_lay(x, i, 0, id, &xv->lay);
}

static int map_hardsigmoid(ox_ctx *x, int i)
{
    static const char *const known[] = {"alpha", "beta", NULL};
    MR_TRY(check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(in_node_any(x, i, 0, &xv));
    mr_op_attrs a = {0};
    MR_TRY(attr_float(x, i, "alpha", 0.2f, &a.alpha));
    MR_TRY(attr_float(x, i, "beta", 0.5f, &a.beta));
    if (a.alpha == 0 || !isfinite(a.alpha) || !isfinite(a.beta))
        return node_error(x, i, MR_ENOTFOUND, "attribute 'alpha' = %g is not supported (finite, not 0)", (double)a.alpha);
    int id = add_node(x, i, "hardsigmoid", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return set_node_output_lay(x, i, 0, id, &xv->lay);
}

static int map_gelu(ox_ctx *x, int i)
{
    static const char *const known[] = {"approximate", NULL};
    static const char *const ok[] = {"none", "tanh", "", NULL};
    MR_TRY(check_attrs(x, i, known));
    MR_TRY(attr_string_is(x, i, "approximate", ok));
    const Onnx__AttributeProto *ap = attr(x->g->node[i], "approximate");
    mr_op_attrs a = {0};
    a.approximate = ap && ap->has_s && ap->s.len == 4 && !memcmp(ap->s.data, "tanh", 4);
    return map_unary_attrs(x, i, "gelu", &a);
}

/* Reshape-like ops: a new per-sample shape t[0..nt), N where lay says
 * (NULL: first). */
static int reshape_to(ox_ctx *x, int i, ox_value *xv, int nt, const int64_t *t, const ox_layout *lay)
{
    if (nt == xv->shape.ndim) {
        int same = 1;
        for (int k = 0; k < nt; k++)
            same &= t[k] == xv->shape.d[k];
        if (same) {
            alias_output(x, i, xv);
            x->vals[find_value(x, x->g->node[i]->output[0])].lay = lay ? *lay : lay_std(nt);
            return MR_OK;
        }
    }
    char ts[160];
    if (nt < 1 || nt > 3)
        return node_error(x, i, MR_ENOTFOUND, "a per-sample shape of %d dims (%s) is not supported (1 to 3)", nt,
                          ox_dims_str(nt, t, ts, sizeof ts));
    mr_op_attrs a = {0};
    a.shape_ndim = nt;
    for (int k = 0; k < nt; k++)
        a.shape[k] = t[k];
    int id = add_node(x, i, nt == 1 ? "flatten" : "reshape", &xv->node, 1, NULL, 0, nt == 1 ? &(mr_op_attrs){0} : &a);
    MR_TRY(id);
    return set_node_output_lay(x, i, 0, id, lay);
}

/* The axes of Squeeze / Unsqueeze / ReduceMean: an attribute before `opset_input`,
 * input 1 from it. *n = -1: absent. */
static int axes_of(ox_ctx *x, int i, int64_t opset_input, int64_t *axes, int *n)
{
    *n = -1;
    if (x->m.opset < opset_input) {
        const Onnx__AttributeProto *a = attr(x->g->node[i], "axes");
        if (!a)
            return MR_OK;
        if (a->n_ints > OX_MAX_DIMS)
            return node_error(x, i, MR_EFORMAT, "attribute 'axes' has %zu entries", a->n_ints);
        *n = (int)a->n_ints;
        for (int k = 0; k < *n; k++)
            axes[k] = a->ints[k];
        return MR_OK;
    }
    ox_const *c;
    MR_TRY(in_ints(x, i, 1, 1, &c));
    if (!c)
        return MR_OK;
    if (c->numel > OX_MAX_DIMS)
        return node_error(x, i, MR_EFORMAT, "input 'axes' has %lld entries", (long long)c->numel);
    *n = (int)c->numel;
    for (int k = 0; k < *n; k++)
        axes[k] = c->i[k];
    return MR_OK;
}

static int map_squeeze(ox_ctx *x, int i, int unsqueeze)
{
    static const char *const known[] = {"axes", NULL};
    MR_TRY(check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(in_node(x, i, 0, &xv));
    int64_t axes[OX_MAX_DIMS], t[OX_MAX_DIMS];
    int n, nd = xv->shape.ndim, nt = 0;
    MR_TRY(axes_of(x, i, 13, axes, &n));
    int r_out = unsqueeze ? nd + 1 + (n > 0 ? n : 0) : nd + 1;
    unsigned mask = 0;
    for (int k = 0; k < n; k++) {
        int64_t a = axes[k] < 0 ? axes[k] + r_out : axes[k];
        if (a <= 0 || a >= r_out || a > 30)
            return node_error(x, i, MR_ENOTFOUND, "axis %lld %s; moreau keeps the batch axis N first", (long long)axes[k],
                              a == 0 ? "is the batch axis" : "is out of range");
        mask |= 1u << a;
    }
    if (unsqueeze) {
        if (n < 1)
            return node_error(x, i, MR_EFORMAT, "Unsqueeze needs axes");
        for (int a = 1, src = 0; a < r_out; a++)
            t[nt++] = mask >> a & 1 ? 1 : xv->shape.d[src++];
    } else {
        for (int a = 1; a <= nd; a++) {
            int squeeze = n < 0 ? xv->shape.d[a - 1] == 1 : (int)(mask >> a & 1);
            if (squeeze && xv->shape.d[a - 1] != 1)
                return node_error(x, i, MR_ESHAPE, "axis %d has size %lld, not 1", a, (long long)xv->shape.d[a - 1]);
            if (!squeeze)
                t[nt++] = xv->shape.d[a - 1];
        }
    }
    if (nt > 3)
        return node_error(x, i, MR_ENOTFOUND, "the result has %d per-sample dims (at most 3)", nt);
    return reshape_to(x, i, xv, nt, t, NULL);
}

/* Transpose: perm over the ONNX axes. The axis holding N goes where perm
 * puts it (no data moves for it: the engine keeps N outermost); the others
 * become a per-sample transpose, none when their order is kept. */
static int map_transpose(ox_ctx *x, int i)
{
    static const char *const known[] = {"perm", NULL};
    MR_TRY(check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(in_node_any(x, i, 0, &xv));
    int r = xv->lay.rank;
    const Onnx__AttributeProto *pa = attr(x->g->node[i], "perm");
    int64_t perm[OX_MAX_DIMS];
    if (pa && (int)pa->n_ints != r)
        return node_error(x, i, MR_EFORMAT, "attribute 'perm' has %zu entries for an input of rank %d", pa->n_ints, r);
    int seen = 0;
    for (int k = 0; k < r; k++) {
        perm[k] = pa ? pa->ints[k] : r - 1 - k; /* ONNX's default reverses the dims */
        if (perm[k] < 0 || perm[k] >= r || (seen >> perm[k] & 1))
            return node_error(x, i, MR_EFORMAT, "attribute 'perm' is not a permutation");
        seen |= 1 << perm[k];
    }
    ox_layout lay = xv->lay;
    mr_op_attrs a = {0};
    int nps = 0, identity = 1;
    for (int k = 0; k < r; k++) {
        int src = (int)perm[k];
        if (src == xv->lay.bx) {
            lay.bx = k;
            for (int g = 0; g < lay_group(&xv->lay); g++) /* o and m stay together, in order */
                a.perm[nps++] = xv->lay.bx + g;
        } else {
            a.perm[nps++] = lay_ps_axis(&xv->lay, src);
        }
    }
    for (int k = 0; k < nps; k++)
        identity &= a.perm[k] == k;
    if (identity) {
        alias_output(x, i, xv);
        x->vals[find_value(x, x->g->node[i]->output[0])].lay = lay;
        return MR_OK;
    }
    int id = add_node(x, i, "transpose", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return set_node_output_lay(x, i, 0, id, &lay);
}

/* Concat of k computed values along one axis: a chain of binary concats,
 * reusing the longest chain already built over a prefix of the same values
 * (DenseNet: each layer's Concat extends the previous one by one value). */
static int map_concat(ox_ctx *x, int i)
{
    static const char *const known[] = {"axis", NULL};
    MR_TRY(check_attrs(x, i, known));
    const Onnx__NodeProto *n = x->g->node[i];
    int k = ninputs(n);
    if (k < 1)
        return node_error(x, i, MR_EFORMAT, "Concat needs inputs");
    int *vals = malloc((size_t)k * sizeof *vals);
    if (!vals)
        return mr_error(MR_ENOMEM, "onnx: out of memory");
    int rc = MR_OK;
    for (int j = 0; j < k && rc == MR_OK; j++) {
        ox_value *v = NULL;
        rc = in_node_any(x, i, j, &v);
        if (rc == MR_OK)
            vals[j] = (int)(v - x->vals);
        if (rc == MR_OK && !lay_eq(&v->lay, &x->vals[vals[0]].lay)) {
            char d0[160], d1[160];
            rc = node_error(x, i, MR_ENOTFOUND,
                            "inputs '%s' (%s) and '%s' (%s) hold the batch axis N in different places",
                            x->vals[vals[0]].name, value_dims_str(&x->vals[vals[0]], d0, sizeof d0), v->name,
                            value_dims_str(v, d1, sizeof d1));
        }
    }
    int64_t axis = 0;
    if (rc == MR_OK)
        rc = attr_int(x, i, "axis", 1, &axis);
    int ax = rc == MR_OK ? value_axis(&x->vals[vals[0]], axis) : 0;
    if (rc == MR_OK && ax < 0)
        rc = node_error(x, i, MR_ENOTFOUND, "attribute 'axis' = %lld is the batch axis or out of range", (long long)axis);
    if (rc == MR_OK && k == 1) {
        alias_output(x, i, &x->vals[vals[0]]);
        free(vals);
        return MR_OK;
    }
    int node = -1, from = 0;
    for (int c = 0; rc == MR_OK && c < x->nchains; c++) {
        struct ox_chain *ch = &x->chains[c];
        if (ch->axis == ax && ch->n <= k && ch->n > from && !memcmp(ch->vals, vals, (size_t)ch->n * sizeof *vals)) {
            node = ch->node;
            from = ch->n;
        }
    }
    if (rc == MR_OK && node < 0) {
        node = x->vals[vals[0]].node;
        from = 1;
    }
    mr_op_attrs a = {0};
    a.axis = ax;
    for (int j = from; rc == MR_OK && j < k; j++) {
        int in[2] = {node, x->vals[vals[j]].node};
        node = add_node(x, i, "concat", in, 2, NULL, 0, &a);
        if (node < 0) {
            rc = node;
            break;
        }
        if (x->nchains == x->chain_cap) {
            int cap = x->chain_cap ? 2 * x->chain_cap : 16;
            void *p = realloc(x->chains, (size_t)cap * sizeof *x->chains);
            if (!p) {
                rc = mr_error(MR_ENOMEM, "onnx: out of memory");
                break;
            }
            x->chains = p;
            x->chain_cap = cap;
        }
        struct ox_chain *ch = &x->chains[x->nchains];
        ch->vals = malloc((size_t)(j + 1) * sizeof *vals);
        if (!ch->vals) {
            rc = mr_error(MR_ENOMEM, "onnx: out of memory");
            break;
        }
        memcpy(ch->vals, vals, (size_t)(j + 1) * sizeof *vals);
        ch->n = j + 1;
        ch->axis = ax;
        ch->node = node;
        x->nchains++;
    }
    ox_layout lay = rc == MR_OK ? x->vals[vals[0]].lay : lay_std(1);
    free(vals);
    MR_TRY(rc);
    return set_node_output_lay(x, i, 0, node, &lay);
}

/* Expand: a constant broadcast to a shape with one entry N (ViT's class
 * token expanded to the batch, (1, 1, E) to (N, 1, E)) is a `constant` node,
 * the same for every item; a computed value expanded to its own shape is
 * itself. (A constant to a shape of numbers is folded: fold_node.) */
static int map_expand(ox_ctx *x, int i)
{
    static const char *const none[] = {NULL};
    MR_TRY(check_attrs(x, i, none));
    ox_value *dv = input_value(x, i, 0);
    ox_const *s;
    if (!dv)
        return node_error(x, i, MR_EFORMAT, "input 0 is missing");
    MR_TRY(in_ints_any(x, i, 1, 0, &s));
    MR_TRY(materialize(x, dv));
    char ts[200], ds[160];
    if (s->ndim != 1 || s->numel > OX_MAX_DIMS || s->numel < 1)
        return node_error(x, i, MR_ENOTFOUND, "the target shape '%s' must be 1-D with 1 to %d entries", s->name,
                          OX_MAX_DIMS);
    int ns = (int)s->numel;
    int64_t t[OX_MAX_DIMS], coef[OX_MAX_DIMS] = {0};
    for (int k = 0; k < ns; k++) {
        t[k] = s->i[k];
        coef[k] = s->nsym ? s->nsym[k] : 0;
    }
    sym_dims_str(ns, t, coef, ts, sizeof ts);
    if (dv->kind == V_NODE) {
        /* to its own shape (entries 1 keep a dim): nothing to do */
        int64_t vd[OX_MAX_DIMS], vc[OX_MAX_DIMS];
        value_dims(dv, vd, vc);
        int r = dv->lay.rank, same = ns <= r;
        for (int k = 0; same && k < ns; k++) {
            int a = k + r - ns;
            same = (coef[k] == 0 && t[k] == 1) || (coef[k] == vc[a] && (vc[a] || t[k] == vd[a]));
        }
        if (!same)
            return node_error(x, i, MR_ENOTFOUND,
                              "expanding the computed value %s to %s is not supported (only a constant to the "
                              "batch, or a value to its own shape)",
                              value_dims_str(dv, ds, sizeof ds), ts);
        alias_output(x, i, dv);
        return MR_OK;
    }
    if (dv->kind != V_CONST || !dv->c->f || dv->c->nsym)
        return node_error(x, i, MR_ENOTFOUND, "input 0 ('%s') must be a float constant or a computed value",
                          dv->name);
    const ox_const *c = dv->c;
    int r = ns > c->ndim ? ns : c->ndim, p = -1;
    ox_layout lay = {r, 0, 1, 1};
    int64_t ps[OX_MAX_DIMS];
    int nps = 0;
    for (int a = 0; a < r; a++) {
        int ka = a - (r - ns), ca = a - (r - c->ndim);
        int64_t sd = ka >= 0 ? t[ka] : 1, sc = ka >= 0 ? coef[ka] : 0, cd = ca >= 0 ? c->dims[ca] : 1;
        if (sc > 0) {
            if (p >= 0 || sc != 1 || cd != 1)
                return node_error(x, i, MR_ENOTFOUND,
                                  "expanding the constant '%s' (%s) to %s is not supported (one entry N, "
                                  "facing a dim 1)",
                                  c->name, ox_dims_str(c->ndim, c->dims, ds, sizeof ds), ts);
            p = a;
            continue;
        }
        if (sd != 1 && cd != 1 && sd != cd)
            return node_error(x, i, MR_ESHAPE, "the constant '%s' (%s) does not broadcast to %s", c->name,
                              ox_dims_str(c->ndim, c->dims, ds, sizeof ds), ts);
        ps[nps++] = cd != 1 ? cd : sd;
    }
    if (p < 0) /* fold_node folds it unless the shape counts N */
        return node_error(x, i, MR_EINVAL, "internal: Expand without N");
    if (nps < 1 || nps > 3)
        return node_error(x, i, MR_ENOTFOUND, "a per-sample shape of %d dims is not supported (1 to 3)", nps);
    lay.bx = p;
    mr_shape sh = {0};
    sh.ndim = nps;
    for (int k = 0; k < nps; k++)
        sh.d[k] = ps[k];
    int node;
    MR_TRY(const_node(x, i, c, &sh, &lay, 0, 1, 0, &node));
    return set_node_output_lay(x, i, 0, node, &lay);
}

static int map_pad(ox_ctx *x, int i)
{
    static const char *const known[] = {"mode", "pads", "value", NULL};
    static const char *const modes[] = {"constant", "reflect", NULL};
    MR_TRY(check_attrs(x, i, known));
    MR_TRY(attr_string_is(x, i, "mode", modes));
    ox_value *xv = NULL;
    MR_TRY(in_node(x, i, 0, &xv));
    int nd = xv->shape.ndim, r = nd + 1;
    int64_t pads[2 * OX_MAX_DIMS];
    float value = 0;
    if (x->m.opset < 11) {
        const Onnx__AttributeProto *pa = attr(x->g->node[i], "pads");
        if (!pa || (int)pa->n_ints != 2 * r)
            return node_error(x, i, MR_EFORMAT, "attribute 'pads' must have %d entries", 2 * r);
        for (int k = 0; k < 2 * r; k++)
            pads[k] = pa->ints[k];
        MR_TRY(attr_float(x, i, "value", 0, &value));
    } else {
        ox_const *pc, *vc;
        MR_TRY(in_ints(x, i, 1, 0, &pc));
        MR_TRY(in_const(x, i, 2, 1, &vc));
        if (pc->numel != 2 * r)
            return node_error(x, i, MR_EFORMAT, "input 'pads' has %lld entries, expected %d", (long long)pc->numel, 2 * r);
        for (int k = 0; k < 2 * r; k++)
            pads[k] = pc->i[k];
        if (vc && !scalar_of(vc, &value))
            return node_error(x, i, MR_ENOTFOUND, "input 'constant_value' must be a scalar");
        if (ninputs(x->g->node[i]) > 3)
            return node_error(x, i, MR_ENOTFOUND, "input 'axes' is not supported");
    }
    if (value != 0)
        return node_error(x, i, MR_ENOTFOUND, "padding with the value %g is not supported (only 0)", (double)value);
    if (pads[0] || pads[r])
        return node_error(x, i, MR_ENOTFOUND, "pads on the batch axis N are not supported");
    mr_op_attrs a = {0};
    const Onnx__AttributeProto *ma = attr(x->g->node[i], "mode");
    a.pad_mode = ma && ma->has_s && ma->s.len == 7 && !memcmp(ma->s.data, "reflect", 7);
    for (int k = 0; k < nd; k++) {
        if (pads[1 + k] < 0 || pads[r + 1 + k] < 0 || pads[1 + k] > 65536 || pads[r + 1 + k] > 65536)
            return node_error(x, i, MR_ENOTFOUND, "pads must be in 0..65536 (no cropping)");
        a.pads[k] = (int32_t)pads[1 + k];
        a.pads[3 + k] = (int32_t)pads[r + 1 + k];
    }
    int id = add_node(x, i, "pad", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return set_node_output(x, i, 0, id);
}

static int map_gather(ox_ctx *x, int i)
{
    static const char *const known[] = {"axis", NULL};
    MR_TRY(check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(in_node_any(x, i, 0, &xv));
    ox_const *ic;
    MR_TRY(in_ints(x, i, 1, 0, &ic));
    int64_t axis;
    MR_TRY(attr_int(x, i, "axis", 0, &axis));
    int ax = value_axis(xv, axis);
    if (ax < 0 || ic->ndim != 0)
        return node_error(x, i, MR_ENOTFOUND, "only one scalar index along a per-sample axis is supported");
    mr_op_attrs a = {0};
    a.axis = ax;
    a.index = ic->i[0];
    /* the axis is dropped: N moves down one if it came after */
    ox_layout lay = xv->lay;
    lay.rank--;
    if ((axis < 0 ? axis + xv->lay.rank : axis) < lay.bx)
        lay.bx--;
    int id = add_node(x, i, "gather", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return set_node_output_lay(x, i, 0, id, &lay);
}

static int map_slice(ox_ctx *x, int i)
{
    static const char *const known[] = {"starts", "ends", "axes", NULL};
    MR_TRY(check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(in_node_any(x, i, 0, &xv));
    if (x->m.opset < 10)
        return node_error(x, i, MR_ENOTFOUND, "Slice before opset 10 is not supported");
    ox_const *st, *en, *ax = NULL, *sp = NULL;
    MR_TRY(in_ints(x, i, 1, 0, &st));
    MR_TRY(in_ints(x, i, 2, 0, &en));
    MR_TRY(in_ints(x, i, 3, 1, &ax));
    MR_TRY(in_ints(x, i, 4, 1, &sp));
    int64_t k = st->numel;
    if (en->numel != k || (ax && ax->numel != k) || (sp && sp->numel != k) || k < 1 || k > 3)
        return node_error(x, i, MR_ENOTFOUND, "starts, ends, axes and steps must have 1 to 3 entries each");
    int node = xv->node;
    ox_value cur = *xv;
    for (int64_t j = 0; j < k; j++) {
        int a = value_axis(&cur, ax ? ax->i[j] : j);
        int64_t step = sp ? sp->i[j] : 1;
        if (a < 0 || step < 1)
            return node_error(x, i, MR_ENOTFOUND, "slicing the batch axis or with a step < 1 is not supported");
        int64_t dim = cur.shape.d[a], s0 = st->i[j], e0 = en->i[j];
        if (s0 < 0)
            s0 += dim;
        if (e0 < 0)
            e0 += dim;
        s0 = s0 < 0 ? 0 : s0 > dim ? dim : s0;
        e0 = e0 < 0 ? 0 : e0 > dim ? dim : e0;
        if (e0 <= s0)
            return node_error(x, i, MR_ENOTFOUND, "an empty slice is not supported");
        if (s0 == 0 && e0 == dim && step == 1)
            continue;
        mr_op_attrs at = {0};
        at.axis = a;
        at.start = s0;
        at.end = e0;
        at.step = step;
        node = add_node(x, i, "slice", &node, 1, NULL, 0, &at);
        MR_TRY(node);
        MR_TRY(set_node_output_lay(x, i, 0, node, &xv->lay));
        cur = x->vals[find_value(x, x->g->node[i]->output[0])];
    }
    if (node == xv->node)
        alias_output(x, i, xv);
    return MR_OK;
}

static int map_reduce_mean(ox_ctx *x, int i)
{
    static const char *const known[] = {"axes", "keepdims", "noop_with_empty_axes", NULL};
    MR_TRY(check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(in_node(x, i, 0, &xv));
    int64_t axes[OX_MAX_DIMS], keep, noop;
    int n;
    MR_TRY(axes_of(x, i, 18, axes, &n));
    MR_TRY(attr_int(x, i, "keepdims", 1, &keep));
    MR_TRY(attr_int(x, i, "noop_with_empty_axes", 0, &noop));
    if (n <= 0)
        return node_error(x, i, MR_ENOTFOUND, "reducing every axis, the batch axis N included, is not supported");
    mr_op_attrs a = {0};
    for (int k = 0; k < n; k++) {
        int ax = sample_axis(axes[k], xv->shape.ndim);
        if (ax < 0)
            return node_error(x, i, MR_ENOTFOUND, "axis %lld is the batch axis or out of range", (long long)axes[k]);
        a.axes |= 1 << ax;
    }
    a.keepdims = keep != 0;
    int id = add_node(x, i, "reduce_mean", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return set_node_output(x, i, 0, id);
}

static int map_layernorm(ox_ctx *x, int i)
{
    static const char *const known[] = {"axis", "epsilon", "stash_type", NULL};
    MR_TRY(check_attrs(x, i, known));
    MR_TRY(only_first_output(x, i));
    ox_value *xv = NULL;
    MR_TRY(in_node_any(x, i, 0, &xv));
    int64_t axis;
    float eps;
    MR_TRY(attr_int(x, i, "axis", -1, &axis));
    MR_TRY(attr_float(x, i, "epsilon", 1e-5f, &eps));
    if (value_axis(xv, axis) != xv->shape.ndim - 1)
        return node_error(x, i, MR_ENOTFOUND, "attribute 'axis' = %lld is not supported (only the last axis)", (long long)axis);
    if (!(eps > 0) || !isfinite(eps))
        return node_error(x, i, MR_ENOTFOUND, "attribute 'epsilon' = %g is not supported (> 0)", (double)eps);
    int p[2], np = 0;
    for (int k = 1; k <= 2; k++) {
        ox_const *c;
        MR_TRY(in_const(x, i, k, k == 2, &c));
        if (c)
            MR_TRY(const_param(x, i, c, MR_PARAM_WEIGHT, &p[np++]));
        else if (k == 1)
            break;
    }
    mr_op_attrs a = {0};
    a.eps = eps;
    int id = add_node(x, i, "layernorm", &xv->node, 1, p, np, &a);
    MR_TRY(id);
    return set_node_output_lay(x, i, 0, id, &xv->lay);
}

/* ------------------------------------------------- constant folding */

/* Exporters compute some attributes with ops on constants (PyTorch's Pad:
 * ConstantOfShape, Concat, Reshape, Slice, Transpose, Cast; its dynamic
 * batch axis: Shape, Gather, Unsqueeze, Concat, Mul, Div, Equal, Where):
 * evaluated here, on int64 or float constants, as the ONNX operator
 * specification says, entries counting N kept symbolic (ox_const.nsym). */

static int64_t cget_i(const ox_const *c, int64_t k) { return c->i ? c->i[k] : (int64_t)c->f[k]; }

/* A new constant of the given dims, int or float; sym: an int result that
 * may count N (nsym allocated, all 0). */
static int fold_new(ox_ctx *x, int i, int sym, int ndim, const int64_t *dims, int is_int, ox_const **out)
{
    MR_TRY(ox_const_new(out, &x->m, ndim, dims, is_int, x->g->node[i]->output[0]));
    if ((*out)->numel > (1 << 24)) {
        long long numel = (long long)(*out)->numel;
        ox_const_free(*out);
        *out = NULL;
        return node_error(x, i, MR_ENOTFOUND, "folding a constant of %lld entries is not supported", numel);
    }
    if (sym && is_int) {
        (*out)->nsym = calloc((size_t)((*out)->numel ? (*out)->numel : 1), sizeof *(*out)->nsym);
        if (!(*out)->nsym) {
            ox_const_free(*out);
            *out = NULL;
            return mr_error(MR_ENOMEM, "onnx: out of memory");
        }
    }
    return MR_OK;
}

/* nsym freed when no entry counts N, so that a non-NULL nsym means one does. */
static void sym_tidy(ox_const *c)
{
    int any = 0;
    for (int64_t k = 0; c->nsym && k < c->numel && !any; k++)
        any = c->nsym[k] > 0;
    if (!any) {
        free(c->nsym);
        c->nsym = NULL;
    }
}

static void cset(ox_const *d, int64_t k, const ox_const *s, int64_t j)
{
    if (d->i) {
        d->i[k] = cget_i(s, j);
        if (d->nsym)
            d->nsym[k] = s->nsym ? s->nsym[j] : 0;
    } else {
        d->f[k] = s->f ? s->f[j] : (float)s->i[j];
    }
}

/* numpy's broadcasting of the dims of n constants into out (rank *r): 0 when
 * they do not broadcast. */
static int bcast_dims(const ox_const *const *cs, int n, int *r, int64_t *out)
{
    *r = 0;
    for (int j = 0; j < n; j++)
        *r = cs[j]->ndim > *r ? cs[j]->ndim : *r;
    for (int a = 0; a < *r; a++) {
        out[a] = 1;
        for (int j = 0; j < n; j++) {
            int ca = a - (*r - cs[j]->ndim);
            int64_t d = ca >= 0 ? cs[j]->dims[ca] : 1;
            if (d != 1 && out[a] != 1 && d != out[a])
                return 0;
            if (d != 1)
                out[a] = d;
        }
    }
    return 1;
}

/* The flat index into c (right-aligned, broadcast) of entry e of dims out. */
static int64_t bcast_src(const ox_const *c, int r, const int64_t *out, int64_t e)
{
    int64_t rem = e, src = 0, stride = 1;
    for (int a = r - 1; a >= 0; a--) {
        int64_t idx = rem % out[a];
        rem /= out[a];
        int ca = a - (r - c->ndim);
        if (ca >= 0) {
            if (c->dims[ca] != 1)
                src += idx * stride;
            stride *= c->dims[ca];
        }
    }
    return src;
}

/* a op b ('*', '/', '+', '-', '=') on int64 entries, ka > 0 meaning a is
 * ka·N (kb likewise): *v, or *k·N when *k > 0. 0 when the result is not one
 * number or one multiple of N for every N >= 1 (or overflows): k·N·c for
 * c >= 0, k·N / c for c > 0 dividing k, k·N ± 0, k·N + k'·N, k·N − k'·N for
 * k >= k', k·N / k'·N for k' dividing k, k·N = c false for c < k (as
 * k·N >= k). Integer division truncates, as ONNX's reference does. */
static int sym_arith(char op, int64_t a, int64_t ka, int64_t b, int64_t kb, int64_t *v, int64_t *k)
{
    *v = 0;
    *k = 0;
    if (!ka && !kb) {
        switch (op) {
        case '*': return !__builtin_mul_overflow(a, b, v);
        case '+': return !__builtin_add_overflow(a, b, v);
        case '-': return !__builtin_sub_overflow(a, b, v);
        case '/':
            if (b == 0 || (a == INT64_MIN && b == -1))
                return 0;
            *v = a / b;
            return 1;
        default: *v = a == b; return 1;
        }
    }
    int64_t ks = ka ? ka : kb, c = ka ? b : a; /* one side symbolic: ks·N and the number c */
    switch (op) {
    case '*':
        if (ka && kb)
            return 0;
        if (c == 0)
            return 1;
        return c > 0 && !__builtin_mul_overflow(ks, c, k);
    case '/':
        if (ka && kb) {
            if (ka % kb)
                return 0;
            *v = ka / kb;
            return 1;
        }
        if (kb || b <= 0 || ka % b)
            return 0;
        *k = ka / b;
        return 1;
    case '+':
        if (ka && kb)
            return !__builtin_add_overflow(ka, kb, k);
        if (c != 0)
            return 0;
        *k = ks;
        return 1;
    case '-':
        if (ka && kb) {
            if (ka < kb)
                return 0;
            *k = ka - kb; /* 0: the number 0 */
            return 1;
        }
        if (!ka || b != 0)
            return 0;
        *k = ka;
        return 1;
    default: /* '=' */
        if (ka && kb) {
            *v = ka == kb;
            return 1;
        }
        return c < ks; /* *v = 0: never equal */
    }
}

/* Mul, Div, Add, Sub, Equal of two constants (numpy broadcasting), and
 * Where(cond, a, b). */
static int fold_arith(ox_ctx *x, int i, const char *op, ox_const *const *in, int sym, ox_const **out)
{
    int where = !strcmp(op, "Where"), eq = !strcmp(op, "Equal");
    const ox_const *a = in[where ? 1 : 0], *b = in[where ? 2 : 1];
    if (!a || !b || (where && !in[0]))
        return node_error(x, i, MR_EFORMAT, "needs %d inputs", where ? 3 : 2);
    if ((a->i != NULL) != (b->i != NULL))
        return node_error(x, i, MR_ENOTFOUND, "inputs '%s' and '%s' have different element types (int and float)",
                          a->name, b->name);
    const ox_const *cs[3] = {a, b, in[0]};
    int r;
    int64_t dims[OX_MAX_DIMS];
    if (!bcast_dims(cs, where ? 3 : 2, &r, dims)) {
        char d0[160], d1[160];
        return node_error(x, i, MR_ESHAPE, "constants of dims %s and %s do not broadcast",
                          ox_dims_str(a->ndim, a->dims, d0, sizeof d0), ox_dims_str(b->ndim, b->dims, d1, sizeof d1));
    }
    int is_int = eq || a->i != NULL;
    MR_TRY(fold_new(x, i, sym && !eq, r, dims, is_int, out));
    ox_const *o = *out;
    char code = op[0] == 'M' ? '*' : op[0] == 'D' ? '/' : op[0] == 'A' ? '+' : op[0] == 'S' ? '-' : '=';
    for (int64_t e = 0; e < o->numel; e++) {
        int64_t ja = bcast_src(a, r, dims, e), jb = bcast_src(b, r, dims, e);
        if (where) {
            int64_t jc = bcast_src(in[0], r, dims, e);
            int pick = in[0]->i ? in[0]->i[jc] != 0 : in[0]->f[jc] != 0;
            cset(o, e, pick ? a : b, pick ? ja : jb);
        } else if (a->i) {
            int64_t v, k, ka = a->nsym ? a->nsym[ja] : 0, kb = b->nsym ? b->nsym[jb] : 0;
            if (!sym_arith(code, a->i[ja], ka, b->i[jb], kb, &v, &k)) {
                ox_const_free(o);
                *out = NULL;
                char s0[48], s1[48];
                snprintf(s0, sizeof s0, ka == 1 ? "N" : ka ? "%lld*N" : "%lld", (long long)(ka ? ka : a->i[ja]));
                snprintf(s1, sizeof s1, kb == 1 ? "N" : kb ? "%lld*N" : "%lld", (long long)(kb ? kb : b->i[jb]));
                if (!ka && !kb)
                    return node_error(x, i, MR_EFORMAT, "%s %c %s overflows int64 or divides by zero", s0, code, s1);
                return node_error(x, i, MR_ENOTFOUND,
                                  "%s %s %s is not one number or one multiple of the batch size N for every N; "
                                  "moreau folds shapes exactly",
                                  s0, code == '=' ? "==" : (char[]){code, 0}, s1);
            }
            o->i[e] = v;
            if (o->nsym)
                o->nsym[e] = k;
        } else {
            float fa = a->f[ja], fb = b->f[jb];
            float v = code == '*' ? fa * fb : code == '/' ? fa / fb : code == '+' ? fa + fb : fa - fb;
            if (eq)
                o->i[e] = fa == fb;
            else
                o->f[e] = v;
        }
    }
    return MR_OK;
}

/* Shape of any value: its ONNX dims, the axis holding N as k·N. */
static int fold_shape(ox_ctx *x, int i)
{
    static const char *const known[] = {"start", "end", NULL};
    MR_TRY(check_attrs(x, i, known));
    ox_value *v = input_value(x, i, 0);
    if (!v)
        return node_error(x, i, MR_EFORMAT, "input 0 is missing");
    MR_TRY(materialize(x, v));
    int64_t dims[OX_MAX_DIMS], coef[OX_MAX_DIMS] = {0};
    int r;
    if (v->kind == V_NODE) {
        r = v->lay.rank;
        value_dims(v, dims, coef);
    } else if (v->kind == V_CONST) {
        r = v->c->ndim;
        memcpy(dims, v->c->dims, sizeof dims);
    } else {
        return node_error(x, i, MR_ENOTFOUND, "input 0 ('%s') has no value here", v->name);
    }
    int64_t st, en;
    MR_TRY(attr_int(x, i, "start", 0, &st));
    MR_TRY(attr_int(x, i, "end", r, &en));
    st = st < 0 ? st + r : st;
    en = en < 0 ? en + r : en;
    st = st < 0 ? 0 : st > r ? r : st;
    en = en < 0 ? 0 : en > r ? r : en;
    int64_t n = en > st ? en - st : 0;
    ox_const *c;
    MR_TRY(fold_new(x, i, 1, 1, &n, 1, &c));
    for (int64_t k = 0; k < n; k++) {
        c->i[k] = dims[st + k];
        c->nsym[k] = coef[st + k];
    }
    sym_tidy(c);
    ox_value *o = &x->vals[find_value(x, x->g->node[i]->output[0])];
    o->kind = V_CONST;
    o->c = c;
    o->own = 1;
    return MR_OK;
}

static void strides_of(const ox_const *c, int64_t *st)
{
    int64_t acc = 1;
    for (int k = c->ndim - 1; k >= 0; k--) {
        st[k] = acc;
        acc *= c->dims[k];
    }
}

static int fold_node(ox_ctx *x, int i, int *folded)
{
    const Onnx__NodeProto *n = x->g->node[i];
    const char *op = n->op_type;
    static const char *const foldable[] = {"ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast",
                                           "Squeeze", "Unsqueeze", "Gather", "Mul", "Div", "Add", "Sub",
                                           "Equal", "Where", "Expand", NULL};
    *folded = 0;
    if (!strcmp(op, "Shape")) {
        *folded = 1;
        return fold_shape(x, i);
    }
    int ok = 0;
    for (const char *const *p = foldable; *p && !ok; p++)
        ok = !strcmp(*p, op);
    if (!ok)
        return MR_OK;
    int k = ninputs(n);
    ox_const *in[8] = {0};
    if (k < 1 || k > 8)
        return MR_OK;
    for (int j = 0; j < k; j++) {
        ox_value *v = input_value(x, i, j);
        if (!v)
            continue;
        if (v->kind == V_NONE && v->init) {
            int32_t ty = v->init->has_data_type ? v->init->data_type : 0;
            int as_int = ty == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || ty == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
            MR_TRY(ox_const_from_tensor(&v->c, &x->m, v->init, as_int));
            v->kind = V_CONST;
            v->own = 1;
        }
        if (v->kind != V_CONST)
            return MR_OK; /* a computed input: the op maps onto the engine */
        in[j] = v->c;
    }
    /* which inputs may count N: the data, never a shape, an axis or an index */
    int sym = 0, arith = !strcmp(op, "Mul") || !strcmp(op, "Div") || !strcmp(op, "Add") || !strcmp(op, "Sub") ||
                         !strcmp(op, "Equal") || !strcmp(op, "Where");
    for (int j = 0; j < k; j++) {
        if (!in[j] || !in[j]->nsym)
            continue;
        if (!strcmp(op, "Expand") && j == 1)
            return MR_OK; /* the class token expanded to the batch: map_expand */
        int data = arith ? strcmp(op, "Where") || j > 0
                         : !strcmp(op, "Concat") || (j == 0 && strcmp(op, "ConstantOfShape") && strcmp(op, "Expand"));
        if (!data)
            return sym_error(x, i, j, input_value(x, i, j)->name);
        sym = 1;
    }
    ox_const *r = NULL, *c = in[0];
    if (!c)
        return node_error(x, i, MR_EFORMAT, "input 0 is missing");
    int64_t dims[OX_MAX_DIMS], st[OX_MAX_DIMS];
    char ds[160];
    if (!strcmp(op, "ConstantOfShape")) {
        if (c->ndim != 1 || c->numel > OX_MAX_DIMS)
            return node_error(x, i, MR_EFORMAT, "input 'input' must be a 1-D shape");
        for (int d = 0; d < c->numel; d++)
            dims[d] = cget_i(c, d);
        const Onnx__AttributeProto *va = attr(n, "value");
        ox_const *val = NULL;
        if (va && va->t) {
            int32_t ty = va->t->has_data_type ? va->t->data_type : 0;
            MR_TRY(ox_const_from_tensor(&val, &x->m, va->t, ty == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ||
                                                             ty == ONNX__TENSOR_PROTO__DATA_TYPE__INT32));
        }
        int rc = fold_new(x, i, 0, (int)c->numel, dims, val ? val->i != NULL : 0, &r);
        for (int64_t e = 0; rc == MR_OK && e < r->numel; e++) {
            if (val && val->numel > 0)
                cset(r, e, val, 0);
        }
        ox_const_free(val);
        MR_TRY(rc);
    } else if (arith) {
        MR_TRY(fold_arith(x, i, op, in, sym, &r));
    } else if (!strcmp(op, "Expand")) {
        /* numpy broadcasting of the constant against the target shape */
        if (!in[1] || !in[1]->i || in[1]->ndim != 1 || in[1]->numel > OX_MAX_DIMS)
            return node_error(x, i, MR_EFORMAT, "the target shape must be a 1-D INT64 constant");
        ox_const shape = {0};
        shape.ndim = (int)in[1]->numel;
        for (int d = 0; d < shape.ndim; d++)
            if ((shape.dims[d] = in[1]->i[d]) < 0)
                return node_error(x, i, MR_EFORMAT, "the target shape has the dim %lld", (long long)shape.dims[d]);
        const ox_const *cs[2] = {c, &shape};
        int nd;
        if (!bcast_dims(cs, 2, &nd, dims))
            return node_error(x, i, MR_ESHAPE, "the constant '%s' (%s) does not broadcast to %s", c->name,
                              ox_dims_str(c->ndim, c->dims, ds, sizeof ds),
                              ox_dims_str(shape.ndim, shape.dims, (char[160]){0}, 160));
        MR_TRY(fold_new(x, i, sym, nd, dims, c->i != NULL, &r));
        for (int64_t e = 0; e < r->numel; e++)
            cset(r, e, c, bcast_src(c, nd, dims, e));
    } else if (!strcmp(op, "Cast")) {
        int64_t to;
        MR_TRY(attr_int(x, i, "to", 1, &to));
        int is_bool = to == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
        int is_int =
            is_bool || to == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || to == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
        if (!is_int && to != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && to != ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE)
            return node_error(x, i, MR_ENOTFOUND,
                              "attribute 'to' = %lld is not supported (FLOAT, DOUBLE, INT64, INT32, BOOL)",
                              (long long)to);
        if (!is_int && c->nsym)
            return sym_error(x, i, 0, input_value(x, i, 0)->name);
        MR_TRY(fold_new(x, i, sym, c->ndim, c->dims, is_int, &r));
        for (int64_t e = 0; e < r->numel; e++) {
            cset(r, e, c, e);
            if (is_bool) {
                r->i[e] = c->i ? c->i[e] != 0 || (c->nsym && c->nsym[e]) : c->f[e] != 0;
                if (r->nsym)
                    r->nsym[e] = 0;
            }
        }
    } else if (!strcmp(op, "Concat")) {
        int64_t axis;
        MR_TRY(attr_int(x, i, "axis", 0, &axis));
        if (axis < 0)
            axis += c->ndim;
        if (axis < 0 || axis >= c->ndim)
            return node_error(x, i, MR_EFORMAT, "attribute 'axis' is out of range");
        memcpy(dims, c->dims, (size_t)c->ndim * sizeof *dims);
        dims[axis] = 0;
        for (int j = 0; j < k; j++) {
            if (!in[j] || in[j]->ndim != c->ndim)
                return node_error(x, i, MR_ESHAPE, "constant inputs of different ranks");
            for (int d = 0; d < c->ndim; d++)
                if (d != axis && in[j]->dims[d] != c->dims[d])
                    return node_error(x, i, MR_ESHAPE, "constant inputs disagree off the axis");
            dims[axis] += in[j]->dims[axis];
        }
        MR_TRY(fold_new(x, i, sym, c->ndim, dims, c->i != NULL, &r));
        int64_t outer = 1, inner = 1, off = 0;
        for (int d = 0; d < axis; d++)
            outer *= dims[d];
        for (int d = (int)axis + 1; d < c->ndim; d++)
            inner *= dims[d];
        for (int j = 0; j < k; j++) {
            int64_t len = in[j]->dims[axis] * inner;
            for (int64_t o = 0; o < outer; o++)
                for (int64_t e = 0; e < len; e++)
                    cset(r, o * dims[axis] * inner + off + e, in[j], o * len + e);
            off += len;
        }
    } else if (!strcmp(op, "Reshape") || !strcmp(op, "Squeeze") || !strcmp(op, "Unsqueeze")) {
        int nd = 0;
        if (op[0] == 'R') {
            if (!in[1] || !in[1]->i || in[1]->ndim != 1 || in[1]->numel > OX_MAX_DIMS)
                return node_error(x, i, MR_EFORMAT, "the target shape must be a 1-D INT64 constant");
            nd = (int)in[1]->numel;
            int64_t known = 1, minus = -1;
            for (int d = 0; d < nd; d++) {
                dims[d] = in[1]->i[d] == 0 && d < c->ndim ? c->dims[d] : in[1]->i[d];
                if (dims[d] == -1)
                    minus = d;
                else if (dims[d] < 0 || mr_size_mul(known, dims[d], &known))
                    return node_error(x, i, MR_EFORMAT, "a bad target shape");
            }
            if (minus >= 0)
                dims[minus] = known ? c->numel / known : 0;
        } else {
            int64_t axes[OX_MAX_DIMS];
            int na;
            MR_TRY(axes_of(x, i, 13, axes, &na));
            int r_out = op[0] == 'U' ? c->ndim + na : c->ndim;
            unsigned mask = 0;
            for (int d = 0; d < na; d++) {
                int64_t a = axes[d] < 0 ? axes[d] + r_out : axes[d];
                if (a < 0 || a >= r_out || a >= OX_MAX_DIMS)
                    return node_error(x, i, MR_EFORMAT, "axis %lld is out of range", (long long)axes[d]);
                mask |= 1u << a;
            }
            if (op[0] == 'U') {
                for (int d = 0, src = 0; d < r_out; d++)
                    dims[nd++] = mask >> d & 1 ? 1 : c->dims[src++];
            } else {
                for (int d = 0; d < c->ndim; d++)
                    if (!(na < 0 ? c->dims[d] == 1 : (int)(mask >> d & 1)))
                        dims[nd++] = c->dims[d];
            }
        }
        if (nd > OX_MAX_DIMS)
            return node_error(x, i, MR_EFORMAT, "too many dims");
        MR_TRY(fold_new(x, i, sym, nd, dims, c->i != NULL, &r));
        if (r->numel != c->numel) {
            ox_const_free(r);
            return node_error(x, i, MR_ESHAPE, "reshaping a constant of %lld entries to %s", (long long)c->numel,
                              ox_dims_str(nd, dims, ds, sizeof ds));
        }
        for (int64_t e = 0; e < r->numel; e++)
            cset(r, e, c, e);
    } else if (!strcmp(op, "Transpose")) {
        const Onnx__AttributeProto *pa = attr(n, "perm");
        int64_t perm[OX_MAX_DIMS];
        for (int d = 0; d < c->ndim; d++)
            perm[d] = pa && (int)pa->n_ints == c->ndim ? pa->ints[d] : c->ndim - 1 - d;
        for (int d = 0; d < c->ndim; d++) {
            if (perm[d] < 0 || perm[d] >= c->ndim)
                return node_error(x, i, MR_EFORMAT, "attribute 'perm' is out of range");
            dims[d] = c->dims[perm[d]];
        }
        MR_TRY(fold_new(x, i, sym, c->ndim, dims, c->i != NULL, &r));
        strides_of(c, st);
        for (int64_t e = 0; e < r->numel; e++) {
            int64_t rem = e, src = 0;
            for (int d = c->ndim - 1; d >= 0; d--) {
                src += (rem % dims[d]) * st[perm[d]];
                rem /= dims[d];
            }
            cset(r, e, c, src);
        }
    } else if (!strcmp(op, "Gather") && in[1] && in[1]->ndim > 0) {
        /* indices of any shape: dims[:axis] + indices' dims + dims[axis+1:] */
        int64_t axis;
        MR_TRY(attr_int(x, i, "axis", 0, &axis));
        if (axis < 0)
            axis += c->ndim;
        if (axis < 0 || axis >= c->ndim || c->ndim - 1 + in[1]->ndim > OX_MAX_DIMS)
            return node_error(x, i, MR_EFORMAT, "attribute 'axis' is out of range, or too many dims");
        int nd = 0;
        for (int d = 0; d < axis; d++)
            dims[nd++] = c->dims[d];
        for (int d = 0; d < in[1]->ndim; d++)
            dims[nd++] = in[1]->dims[d];
        for (int d = (int)axis + 1; d < c->ndim; d++)
            dims[nd++] = c->dims[d];
        int64_t inner = 1, A = c->dims[axis], nidx = in[1]->numel;
        for (int d = (int)axis + 1; d < c->ndim; d++)
            inner *= c->dims[d];
        for (int64_t j = 0; j < nidx; j++) {
            int64_t idx = cget_i(in[1], j);
            if (idx < -A || idx >= A)
                return node_error(x, i, MR_EFORMAT, "index %lld out of range for a dim of %lld", (long long)idx,
                                  (long long)A);
        }
        MR_TRY(fold_new(x, i, sym, nd, dims, c->i != NULL, &r));
        for (int64_t e = 0; e < r->numel; e++) {
            int64_t in_ = e % inner, rest = e / inner, j = rest % (nidx ? nidx : 1), outer = rest / (nidx ? nidx : 1);
            int64_t idx = cget_i(in[1], j);
            idx = idx < 0 ? idx + A : idx;
            cset(r, e, c, (outer * A + idx) * inner + in_);
        }
    } else if (!strcmp(op, "Slice") || !strcmp(op, "Gather")) {
        int64_t start[OX_MAX_DIMS], step[OX_MAX_DIMS];
        for (int d = 0; d < c->ndim; d++)
            start[d] = 0, step[d] = 1, dims[d] = c->dims[d];
        int nd = c->ndim, drop = -1;
        if (op[0] == 'G') {
            int64_t axis;
            MR_TRY(attr_int(x, i, "axis", 0, &axis));
            if (axis < 0)
                axis += c->ndim;
            if (!in[1] || in[1]->ndim != 0 || axis < 0 || axis >= c->ndim)
                return node_error(x, i, MR_ENOTFOUND, "only a scalar index is supported");
            int64_t idx = cget_i(in[1], 0);
            if (idx < 0)
                idx += c->dims[axis];
            if (idx < 0 || idx >= c->dims[axis])
                return node_error(x, i, MR_EFORMAT, "index out of range");
            start[axis] = idx;
            dims[axis] = 1;
            drop = (int)axis;
        } else {
            if (k < 3 || !in[1] || !in[2] || x->m.opset < 10)
                return node_error(x, i, MR_ENOTFOUND, "Slice needs starts and ends inputs");
            if (in[2]->numel != in[1]->numel || (in[3] && in[3]->numel != in[1]->numel) ||
                (in[4] && in[4]->numel != in[1]->numel))
                return node_error(x, i, MR_EFORMAT, "starts, ends, axes and steps differ in length");
            for (int64_t j = 0; j < in[1]->numel; j++) {
                int64_t a = in[3] ? cget_i(in[3], j) : j, sp = in[4] ? cget_i(in[4], j) : 1;
                if (a < 0)
                    a += c->ndim;
                if (a < 0 || a >= c->ndim || sp == 0 || j >= in[2]->numel)
                    return node_error(x, i, MR_EFORMAT, "a bad slice");
                int64_t dim = c->dims[a], b = cget_i(in[1], j), e = cget_i(in[2], j);
                if (b < 0)
                    b += dim;
                if (e < 0)
                    e += dim;
                if (sp > 0) {
                    b = b < 0 ? 0 : b > dim ? dim : b;
                    e = e < 0 ? 0 : e > dim ? dim : e;
                    dims[a] = e > b ? (e - b + sp - 1) / sp : 0;
                } else {
                    b = b < 0 ? -1 : b > dim - 1 ? dim - 1 : b;
                    e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
                    dims[a] = b > e ? (b - e + (-sp) - 1) / (-sp) : 0;
                }
                start[a] = b;
                step[a] = sp;
            }
        }
        MR_TRY(fold_new(x, i, sym, nd, dims, c->i != NULL, &r));
        strides_of(c, st);
        for (int64_t e = 0; e < r->numel; e++) {
            int64_t rem = e, src = 0;
            for (int d = nd - 1; d >= 0; d--) {
                src += (start[d] + (rem % dims[d]) * step[d]) * st[d];
                rem /= dims[d];
            }
            cset(r, e, c, src);
        }
        if (drop >= 0) { /* Gather drops the axis */
            for (int d = drop; d + 1 < r->ndim; d++)
                r->dims[d] = r->dims[d + 1];
            r->ndim--;
        }
    }
    if (!r)
        return MR_OK;
    sym_tidy(r);
    ox_value *v = &x->vals[find_value(x, n->output[0])];
    v->kind = V_CONST;
    v->c = r;
    v->own = 1;
    *folded = 1;
    return MR_OK;
}

static int map_node(ox_ctx *x, int i)
{
    const Onnx__NodeProto *n = x->g->node[i];
    const char *op = n->op_type ? n->op_type : "";
    mr_op_attrs a = {0};
    int folded;
    MR_TRY(fold_node(x, i, &folded));
    if (folded)
        return MR_OK;
    if (!strcmp(op, "Conv"))
        return map_conv(x, i);
    if (!strcmp(op, "Gemm"))
        return map_gemm(x, i);
    if (!strcmp(op, "MatMul"))
        return map_matmul(x, i);
    if (!strcmp(op, "BatchNormalization"))
        return map_batchnorm(x, i);
    if (!strcmp(op, "Relu")) {
        if (x->opts->softplus_beta > 0) {
            a.beta = x->opts->softplus_beta;
            return map_unary(x, i, "softplus", &a);
        }
        return map_unary(x, i, "relu", NULL);
    }
    if (!strcmp(op, "Softplus"))
        return map_unary(x, i, "softplus", NULL);
    if (!strcmp(op, "Sigmoid"))
        return map_unary(x, i, "sigmoid", NULL);
    if (!strcmp(op, "Tanh"))
        return map_unary(x, i, "tanh", NULL);
    if (!strcmp(op, "MaxPool"))
        return map_pool(x, i, 1);
    if (!strcmp(op, "AveragePool"))
        return map_pool(x, i, 0);
    if (!strcmp(op, "GlobalAveragePool"))
        return map_global_avgpool(x, i);
    if (!strcmp(op, "Mul")) {
        /* the softplus(beta) pattern first, then the general product */
        int rc = map_mul(x, i);
        if (rc != MR_ENOTFOUND || !x->pattern_missed)
            return rc;
        x->pattern_missed = 0;
        return map_binary(x, i, "Mul");
    }
    if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Div"))
        return map_binary(x, i, op);
    if (!strcmp(op, "Clip"))
        return map_clip(x, i);
    if (!strcmp(op, "HardSigmoid"))
        return map_hardsigmoid(x, i);
    if (!strcmp(op, "HardSwish"))
        return map_unary(x, i, "hardswish", NULL);
    if (!strcmp(op, "Erf"))
        return map_unary(x, i, "erf", NULL);
    if (!strcmp(op, "Gelu"))
        return map_gelu(x, i);
    if (!strcmp(op, "Squeeze") || !strcmp(op, "Unsqueeze"))
        return map_squeeze(x, i, op[0] == 'U');
    if (!strcmp(op, "Transpose"))
        return map_transpose(x, i);
    if (!strcmp(op, "Concat"))
        return map_concat(x, i);
    if (!strcmp(op, "Expand"))
        return map_expand(x, i);
    if (!strcmp(op, "Pad"))
        return map_pad(x, i);
    if (!strcmp(op, "Gather"))
        return map_gather(x, i);
    if (!strcmp(op, "Slice"))
        return map_slice(x, i);
    if (!strcmp(op, "ReduceMean"))
        return map_reduce_mean(x, i);
    if (!strcmp(op, "LayerNormalization"))
        return map_layernorm(x, i);
    if (!strcmp(op, "Flatten"))
        return map_flatten(x, i);
    if (!strcmp(op, "Reshape"))
        return map_reshape(x, i);
    if (!strcmp(op, "Softmax"))
        return map_softmax(x, i, "softmax");
    if (!strcmp(op, "LogSoftmax"))
        return map_softmax(x, i, "log_softmax");
    if (!strcmp(op, "Constant"))
        return map_constant(x, i);
    if (!strcmp(op, "Identity"))
        return map_identity(x, i, 0);
    if (!strcmp(op, "Dropout"))
        return map_identity(x, i, 1);
    return node_error(x, i, MR_ENOTFOUND, "op type '%s' is not supported", op);
}

/* ------------------------------------------------------------- the graph */

/* The graph input: a float tensor (N, sample...) with N symbolic or 1. */
static int declare_input(ox_ctx *x, const Onnx__ValueInfoProto *vi)
{
    const char *nm = vi->name;
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return mr_error(MR_ENOTFOUND, "onnx: %s: graph input '%s' is not a tensor", x->m.path, nm);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (!tt->has_elem_type || tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return mr_error(MR_ENOTFOUND, "onnx: %s: graph input '%s' has element type %d; moreau takes FLOAT (1)",
                        x->m.path, nm, tt->has_elem_type ? (int)tt->elem_type : 0);
    if (!tt->shape || tt->shape->n_dim < 2 || tt->shape->n_dim > 4)
        return mr_error(MR_ENOTFOUND, "onnx: %s: graph input '%s' has %s; moreau takes (N, features), (N, C, L) or (N, C, H, W)",
                        x->m.path, nm, tt->shape ? "a rank outside 2..4" : "no shape");
    int64_t s[3];
    int nd = (int)tt->shape->n_dim - 1;
    for (int k = 0; k <= nd; k++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[k];
        int known = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        if (k == 0) {
            if (known && d->dim_value != 1)
                return mr_error(MR_ENOTFOUND,
                                "onnx: %s: graph input '%s' has a fixed batch axis of %lld; export it with a dynamic "
                                "batch axis (dynamic_axes) or batch 1",
                                x->m.path, nm, (long long)d->dim_value);
            continue;
        }
        if (!known || d->dim_value < 1 || d->dim_value > INT32_MAX)
            return mr_error(MR_EFORMAT, "onnx: %s: graph input '%s': dim %d must be a fixed size in 1..%d", x->m.path,
                            nm, k, INT32_MAX);
        s[k - 1] = d->dim_value;
    }
    int id = mr_net_input(x->net, nd, s);
    if (id < 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", mr_last_error());
        return mr_error(id, "onnx: %s: graph input '%s': %s", x->m.path, nm, msg);
    }
    ox_value *v = &x->vals[add_value(x, nm)];
    v->kind = V_NODE;
    v->node = id;
    v->shape.ndim = nd;
    for (int k = 0; k < nd; k++)
        v->shape.d[k] = s[k];
    v->lay = lay_std(nd);
    return MR_OK;
}

static int build(ox_ctx *x)
{
    ox_model *m = &x->m;
    const Onnx__ModelProto *mp = m->proto;
    m->opset = -1;
    for (size_t k = 0; k < mp->n_opset_import; k++) {
        const char *d = mp->opset_import[k]->domain;
        if ((!d || !*d || !strcmp(d, "ai.onnx")) && mp->opset_import[k]->has_version)
            m->opset = mp->opset_import[k]->version;
    }
    if (!mp->graph)
        return mr_error(MR_EFORMAT, "onnx: %s: the model has no graph (not an ONNX model, or truncated)", m->path);
    if (m->opset < 0)
        return mr_error(MR_EFORMAT, "onnx: %s: no opset of the default domain (truncated, or not an ONNX model)",
                        m->path);
    if (m->opset < 7 || m->opset > 21)
        return mr_error(MR_ENOTFOUND, "onnx: %s: opset %lld is not supported (7 to 21)", m->path, (long long)m->opset);
    Onnx__GraphProto *g = x->g = mp->graph;
    if (g->n_output != 1)
        return mr_error(MR_ENOTFOUND, "onnx: %s: the graph has %zu outputs; moreau maps one (the scores)", m->path,
                        g->n_output);
    if (g->n_node > INT32_MAX / 4 || g->n_initializer > INT32_MAX / 4 || g->n_input > INT32_MAX / 4)
        return mr_error(MR_EFORMAT, "onnx: %s: too many nodes", m->path);
    /* the value table: every name is an initializer, the input or a node output */
    int64_t maxv = (int64_t)g->n_initializer + (int64_t)g->n_input + 1;
    for (size_t i = 0; i < g->n_node; i++)
        maxv += (int64_t)g->node[i]->n_output + (int64_t)g->node[i]->n_input;
    x->tcap = 16;
    while (x->tcap < 2 * maxv)
        x->tcap *= 2;
    MR_TRY(ox_charge(m, (int64_t)x->tcap * (int64_t)sizeof(int) + maxv * (int64_t)sizeof(ox_value) +
                            (int64_t)g->n_node * 3 * (int64_t)sizeof(int),
                     "the value table"));
    x->table = malloc((size_t)x->tcap * sizeof *x->table);
    x->vals = calloc((size_t)maxv, sizeof *x->vals);
    x->done = calloc(g->n_node + 1, sizeof *x->done);
    if (!x->table || !x->vals || !x->done)
        return mr_error(MR_ENOMEM, "onnx: %s: out of memory for the value table", m->path);
    memset(x->table, 0xff, (size_t)x->tcap * sizeof *x->table);
    for (size_t k = 0; k < g->n_initializer; k++) {
        const char *nm = g->initializer[k]->name;
        if (!nm || !*nm)
            return mr_error(MR_EFORMAT, "onnx: %s: initializer %zu has no name", m->path, k);
        ox_value *v = &x->vals[add_value(x, nm)];
        if (v->init)
            return mr_error(MR_EFORMAT, "onnx: %s: two initializers are named '%s'", m->path, nm);
        v->init = g->initializer[k];
    }
    const Onnx__ValueInfoProto *input = NULL;
    for (size_t k = 0; k < g->n_input; k++) {
        const char *nm = g->input[k]->name;
        if (!nm)
            return mr_error(MR_EFORMAT, "onnx: %s: graph input %zu has no name", m->path, k);
        int v = find_value(x, nm);
        if (v >= 0 && x->vals[v].init)
            continue; /* IR < 4 lists initializers as inputs too */
        if (input)
            return mr_error(MR_ENOTFOUND, "onnx: %s: the graph has inputs '%s' and '%s'; moreau maps one", m->path,
                            input->name, nm);
        input = g->input[k];
    }
    if (!input)
        return mr_error(MR_EFORMAT, "onnx: %s: the graph has no input", m->path);
    MR_TRY(declare_input(x, input));
    int n = (int)g->n_node;
    for (int i = 0; i < n; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        if (!nd->op_type)
            return mr_error(MR_EFORMAT, "onnx: %s: node %d has no op type", m->path, i);
        if (nd->domain && *nd->domain && strcmp(nd->domain, "ai.onnx"))
            return node_error(x, i, MR_ENOTFOUND, "domain '%s' is not supported (only the default ONNX domain)",
                              nd->domain);
        if (nd->n_output < 1 || !*nd->output[0])
            return node_error(x, i, MR_EFORMAT, "the node has no output");
        for (size_t k = 0; k < nd->n_output; k++) {
            if (!*nd->output[k])
                continue;
            ox_value *v = &x->vals[add_value(x, nd->output[k])];
            if (v->producer >= 0 || v->init || v->kind == V_NODE)
                return node_error(x, i, MR_EFORMAT, "output '%s' is already produced elsewhere", nd->output[k]);
            v->producer = i;
        }
    }
    int outv = find_value(x, g->output[0]->name ? g->output[0]->name : "");
    if (outv < 0)
        return mr_error(MR_EFORMAT, "onnx: %s: the graph output '%s' is not produced by any node", m->path,
                        g->output[0]->name ? g->output[0]->name : "");
    x->vals[outv].is_output = 1;
    /* dangling inputs; consumers; in-degrees for Kahn's sort */
    int *indeg = calloc((size_t)n + 1, sizeof *indeg), *order = calloc((size_t)n + 1, sizeof *order),
        *need = calloc((size_t)n + 1, sizeof *need);
    int rc = indeg && order && need ? MR_OK : mr_error(MR_ENOMEM, "onnx: out of memory");
    for (int i = 0; rc == MR_OK && i < n; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        for (size_t k = 0; k < nd->n_input && rc == MR_OK; k++) {
            if (!*nd->input[k])
                continue;
            int v = find_value(x, nd->input[k]);
            if (v < 0) {
                rc = node_error(x, i, MR_EFORMAT,
                                "input '%s' is dangling: no node, initializer or graph input produces it",
                                nd->input[k]);
                break;
            }
            x->vals[v].consumers++;
            x->vals[v].consumer = i;
            if (x->vals[v].producer >= 0)
                indeg[i]++;
        }
    }
    /* Kahn: order[0..head) sorted; consumers found by scanning (n small enough:
     * each node's inputs are visited once per producer) */
    int head = 0, tail = 0;
    for (int i = 0; rc == MR_OK && i < n; i++)
        if (!indeg[i])
            order[tail++] = i;
    /* the consumers of each node, as an adjacency list over values */
    int *first = NULL, *next = NULL;
    if (rc == MR_OK) {
        int64_t edges = 0;
        for (int i = 0; i < n; i++)
            edges += (int64_t)g->node[i]->n_input;
        first = malloc((size_t)n * sizeof *first + 1);
        next = malloc((size_t)(edges * 2 + 1) * sizeof *next);
        if (!first || !next)
            rc = mr_error(MR_ENOMEM, "onnx: out of memory");
        else {
            for (int i = 0; i < n; i++)
                first[i] = -1;
            /* next[2e] = consumer, next[2e+1] = the producer's next edge */
            int64_t e = 0;
            for (int i = 0; i < n; i++)
                for (size_t k = 0; k < g->node[i]->n_input; k++) {
                    if (!*g->node[i]->input[k])
                        continue;
                    int p = x->vals[find_value(x, g->node[i]->input[k])].producer;
                    if (p < 0)
                        continue;
                    next[2 * e] = i;
                    next[2 * e + 1] = first[p];
                    first[p] = (int)e++;
                }
        }
    }
    while (rc == MR_OK && head < tail) {
        int i = order[head++];
        for (int e = first[i]; e >= 0; e = next[2 * e + 1])
            if (--indeg[next[2 * e]] == 0)
                order[tail++] = next[2 * e];
    }
    if (rc == MR_OK && tail < n) {
        int i = 0;
        while (indeg[i] == 0)
            i++;
        rc = node_error(x, i, MR_EFORMAT, "the graph has a cycle through this node");
    }
    free(first);
    free(next);
    /* the nodes the output depends on, in reverse order */
    if (rc == MR_OK && x->vals[outv].producer >= 0)
        need[x->vals[outv].producer] = 1;
    for (int t = n - 1; rc == MR_OK && t >= 0; t--) {
        int i = order[t];
        if (!need[i])
            continue;
        for (size_t k = 0; k < g->node[i]->n_input; k++)
            if (*g->node[i]->input[k]) {
                int p = x->vals[find_value(x, g->node[i]->input[k])].producer;
                if (p >= 0)
                    need[p] = 1;
            }
    }
    for (int t = 0; rc == MR_OK && t < n; t++) {
        int i = order[t];
        if (need[i] && !x->done[i]) {
            rc = map_node(x, i);
            x->done[i] = 1;
        }
    }
    free(indeg);
    free(order);
    free(need);
    MR_TRY(rc);
    const ox_value *ov = &x->vals[outv];
    if (ov->kind != V_NODE || ov->node == 0)
        return mr_error(MR_ENOTFOUND, "onnx: %s: the graph output '%s' is %s, not computed from the input", m->path,
                        ov->name, ov->kind == V_CONST ? "a constant" : "the input itself");
    if (!lay_is_std(&ov->lay)) {
        char ds[160];
        return mr_error(MR_ENOTFOUND, "onnx: %s: the graph output '%s' is %s: the batch axis N is not its first dim",
                        m->path, ov->name, value_dims_str(ov, ds, sizeof ds));
    }
    /* the output's declared shape, where it gives one, must be the mapped one */
    const Onnx__TypeProto *tp = g->output[0]->type;
    if (tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type && tp->tensor_type->shape) {
        const Onnx__TensorShapeProto *sp = tp->tensor_type->shape;
        int ok = (int)sp->n_dim == ov->shape.ndim + 1;
        for (int k = 1; ok && k < (int)sp->n_dim; k++)
            if (sp->dim[k]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
                ok = sp->dim[k]->dim_value == ov->shape.d[k - 1];
        if (!ok) {
            char s1[64];
            return mr_error(MR_ESHAPE, "onnx: %s: the graph output '%s' is declared with %zu dims, the mapped network gives Nx%s",
                            m->path, ov->name, sp->n_dim, mr_shape_str(&ov->shape, s1, sizeof s1));
        }
    }
    return mr_net_set_output(x->net, ov->node);
}

int mr_net_from_onnx(mr_net **out, const char *path, const mr_onnx_options *opts)
{
    if (!out || !path)
        return mr_error(MR_EINVAL, "mr_net_from_onnx: NULL argument");
    *out = NULL;
    mr_onnx_options dflt = {0};
    if (!opts)
        opts = &dflt;
    if (!(opts->softplus_beta >= 0) || !isfinite(opts->softplus_beta))
        return mr_error(MR_EINVAL, "mr_net_from_onnx: softplus_beta must be finite and >= 0 (0 keeps ReLU), got %g",
                        (double)opts->softplus_beta);
    if (opts->max_bytes < 0)
        return mr_error(MR_EINVAL, "mr_net_from_onnx: max_bytes must be >= 0 (0: the loader budget), got %lld",
                        (long long)opts->max_bytes);
    ox_ctx x;
    memset(&x, 0, sizeof x);
    x.opts = opts;
    int rc = ox_model_open(&x.m, path, opts->max_bytes > 0 ? opts->max_bytes : mr_get_loader_budget());
    if (rc == MR_OK)
        rc = mr_net_new(&x.net);
    if (rc == MR_OK)
        rc = build(&x);
    for (int v = 0; v < x.nvals; v++)
        if (x.vals[v].own)
            ox_const_free(x.vals[v].c);
    for (int c = 0; c < x.nchains; c++)
        free(x.chains[c].vals);
    free(x.chains);
    free(x.vals);
    free(x.table);
    free(x.done);
    ox_model_close(&x.m);
    if (rc < 0) {
        mr_net_free(x.net);
        return rc;
    }
    *out = x.net;
    return MR_OK;
}
