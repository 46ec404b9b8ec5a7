/*
 * onnx.c — mr_net_from_onnx: an ONNX graph mapped onto the engine's ops
 * (docs/models.md, "ONNX import"; the operator semantics are those of the
 * ONNX operator specification, https://onnx.ai/onnx/operators/). This file
 * checks the graph and walks it, and holds the helpers the mapping files
 * share (onnx_graph.h lists the files: the ops in onnx_ops.c and
 * onnx_shape.c, the folding of constants and shapes in onnx_fold.c).
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
 */
#include "onnx_graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- value table */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int ox_find_value(const ox_ctx *x, const char *name)
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

int ox_node_error(ox_ctx *x, int i, int code, const char *fmt, ...)
{
    const Onnx__NodeProto *n = x->g->node[i];
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* a hostile file's names can be any length: the reason must survive them */
    const char *name = ox_node_name(n), *op = n->op_type ? n->op_type : "?";
    int nl = (int)strnlen(name, 97), ol = (int)strnlen(op, 41);
    return mr_error(code, "onnx: %s: node '%.*s%s' (#%d, %.*s%s): %s", x->m.path, nl > 96 ? 96 : nl, name,
                    nl > 96 ? "..." : "", i, ol > 40 ? 40 : ol, op, ol > 40 ? "..." : "", msg);
}

int ox_node_const(ox_ctx *x, int i, ox_const **out, const Onnx__TensorProto *t, int as_int)
{
    int rc = ox_const_from_tensor(out, &x->m, t, as_int);
    if (rc >= 0)
        return rc;
    char msg[560];
    const char *e = mr_last_error(), *tensor = strstr(e, ": tensor '");
    snprintf(msg, sizeof msg, "%s", tensor ? tensor + 2 : e); /* drop "onnx: PATH: ", which ox_node_error gives */
    return ox_node_error(x, i, rc, "%s", msg);
}

/* ----------------------------------------------------------- attributes */

const Onnx__AttributeProto *ox_attr(const Onnx__NodeProto *n, const char *name)
{
    for (size_t k = 0; k < n->n_attribute; k++)
        if (n->attribute[k]->name && !strcmp(n->attribute[k]->name, name))
            return n->attribute[k];
    return NULL;
}

/* Refuses any attribute not in the NULL-terminated list `known`. */
int ox_check_attrs(ox_ctx *x, int i, const char *const *known)
{
    const Onnx__NodeProto *n = x->g->node[i];
    for (size_t k = 0; k < n->n_attribute; k++) {
        const char *name = n->attribute[k]->name ? n->attribute[k]->name : "";
        int ok = 0;
        for (const char *const *p = known; *p && !ok; p++)
            ok = !strcmp(*p, name);
        if (!ok)
            return ox_node_error(x, i, MR_ENOTFOUND, "attribute '%s' is not supported", name);
    }
    return MR_OK;
}

int ox_attr_int(ox_ctx *x, int i, const char *name, int64_t dflt, int64_t *out)
{
    const Onnx__AttributeProto *a = ox_attr(x->g->node[i], name);
    *out = dflt;
    if (!a)
        return MR_OK;
    if (!a->has_i || (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT))
        return ox_node_error(x, i, MR_EFORMAT, "attribute '%s' must be an integer", name);
    *out = a->i;
    return MR_OK;
}

int ox_attr_float(ox_ctx *x, int i, const char *name, float dflt, float *out)
{
    const Onnx__AttributeProto *a = ox_attr(x->g->node[i], name);
    *out = dflt;
    if (!a)
        return MR_OK;
    if (!a->has_f || (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT))
        return ox_node_error(x, i, MR_EFORMAT, "attribute '%s' must be a float", name);
    *out = a->f;
    return MR_OK;
}

/* An INTS attribute of exactly `want` entries (or absent: *n = 0). */
int ox_attr_ints(ox_ctx *x, int i, const char *name, int want, int64_t *out, int *n)
{
    const Onnx__AttributeProto *a = ox_attr(x->g->node[i], name);
    *n = 0;
    if (!a)
        return MR_OK;
    if ((int64_t)a->n_ints != want)
        return ox_node_error(x, i, MR_ENOTFOUND, "attribute '%s' has %zu entries; moreau maps 2-D ops (%d)", name,
                             a->n_ints, want);
    for (int k = 0; k < want; k++)
        out[k] = a->ints[k];
    *n = want;
    return MR_OK;
}

int ox_attr_string_is(ox_ctx *x, int i, const char *name, const char *const *allowed)
{
    const Onnx__AttributeProto *a = ox_attr(x->g->node[i], name);
    if (!a)
        return MR_OK;
    char s[64] = "";
    if (a->has_s)
        snprintf(s, sizeof s, "%.*s", (int)MR_MIN(a->s.len, 60), (const char *)a->s.data);
    for (const char *const *p = allowed; *p; p++)
        if (!strcmp(s, *p))
            return MR_OK;
    return ox_node_error(x, i, MR_ENOTFOUND, "attribute '%s' = '%s' is not supported", name, s);
}

/* --------------------------------------------------------- layouts */

/* ONNX dims with N: "Nx3x4", "5x(N*2)x16", "(5*N)x32". */
const char *ox_sym_dims_str(int n, const int64_t *dims, const int64_t *coef, char *buf, size_t len)
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
const char *ox_value_dims_str(const ox_value *v, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = 0;
    for (int a = 0; a < v->lay.rank && k < len; a++) {
        const char *sep = a ? "x" : "";
        if (a != v->lay.bx)
            k += (size_t)snprintf(buf + k, len - k, "%s%lld", sep, (long long)v->shape.d[ox_lay_ps_axis(&v->lay, a)]);
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

ox_value *ox_input_value(ox_ctx *x, int i, int k)
{
    const Onnx__NodeProto *n = x->g->node[i];
    if (k >= (int)n->n_input || !*n->input[k])
        return NULL;
    return &x->vals[ox_find_value(x, n->input[k])];
}

int ox_materialize(ox_ctx *x, ox_value *v)
{
    if (v->kind == V_NONE && v->init) {
        MR_TRY(ox_const_from_tensor(&v->c, &x->m, v->init, 0));
        v->kind = V_CONST;
        v->own = 1;
    }
    return MR_OK;
}

/* Input k as an engine node, N anywhere (ops that follow the layout). */
int ox_in_node_any(ox_ctx *x, int i, int k, ox_value **out)
{
    ox_value *v = ox_input_value(x, i, k);
    if (!v)
        return ox_node_error(x, i, MR_EFORMAT, "input %d is missing", k);
    if (v->kind != V_NODE)
        return ox_node_error(x, i, MR_ENOTFOUND,
                             "input %d ('%s') is a constant; moreau maps this op on values computed from the "
                             "graph input%s",
                             k, v->name,
                             x->batch_one ? " (exported at the fixed batch 1, a ViT's class token is expanded to a "
                                            "constant: export with a dynamic batch axis, dynamic_axes)"
                                          : "");
    *out = v;
    return MR_OK;
}

/* Input k as an engine node with N first (the standard layout). */
int ox_in_node(ox_ctx *x, int i, int k, ox_value **out)
{
    MR_TRY(ox_in_node_any(x, i, k, out));
    if (!ox_lay_is_std(&(*out)->lay)) {
        char ds[160];
        return ox_node_error(x, i, MR_ENOTFOUND,
                             "input %d ('%s') is %s: the batch axis N is not its first dim alone; moreau maps this "
                             "op with N first",
                             k, (*out)->name, ox_value_dims_str(*out, ds, sizeof ds));
    }
    return MR_OK;
}

/* The refusal of a constant that counts N where a number is needed. */
int ox_sym_error(ox_ctx *x, int i, int k, const char *name)
{
    return ox_node_error(x, i, MR_ENOTFOUND,
                         "input %d ('%s') counts the batch axis N (a shape taken from a computed value); moreau "
                         "needs a number known when the graph is read",
                         k, name);
}

/* Input k as a float constant (NULL if absent and optional). */
int ox_in_const(ox_ctx *x, int i, int k, int optional, ox_const **out)
{
    ox_value *v = ox_input_value(x, i, k);
    *out = NULL;
    if (!v) {
        if (optional)
            return MR_OK;
        return ox_node_error(x, i, MR_EFORMAT, "input %d is missing", k);
    }
    MR_TRY(ox_materialize(x, v));
    if (v->kind != V_CONST)
        return ox_node_error(x, i, MR_ENOTFOUND, "input %d ('%s') must be a constant (an initializer)", k,
                             v->name);
    if (v->c->nsym)
        return ox_sym_error(x, i, k, v->name);
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
int ox_in_ints_any(ox_ctx *x, int i, int k, int optional, ox_const **out)
{
    ox_value *v = ox_input_value(x, i, k);
    *out = NULL;
    if (!v) {
        if (optional)
            return MR_OK;
        return ox_node_error(x, i, MR_EFORMAT, "input %d is missing", k);
    }
    if (v->kind == V_NONE && v->init) {
        MR_TRY(ox_const_from_tensor(&v->c, &x->m, v->init, 1));
        v->kind = V_CONST;
        v->own = 1;
    }
    if (v->kind != V_CONST || !v->c->i)
        return ox_node_error(x, i, MR_ENOTFOUND, "input %d ('%s') must be a constant INT64 tensor", k, v->name);
    *out = v->c;
    return MR_OK;
}

/* Input k as an int64 constant of plain numbers (shapes, axes, pads). */
int ox_in_ints(ox_ctx *x, int i, int k, int optional, ox_const **out)
{
    MR_TRY(ox_in_ints_any(x, i, k, optional, out));
    if (*out && (*out)->nsym)
        return ox_sym_error(x, i, k, ox_input_value(x, i, k)->name);
    return MR_OK;
}

/* Output k of node i becomes engine node `node`, N where lay says (NULL:
 * first). */
int ox_set_node_output_lay(ox_ctx *x, int i, int k, int node, const ox_layout *lay)
{
    ox_value *v = &x->vals[ox_find_value(x, x->g->node[i]->output[k])];
    int ndim;
    int64_t s[8];
    MR_TRY(mr_net_node_shape(x->net, node, &ndim, s));
    v->kind = V_NODE;
    v->node = node;
    v->shape.ndim = ndim;
    for (int d = 0; d < ndim; d++)
        v->shape.d[d] = s[d];
    v->lay = lay ? *lay : ox_lay_std(ndim);
    if (v->lay.rank - 1 + ox_lay_group(&v->lay) != ndim) /* a mapping's own mistake, never the file's */
        return ox_node_error(x, i, MR_EINVAL, "internal: layout of rank %d for a per-sample shape of %d dims",
                             v->lay.rank, ndim);
    return MR_OK;
}

int ox_set_node_output(ox_ctx *x, int i, int k, int node) { return ox_set_node_output_lay(x, i, k, node, NULL); }

void ox_alias_output(ox_ctx *x, int i, const ox_value *src)
{
    ox_value *v = &x->vals[ox_find_value(x, x->g->node[i]->output[0])];
    v->kind = src->kind;
    v->node = src->node;
    v->shape = src->shape;
    v->lay = src->lay;
    v->c = src->c;
    v->own = 0;
}

/* Outputs past the first must be unused (Dropout's mask, MaxPool's indices,
 * BatchNormalization's training statistics). */
int ox_only_first_output(ox_ctx *x, int i)
{
    const Onnx__NodeProto *n = x->g->node[i];
    for (size_t k = 1; k < n->n_output; k++) {
        if (!*n->output[k])
            continue;
        ox_value *v = &x->vals[ox_find_value(x, n->output[k])];
        if (v->consumers || v->is_output)
            return ox_node_error(x, i, MR_ENOTFOUND, "output %zu ('%s') is used; moreau maps only the first", k,
                                 v->name);
    }
    return MR_OK;
}

/* ------------------------------------------------------------ parameters */

/* An engine parameter named `name` (suffixed "#2", "#3"... if taken) holding
 * a copy of data. */
int ox_make_param(ox_ctx *x, const char *name, int ndim, const int64_t *dims, const float *data, int kind,
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
int ox_const_param(ox_ctx *x, int i, ox_const *c, int kind, int *id)
{
    if (c->param < 0) {
        if (c->ndim < 1 || c->ndim > 4)
            return ox_node_error(x, i, MR_ESHAPE, "constant '%s' has %d dims; a parameter has 1 to 4", c->name,
                                 c->ndim);
        MR_TRY(ox_make_param(x, c->name, c->ndim, c->dims, c->f, kind, &c->param));
    }
    *id = c->param;
    return MR_OK;
}

int ox_add_node(ox_ctx *x, int i, const char *op, const int *in, int nin, const int *params, int np,
                const mr_op_attrs *a)
{
    char label[96];
    snprintf(label, sizeof label, "%s", ox_node_name(x->g->node[i]));
    int id = mr_net_node(x->net, op, in, nin, params, np, a, label);
    if (id < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", mr_last_error());
        return ox_node_error(x, i, id, "%s", msg);
    }
    return id;
}

/* The axes of Squeeze / Unsqueeze / ReduceMean: an attribute before `opset_input`,
 * input 1 from it. *n = -1: absent. */
int ox_axes_of(ox_ctx *x, int i, int64_t opset_input, int64_t *axes, int *n)
{
    *n = -1;
    if (x->m.opset < opset_input) {
        const Onnx__AttributeProto *a = ox_attr(x->g->node[i], "axes");
        if (!a)
            return MR_OK;
        if (a->n_ints > OX_MAX_DIMS)
            return ox_node_error(x, i, MR_EFORMAT, "attribute 'axes' has %zu entries", a->n_ints);
        *n = (int)a->n_ints;
        for (int k = 0; k < *n; k++)
            axes[k] = a->ints[k];
        return MR_OK;
    }
    ox_const *c;
    MR_TRY(ox_in_ints(x, i, 1, 1, &c));
    if (!c)
        return MR_OK;
    if (c->numel > OX_MAX_DIMS)
        return ox_node_error(x, i, MR_EFORMAT, "input 'axes' has %lld entries", (long long)c->numel);
    *n = (int)c->numel;
    for (int k = 0; k < *n; k++)
        axes[k] = c->i[k];
    return MR_OK;
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
            x->batch_one = known;
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
    v->lay = ox_lay_std(nd);
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
        int v = ox_find_value(x, nm);
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
            return ox_node_error(x, i, MR_ENOTFOUND, "domain '%s' is not supported (only the default ONNX domain)",
                                 nd->domain);
        if (nd->n_output < 1 || !*nd->output[0])
            return ox_node_error(x, i, MR_EFORMAT, "the node has no output");
        for (size_t k = 0; k < nd->n_output; k++) {
            if (!*nd->output[k])
                continue;
            ox_value *v = &x->vals[add_value(x, nd->output[k])];
            if (v->producer >= 0 || v->init || v->kind == V_NODE)
                return ox_node_error(x, i, MR_EFORMAT, "output '%s' is already produced elsewhere", nd->output[k]);
            v->producer = i;
        }
    }
    int outv = ox_find_value(x, g->output[0]->name ? g->output[0]->name : "");
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
            int v = ox_find_value(x, nd->input[k]);
            if (v < 0) {
                rc = ox_node_error(x, i, MR_EFORMAT,
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
                    int p = x->vals[ox_find_value(x, g->node[i]->input[k])].producer;
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
        rc = ox_node_error(x, i, MR_EFORMAT, "the graph has a cycle through this node");
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
                int p = x->vals[ox_find_value(x, g->node[i]->input[k])].producer;
                if (p >= 0)
                    need[p] = 1;
            }
    }
    for (int t = 0; rc == MR_OK && t < n; t++) {
        int i = order[t];
        if (need[i] && !x->done[i]) {
            rc = ox_map_node(x, i);
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
    if (!ox_lay_is_std(&ov->lay)) {
        char ds[160];
        return mr_error(MR_ENOTFOUND, "onnx: %s: the graph output '%s' is %s: the batch axis N is not its first dim",
                        m->path, ov->name, ox_value_dims_str(ov, ds, sizeof ds));
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
            char s1[64], s2[160] = "";
            size_t len = 0;
            for (size_t k = 0; k < sp->n_dim && len + 24 < sizeof s2; k++) {
                const Onnx__TensorShapeProto__Dimension *d = sp->dim[k];
                len += (size_t)snprintf(s2 + len, sizeof s2 - len, "%s", k ? "x" : "");
                if (k == 0 || d->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE)
                    len += (size_t)snprintf(s2 + len, sizeof s2 - len, "%s", k ? "?" : "N");
                else
                    len += (size_t)snprintf(s2 + len, sizeof s2 - len, "%lld", (long long)d->dim_value);
            }
            return mr_error(MR_ESHAPE, "onnx: %s: the graph output '%s' is declared as %s, the mapped network gives Nx%s",
                            m->path, ov->name, s2, mr_shape_str(&ov->shape, s1, sizeof s1));
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
    int rc = ox_model_open(&x.m, path, opts->max_bytes); /* 0: the default, set from the file's size */
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
