/*
 * onnx_fold.c — ONNX nodes on constants evaluated when the graph is read
 * (onnx_graph.h lists the reader's files), as the ONNX operator
 * specification says, on int64 or float32 constants.
 *
 * Shapes that count N (PyTorch's dynamic batch axis: Shape -> Gather ->
 * Unsqueeze -> Concat -> Reshape, Expand of the class token) are folded, N
 * kept symbolic: an int64 entry k·N (ox_const.nsym) goes through Shape,
 * Gather, Slice, Concat, (Un)Squeeze, Reshape, Transpose, Cast, Identity,
 * Where, and through Mul, Div, Add, Sub, Equal where the result is exact for
 * every N >= 1 (sym_arith); anything else on it is refused, naming the node.
 */
#include "onnx_graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        return ox_node_error(x, i, MR_ENOTFOUND, "folding a constant of %lld entries is not supported", numel);
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
        return ox_node_error(x, i, MR_EFORMAT, "needs %d inputs", where ? 3 : 2);
    if ((a->i != NULL) != (b->i != NULL))
        return ox_node_error(x, i, MR_ENOTFOUND, "inputs '%s' and '%s' have different element types (int and float)",
                             a->name, b->name);
    const ox_const *cs[3] = {a, b, in[0]};
    int r;
    int64_t dims[OX_MAX_DIMS];
    if (!bcast_dims(cs, where ? 3 : 2, &r, dims)) {
        char d0[160], d1[160];
        return ox_node_error(x, i, MR_ESHAPE, "constants of dims %s and %s do not broadcast",
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
                    return ox_node_error(x, i, MR_EFORMAT, "%s %c %s overflows int64 or divides by zero", s0, code, s1);
                return ox_node_error(x, i, MR_ENOTFOUND,
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
    MR_TRY(ox_check_attrs(x, i, known));
    ox_value *v = ox_input_value(x, i, 0);
    if (!v)
        return ox_node_error(x, i, MR_EFORMAT, "input 0 is missing");
    MR_TRY(ox_materialize(x, v));
    int64_t dims[OX_MAX_DIMS], coef[OX_MAX_DIMS] = {0};
    int r;
    if (v->kind == V_NODE) {
        r = v->lay.rank;
        ox_value_dims(v, dims, coef);
    } else if (v->kind == V_CONST) {
        r = v->c->ndim;
        memcpy(dims, v->c->dims, sizeof dims);
    } else {
        return ox_node_error(x, i, MR_ENOTFOUND, "input 0 ('%s') has no value here", v->name);
    }
    int64_t st, en;
    MR_TRY(ox_attr_int(x, i, "start", 0, &st));
    MR_TRY(ox_attr_int(x, i, "end", r, &en));
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
    ox_value *o = &x->vals[ox_find_value(x, x->g->node[i]->output[0])];
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

/* Pow(a, b) and Sqrt(a) of float constants (numpy broadcasting): an
 * attention scale PyTorch computes from a traced shape, head_dim ** -0.5 or
 * sqrt(head_dim), folds to its number. */
static int fold_pow_sqrt(ox_ctx *x, int i, int is_pow, ox_const *const *in, ox_const **out)
{
    const ox_const *a = in[0], *b = is_pow ? in[1] : in[0];
    if (!a || !b)
        return ox_node_error(x, i, MR_EFORMAT, "needs %d inputs", is_pow ? 2 : 1);
    if (!a->f || !b->f)
        return ox_node_error(x, i, MR_ENOTFOUND, "folding a %s of integers is not supported (FLOAT constants)",
                             is_pow ? "Pow" : "Sqrt");
    const ox_const *cs[2] = {a, b};
    int r;
    int64_t dims[OX_MAX_DIMS];
    if (!bcast_dims(cs, 2, &r, dims)) {
        char d0[160], d1[160];
        return ox_node_error(x, i, MR_ESHAPE, "constants of dims %s and %s do not broadcast",
                             ox_dims_str(a->ndim, a->dims, d0, sizeof d0), ox_dims_str(b->ndim, b->dims, d1, sizeof d1));
    }
    MR_TRY(fold_new(x, i, 0, r, dims, 0, out));
    for (int64_t e = 0; e < (*out)->numel; e++) {
        float fa = a->f[bcast_src(a, r, dims, e)];
        (*out)->f[e] = is_pow ? powf(fa, b->f[bcast_src(b, r, dims, e)]) : sqrtf(fa);
    }
    return MR_OK;
}

int ox_fold_node(ox_ctx *x, int i, int *folded)
{
    const Onnx__NodeProto *n = x->g->node[i];
    const char *op = n->op_type;
    static const char *const foldable[] = {"ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast",
                                           "Squeeze", "Unsqueeze", "Gather", "Mul", "Div", "Add", "Sub",
                                           "Equal", "Where", "Expand", "Pow", "Sqrt", NULL};
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
    int k = ox_ninputs(n);
    ox_const *in[8] = {0};
    if (k < 1 || k > 8)
        return MR_OK;
    for (int j = 0; j < k; j++) {
        ox_value *v = ox_input_value(x, i, j);
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
            return MR_OK; /* the class token expanded to the batch: ox_map_expand */
        int data = arith ? strcmp(op, "Where") || j > 0
                         : !strcmp(op, "Concat") || (j == 0 && strcmp(op, "ConstantOfShape") && strcmp(op, "Expand"));
        if (!data)
            return ox_sym_error(x, i, j, ox_input_value(x, i, j)->name);
        sym = 1;
    }
    ox_const *r = NULL, *c = in[0];
    if (!c)
        return ox_node_error(x, i, MR_EFORMAT, "input 0 is missing");
    int is_pow = !strcmp(op, "Pow");
    int64_t dims[OX_MAX_DIMS], st[OX_MAX_DIMS];
    char ds[160];
    if (is_pow || !strcmp(op, "Sqrt")) {
        if (sym)
            return ox_sym_error(x, i, 0, ox_input_value(x, i, 0)->name);
        MR_TRY(fold_pow_sqrt(x, i, is_pow, in, &r));
    } else if (!strcmp(op, "ConstantOfShape")) {
        if (c->ndim != 1 || c->numel > OX_MAX_DIMS)
            return ox_node_error(x, i, MR_EFORMAT, "input 'input' must be a 1-D shape");
        for (int d = 0; d < c->numel; d++)
            dims[d] = cget_i(c, d);
        const Onnx__AttributeProto *va = ox_attr(n, "value");
        ox_const *val = NULL;
        if (va && va->t) {
            int32_t ty = va->t->has_data_type ? va->t->data_type : 0;
            MR_TRY(ox_node_const(x, i, &val, va->t, ty == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ||
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
            return ox_node_error(x, i, MR_EFORMAT, "the target shape must be a 1-D INT64 constant");
        ox_const shape = {0};
        shape.ndim = (int)in[1]->numel;
        for (int d = 0; d < shape.ndim; d++)
            if ((shape.dims[d] = in[1]->i[d]) < 0)
                return ox_node_error(x, i, MR_EFORMAT, "the target shape has the dim %lld", (long long)shape.dims[d]);
        const ox_const *cs[2] = {c, &shape};
        int nd;
        if (!bcast_dims(cs, 2, &nd, dims))
            return ox_node_error(x, i, MR_ESHAPE, "the constant '%s' (%s) does not broadcast to %s", c->name,
                                 ox_dims_str(c->ndim, c->dims, ds, sizeof ds),
                                 ox_dims_str(shape.ndim, shape.dims, (char[160]){0}, 160));
        MR_TRY(fold_new(x, i, sym, nd, dims, c->i != NULL, &r));
        for (int64_t e = 0; e < r->numel; e++)
            cset(r, e, c, bcast_src(c, nd, dims, e));
    } else if (!strcmp(op, "Cast")) {
        int64_t to;
        MR_TRY(ox_attr_int(x, i, "to", 1, &to));
        int is_bool = to == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
        int is_int =
            is_bool || to == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || to == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
        if (!is_int && to != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && to != ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE)
            return ox_node_error(x, i, MR_ENOTFOUND,
                                 "attribute 'to' = %lld is not supported (FLOAT, DOUBLE, INT64, INT32, BOOL)",
                                 (long long)to);
        if (!is_int && c->nsym)
            return ox_sym_error(x, i, 0, ox_input_value(x, i, 0)->name);
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
        MR_TRY(ox_attr_int(x, i, "axis", 0, &axis));
        if (axis < 0)
            axis += c->ndim;
        if (axis < 0 || axis >= c->ndim)
            return ox_node_error(x, i, MR_EFORMAT, "attribute 'axis' is out of range");
        memcpy(dims, c->dims, (size_t)c->ndim * sizeof *dims);
        dims[axis] = 0;
        for (int j = 0; j < k; j++) {
            if (!in[j] || in[j]->ndim != c->ndim)
                return ox_node_error(x, i, MR_ESHAPE, "constant inputs of different ranks");
            for (int d = 0; d < c->ndim; d++)
                if (d != axis && in[j]->dims[d] != c->dims[d])
                    return ox_node_error(x, i, MR_ESHAPE, "constant inputs disagree off the axis");
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
                return ox_node_error(x, i, MR_EFORMAT, "the target shape must be a 1-D INT64 constant");
            nd = (int)in[1]->numel;
            int64_t known = 1, minus = -1;
            for (int d = 0; d < nd; d++) {
                dims[d] = in[1]->i[d] == 0 && d < c->ndim ? c->dims[d] : in[1]->i[d];
                if (dims[d] == -1)
                    minus = d;
                else if (dims[d] < 0 || mr_size_mul(known, dims[d], &known))
                    return ox_node_error(x, i, MR_EFORMAT, "a bad target shape");
            }
            if (minus >= 0)
                dims[minus] = known ? c->numel / known : 0;
        } else {
            int64_t axes[OX_MAX_DIMS];
            int na;
            MR_TRY(ox_axes_of(x, i, 13, axes, &na));
            int r_out = op[0] == 'U' ? c->ndim + na : c->ndim;
            unsigned mask = 0;
            for (int d = 0; d < na; d++) {
                int64_t a = axes[d] < 0 ? axes[d] + r_out : axes[d];
                if (a < 0 || a >= r_out || a >= OX_MAX_DIMS)
                    return ox_node_error(x, i, MR_EFORMAT, "axis %lld is out of range", (long long)axes[d]);
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
            return ox_node_error(x, i, MR_EFORMAT, "too many dims");
        MR_TRY(fold_new(x, i, sym, nd, dims, c->i != NULL, &r));
        if (r->numel != c->numel) {
            ox_const_free(r);
            return ox_node_error(x, i, MR_ESHAPE, "reshaping a constant of %lld entries to %s", (long long)c->numel,
                                 ox_dims_str(nd, dims, ds, sizeof ds));
        }
        for (int64_t e = 0; e < r->numel; e++)
            cset(r, e, c, e);
    } else if (!strcmp(op, "Transpose")) {
        const Onnx__AttributeProto *pa = ox_attr(n, "perm");
        int64_t perm[OX_MAX_DIMS];
        for (int d = 0; d < c->ndim; d++)
            perm[d] = pa && (int)pa->n_ints == c->ndim ? pa->ints[d] : c->ndim - 1 - d;
        for (int d = 0; d < c->ndim; d++) {
            if (perm[d] < 0 || perm[d] >= c->ndim)
                return ox_node_error(x, i, MR_EFORMAT, "attribute 'perm' is out of range");
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
        MR_TRY(ox_attr_int(x, i, "axis", 0, &axis));
        if (axis < 0)
            axis += c->ndim;
        if (axis < 0 || axis >= c->ndim || c->ndim - 1 + in[1]->ndim > OX_MAX_DIMS)
            return ox_node_error(x, i, MR_EFORMAT, "attribute 'axis' is out of range, or too many dims");
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
                return ox_node_error(x, i, MR_EFORMAT, "index %lld out of range for a dim of %lld", (long long)idx,
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
            MR_TRY(ox_attr_int(x, i, "axis", 0, &axis));
            if (axis < 0)
                axis += c->ndim;
            if (!in[1] || in[1]->ndim != 0 || axis < 0 || axis >= c->ndim)
                return ox_node_error(x, i, MR_ENOTFOUND, "only a scalar index is supported");
            int64_t idx = cget_i(in[1], 0);
            if (idx < 0)
                idx += c->dims[axis];
            if (idx < 0 || idx >= c->dims[axis])
                return ox_node_error(x, i, MR_EFORMAT, "index out of range");
            start[axis] = idx;
            dims[axis] = 1;
            drop = (int)axis;
        } else {
            if (k < 3 || !in[1] || !in[2] || x->m.opset < 10)
                return ox_node_error(x, i, MR_ENOTFOUND, "Slice needs starts and ends inputs");
            if (in[2]->numel != in[1]->numel || (in[3] && in[3]->numel != in[1]->numel) ||
                (in[4] && in[4]->numel != in[1]->numel))
                return ox_node_error(x, i, MR_EFORMAT, "starts, ends, axes and steps differ in length");
            for (int64_t j = 0; j < in[1]->numel; j++) {
                int64_t a = in[3] ? cget_i(in[3], j) : j, sp = in[4] ? cget_i(in[4], j) : 1;
                if (a < 0)
                    a += c->ndim;
                if (a < 0 || a >= c->ndim || sp == 0 || j >= in[2]->numel)
                    return ox_node_error(x, i, MR_EFORMAT, "a bad slice");
                int64_t dim = c->dims[a], b = cget_i(in[1], j), e = cget_i(in[2], j);
                /* a step longer than the dim takes one entry either way: bound it so the
                 * counts below cannot overflow (a file may say INT64_MAX) */
                sp = sp > dim + 1 ? dim + 1 : sp < -(dim + 1) ? -(dim + 1) : sp;
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
    ox_value *v = &x->vals[ox_find_value(x, n->output[0])];
    v->kind = V_CONST;
    v->c = r;
    v->own = 1;
    *folded = 1;
    return MR_OK;
}
