/*
 * onnx_shape.c — the ONNX ops that move or select entries: Flatten,
 * Reshape, Squeeze, Unsqueeze, Transpose, Concat, Expand, Gather, Slice
 * (onnx_graph.h lists the reader's files). They follow where the batch axis
 * N lies (ox_layout): a Transpose that moves N moves no data, a Reshape that
 * keeps N's place in the row-major order is a per-sample reshape.
 */
#include "onnx_graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Flatten / Reshape to (N, P): the engine's flatten; to the same shape: an alias. */
int ox_map_flatten(ox_ctx *x, int i)
{
    static const char *const known[] = {"axis", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node(x, i, 0, &xv));
    int64_t axis;
    MR_TRY(ox_attr_int(x, i, "axis", 1, &axis));
    int rank = xv->shape.ndim + 1;
    if (axis < 0)
        axis += rank;
    if (axis != 1)
        return ox_node_error(x, i, MR_ENOTFOUND,
                             "attribute 'axis' = %lld %s; moreau maps Flatten at axis 1 (N, everything else)",
                             (long long)axis, axis == 0 ? "merges the batch axis N" : "merges N with the first dims");
    mr_op_attrs a = {0};
    int id = ox_add_node(x, i, "flatten", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return ox_set_node_output(x, i, 0, id);
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
    ox_sym_dims_str(nt, t, coef, ts, sizeof ts);
    ox_value_dims_str(xv, xs, sizeof xs);
    int64_t P = mr_shape_numel(&xv->shape), known = coef[p];
    int minus = -1;
    for (int k = 0; k < nt; k++) {
        if (k == p)
            continue;
        if (coef[k] > 0)
            return ox_node_error(x, i, MR_ENOTFOUND, "target shape %s of the input %s counts N twice", ts, xs);
        if (t[k] == -1) {
            if (minus >= 0)
                return ox_node_error(x, i, MR_EFORMAT, "target %s has two -1", ts);
            minus = k;
        } else if (t[k] < 1 || mr_size_mul(known, t[k], &known)) {
            return ox_node_error(x, i, MR_EFORMAT, "target %s has the dim %lld", ts, (long long)t[k]);
        }
    }
    if (minus >= 0) {
        if (P % known)
            return ox_node_error(x, i, MR_ESHAPE, "target %s does not fit the input %s", ts, xs);
        t[minus] = P / known;
        known = P;
    }
    if (known != P)
        return ox_node_error(x, i, MR_ESHAPE, "target %s does not fit the input %s", ts, xs);
    int64_t U = xv->lay.o, P0 = 1;
    for (int k = 0; k < xv->lay.bx; k++)
        U *= xv->shape.d[k];
    for (int k = 0; k < p; k++)
        P0 *= t[k];
    if (U % P0 || coef[p] % (U / P0)) {
        ox_sym_dims_str(nt, t, coef, ts, sizeof ts);
        return ox_node_error(x, i, MR_ENOTFOUND,
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
        return ox_node_error(x, i, MR_ENOTFOUND, "a per-sample shape of %d dims (%s) is not supported (1 to 3)", nps,
                             ox_dims_str(nps, ps, pss, sizeof pss));
    }
    return reshape_to(x, i, xv, nps, ps, &lay);
}

int ox_map_reshape(ox_ctx *x, int i)
{
    static const char *const known[] = {"allowzero", "shape", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node_any(x, i, 0, &xv));
    int64_t allowzero;
    MR_TRY(ox_attr_int(x, i, "allowzero", 0, &allowzero));
    int64_t t[OX_MAX_DIMS], coef[OX_MAX_DIMS] = {0};
    int nt;
    const Onnx__AttributeProto *sa = ox_attr(x->g->node[i], "shape"); /* opset < 5 */
    if (sa) {
        if (sa->n_ints > OX_MAX_DIMS)
            return ox_node_error(x, i, MR_ENOTFOUND, "a target of %zu dims", sa->n_ints);
        nt = (int)sa->n_ints;
        if (nt < 1)
            return ox_node_error(x, i, MR_EFORMAT, "attribute 'shape' has no entries");
        memcpy(t, sa->ints, (size_t)nt * sizeof *t);
    } else {
        ox_const *s;
        MR_TRY(ox_in_ints_any(x, i, 1, 0, &s));
        if (s->ndim != 1 || s->numel > OX_MAX_DIMS || s->numel < 1)
            return ox_node_error(x, i, MR_ENOTFOUND, "the target shape '%s' must be 1-D with 1 to %d entries", s->name,
                                 OX_MAX_DIMS);
        nt = (int)s->numel;
        memcpy(t, s->i, (size_t)nt * sizeof *t);
        if (s->nsym)
            memcpy(coef, s->nsym, (size_t)nt * sizeof *coef);
    }
    /* A literal -1 first, every other entry known (x.reshape(-1, E) of an
     * N x L x E input: the tokens of all items as rows): under a symbolic N
     * it stands for N (P / rest), N outermost, and is mapped as that count
     * of N, like the target PyTorch computes from Shape when it is written
     * x.reshape(N * L, E). */
    if (!x->batch_one && ox_lay_is_std(&xv->lay) && t[0] == -1 && coef[0] == 0 && !sa) {
        int64_t rest = 1, P = mr_shape_numel(&xv->shape);
        int all_known = 1;
        for (int k = 1; k < nt && all_known; k++)
            all_known = coef[k] == 0 && t[k] > 0 && !mr_size_mul(rest, t[k], &rest);
        if (all_known && P % rest == 0 && P / rest > 1)
            coef[0] = P / rest;
    }
    /* a target that says where N goes: an entry counting N, or a 0 copying
     * the input's dim holding N */
    int p = -1;
    for (int k = 0; k < nt && p < 0; k++)
        if (coef[k] > 0 || (t[k] == 0 && !allowzero && k == xv->lay.bx && k < xv->lay.rank))
            p = k;
    if (p >= 0) {
        int64_t xd[OX_MAX_DIMS], xc[OX_MAX_DIMS];
        ox_value_dims(xv, xd, xc);
        for (int k = 0; k < nt; k++) {
            if (coef[k] > 0 || t[k] != 0 || allowzero)
                continue;
            if (k >= xv->lay.rank) {
                char ts[200], xs[160];
                return ox_node_error(x, i, MR_EFORMAT, "target %s copies dim %d of the input %s",
                                     ox_sym_dims_str(nt, t, coef, ts, sizeof ts), k, ox_value_dims_str(xv, xs, sizeof xs));
            }
            t[k] = xd[k];
            coef[k] = xc[k];
        }
        return reshape_sym(x, i, xv, nt, t, coef, p);
    }
    if (!ox_lay_is_std(&xv->lay)) {
        char ts[200], xs[160];
        return ox_node_error(x, i, MR_ENOTFOUND,
                             "target shape %s of the input %s does not say where the batch axis N goes (no entry "
                             "taken from the input's shape)",
                             ox_dims_str(nt, t, ts, sizeof ts), ox_value_dims_str(xv, xs, sizeof xs));
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
                return ox_node_error(x, i, MR_EFORMAT, "target %s copies dim %d of an Nx%s input", ts, k, xs);
            t[k] = xv->shape.d[k - 1];
        }
        if (t[k] == -1) {
            if (minus >= 0)
                return ox_node_error(x, i, MR_EFORMAT, "target %s has two -1", ts);
            minus = k;
        } else if (t[k] < 1 || mr_size_mul(rest, t[k], &rest)) {
            return ox_node_error(x, i, MR_EFORMAT, "target %s has the dim %lld", ts, (long long)t[k]);
        }
    }
    /* a literal 1 is the batch axis only in a graph exported at the fixed
     * batch 1; under a symbolic N it puts every item in one row */
    int batch_kept = t[0] == 0 || (t[0] == -1 && minus < 0 && rest == P) || (t[0] == 1 && x->batch_one);
    if (!batch_kept || (t[0] == -1 && minus >= 0))
        return ox_node_error(x, i, MR_ENOTFOUND,
                             "target shape %s of an Nx%s input merges the batch axis N with others; moreau maps "
                             "reshapes that keep N as the first dim",
                             ts, xs);
    if (minus >= 0) {
        if (rest == 0 || P % rest)
            return ox_node_error(x, i, MR_ESHAPE, "target %s does not fit an Nx%s input", ts, xs);
        t[minus] = P / rest;
        rest = P;
    }
    if (rest != P)
        return ox_node_error(x, i, MR_ESHAPE, "target %s does not fit an Nx%s input", ts, xs);
    return reshape_to(x, i, xv, nt - 1, t + 1, NULL);
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
            ox_alias_output(x, i, xv);
            x->vals[ox_find_value(x, x->g->node[i]->output[0])].lay = lay ? *lay : ox_lay_std(nt);
            return MR_OK;
        }
    }
    char ts[160];
    if (nt < 1 || nt > 3)
        return ox_node_error(x, i, MR_ENOTFOUND, "a per-sample shape of %d dims (%s) is not supported (1 to 3)", nt,
                             ox_dims_str(nt, t, ts, sizeof ts));
    mr_op_attrs a = {0};
    a.shape_ndim = nt;
    for (int k = 0; k < nt; k++)
        a.shape[k] = t[k];
    int id = ox_add_node(x, i, nt == 1 ? "flatten" : "reshape", &xv->node, 1, NULL, 0, nt == 1 ? &(mr_op_attrs){0} : &a);
    MR_TRY(id);
    return ox_set_node_output_lay(x, i, 0, id, lay);
}

int ox_map_squeeze(ox_ctx *x, int i, int unsqueeze)
{
    static const char *const known[] = {"axes", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node(x, i, 0, &xv));
    int64_t axes[OX_MAX_DIMS], t[OX_MAX_DIMS];
    int n, nd = xv->shape.ndim, nt = 0;
    MR_TRY(ox_axes_of(x, i, 13, axes, &n));
    int r_out = unsqueeze ? nd + 1 + (n > 0 ? n : 0) : nd + 1;
    unsigned mask = 0;
    for (int k = 0; k < n; k++) {
        int64_t a = axes[k] < 0 ? axes[k] + r_out : axes[k];
        if (a <= 0 || a >= r_out || a > 30)
            return ox_node_error(x, i, MR_ENOTFOUND, "axis %lld %s; moreau keeps the batch axis N first", (long long)axes[k],
                                 a == 0 ? "is the batch axis" : "is out of range");
        mask |= 1u << a;
    }
    if (unsqueeze) {
        if (n < 1)
            return ox_node_error(x, i, MR_EFORMAT, "Unsqueeze needs axes");
        for (int a = 1, src = 0; a < r_out; a++)
            t[nt++] = mask >> a & 1 ? 1 : xv->shape.d[src++];
    } else {
        for (int a = 1; a <= nd; a++) {
            int squeeze = n < 0 ? xv->shape.d[a - 1] == 1 : (int)(mask >> a & 1);
            if (squeeze && xv->shape.d[a - 1] != 1)
                return ox_node_error(x, i, MR_ESHAPE, "axis %d has size %lld, not 1", a, (long long)xv->shape.d[a - 1]);
            if (!squeeze)
                t[nt++] = xv->shape.d[a - 1];
        }
    }
    if (nt > 3)
        return ox_node_error(x, i, MR_ENOTFOUND, "the result has %d per-sample dims (at most 3)", nt);
    return reshape_to(x, i, xv, nt, t, NULL);
}

/* Transpose: perm over the ONNX axes. The axis holding N goes where perm
 * puts it (no data moves for it: the engine keeps N outermost); the others
 * become a per-sample transpose, none when their order is kept. */
int ox_map_transpose(ox_ctx *x, int i)
{
    static const char *const known[] = {"perm", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node_any(x, i, 0, &xv));
    int r = xv->lay.rank;
    const Onnx__AttributeProto *pa = ox_attr(x->g->node[i], "perm");
    int64_t perm[OX_MAX_DIMS];
    if (pa && (int)pa->n_ints != r)
        return ox_node_error(x, i, MR_EFORMAT, "attribute 'perm' has %zu entries for an input of rank %d", pa->n_ints, r);
    int seen = 0;
    for (int k = 0; k < r; k++) {
        perm[k] = pa ? pa->ints[k] : r - 1 - k; /* ONNX's default reverses the dims */
        if (perm[k] < 0 || perm[k] >= r || (seen >> perm[k] & 1))
            return ox_node_error(x, i, MR_EFORMAT, "attribute 'perm' is not a permutation");
        seen |= 1 << perm[k];
    }
    ox_layout lay = xv->lay;
    mr_op_attrs a = {0};
    int nps = 0, identity = 1;
    for (int k = 0; k < r; k++) {
        int src = (int)perm[k];
        if (src == xv->lay.bx) {
            lay.bx = k;
            for (int g = 0; g < ox_lay_group(&xv->lay); g++) /* o and m stay together, in order */
                a.perm[nps++] = xv->lay.bx + g;
        } else {
            a.perm[nps++] = ox_lay_ps_axis(&xv->lay, src);
        }
    }
    for (int k = 0; k < nps; k++)
        identity &= a.perm[k] == k;
    if (identity) {
        ox_alias_output(x, i, xv);
        x->vals[ox_find_value(x, x->g->node[i]->output[0])].lay = lay;
        return MR_OK;
    }
    int id = ox_add_node(x, i, "transpose", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return ox_set_node_output_lay(x, i, 0, id, &lay);
}

/* Concat of k computed values along one axis: a chain of binary concats,
 * reusing the longest chain already built over a prefix of the same values
 * (DenseNet: each layer's Concat extends the previous one by one value). */
int ox_map_concat(ox_ctx *x, int i)
{
    static const char *const known[] = {"axis", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    const Onnx__NodeProto *n = x->g->node[i];
    int k = ox_ninputs(n);
    if (k < 1)
        return ox_node_error(x, i, MR_EFORMAT, "Concat needs inputs");
    int *vals = malloc((size_t)k * sizeof *vals);
    if (!vals)
        return mr_error(MR_ENOMEM, "onnx: out of memory");
    int rc = MR_OK;
    for (int j = 0; j < k && rc == MR_OK; j++) {
        ox_value *v = NULL;
        rc = ox_in_node_any(x, i, j, &v);
        if (rc == MR_OK)
            vals[j] = (int)(v - x->vals);
        if (rc == MR_OK && !ox_lay_eq(&v->lay, &x->vals[vals[0]].lay)) {
            char d0[160], d1[160];
            rc = ox_node_error(x, i, MR_ENOTFOUND,
                               "inputs '%s' (%s) and '%s' (%s) hold the batch axis N in different places",
                               x->vals[vals[0]].name, ox_value_dims_str(&x->vals[vals[0]], d0, sizeof d0), v->name,
                               ox_value_dims_str(v, d1, sizeof d1));
        }
    }
    int64_t axis = 0;
    if (rc == MR_OK)
        rc = ox_attr_int(x, i, "axis", 1, &axis);
    int ax = rc == MR_OK ? ox_value_axis(&x->vals[vals[0]], axis) : 0;
    if (rc == MR_OK && ax < 0)
        rc = ox_node_error(x, i, MR_ENOTFOUND, "attribute 'axis' = %lld is the batch axis or out of range", (long long)axis);
    if (rc == MR_OK && k == 1) {
        ox_alias_output(x, i, &x->vals[vals[0]]);
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
        node = ox_add_node(x, i, "concat", in, 2, NULL, 0, &a);
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
    ox_layout lay = rc == MR_OK ? x->vals[vals[0]].lay : ox_lay_std(1);
    free(vals);
    MR_TRY(rc);
    return ox_set_node_output_lay(x, i, 0, node, &lay);
}

/* Expand: a constant broadcast to a shape with one entry N (ViT's class
 * token expanded to the batch, (1, 1, E) to (N, 1, E)) is a `constant` node,
 * the same for every item; a computed value expanded to its own shape is
 * itself. (A constant to a shape of numbers is folded: ox_fold_node.) */
int ox_map_expand(ox_ctx *x, int i)
{
    static const char *const none[] = {NULL};
    MR_TRY(ox_check_attrs(x, i, none));
    ox_value *dv = ox_input_value(x, i, 0);
    ox_const *s;
    if (!dv)
        return ox_node_error(x, i, MR_EFORMAT, "input 0 is missing");
    MR_TRY(ox_in_ints_any(x, i, 1, 0, &s));
    MR_TRY(ox_materialize(x, dv));
    char ts[200], ds[160];
    if (s->ndim != 1 || s->numel > OX_MAX_DIMS || s->numel < 1)
        return ox_node_error(x, i, MR_ENOTFOUND, "the target shape '%s' must be 1-D with 1 to %d entries", s->name,
                             OX_MAX_DIMS);
    int ns = (int)s->numel;
    int64_t t[OX_MAX_DIMS], coef[OX_MAX_DIMS] = {0};
    for (int k = 0; k < ns; k++) {
        t[k] = s->i[k];
        coef[k] = s->nsym ? s->nsym[k] : 0;
    }
    ox_sym_dims_str(ns, t, coef, ts, sizeof ts);
    if (dv->kind == V_NODE) {
        /* to its own shape (entries 1 keep a dim): nothing to do */
        int64_t vd[OX_MAX_DIMS], vc[OX_MAX_DIMS];
        ox_value_dims(dv, vd, vc);
        int r = dv->lay.rank, same = ns <= r;
        for (int k = 0; same && k < ns; k++) {
            int a = k + r - ns;
            same = (coef[k] == 0 && t[k] == 1) || (coef[k] == vc[a] && (vc[a] || t[k] == vd[a]));
        }
        if (!same)
            return ox_node_error(x, i, MR_ENOTFOUND,
                                 "expanding the computed value %s to %s is not supported (only a constant to the "
                                 "batch, or a value to its own shape)",
                                 ox_value_dims_str(dv, ds, sizeof ds), ts);
        ox_alias_output(x, i, dv);
        return MR_OK;
    }
    if (dv->kind != V_CONST || !dv->c->f || dv->c->nsym)
        return ox_node_error(x, i, MR_ENOTFOUND, "input 0 ('%s') must be a float constant or a computed value",
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
                return ox_node_error(x, i, MR_ENOTFOUND,
                                     "expanding the constant '%s' (%s) to %s is not supported (one entry N, "
                                     "facing a dim 1)",
                                     c->name, ox_dims_str(c->ndim, c->dims, ds, sizeof ds), ts);
            p = a;
            continue;
        }
        if (sd != 1 && cd != 1 && sd != cd)
            return ox_node_error(x, i, MR_ESHAPE, "the constant '%s' (%s) does not broadcast to %s", c->name,
                                 ox_dims_str(c->ndim, c->dims, ds, sizeof ds), ts);
        ps[nps++] = cd != 1 ? cd : sd;
    }
    if (p < 0) /* ox_fold_node folds it unless the shape counts N */
        return ox_node_error(x, i, MR_EINVAL, "internal: Expand without N");
    if (nps < 1 || nps > 3)
        return ox_node_error(x, i, MR_ENOTFOUND, "a per-sample shape of %d dims is not supported (1 to 3)", nps);
    lay.bx = p;
    mr_shape sh = {0};
    sh.ndim = nps;
    for (int k = 0; k < nps; k++)
        sh.d[k] = ps[k];
    int node;
    MR_TRY(ox_const_node(x, i, c, &sh, &lay, 0, 1, &node));
    return ox_set_node_output_lay(x, i, 0, node, &lay);
}

int ox_map_gather(ox_ctx *x, int i)
{
    static const char *const known[] = {"axis", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node_any(x, i, 0, &xv));
    ox_const *ic;
    MR_TRY(ox_in_ints(x, i, 1, 0, &ic));
    int64_t axis;
    MR_TRY(ox_attr_int(x, i, "axis", 0, &axis));
    int ax = ox_value_axis(xv, axis);
    if (ax < 0 || ic->ndim != 0)
        return ox_node_error(x, i, MR_ENOTFOUND, "only one scalar index along a per-sample axis is supported");
    mr_op_attrs a = {0};
    a.axis = ax;
    a.index = ic->i[0];
    /* the axis is dropped: N moves down one if it came after */
    ox_layout lay = xv->lay;
    lay.rank--;
    if ((axis < 0 ? axis + xv->lay.rank : axis) < lay.bx)
        lay.bx--;
    int id = ox_add_node(x, i, "gather", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return ox_set_node_output_lay(x, i, 0, id, &lay);
}

int ox_map_slice(ox_ctx *x, int i)
{
    static const char *const known[] = {"starts", "ends", "axes", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node_any(x, i, 0, &xv));
    if (x->m.opset < 10)
        return ox_node_error(x, i, MR_ENOTFOUND, "Slice before opset 10 is not supported");
    ox_const *st, *en, *ax = NULL, *sp = NULL;
    MR_TRY(ox_in_ints(x, i, 1, 0, &st));
    MR_TRY(ox_in_ints(x, i, 2, 0, &en));
    MR_TRY(ox_in_ints(x, i, 3, 1, &ax));
    MR_TRY(ox_in_ints(x, i, 4, 1, &sp));
    int64_t k = st->numel;
    if (en->numel != k || (ax && ax->numel != k) || (sp && sp->numel != k) || k < 1 || k > 3)
        return ox_node_error(x, i, MR_ENOTFOUND, "starts, ends, axes and steps must have 1 to 3 entries each");
    int node = xv->node;
    ox_value cur = *xv;
    for (int64_t j = 0; j < k; j++) {
        int a = ox_value_axis(&cur, ax ? ax->i[j] : j);
        int64_t step = sp ? sp->i[j] : 1;
        if (a < 0 || step < 1)
            return ox_node_error(x, i, MR_ENOTFOUND, "slicing the batch axis or with a step < 1 is not supported");
        int64_t dim = cur.shape.d[a], s0 = st->i[j], e0 = en->i[j];
        if (s0 < 0)
            s0 += dim;
        if (e0 < 0)
            e0 += dim;
        s0 = s0 < 0 ? 0 : s0 > dim ? dim : s0;
        e0 = e0 < 0 ? 0 : e0 > dim ? dim : e0;
        if (e0 <= s0)
            return ox_node_error(x, i, MR_ENOTFOUND, "an empty slice is not supported");
        if (s0 == 0 && e0 == dim && step == 1)
            continue;
        mr_op_attrs at = {0};
        at.axis = a;
        at.start = s0;
        at.end = e0;
        at.step = step;
        node = ox_add_node(x, i, "slice", &node, 1, NULL, 0, &at);
        MR_TRY(node);
        MR_TRY(ox_set_node_output_lay(x, i, 0, node, &xv->lay));
        cur = x->vals[ox_find_value(x, x->g->node[i]->output[0])];
    }
    if (node == xv->node)
        ox_alias_output(x, i, xv);
    return MR_OK;
}
