/*
 * onnx_ops.c — the ONNX ops that compute, mapped onto engine ops, and the
 * dispatch by op type (onnx_graph.h lists the reader's files; the operator
 * semantics are the ONNX operator specification's,
 * https://onnx.ai/onnx/operators/).
 *
 * Patterns exporters split:
 *   softplus(beta): PyTorch exports F.softplus(x, beta) as
 *     Div(Softplus(Mul(x, beta)), beta) = log(1 + e^(beta x)) / beta,
 *     mapped to one softplus node with that beta;
 *   GELU before opset 20: Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5);
 *   Linear as MatMul(x, W) then Add(., b) (no Gemm): one linear node.
 */
#include "onnx_graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    const ox_value *v = &x->vals[ox_find_value(x, x->g->node[i]->output[0])];
    return v->consumers == 1 && !v->is_output ? v->consumer : -1;
}

static int map_conv(ox_ctx *x, int i)
{
    static const char *const known[] = {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad", NULL};
    static const char *const pads_ok[] = {"NOTSET", "VALID", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    MR_TRY(ox_attr_string_is(x, i, "auto_pad", pads_ok));
    ox_value *xv = NULL;
    ox_const *w, *b;
    MR_TRY(ox_in_node(x, i, 0, &xv));
    MR_TRY(ox_in_const(x, i, 1, 0, &w));
    MR_TRY(ox_in_const(x, i, 2, 1, &b));
    char ds[160];
    if (w->ndim != 4)
        return ox_node_error(x, i, MR_ENOTFOUND, "weight '%s' is %s; moreau maps 2-D convolutions (4-D weights)",
                             w->name, ox_dims_str(w->ndim, w->dims, ds, sizeof ds));
    int64_t ks[2], st[2] = {1, 1}, pd[4] = {0, 0, 0, 0}, dl[2] = {1, 1}, group;
    int n;
    MR_TRY(ox_attr_ints(x, i, "kernel_shape", 2, ks, &n));
    if (n && (ks[0] != w->dims[2] || ks[1] != w->dims[3]))
        return ox_node_error(x, i, MR_ESHAPE, "kernel_shape %lldx%lld does not match weight '%s' (%s)",
                             (long long)ks[0], (long long)ks[1], w->name, ox_dims_str(4, w->dims, ds, sizeof ds));
    MR_TRY(ox_attr_ints(x, i, "strides", 2, st, &n));
    MR_TRY(ox_attr_ints(x, i, "pads", 4, pd, &n));
    MR_TRY(ox_attr_ints(x, i, "dilations", 2, dl, &n));
    MR_TRY(ox_attr_int(x, i, "group", 1, &group));
    if (pd[0] != pd[2] || pd[1] != pd[3])
        return ox_node_error(x, i, MR_ENOTFOUND,
                             "attribute 'pads' = [%lld, %lld, %lld, %lld] is asymmetric; moreau maps equal padding on "
                             "both sides",
                             (long long)pd[0], (long long)pd[1], (long long)pd[2], (long long)pd[3]);
    int64_t vals[] = {st[0], st[1], pd[0], pd[1], dl[0], dl[1], group};
    const char *names[] = {"strides", "strides", "pads", "pads", "dilations", "dilations", "group"};
    for (int k = 0; k < 7; k++)
        if (vals[k] < (k == 2 || k == 3 ? 0 : 1) || vals[k] > 65536)
            return ox_node_error(x, i, MR_EFORMAT, "attribute '%s' has the value %lld", names[k], (long long)vals[k]);
    mr_op_attrs a = {0};
    a.stride[0] = (int32_t)st[0], a.stride[1] = (int32_t)st[1];
    a.padding[0] = (int32_t)pd[0], a.padding[1] = (int32_t)pd[1];
    a.dilation[0] = (int32_t)dl[0], a.dilation[1] = (int32_t)dl[1];
    a.groups = (int32_t)group;
    int p[2], np = 1;
    MR_TRY(ox_const_param(x, i, w, MR_PARAM_WEIGHT, &p[0]));
    if (b) {
        MR_TRY(ox_const_param(x, i, b, MR_PARAM_WEIGHT, &p[1]));
        np = 2;
    }
    int id = ox_add_node(x, i, "conv2d", &xv->node, 1, p, np, &a);
    MR_TRY(id);
    return ox_set_node_output(x, i, 0, id);
}

/* linear: y = x W^T + b from W given as (out, in) or transposed (in, out),
 * scaled by alpha, and a bias c (out) / (1, out) / scalar scaled by beta. */
static int linear_from(ox_ctx *x, int i, ox_value *xv, const ox_const *w, int w_is_in_out, float alpha,
                       const ox_const *c, float beta, int out_node_of)
{
    char ds[160];
    if (w->ndim != 2)
        return ox_node_error(x, i, MR_ESHAPE, "weight '%s' is %s, expected 2-D", w->name,
                             ox_dims_str(w->ndim, w->dims, ds, sizeof ds));
    int64_t fout = w_is_in_out ? w->dims[1] : w->dims[0], fin = w_is_in_out ? w->dims[0] : w->dims[1];
    if (xv->shape.ndim != 1 || xv->shape.d[0] != fin)
        return ox_node_error(x, i, MR_ESHAPE, "input is Nx%s, expected Nx%lld for weight '%s' (%s)",
                             mr_shape_str(&xv->shape, ds, sizeof ds), (long long)fin, w->name,
                             w_is_in_out ? "in x out" : "out x in");
    int64_t wd[2] = {fout, fin};
    float *wt = calloc((size_t)(fout * fin), sizeof *wt); /* calloc: GCC cannot see the loops fill it */
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
            rc = ox_node_error(x, i, MR_ESHAPE, "bias '%s' is %s, expected %lld (or 1x%lld, or a scalar)", c->name,
                               ox_dims_str(c->ndim, c->dims, ds, sizeof ds), (long long)fout, (long long)fout);
        for (int64_t o = 0; rc == MR_OK && o < fout; o++)
            bt[o] = beta * c->f[c->numel == 1 ? 0 : o];
    }
    int p[2], np = 0;
    if (rc == MR_OK)
        rc = ox_make_param(x, w->name, 2, wd, wt, MR_PARAM_WEIGHT, &p[np++]);
    if (rc == MR_OK && c)
        rc = ox_make_param(x, c->name, 1, &fout, bt, MR_PARAM_WEIGHT, &p[np++]);
    free(wt);
    free(bt);
    MR_TRY(rc);
    mr_op_attrs a = {0};
    int id = ox_add_node(x, i, "linear", &xv->node, 1, p, np, &a);
    MR_TRY(id);
    return ox_set_node_output(x, out_node_of, 0, id);
}

static int matmul_param_of(ox_ctx *x, int i, ox_value *xv, const ox_const *w, int w_is_out_in, float alpha,
                           const ox_const *c, float beta, int out_of);

static int map_gemm(ox_ctx *x, int i)
{
    static const char *const known[] = {"alpha", "beta", "transA", "transB", "broadcast", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    int64_t ta, tb;
    float alpha, beta;
    MR_TRY(ox_attr_int(x, i, "transA", 0, &ta));
    MR_TRY(ox_attr_int(x, i, "transB", 0, &tb));
    MR_TRY(ox_attr_float(x, i, "alpha", 1, &alpha));
    MR_TRY(ox_attr_float(x, i, "beta", 1, &beta));
    if (ta)
        return ox_node_error(x, i, MR_ENOTFOUND,
                             "attribute 'transA' = %lld transposes the batch axis; moreau maps transA = 0", (long long)ta);
    ox_value *xv = NULL;
    ox_const *w, *c;
    MR_TRY(ox_in_node_any(x, i, 0, &xv));
    MR_TRY(ox_in_const(x, i, 1, 0, &w));
    MR_TRY(ox_in_const(x, i, 2, 1, &c));
    if (!ox_lay_is_std(&xv->lay)) /* rows holding N merged with tokens: (L*N, E) */
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
        return ox_node_error(x, i, MR_ESHAPE, "input Nx%s times weight '%s' (%s) is not supported",
                             mr_shape_str(&xv->shape, xs, sizeof xs), w->name, ox_dims_str(w->ndim, w->dims, ws, sizeof ws));
    int64_t M = w->dims[1];
    if (c && c->numel != M)
        return ox_node_error(x, i, MR_ESHAPE, "bias '%s' has %lld entries, expected %lld", c->name, (long long)c->numel,
                             (long long)M);
    int64_t wd[4] = {M, K, 1, 1};
    float *wt = malloc((size_t)(M * K) * sizeof *wt);
    if (!wt)
        return mr_error(MR_ENOMEM, "onnx: out of memory");
    for (int64_t o = 0; o < M; o++)
        for (int64_t k = 0; k < K; k++)
            wt[o * K + k] = w->f[k * M + o];
    int p[2], np = 0;
    int rc = ox_make_param(x, w->name, 4, wd, wt, MR_PARAM_WEIGHT, &p[np++]);
    free(wt);
    MR_TRY(rc);
    if (c)
        MR_TRY(ox_make_param(x, c->name, 1, &M, c->f, MR_PARAM_WEIGHT, &p[np++]));
    mr_op_attrs t1 = {0}, t2 = {0}, r1 = {0}, r2 = {0}, cv = {0};
    int node = xv->node;
    if (nd == 3) {
        t1.perm[0] = 2, t1.perm[1] = 0, t1.perm[2] = 1;
        MR_TRY(node = ox_add_node(x, i, "transpose", &node, 1, NULL, 0, &t1));
        MR_TRY(node = ox_add_node(x, i, "conv2d", &node, 1, p, np, &cv));
        t2.perm[0] = 1, t2.perm[1] = 2, t2.perm[2] = 0;
        MR_TRY(node = ox_add_node(x, i, "transpose", &node, 1, NULL, 0, &t2));
    } else {
        int64_t T = xv->shape.d[0];
        t1.perm[0] = 1, t1.perm[1] = 0;
        MR_TRY(node = ox_add_node(x, i, "transpose", &node, 1, NULL, 0, &t1));
        r1.shape_ndim = 3, r1.shape[0] = K, r1.shape[1] = T, r1.shape[2] = 1;
        MR_TRY(node = ox_add_node(x, i, "reshape", &node, 1, NULL, 0, &r1));
        MR_TRY(node = ox_add_node(x, i, "conv2d", &node, 1, p, np, &cv));
        r2.shape_ndim = 2, r2.shape[0] = M, r2.shape[1] = T;
        MR_TRY(node = ox_add_node(x, i, "reshape", &node, 1, NULL, 0, &r2));
        MR_TRY(node = ox_add_node(x, i, "transpose", &node, 1, NULL, 0, &t1));
    }
    return ox_set_node_output(x, out_of, 0, node);
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
    ox_value_dims_str(xv, xs, sizeof xs);
    int nd = xv->shape.ndim;
    if (ox_value_axis(xv, -1) != nd - 1)
        return ox_node_error(x, i, MR_ENOTFOUND, "the last axis of the input %s holds the batch axis N", xs);
    int64_t K = xv->shape.d[nd - 1];
    if (w->ndim != 2 || w->dims[w_is_out_in ? 1 : 0] != K)
        return ox_node_error(x, i, MR_ESHAPE, "input %s times weight '%s' (%s%s) is not supported", xs, w->name,
                             ox_dims_str(w->ndim, w->dims, ws, sizeof ws), w_is_out_in ? ", transposed" : "");
    int64_t M = w->dims[w_is_out_in ? 0 : 1];
    if (c && !(c->numel == 1 || (c->numel == M && (c->ndim == 1 || (c->ndim == 2 && c->dims[0] == 1)))))
        return ox_node_error(x, i, MR_ESHAPE, "bias '%s' is %s, expected %lld (or 1x%lld, or a scalar)", c->name,
                             ox_dims_str(c->ndim, c->dims, ws, sizeof ws), (long long)M, (long long)M);
    int p[2], np = 0;
    if (!w_is_out_in && alpha == 1) {
        MR_TRY(ox_const_param(x, i, (ox_const *)w, MR_PARAM_WEIGHT, &p[np++]));
    } else {
        float *wt = malloc((size_t)(K * M) * sizeof *wt);
        if (!wt)
            return mr_error(MR_ENOMEM, "onnx: out of memory");
        for (int64_t k = 0; k < K; k++)
            for (int64_t o = 0; o < M; o++)
                wt[k * M + o] = alpha * (w_is_out_in ? w->f[o * K + k] : w->f[k * M + o]);
        int64_t wd[2] = {K, M};
        int rc = ox_make_param(x, w->name, 2, wd, wt, MR_PARAM_WEIGHT, &p[np++]);
        free(wt);
        MR_TRY(rc);
    }
    if (c && c->numel == M && c->ndim == 1 && beta == 1) {
        MR_TRY(ox_const_param(x, i, (ox_const *)c, MR_PARAM_WEIGHT, &p[np++]));
    } else if (c) {
        float *bt = malloc((size_t)M * sizeof *bt);
        if (!bt)
            return mr_error(MR_ENOMEM, "onnx: out of memory");
        for (int64_t o = 0; o < M; o++)
            bt[o] = beta * c->f[c->numel == 1 ? 0 : o];
        int rc = ox_make_param(x, c->name, 1, &M, bt, MR_PARAM_WEIGHT, &p[np++]);
        free(bt);
        MR_TRY(rc);
    }
    mr_op_attrs a = {0};
    int id = ox_add_node(x, i, "matmul_param", &xv->node, 1, p, np, &a);
    MR_TRY(id);
    return ox_set_node_output_lay(x, out_of, 0, id, &xv->lay);
}

/* MatMul of two computed values (attention's Q K^T and P V): batched over
 * the leading axes, the one holding N among them, as the engine's matmul
 * does per sample. Both must hold N alike; no broadcasting between them. */
static int matmul_nodes(ox_ctx *x, int i, ox_value *a, ox_value *b)
{
    char d0[160], d1[160];
    ox_value_dims_str(a, d0, sizeof d0);
    ox_value_dims_str(b, d1, sizeof d1);
    if (!ox_lay_eq(&a->lay, &b->lay))
        return ox_node_error(x, i, MR_ENOTFOUND,
                             "inputs '%s' (%s) and '%s' (%s) hold the batch axis N in different places", a->name, d0,
                             b->name, d1);
    int r = a->lay.rank;
    if (r < 3 || a->lay.bx >= r - 2)
        return ox_node_error(x, i, MR_ENOTFOUND,
                             "the product of %s and %s runs along the batch axis N; moreau maps products batched "
                             "over a leading axis that holds N",
                             d0, d1);
    int64_t ad[OX_MAX_DIMS], ac[OX_MAX_DIMS], bd[OX_MAX_DIMS], bc[OX_MAX_DIMS];
    ox_value_dims(a, ad, ac);
    ox_value_dims(b, bd, bc);
    for (int k = 0; k < r - 2; k++)
        if (ad[k] != bd[k] || ac[k] != bc[k])
            return ox_node_error(x, i, MR_ENOTFOUND,
                                 "the leading dims of %s and %s differ (moreau does not broadcast between computed "
                                 "values)",
                                 d0, d1);
    int in[2] = {a->node, b->node};
    mr_op_attrs at = {0};
    int id = ox_add_node(x, i, "matmul", in, 2, NULL, 0, &at);
    MR_TRY(id);
    return ox_set_node_output_lay(x, i, 0, id, &a->lay);
}

/* MatMul(x, W) with W (in, out) constant; an Add of a constant bias that
 * follows it alone becomes the linear's bias. MatMul(a, b) of two computed
 * values: matmul_nodes. */
static int map_matmul(ox_ctx *x, int i)
{
    static const char *const none[] = {NULL};
    MR_TRY(ox_check_attrs(x, i, none));
    ox_value *xv = NULL, *bv0 = ox_input_value(x, i, 1);
    ox_const *w, *c = NULL;
    MR_TRY(ox_in_node_any(x, i, 0, &xv));
    if (bv0)
        MR_TRY(ox_materialize(x, bv0));
    if (bv0 && bv0->kind == V_NODE)
        return matmul_nodes(x, i, xv, bv0);
    MR_TRY(ox_in_const(x, i, 1, 0, &w));
    int out_of = i, j = sole_consumer(x, i);
    if (j >= 0 && ox_op_is(x->g->node[j], "Add") && x->g->node[j]->n_attribute == 0 && ox_ninputs(x->g->node[j]) == 2) {
        const Onnx__NodeProto *add = x->g->node[j];
        int other = !strcmp(add->input[0], x->g->node[i]->output[0]) ? 1 : 0;
        ox_value *bv = &x->vals[ox_find_value(x, add->input[other])];
        MR_TRY(ox_materialize(x, bv));
        if (bv->kind == V_CONST && bv->c->f && bv->c->numel == (w->ndim == 2 ? w->dims[1] : -1)) {
            c = bv->c;
            out_of = j;
            x->done[j] = 1;
        }
    }
    if (!ox_lay_is_std(&xv->lay))
        return matmul_param_of(x, i, xv, w, 0, 1.0f, c, 1.0f, out_of);
    if (xv->shape.ndim >= 2)
        return matmul_tokens(x, i, xv, w, c, out_of);
    return linear_from(x, i, xv, w, 1, 1.0f, c, 1.0f, out_of);
}

static int map_batchnorm(ox_ctx *x, int i)
{
    static const char *const known[] = {"epsilon", "momentum", "spatial", "training_mode", "is_test",
                                        "consumed_inputs", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    MR_TRY(ox_only_first_output(x, i));
    int64_t spatial, training;
    float eps, mom;
    MR_TRY(ox_attr_int(x, i, "spatial", 1, &spatial));
    MR_TRY(ox_attr_int(x, i, "training_mode", 0, &training));
    MR_TRY(ox_attr_float(x, i, "epsilon", 1e-5f, &eps));
    MR_TRY(ox_attr_float(x, i, "momentum", 0.9f, &mom));
    if (spatial != 1)
        return ox_node_error(x, i, MR_ENOTFOUND, "attribute 'spatial' = %lld is not supported (only 1)", (long long)spatial);
    if (training)
        return ox_node_error(x, i, MR_ENOTFOUND, "attribute 'training_mode' = %lld: export the model in eval mode",
                             (long long)training);
    if (!(eps >= 0) || !isfinite(eps))
        return ox_node_error(x, i, MR_EFORMAT, "attribute 'epsilon' = %g must be finite and >= 0", (double)eps);
    ox_value *xv = NULL;
    ox_const *c[4];
    MR_TRY(ox_in_node(x, i, 0, &xv));
    int p[4];
    for (int k = 0; k < 4; k++) {
        MR_TRY(ox_in_const(x, i, k + 1, 0, &c[k]));
        MR_TRY(ox_const_param(x, i, c[k], k < 2 ? MR_PARAM_WEIGHT : MR_PARAM_BUFFER, &p[k]));
    }
    mr_op_attrs a = {0};
    a.eps = eps > 0 ? eps : 1e-45f; /* the engine reads 0 as its default 1e-5: the smallest float instead */
    int id = ox_add_node(x, i, "batchnorm2d", &xv->node, 1, p, 4, &a);
    MR_TRY(id);
    return ox_set_node_output(x, i, 0, id);
}

static int map_pool(ox_ctx *x, int i, int is_max)
{
    static const char *const kmax[] = {"kernel_shape", "strides", "pads", "ceil_mode", "dilations",
                                       "storage_order", "auto_pad", NULL};
    static const char *const kavg[] = {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad",
                                       "auto_pad", NULL};
    static const char *const pads_ok[] = {"NOTSET", "VALID", NULL};
    MR_TRY(ox_check_attrs(x, i, is_max ? kmax : kavg));
    MR_TRY(ox_attr_string_is(x, i, "auto_pad", pads_ok));
    MR_TRY(ox_only_first_output(x, i));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node(x, i, 0, &xv));
    int64_t ks[2], st[2] = {0, 0}, pd[4] = {0, 0, 0, 0}, dl[2] = {1, 1}, ceil, cip, so;
    int n;
    MR_TRY(ox_attr_ints(x, i, "kernel_shape", 2, ks, &n));
    if (!n)
        return ox_node_error(x, i, MR_EFORMAT, "attribute 'kernel_shape' is missing");
    MR_TRY(ox_attr_ints(x, i, "strides", 2, st, &n));
    if (!n)
        st[0] = st[1] = 1; /* ONNX's default stride is 1, not the kernel */
    MR_TRY(ox_attr_ints(x, i, "pads", 4, pd, &n));
    MR_TRY(ox_attr_ints(x, i, "dilations", 2, dl, &n));
    MR_TRY(ox_attr_int(x, i, "ceil_mode", 0, &ceil));
    MR_TRY(ox_attr_int(x, i, "count_include_pad", 0, &cip));
    MR_TRY(ox_attr_int(x, i, "storage_order", 0, &so));
    if (pd[0] != pd[2] || pd[1] != pd[3])
        return ox_node_error(x, i, MR_ENOTFOUND, "attribute 'pads' is asymmetric; moreau maps equal padding on both sides");
    if (dl[0] != 1 || dl[1] != 1)
        return ox_node_error(x, i, MR_ENOTFOUND, "attribute 'dilations' = %lldx%lld is not supported (only 1)",
                             (long long)dl[0], (long long)dl[1]);
    if (so)
        return ox_node_error(x, i, MR_ENOTFOUND, "attribute 'storage_order' = %lld is not supported (only 0)", (long long)so);
    int64_t vals[] = {ks[0], ks[1], st[0], st[1], pd[0], pd[1]};
    for (int k = 0; k < 6; k++)
        if (vals[k] < (k >= 4 ? 0 : 1) || vals[k] > 65536)
            return ox_node_error(x, i, MR_EFORMAT, "attribute '%s' has the value %lld",
                                 k < 2 ? "kernel_shape" : k < 4 ? "strides" : "pads", (long long)vals[k]);
    mr_op_attrs a = {0};
    a.kernel[0] = (int32_t)ks[0], a.kernel[1] = (int32_t)ks[1];
    a.stride[0] = (int32_t)st[0], a.stride[1] = (int32_t)st[1];
    a.padding[0] = (int32_t)pd[0], a.padding[1] = (int32_t)pd[1];
    a.ceil_mode = ceil != 0;
    a.count_include_pad = cip != 0;
    int id = ox_add_node(x, i, is_max ? "maxpool2d" : "avgpool2d", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return ox_set_node_output(x, i, 0, id);
}

/* An elementwise op with the engine attributes a (the ONNX attributes
 * checked by the caller); N stays where it is. */
static int map_unary_attrs(ox_ctx *x, int i, const char *op, const mr_op_attrs *a)
{
    ox_value *xv = NULL;
    MR_TRY(ox_in_node_any(x, i, 0, &xv));
    int id = ox_add_node(x, i, op, &xv->node, 1, NULL, 0, a);
    MR_TRY(id);
    return ox_set_node_output_lay(x, i, 0, id, &xv->lay);
}

/* Elementwise ops without attributes (and Relu -> softplus on request). */
static int map_unary(ox_ctx *x, int i, const char *op, const mr_op_attrs *a)
{
    static const char *const none[] = {NULL};
    MR_TRY(ox_check_attrs(x, i, none));
    mr_op_attrs zero = {0};
    return map_unary_attrs(x, i, op, a ? a : &zero);
}

static int map_global_avgpool(ox_ctx *x, int i)
{
    static const char *const none[] = {NULL};
    MR_TRY(ox_check_attrs(x, i, none));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node(x, i, 0, &xv));
    mr_op_attrs a = {0};
    a.out_size[0] = a.out_size[1] = 1;
    int id = ox_add_node(x, i, "adaptive_avgpool2d", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return ox_set_node_output(x, i, 0, id);
}

/* Mul: two computed values (same shape, or a (C,1,1) gate), or the
 * Mul(x, b) -> Softplus -> Div(., b) pattern of softplus(beta). */
static int map_mul(ox_ctx *x, int i)
{
    static const char *const none[] = {NULL};
    MR_TRY(ox_check_attrs(x, i, none));
    ox_value *a0 = ox_input_value(x, i, 0), *a1 = ox_input_value(x, i, 1);
    if (!a0 || !a1)
        return ox_node_error(x, i, MR_EFORMAT, "needs two inputs");
    MR_TRY(ox_materialize(x, a0));
    MR_TRY(ox_materialize(x, a1));
    if (a0->kind == V_NODE && a1->kind == V_NODE) {
        x->pattern_missed = 1;
        return MR_ENOTFOUND;
    }
    ox_value *xv = a0->kind == V_NODE ? a0 : a1, *cv = a0->kind == V_NODE ? a1 : a0;
    float beta, beta2;
    int j = sole_consumer(x, i), k = j >= 0 ? sole_consumer(x, j) : -1;
    if (xv->kind == V_NODE && scalar_of(cv->c, &beta) && j >= 0 && k >= 0 && ox_op_is(x->g->node[j], "Softplus") &&
        ox_op_is(x->g->node[k], "Div") && ox_ninputs(x->g->node[k]) == 2 &&
        !strcmp(x->g->node[k]->input[0], x->g->node[j]->output[0])) {
        ox_value *dv = ox_input_value(x, k, 1);
        MR_TRY(ox_materialize(x, dv));
        if (dv->kind == V_CONST && scalar_of(dv->c, &beta2) && beta2 == beta && beta > 0 && isfinite(beta)) {
            mr_op_attrs a = {0};
            a.beta = beta;
            int id = ox_add_node(x, k, "softplus", &xv->node, 1, NULL, 0, &a);
            MR_TRY(id);
            x->done[j] = x->done[k] = 1;
            return ox_set_node_output_lay(x, k, 0, id, &xv->lay);
        }
    }
    x->pattern_missed = 1; /* not softplus(beta): a product with a constant (map_binary) */
    return MR_ENOTFOUND;
}

static int map_softmax(ox_ctx *x, int i, const char *op)
{
    static const char *const known[] = {"axis", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node_any(x, i, 0, &xv));
    int rank = xv->lay.rank;
    /* before opset 13 the input is coerced to 2-D at axis (default 1) and the
     * softmax runs over everything after it; from 13 over the one axis (default -1) */
    int64_t axis;
    MR_TRY(ox_attr_int(x, i, "axis", x->m.opset < 13 ? 1 : -1, &axis));
    if (axis < 0)
        axis += rank;
    /* before 13 the flattened tail must be one dim: the last */
    int ok = x->m.opset < 13 ? ox_lay_is_std(&xv->lay) && axis >= 1 && axis == rank - 1
                             : ox_value_axis(xv, axis) >= 0;
    if (!ok)
        return ox_node_error(x, i, MR_ENOTFOUND,
                             "attribute 'axis' = %lld on an input of rank %d (opset %lld) is not supported (only "
                             "an axis after N%s)",
                             (long long)axis, rank, (long long)x->m.opset,
                             x->m.opset < 13 ? " being the last" : "");
    mr_op_attrs a = {0};
    a.axis = ox_value_axis(xv, axis);
    int id = ox_add_node(x, i, op, &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return ox_set_node_output_lay(x, i, 0, id, &xv->lay);
}

static int map_constant(ox_ctx *x, int i)
{
    const Onnx__NodeProto *n = x->g->node[i];
    if (n->n_attribute != 1)
        return ox_node_error(x, i, MR_EFORMAT, "a Constant needs exactly one attribute, has %zu", n->n_attribute);
    const Onnx__AttributeProto *a = n->attribute[0];
    const char *an = a->name ? a->name : "";
    ox_value *v = &x->vals[ox_find_value(x, n->output[0])];
    ox_const *c = NULL;
    if (!strcmp(an, "value") && a->t) {
        int32_t type = a->t->has_data_type ? a->t->data_type : 0;
        int as_int = type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
        MR_TRY(ox_node_const(x, i, &c, a->t, as_int));
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
        return ox_node_error(x, i, MR_ENOTFOUND, "attribute '%s' is not supported", an);
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
    MR_TRY(ox_check_attrs(x, i, dropout ? kdrop : none));
    MR_TRY(ox_only_first_output(x, i));
    ox_value *v = ox_input_value(x, i, 0);
    if (!v)
        return ox_node_error(x, i, MR_EFORMAT, "input 0 is missing");
    if (dropout && ox_ninputs(x->g->node[i]) == 3) { /* opset 12: training_mode must be false */
        ox_value *tm = ox_input_value(x, i, 2);
        MR_TRY(ox_materialize(x, tm));
        if (tm->kind != V_CONST || (tm->c->f && tm->c->f[0] != 0))
            return ox_node_error(x, i, MR_ENOTFOUND, "input 'training_mode' must be a constant false");
    }
    MR_TRY(ox_materialize(x, v));
    ox_alias_output(x, i, v);
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
 * every entry (-1 for Sub). */
int ox_const_node(ox_ctx *x, int i, const ox_const *c, const mr_shape *s, const ox_layout *lay, int gate,
                  float scale, int *node)
{
    char cs[160], ss[160];
    int r = lay->rank;
    ox_value like = {0};
    like.shape = *s;
    like.lay = *lay;
    if (c->ndim > r)
        return ox_node_error(x, i, MR_ESHAPE, "the constant '%s' (%s) has more dims than the %s it meets", c->name,
                             ox_dims_str(c->ndim, c->dims, cs, sizeof cs), ox_value_dims_str(&like, ss, sizeof ss));
    /* c's dims right-aligned with the value's ONNX dims: the one facing N must be 1 */
    int64_t cd[OX_MAX_DIMS] = {1, 1, 1, 1, 1, 1, 1, 1}, vd[OX_MAX_DIMS] = {0}, vc[OX_MAX_DIMS] = {0};
    ox_value_dims(&like, vd, vc);
    for (int a = 0; a < r; a++)
        cd[a] = a < r - c->ndim ? 1 : c->dims[a - (r - c->ndim)];
    int ok = cd[lay->bx] == 1;
    int is_gate = gate && ox_lay_is_std(lay) && s->ndim == 3 && cd[1] == s->d[0] && cd[2] == 1 && cd[3] == 1;
    for (int a = 0; ok && a < r; a++)
        ok = a == lay->bx || cd[a] == 1 || cd[a] == vd[a];
    if (!ok)
        return ox_node_error(x, i, MR_ESHAPE, "the constant '%s' (%s) does not broadcast against %s", c->name,
                             ox_dims_str(c->ndim, c->dims, cs, sizeof cs), ox_value_dims_str(&like, ss, sizeof ss));
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
                src += idx[ox_lay_ps_axis(lay, a)] * stride;
            stride *= cd[a];
        }
        float val = c->f[src];
        v[e] = scale * val;
    }
    int p, rc = ox_make_param(x, c->name, nd, pd, v, MR_PARAM_WEIGHT, &p);
    free(v);
    MR_TRY(rc);
    mr_op_attrs a = {0};
    int in0 = 0; /* the graph input: it only sets N */
    int id = ox_add_node(x, i, "constant", &in0, 1, &p, 1, &a);
    MR_TRY(id);
    *node = id;
    return MR_OK;
}

/* A value of node i's input k as an engine node: a computed value as it is,
 * a constant as a `constant` node broadcast against `like` (scale as
 * ox_const_node). */
static int operand(ox_ctx *x, int i, ox_value *v, const ox_value *like, int gate, float scale, int *node)
{
    MR_TRY(ox_materialize(x, v));
    if (v->kind == V_NODE && scale == 1) {
        *node = v->node;
        return MR_OK;
    }
    if (v->kind == V_CONST && v->c->nsym)
        return ox_node_error(x, i, MR_ENOTFOUND,
                             "input '%s' counts the batch axis N (a shape taken from a computed value); moreau "
                             "maps arithmetic on it only between shapes",
                             v->name);
    if (v->kind != V_CONST || !v->c->f)
        return ox_node_error(x, i, MR_ENOTFOUND, "input '%s' is not supported here", v->name);
    return ox_const_node(x, i, v->c, &like->shape, &like->lay, gate, scale, node);
}

static int scalar_near(ox_ctx *x, ox_value *v, double want)
{
    float f;
    if (!v || ox_materialize(x, v) < 0 || v->kind != V_CONST || !v->c->f || !scalar_of(v->c, &f))
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
    if (ox_ninputs(n) != 2 || !scalar_near(x, ox_input_value(x, i, 1), 1.4142135623730951))
        return MR_OK;
    int j = sole_consumer(x, i), k = j >= 0 ? sole_consumer(x, j) : -1, l = k >= 0 ? sole_consumer(x, k) : -1,
        o = l >= 0 ? sole_consumer(x, l) : -1;
    if (o < 0 || !ox_op_is(x->g->node[j], "Erf") || !ox_op_is(x->g->node[k], "Add") || !ox_op_is(x->g->node[l], "Mul") ||
        !ox_op_is(x->g->node[o], "Mul") || ox_ninputs(x->g->node[k]) != 2 || ox_ninputs(x->g->node[l]) != 2 ||
        ox_ninputs(x->g->node[o]) != 2)
        return MR_OK;
    const Onnx__NodeProto *add = x->g->node[k], *m1 = x->g->node[l], *m2 = x->g->node[o];
    int ka = !strcmp(add->input[0], x->g->node[j]->output[0]) ? 1 : 0;
    int kl = !strcmp(m1->input[0], add->output[0]) ? 1 : 0;
    int ko = !strcmp(m2->input[0], m1->output[0]) ? 1 : 0;
    if (!scalar_near(x, ox_input_value(x, k, ka), 1.0) || strcmp(m1->input[kl], n->input[0]) ||
        !scalar_near(x, ox_input_value(x, o, ko), 0.5))
        return MR_OK;
    ox_value *xv = NULL;
    MR_TRY(ox_in_node_any(x, i, 0, &xv));
    mr_op_attrs a = {0};
    int id = ox_add_node(x, o, "gelu", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    x->done[j] = x->done[k] = x->done[l] = x->done[o] = 1;
    *matched = 1;
    return ox_set_node_output_lay(x, o, 0, id, &xv->lay);
}

/* Add, Sub, Mul, Div: two computed values, or one and a constant (a
 * `constant` node broadcast to the value's shape; Sub by a constant becomes
 * Add of -c, exact; Div by a constant stays a division, x / c rounded once as
 * PyTorch does (x * (1/c) would round twice); Sub of a computed b becomes
 * a + (-1) b). */
static int map_binary(ox_ctx *x, int i, const char *op)
{
    static const char *const none[] = {NULL};
    MR_TRY(ox_check_attrs(x, i, none));
    int is_sub = !strcmp(op, "Sub"), is_div = !strcmp(op, "Div"), is_mul = !strcmp(op, "Mul");
    if (is_div) {
        int matched;
        MR_TRY(try_gelu(x, i, &matched));
        if (matched)
            return MR_OK;
    }
    ox_value *a0 = ox_input_value(x, i, 0), *a1 = ox_input_value(x, i, 1);
    if (!a0 || !a1)
        return ox_node_error(x, i, MR_EFORMAT, "needs two inputs");
    MR_TRY(ox_materialize(x, a0));
    MR_TRY(ox_materialize(x, a1));
    if (a0->kind != V_NODE && a1->kind != V_NODE)
        return ox_node_error(x, i, MR_ENOTFOUND, "both inputs are constants");
    int n0, n1;
    const char *eng = is_div ? "div" : is_mul ? "mul" : "add";
    const ox_layout *lay = a0->kind == V_NODE ? &a0->lay : &a1->lay;
    if (a0->kind == V_NODE && a1->kind == V_NODE) {
        if (is_div)
            return ox_node_error(x, i, MR_ENOTFOUND, "dividing by a computed value is not supported");
        if (!ox_lay_eq(&a0->lay, &a1->lay)) {
            char d0[160], d1[160];
            return ox_node_error(x, i, MR_ENOTFOUND,
                                 "inputs '%s' (%s) and '%s' (%s) hold the batch axis N in different places",
                                 a0->name, ox_value_dims_str(a0, d0, sizeof d0), a1->name,
                                 ox_value_dims_str(a1, d1, sizeof d1));
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
            MR_TRY(ox_const_node(x, i, &m1, &a1->shape, &a1->lay, 0, 1, &c));
            mr_op_attrs z = {0};
            int in[2] = {a1->node, c};
            n1 = ox_add_node(x, i, "mul", in, 2, NULL, 0, &z);
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
            return ox_node_error(x, i, MR_ENOTFOUND, "%s a computed value from the constant '%s' is not supported",
                                 is_sub ? "subtracting" : "dividing by", cv->name);
        n0 = xv->node;
        MR_TRY(operand(x, i, cv, xv, is_mul, is_sub ? -1.0f : 1.0f, &n1));
    }
    int in[2] = {n0, n1};
    mr_op_attrs a = {0};
    int id = ox_add_node(x, i, eng, in, 2, NULL, 0, &a);
    MR_TRY(id);
    return ox_set_node_output_lay(x, i, 0, id, lay);
}

static int map_clip(ox_ctx *x, int i)
{
    static const char *const known[] = {"min", "max", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node_any(x, i, 0, &xv));
    mr_op_attrs a = {0};
    a.min = -INFINITY;
    a.max = INFINITY;
    if (x->m.opset < 11) {
        MR_TRY(ox_attr_float(x, i, "min", -INFINITY, &a.min));
        MR_TRY(ox_attr_float(x, i, "max", INFINITY, &a.max));
    } else {
        for (int k = 1; k <= 2; k++) {
            ox_const *c;
            MR_TRY(ox_in_const(x, i, k, 1, &c));
            float v;
            if (c && !scalar_of(c, &v))
                return ox_node_error(x, i, MR_ENOTFOUND, "input '%s' of Clip must be a scalar", c->name);
            if (c)
                *(k == 1 ? &a.min : &a.max) = v;
        }
    }
    int id = ox_add_node(x, i, "clip", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return ox_set_node_output_lay(x, i, 0, id, &xv->lay);
}

static int map_hardsigmoid(ox_ctx *x, int i)
{
    static const char *const known[] = {"alpha", "beta", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node_any(x, i, 0, &xv));
    mr_op_attrs a = {0};
    MR_TRY(ox_attr_float(x, i, "alpha", 0.2f, &a.alpha));
    MR_TRY(ox_attr_float(x, i, "beta", 0.5f, &a.beta));
    if (a.alpha == 0 || !isfinite(a.alpha) || !isfinite(a.beta))
        return ox_node_error(x, i, MR_ENOTFOUND, "attribute 'alpha' = %g is not supported (finite, not 0)", (double)a.alpha);
    int id = ox_add_node(x, i, "hardsigmoid", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return ox_set_node_output_lay(x, i, 0, id, &xv->lay);
}

static int map_gelu(ox_ctx *x, int i)
{
    static const char *const known[] = {"approximate", NULL};
    static const char *const ok[] = {"none", "tanh", "", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    MR_TRY(ox_attr_string_is(x, i, "approximate", ok));
    const Onnx__AttributeProto *ap = ox_attr(x->g->node[i], "approximate");
    mr_op_attrs a = {0};
    a.approximate = ap && ap->has_s && ap->s.len == 4 && !memcmp(ap->s.data, "tanh", 4);
    return map_unary_attrs(x, i, "gelu", &a);
}

static int map_pad(ox_ctx *x, int i)
{
    static const char *const known[] = {"mode", "pads", "value", NULL};
    static const char *const modes[] = {"constant", "reflect", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    MR_TRY(ox_attr_string_is(x, i, "mode", modes));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node(x, i, 0, &xv));
    int nd = xv->shape.ndim, r = nd + 1;
    int64_t pads[2 * OX_MAX_DIMS];
    float value = 0;
    if (x->m.opset < 11) {
        const Onnx__AttributeProto *pa = ox_attr(x->g->node[i], "pads");
        if (!pa || (int)pa->n_ints != 2 * r)
            return ox_node_error(x, i, MR_EFORMAT, "attribute 'pads' must have %d entries", 2 * r);
        for (int k = 0; k < 2 * r; k++)
            pads[k] = pa->ints[k];
        MR_TRY(ox_attr_float(x, i, "value", 0, &value));
    } else {
        ox_const *pc, *vc;
        MR_TRY(ox_in_ints(x, i, 1, 0, &pc));
        MR_TRY(ox_in_const(x, i, 2, 1, &vc));
        if (pc->numel != 2 * r)
            return ox_node_error(x, i, MR_EFORMAT, "input 'pads' has %lld entries, expected %d", (long long)pc->numel, 2 * r);
        for (int k = 0; k < 2 * r; k++)
            pads[k] = pc->i[k];
        if (vc && !scalar_of(vc, &value))
            return ox_node_error(x, i, MR_ENOTFOUND, "input 'constant_value' must be a scalar");
        if (ox_ninputs(x->g->node[i]) > 3)
            return ox_node_error(x, i, MR_ENOTFOUND, "input 'axes' is not supported");
    }
    if (value != 0)
        return ox_node_error(x, i, MR_ENOTFOUND, "padding with the value %g is not supported (only 0)", (double)value);
    if (pads[0] || pads[r])
        return ox_node_error(x, i, MR_ENOTFOUND, "pads on the batch axis N are not supported");
    mr_op_attrs a = {0};
    const Onnx__AttributeProto *ma = ox_attr(x->g->node[i], "mode");
    a.pad_mode = ma && ma->has_s && ma->s.len == 7 && !memcmp(ma->s.data, "reflect", 7);
    for (int k = 0; k < nd; k++) {
        if (pads[1 + k] < 0 || pads[r + 1 + k] < 0 || pads[1 + k] > 65536 || pads[r + 1 + k] > 65536)
            return ox_node_error(x, i, MR_ENOTFOUND, "pads must be in 0..65536 (no cropping)");
        a.pads[k] = (int32_t)pads[1 + k];
        a.pads[3 + k] = (int32_t)pads[r + 1 + k];
    }
    int id = ox_add_node(x, i, "pad", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return ox_set_node_output(x, i, 0, id);
}

/* 1 when node k is a ReduceMean of the value named `name`, whose shape and
 * layout are those of v, over its last axis alone, keeping it
 * (keepdims = 1). */
static int mean_of_last_axis(ox_ctx *x, int k, const char *name, const ox_value *v)
{
    const Onnx__NodeProto *n = x->g->node[k];
    int64_t axes[OX_MAX_DIMS], keep;
    int na;
    if (!ox_op_is(n, "ReduceMean") || ox_ninputs(n) < 1 || strcmp(n->input[0], name) ||
        ox_axes_of(x, k, 18, axes, &na) < 0 || ox_attr_int(x, k, "keepdims", 1, &keep) < 0)
        return 0;
    return na == 1 && keep == 1 && v->shape.ndim >= 1 && ox_value_axis(v, axes[0]) == v->shape.ndim - 1;
}

/* LayerNorm as PyTorch exports it before opset 17 (nn.LayerNorm's weight and
 * bias follow as Mul and Add, mapped on their own):
 *   m = ReduceMean(x), d = Sub(x, m), v = ReduceMean(Pow(d, 2)),
 *   y = Div(d, Sqrt(Add(v, eps)))        (means over the last axis, kept)
 * = (x - E x) / sqrt(Var x + eps), the engine's `layernorm` without
 * parameters. Matched from the first ReduceMean (node i); 1 when mapped. */
static int try_layernorm(ox_ctx *x, int i, int *matched)
{
    *matched = 0;
    ox_value *xv = ox_input_value(x, i, 0);
    if (!xv || xv->kind != V_NODE || !mean_of_last_axis(x, i, xv->name, xv))
        return MR_OK;
    const Onnx__NodeProto *const *g = (const Onnx__NodeProto *const *)x->g->node;
    int sub = sole_consumer(x, i);
    if (sub < 0 || !ox_op_is(g[sub], "Sub") || ox_ninputs(g[sub]) != 2 || strcmp(g[sub]->input[0], xv->name) ||
        strcmp(g[sub]->input[1], g[i]->output[0]))
        return MR_OK;
    /* d feeds exactly a Pow (by 2) and the final Div */
    const char *d = g[sub]->output[0];
    const ox_value *dv = &x->vals[ox_find_value(x, d)];
    int pw = -1, div = -1;
    if (dv->consumers != 2 || dv->is_output)
        return MR_OK;
    for (int k = sub + 1; k < (int)x->g->n_node; k++)
        for (size_t q = 0; q < g[k]->n_input; q++)
            if (!strcmp(g[k]->input[q], d)) {
                if (ox_op_is(g[k], "Pow") && q == 0)
                    pw = k;
                else if (ox_op_is(g[k], "Div") && q == 0)
                    div = k;
            }
    if (pw < 0 || div < 0 || ox_ninputs(g[pw]) != 2 || !scalar_near(x, ox_input_value(x, pw, 1), 2.0))
        return MR_OK;
    int var = sole_consumer(x, pw), add = var >= 0 ? sole_consumer(x, var) : -1;
    int sq = add >= 0 ? sole_consumer(x, add) : -1;
    if (sq < 0 || sole_consumer(x, sq) != div || !ox_op_is(g[var], "ReduceMean") ||
        !mean_of_last_axis(x, var, g[pw]->output[0], xv) || !ox_op_is(g[add], "Add") || /* Pow keeps x's shape */
        ox_ninputs(g[add]) != 2 || !ox_op_is(g[sq], "Sqrt") || ox_ninputs(g[div]) != 2 ||
        strcmp(g[div]->input[1], g[sq]->output[0]))
        return MR_OK;
    int ke = !strcmp(g[add]->input[0], g[var]->output[0]) ? 1 : 0;
    ox_value *ev = ox_input_value(x, add, ke);
    float eps;
    if (!ev || ox_materialize(x, ev) < 0 || ev->kind != V_CONST || !ev->c->f || !scalar_of(ev->c, &eps) ||
        !(eps > 0) || !isfinite(eps))
        return MR_OK;
    mr_op_attrs a = {0};
    a.eps = eps;
    int id = ox_add_node(x, div, "layernorm", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    x->done[sub] = x->done[pw] = x->done[var] = x->done[add] = x->done[sq] = x->done[div] = 1;
    *matched = 1;
    return ox_set_node_output_lay(x, div, 0, id, &xv->lay);
}

static int map_reduce_mean(ox_ctx *x, int i)
{
    int matched;
    MR_TRY(try_layernorm(x, i, &matched));
    if (matched)
        return MR_OK;
    static const char *const known[] = {"axes", "keepdims", "noop_with_empty_axes", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node(x, i, 0, &xv));
    int64_t axes[OX_MAX_DIMS], keep, noop;
    int n;
    MR_TRY(ox_axes_of(x, i, 18, axes, &n));
    MR_TRY(ox_attr_int(x, i, "keepdims", 1, &keep));
    MR_TRY(ox_attr_int(x, i, "noop_with_empty_axes", 0, &noop));
    if (n <= 0)
        return ox_node_error(x, i, MR_ENOTFOUND, "reducing every axis, the batch axis N included, is not supported");
    mr_op_attrs a = {0};
    for (int k = 0; k < n; k++) {
        int ax = sample_axis(axes[k], xv->shape.ndim);
        if (ax < 0)
            return ox_node_error(x, i, MR_ENOTFOUND, "axis %lld is the batch axis or out of range", (long long)axes[k]);
        a.axes |= 1 << ax;
    }
    a.keepdims = keep != 0;
    int id = ox_add_node(x, i, "reduce_mean", &xv->node, 1, NULL, 0, &a);
    MR_TRY(id);
    return ox_set_node_output(x, i, 0, id);
}

static int map_layernorm(ox_ctx *x, int i)
{
    static const char *const known[] = {"axis", "epsilon", "stash_type", NULL};
    MR_TRY(ox_check_attrs(x, i, known));
    MR_TRY(ox_only_first_output(x, i));
    ox_value *xv = NULL;
    MR_TRY(ox_in_node_any(x, i, 0, &xv));
    int64_t axis;
    float eps;
    MR_TRY(ox_attr_int(x, i, "axis", -1, &axis));
    MR_TRY(ox_attr_float(x, i, "epsilon", 1e-5f, &eps));
    if (ox_value_axis(xv, axis) != xv->shape.ndim - 1)
        return ox_node_error(x, i, MR_ENOTFOUND, "attribute 'axis' = %lld is not supported (only the last axis)", (long long)axis);
    if (!(eps > 0) || !isfinite(eps))
        return ox_node_error(x, i, MR_ENOTFOUND, "attribute 'epsilon' = %g is not supported (> 0)", (double)eps);
    int p[2], np = 0;
    for (int k = 1; k <= 2; k++) {
        ox_const *c;
        MR_TRY(ox_in_const(x, i, k, k == 2, &c));
        if (c)
            MR_TRY(ox_const_param(x, i, c, MR_PARAM_WEIGHT, &p[np++]));
        else if (k == 1)
            break;
    }
    mr_op_attrs a = {0};
    a.eps = eps;
    int id = ox_add_node(x, i, "layernorm", &xv->node, 1, p, np, &a);
    MR_TRY(id);
    return ox_set_node_output_lay(x, i, 0, id, &xv->lay);
}

int ox_map_node(ox_ctx *x, int i)
{
    const Onnx__NodeProto *n = x->g->node[i];
    const char *op = n->op_type ? n->op_type : "";
    mr_op_attrs a = {0};
    int folded;
    MR_TRY(ox_fold_node(x, i, &folded));
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
        return ox_map_squeeze(x, i, op[0] == 'U');
    if (!strcmp(op, "Transpose"))
        return ox_map_transpose(x, i);
    if (!strcmp(op, "Concat"))
        return ox_map_concat(x, i);
    if (!strcmp(op, "Expand"))
        return ox_map_expand(x, i);
    if (!strcmp(op, "Pad"))
        return map_pad(x, i);
    if (!strcmp(op, "Gather"))
        return ox_map_gather(x, i);
    if (!strcmp(op, "Slice"))
        return ox_map_slice(x, i);
    if (!strcmp(op, "ReduceMean"))
        return map_reduce_mean(x, i);
    if (!strcmp(op, "LayerNormalization"))
        return map_layernorm(x, i);
    if (!strcmp(op, "Flatten"))
        return ox_map_flatten(x, i);
    if (!strcmp(op, "Reshape"))
        return ox_map_reshape(x, i);
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
    return ox_node_error(x, i, MR_ENOTFOUND, "op type '%s' is not supported", op);
}
