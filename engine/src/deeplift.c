/*
 * deeplift.c — DeepLIFT (Shrikumar, Greenside and Kundaje 2017, "Learning
 * Important Features Through Propagating Activation Differences"), zero or
 * any baseline x0, one rule per op.
 *
 * With Δv = v(x) − v(x0) for every quantity v of the network, DeepLIFT
 * carries multipliers m = ∂°f_c/∂°v back from the class logit f_c by the
 * chain rule, each op replacing its Jacobian by a rule whose multipliers keep
 * summation-to-delta, Σ_i m_i Δx_i = Δy, exactly. The attribution is
 * Δx ⊙ m at the input, and so Σ attributions = f_c(x) − f_c(x0)
 * (completeness) on every network all of whose ops have a rule. The rules
 * (the op's `deeplift` field, ops/op.h, read through mr_net_node_info;
 * README "DeepLIFT's rules"):
 *
 *   linear    conv, linear, batchnorm at inference, average and adaptive
 *             average pooling, add, flatten, dropout at inference; reshape,
 *             transpose, concat, slice, gather, pad, constant, reduce_mean,
 *             matmul_param, add/sub/mul/div_param and sub: affine, so
 *             Δy = J Δx and m = the vjp (the paper's Linear rule).
 *   rescale   relu, softplus, silu, sigmoid, tanh, clip, hardsigmoid,
 *             hardswish, gelu, erf, y = f(x) elementwise:
 *             m = Δy/Δx, and f'(x) where |Δx| < 1e-6 (the paper's Rescale
 *             rule; exact for any f, monotone or not).
 *   max       maxpool2d: each window's Δy split between its argmax at x and
 *             its argmax at x0 with weights t and 1 − t in [0, 1]
 *             (mr_maxpool2d_deeplift; the formula and proof are in ops/pool.c).
 *   bilinear  mul and matmul, y = B(a, b): B(a, b) − B(a0, b0) = B(Δa, b̄) + B(ā, Δb) with
 *             ā = (a + a0)/2, b̄ = (b + b0)/2 (expand both sides), so m = the
 *             vjp taken at the midpoints (ā, b̄). For the elementwise product
 *             this is Δ(ab) = b̄ Δa + ā Δb, the Shapley value of the
 *             two-factor game (Shapley 1953); with a = b (x·x) the
 *             contributions sum to x² − x0².
 *   refused   softmax, log-softmax, layernorm, div: no rule splits Δy
 *             exactly; DeepLIFT refuses a network whose output depends on
 *             one (the paper explains the logits before the softmax).
 *
 * Both passes run the inference-mode function whatever mr_net_set_training
 * says (so the batchnorm and dropout rules above always apply), and write no
 * parameter or buffer (README, "Training mode").
 */
#include "graph.h"

#include <math.h>
#include <string.h>

typedef struct dl_ctx {
    float **y0;      /* per node: activations at the baseline (NULL for the input) */
    int32_t **arg0;  /* per max-pool node: its window argmaxes at the baseline */
    float *mid;      /* bilinear nodes: room for the midpoints of both inputs */
    const float *x0;
} dl_ctx;

static const float *at_baseline(const dl_ctx *c, int node) { return node == 0 ? c->x0 : c->y0[node]; }

/* Runs right after node's vjp and replaces its input gradients (= multipliers)
 * by the op's DeepLIFT rule; linear ops keep the vjp. */
static int deeplift_hook(void *vctx, mr_net *net, int node, const mr_tensor *const *xs,
                          const mr_tensor *gy, mr_tensor *const *gxs)
{
    dl_ctx *c = vctx;
    mr_node_info n;
    if (mr_net_node_info(net, node, &n) < 0)
        return MR_OK; /* the graph calls the hook with its own node ids */
    switch (n.rule) {
    case MR_DL_RESCALE: {
        if (!gxs[0])
            return MR_OK;
        const float *x = xs[0]->data, *y = n.y->data;
        const float *x0 = at_baseline(c, n.in[0]), *y0 = c->y0[node];
        float *gx = gxs[0]->data;
        for (int64_t j = 0; j < gy->numel; j++) {
            float dx = x[j] - x0[j];
            if (fabsf(dx) >= 1e-6f)
                gx[j] = gy->data[j] * ((y[j] - y0[j]) / dx);
        }
        return MR_OK;
    }
    case MR_DL_MAX:
        if (gxs[0])
            mr_maxpool2d_deeplift(n.attrs, xs[0], at_baseline(c, n.in[0]), (const int32_t *)n.state,
                                  c->arg0[node], gy, gxs[0]);
        return MR_OK;
    case MR_DL_BILINEAR: {
        mr_tensor mid[MR_MAX_INPUTS];
        const mr_tensor *mids[MR_MAX_INPUTS];
        float *p = c->mid;
        for (int k = 0; k < n.nin; k++) {
            const float *x = xs[k]->data, *x0 = at_baseline(c, n.in[k]);
            mid[k] = *xs[k];
            mid[k].data = p;
            for (int64_t j = 0; j < xs[k]->numel; j++)
                p[j] = 0.5f * (x[j] + x0[j]);
            p += xs[k]->numel;
            mids[k] = &mid[k];
        }
        return mr_net_node_vjp(net, node, mids, gy, gxs); /* on the net's backend */
    }
    default: /* MR_DL_LINEAR: the vjp is the rule */
        return MR_OK;
    }
}

int mr_deeplift(mr_tensor *out, mr_net *net, const mr_tensor *x, const mr_tensor *baseline,
                const int32_t *labels)
{
    if (!out || !net || !x || !labels)
        return mr_error(MR_EINVAL, "deeplift: out, net, x and labels are required");
    const mr_tensor *like[2] = {out, baseline};
    const char *what[2] = {"out", "baseline"};
    for (int k = 0; k < 2; k++) /* by shape, not by element count */
        if (like[k] && !mr_same_shape(like[k], x)) {
            char a[64], b[64];
            return mr_error(MR_ESHAPE, "deeplift: %s has shape %s, expected %s (like x)", what[k],
                            mr_tensor_shape_str(like[k], a, sizeof a), mr_tensor_shape_str(x, b, sizeof b));
        }
    int64_t N = x->shape[0];
    int last = mr_net_output_node(net), nnodes = mr_net_node_count(net), ondim;
    int64_t oshape[3];
    MR_TRY(mr_net_node_shape(net, last, &ondim, oshape));
    if (ondim != 1)
        return mr_error(MR_ESHAPE, "deeplift: the network output must be (N, K) class scores");
    int64_t K = oshape[0];
    for (int64_t n = 0; n < N; n++)
        if (labels[n] < 0 || labels[n] >= K)
            return mr_error(MR_EINVAL, "deeplift: label %d of item %lld is outside 0..%lld", labels[n],
                            (long long)n, (long long)K - 1);
    unsigned char *reach = mr_calloc((size_t)nnodes);
    if (!reach)
        return MR_ENOMEM;
    /* The nodes the output depends on: each needs an exact rule. */
    reach[last] = 1;
    int64_t mid_floats = 0;
    for (int i = last; i >= 1; i--) {
        mr_node_info nd, src;
        if (!reach[i] || mr_net_node_info(net, i, &nd) < 0)
            continue;
        if (nd.rule == MR_DL_REFUSE) {
            mr_free(reach);
            return mr_error(MR_EINVAL, "deeplift: node %d '%s' (%s) has no exact DeepLIFT rule; explain "
                            "a network whose output is the scores before it", i, nd.label, nd.op);
        }
        int64_t need = 0, part;
        for (int k = 0; k < nd.nin; k++) {
            reach[nd.in[k]] = 1;
            mr_net_node_info(net, nd.in[k], &src);
            /* before any pass has sized the workspace for N: checked */
            if (mr_size_mul(N, src.sample_numel, &part) || mr_size_add(need, part, &need)) {
                mr_free(reach);
                return mr_error(MR_ENOMEM, "deeplift: node %d '%s': %lld items of its inputs overflow int64", i,
                                nd.label, (long long)N);
            }
        }
        if (nd.rule == MR_DL_BILINEAR)
            mid_floats = MR_MAX(mid_floats, need);
    }
    mr_tensor *x0 = NULL;
    int rc;
    if (baseline)
        rc = mr_tensor_clone(&x0, baseline);
    else
        rc = mr_tensor_new(&x0, x->ndim, x->shape);
    if (rc < 0) {
        mr_free(reach);
        return rc;
    }
    dl_ctx c = {.x0 = x0->data};
    mr_tensor *gy = NULL;
    c.y0 = mr_calloc((size_t)nnodes * sizeof(float *));
    c.arg0 = mr_calloc((size_t)nnodes * sizeof(int32_t *));
    int64_t mid_bytes = 0;
    if (mid_floats && (rc = mr_bytes_of(&mid_bytes, "deeplift", "product splits", mid_floats,
                                        (int64_t)sizeof(float))) < 0)
        goto done;
    c.mid = mid_floats ? mr_alloc((size_t)mid_bytes) : NULL;
    if (!c.y0 || !c.arg0 || (mid_floats && !c.mid)) {
        rc = MR_ENOMEM;
        goto done;
    }
    /* The baseline's activations (and max-pool argmaxes), kept node by node. */
    if ((rc = mr_net_forward_inference(net, x0, NULL)) < 0)
        goto done;
    const mr_backend *be = mr_net_backend(net);
    for (int i = 1; i <= last; i++) {
        mr_node_info nd;
        mr_net_node_info(net, i, &nd);
        const mr_tensor *y = nd.y;
        c.y0[i] = mr_alloc((size_t)y->numel * sizeof(float));
        if (!c.y0[i]) {
            rc = MR_ENOMEM;
            goto done;
        }
        be->copy(be->ctx, c.y0[i], y->data, y->numel);
        if (reach[i] && nd.rule == MR_DL_MAX) { /* one int32 per output entry */
            c.arg0[i] = mr_alloc((size_t)y->numel * sizeof(int32_t));
            if (!c.arg0[i]) {
                rc = MR_ENOMEM;
                goto done;
            }
            /* the argmaxes are int32, copied as floats of the same size (pool.c) */
            be->copy(be->ctx, (float *)(void *)c.arg0[i], nd.state, y->numel);
        }
    }
    if ((rc = mr_net_forward_inference(net, x, NULL)) < 0)
        goto done;
    int64_t gshape[2] = {N, K};
    if ((rc = mr_tensor_new(&gy, 2, gshape)) < 0)
        goto done;
    for (int64_t n = 0; n < N; n++)
        gy->data[n * K + labels[n]] = 1.f;
    mr_vjp_hook hook = {deeplift_hook, &c};
    if ((rc = mr_net_backward_hooked(net, gy, out, &hook)) < 0)
        goto done;
    for (int64_t j = 0; j < x->numel; j++)
        out->data[j] *= x->data[j] - x0->data[j];
done:
    if (c.y0)
        for (int i = 0; i < nnodes; i++)
            mr_free(c.y0[i]);
    if (c.arg0)
        for (int i = 0; i < nnodes; i++)
            mr_free(c.arg0[i]);
    mr_free(c.y0);
    mr_free(c.arg0);
    mr_free(c.mid);
    mr_free(reach);
    mr_tensor_free(x0);
    mr_tensor_free(gy);
    return rc;
}
