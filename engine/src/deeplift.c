/*
 * deeplift.c — DeepLIFT with the rescale rule (Shrikumar et al. 2017), zero
 * or any baseline x0, applied per op in the graph.
 *
 * Reverse pass of the class logit with each elementwise nonlinearity's
 * derivative f'(x) replaced by the secant multiplier
 *
 *     m = (f(x) − f(x0)) / (x − x0)      (f'(x) where |x − x0| < 1e-6)
 *
 * and every other op differentiated as usual (linear ops — conv, linear,
 * batchnorm at inference, average pooling, add — are exact under any rule;
 * max pooling and the squeeze-excitation product use their gradients). The
 * attribution is (x − x0) ⊙ multipliers; on a network of linear ops and
 * elementwise nonlinearities it sums exactly to f_c(x) − f_c(x0)
 * (completeness).
 */
#include "graph.h"

#include <math.h>
#include <string.h>

typedef struct dl_ctx {
    float **y0; /* per node: activations at the baseline (NULL for the input) */
    const float *x0;
} dl_ctx;

static int is_elementwise_nonlinear(const mr_op_def *d)
{
    return d == &mr_op_relu || d == &mr_op_softplus || d == &mr_op_silu || d == &mr_op_sigmoid ||
           d == &mr_op_tanh;
}

static void rescale_hook(void *vctx, mr_net *net, int node, const mr_tensor *const *xs,
                         const mr_tensor *gy, mr_tensor *const *gxs)
{
    dl_ctx *c = vctx;
    mr_node *n = &net->nodes[node];
    if (!is_elementwise_nonlinear(n->def) || !gxs[0])
        return;
    int src = n->in[0];
    const float *x = xs[0]->data, *y = n->view[MR_BUF_Y].data;
    const float *x0 = src == 0 ? c->x0 : c->y0[src], *y0 = c->y0[node];
    float *gx = gxs[0]->data;
    for (int64_t j = 0; j < gy->numel; j++) {
        float dx = x[j] - x0[j];
        if (fabsf(dx) >= 1e-6f)
            gx[j] = gy->data[j] * ((y[j] - y0[j]) / dx);
    }
}

int mr_deeplift(mr_tensor *out, mr_net *net, const mr_tensor *x, const mr_tensor *baseline,
                const int32_t *labels)
{
    if (!out || !net || !x || !labels)
        return mr_error(MR_EINVAL, "deeplift: out, net, x and labels are required");
    if (!mr_same_shape(out, x) || (baseline && !mr_same_shape(baseline, x))) {
        char a[64], b[64], c[64];
        return mr_error(MR_ESHAPE, "deeplift: out %s and baseline %s must be shaped like x %s",
                        mr_tensor_shape_str(out, a, sizeof a),
                        baseline ? mr_tensor_shape_str(baseline, b, sizeof b) : "(none)",
                        mr_tensor_shape_str(x, c, sizeof c));
    }
    int64_t N = x->shape[0];
    int last = net->output >= 0 ? net->output : net->nnodes - 1;
    if (net->nodes[last].shape.ndim != 1)
        return mr_error(MR_ESHAPE, "deeplift: the network output must be (N, K) class scores");
    int64_t K = net->nodes[last].shape.d[0];
    for (int64_t n = 0; n < N; n++)
        if (labels[n] < 0 || labels[n] >= K)
            return mr_error(MR_EINVAL, "deeplift: label %d of item %lld is outside 0..%lld", labels[n],
                            (long long)n, (long long)K - 1);
    mr_tensor *x0 = NULL;
    int rc;
    if (baseline) {
        MR_TRY(mr_tensor_clone(&x0, baseline));
    } else {
        MR_TRY(mr_tensor_new(&x0, x->ndim, x->shape));
    }
    dl_ctx c = {.x0 = x0->data};
    c.y0 = mr_calloc((size_t)net->nnodes * sizeof(float *));
    mr_tensor *gy = NULL;
    if (!c.y0) {
        rc = MR_ENOMEM;
        goto done;
    }
    /* The baseline's activations, kept node by node. */
    if ((rc = mr_net_forward(net, x0, NULL)) < 0)
        goto done;
    for (int i = 1; i <= last; i++) {
        mr_tensor *y = &net->nodes[i].view[MR_BUF_Y];
        c.y0[i] = mr_alloc((size_t)y->numel * sizeof(float));
        if (!c.y0[i]) {
            rc = MR_ENOMEM;
            goto done;
        }
        memcpy(c.y0[i], y->data, (size_t)y->numel * sizeof(float));
    }
    if ((rc = mr_net_forward(net, x, NULL)) < 0)
        goto done;
    int64_t gshape[2] = {N, K};
    if ((rc = mr_tensor_new(&gy, 2, gshape)) < 0)
        goto done;
    for (int64_t n = 0; n < N; n++)
        gy->data[n * K + labels[n]] = 1.f;
    mr_vjp_hook hook = {rescale_hook, &c};
    if ((rc = mr_net_backward_hooked(net, gy, out, &hook)) < 0)
        goto done;
    for (int64_t j = 0; j < x->numel; j++)
        out->data[j] *= x->data[j] - x0->data[j];
done:
    if (c.y0)
        for (int i = 0; i < net->nnodes; i++)
            mr_free(c.y0[i]);
    mr_free(c.y0);
    mr_tensor_free(x0);
    mr_tensor_free(gy);
    return rc;
}
