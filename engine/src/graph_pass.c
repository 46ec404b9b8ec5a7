/*
 * graph_pass.c — a network's passes: forward, backward, jvp and the tangent
 * of the backward (hvp), over the workspace of graph_plan.c. Every op pass
 * goes to the network's backend (mr_backend_dispatch), which records on the
 * node the backend that ran it; copies, zeroing and the fan-out adds go
 * through the backend too.
 *
 * Modes. mr_net_forward (and mr_net_jvp) run in the net's mode
 * (mr_net_set_training); mr_net_forward_inference and mr_net_jvp_inference run
 * the inference-mode function whatever that mode is, the mode being an
 * argument of the pass, never a flip of the net's flag that an error could
 * leave behind. A reverse pass differentiates the forward that ran
 * (ran_training), so a mode change between the two cannot mix them.
 */
#include "graph.h"

#include <stdio.h>
#include <string.h>

static int check_batch(const mr_net *net, const mr_tensor *x, const char *what)
{
    if (!net)
        return mr_error(MR_EINVAL, "%s: net is NULL", what);
    if (net->nnodes < 2)
        return mr_error(MR_ESTATE, "%s: the network has no layers", what);
    if (!x || !x->data)
        return mr_error(MR_EINVAL, "%s: input tensor is NULL", what);
    const mr_shape *s = &net->nodes[0].shape;
    int ok = x->ndim == 1 + s->ndim;
    for (int d = 0; ok && d < s->ndim; d++)
        ok = x->shape[1 + d] == s->d[d];
    if (!ok) {
        char a[64], b[64];
        return mr_error(MR_ESHAPE, "%s: input has shape %s, the network expects Nx%s", what,
                        mr_tensor_shape_str(x, a, sizeof a), mr_shape_str(s, b, sizeof b));
    }
    /* The batch is an OpenBLAS int dimension (a linear layer's weight gradient). */
    return mr_size_int(what, "batch N", x->shape[0]);
}

static int check_like(const mr_tensor *t, const mr_tensor *ref, const char *what, const char *name)
{
    if (!t)
        return MR_OK;
    if (!mr_same_shape(t, ref)) {
        char a[64], b[64];
        return mr_error(MR_ESHAPE, "%s: %s has shape %s, expected %s", what, name,
                        mr_tensor_shape_str(t, a, sizeof a), mr_tensor_shape_str(ref, b, sizeof b));
    }
    return MR_OK;
}

/* training: the mode the op evaluates (a forward pass's own, see run_forward;
 * a reverse pass takes the mode its forward ran in). */
static void make_ctx(mr_net *net, mr_node *n, int node_id, int param_grads, int training, mr_op_ctx *c,
                     mr_tensor **pv, mr_tensor **pg)
{
    for (int k = 0; k < n->nparams; k++) {
        pv[k] = net->params[n->params[k]].value;
        pg[k] = net->params[n->params[k]].grad;
    }
    c->attrs = &n->attrs;
    c->params = pv;
    c->param_grads = param_grads ? pg : NULL;
    c->nparams = n->nparams;
    c->cache = n->cache;
    c->scratch = net->scratch;
    c->state = n->state;
    c->training = training;
    c->seed = net->seed;
    c->stream = (uint64_t)node_id;
    c->counter = net->calls;
}
/* -------------------------------------------------------------- passes */

/* Runs the forward pass (and, with tangent, the JVP) over all nodes, in the
 * net's mode, or with `inference` in inference mode whatever the net's mode.
 * An inference pass writes no parameter or buffer (batchnorm reads its running
 * statistics, dropout is the identity) and leaves the dropout counter alone,
 * so it changes nothing a later training pass sees. */
static int run_forward(mr_net *net, const mr_tensor *x, const mr_tensor *v, int inference)
{
    int64_t N = x->shape[0];
    unsigned need = 1u << MR_BUF_Y;
    if (v)
        need |= 1u << MR_BUF_DY;
    MR_TRY(mr_graph_reserve(net, N, need));
    mr_graph_set_views(net, N);
    const mr_backend *be = net->backend;
    net->nodes[0].view[MR_BUF_Y].data = x->data; /* read only */
    if (v)
        be->copy(be->ctx, net->nodes[0].view[MR_BUF_DY].data, v->data, v->numel);
    int training = inference ? 0 : net->training;
    if (!inference)
        net->calls++;
    int last = mr_graph_output(net);
    net->ran_N = 0; /* a pass that a backend stops part-way leaves no point for a reverse pass */
    for (int i = 1; i <= last; i++) {
        mr_node *n = &net->nodes[i];
        mr_op_ctx c;
        mr_tensor *pv[MR_MAX_PARAMS], *pg[MR_MAX_PARAMS];
        make_ctx(net, n, i, 0, training, &c, pv, pg);
        const mr_tensor *xs[MR_MAX_INPUTS], *dxs[MR_MAX_INPUTS];
        for (int k = 0; k < n->nin; k++) {
            xs[k] = &net->nodes[n->in[k]].view[MR_BUF_Y];
            dxs[k] = &net->nodes[n->in[k]].view[MR_BUF_DY];
        }
        mr_op_call call = {.ctx = &c, .x = xs, .dx = dxs, .y = &n->view[MR_BUF_Y],
                           .dy = &n->view[MR_BUF_DY]};
        MR_TRY(mr_backend_dispatch(be, n->op, MR_PASS_FORWARD, &call, &n->ran_on));
        if (v)
            MR_TRY(mr_backend_dispatch(be, n->op, MR_PASS_JVP, &call, &n->ran_on));
    }
    net->ran_N = N;
    net->ran_tangent = v != NULL;
    net->ran_training = training;
    net->ran_x = x->data;
    return MR_OK;
}

/* The reverse pass. With tangent, also the tangent of the reverse pass (for
 * HVPs). gx/dgx: the caller's outputs for the input node (may be NULL). */
static int run_backward(mr_net *net, const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *gx,
                        mr_tensor *dgx, int param_grads, int tangent, const mr_vjp_hook *hook)
{
    int64_t N = net->ran_N;
    int last = mr_graph_output(net);
    const char *what = tangent ? "hvp_backward" : "backward";
    unsigned need = (1u << MR_BUF_GY) | (tangent ? 1u << MR_BUF_DGY : 0);
    if ((need & ~net->bufs_have) != 0) {
        /* Reserving new buffers reallocates; the forward activations would be lost. */
        return mr_error(MR_ESTATE, "%s: internal: workspace lacks gradient buffers", what);
    }
    if (net->gslots_output != last) /* the slot map (and the forward) are for another output */
        return mr_error(MR_ESTATE, "%s: the output node moved to %d after the forward pass; run it again",
                        what, last);
    const mr_backend *be = net->backend;
    mr_graph_set_views(net, N);
    net->nodes[0].view[MR_BUF_Y].data = net->ran_x;
    /* written[i]: node i's gradient buffer holds a value this pass. */
    unsigned char *written = net->written;
    memset(written, 0, (size_t)net->nnodes);
    /* The input node's gradient goes straight to the caller's gx / dgx (set
     * first: when the output is the input, the seed lands there). */
    mr_node *in0 = &net->nodes[0];
    in0->view[MR_BUF_GY].data = gx ? gx->data : NULL;
    in0->view[MR_BUF_DGY].data = dgx ? dgx->data : NULL;
    /* The seed: gy_out's slot is free before step out (see the header), and
     * gy may be that very buffer (the oracle seeds it in place). */
    mr_node *out = &net->nodes[last];
    if (out->view[MR_BUF_GY].data)
        be->copy(be->ctx, out->view[MR_BUF_GY].data, gy->data, gy->numel);
    if (tangent && out->view[MR_BUF_DGY].data) {
        if (dgy)
            be->copy(be->ctx, out->view[MR_BUF_DGY].data, dgy->data, dgy->numel);
        else
            be->zero(be->ctx, out->view[MR_BUF_DGY].data, gy->numel);
    }
    written[last] = 1;

    for (int i = last; i >= 1; i--) {
        mr_node *n = &net->nodes[i];
        if (!written[i])
            continue;
        mr_op_ctx c;
        mr_tensor *pv[MR_MAX_PARAMS], *pg[MR_MAX_PARAMS];
        make_ctx(net, n, i, param_grads, net->ran_training, &c, pv, pg);
        const mr_tensor *xs[MR_MAX_INPUTS], *dxs[MR_MAX_INPUTS];
        mr_tensor *gxs[MR_MAX_INPUTS], *dgxs[MR_MAX_INPUTS];
        mr_tensor tmp_g[MR_MAX_INPUTS], tmp_dg[MR_MAX_INPUTS];
        int via_temp[MR_MAX_INPUTS];
        unsigned char will_write[MR_MAX_INPUTS] = {0};
        for (int k = 0; k < n->nin; k++) {
            int j = n->in[k];
            mr_node *src = &net->nodes[j];
            xs[k] = &src->view[MR_BUF_Y];
            dxs[k] = &src->view[MR_BUF_DY];
            int already = mr_fanout_via_temp(n, k, written);
            via_temp[k] = 0;
            if (j == 0 && !gx && !dgx) {
                gxs[k] = dgxs[k] = NULL; /* nobody wants the input gradient */
                continue;
            }
            if (!already) {
                gxs[k] = src->view[MR_BUF_GY].data ? &src->view[MR_BUF_GY] : NULL;
                dgxs[k] = tangent && src->view[MR_BUF_DGY].data ? &src->view[MR_BUF_DGY] : NULL;
            } else {
                /* the temporary's slot is free during step i (plan_pass) */
                if (n->tslot[k] < 0)
                    return mr_error(MR_ESTATE, "%s: internal: node %d has no slot for the gradient of "
                                    "input %d", what, i, k);
                mr_gslot *t = &net->gslots[n->tslot[k]];
                via_temp[k] = 1;
                tmp_g[k] = src->view[MR_BUF_GY];
                tmp_g[k].data = t->gy;
                tmp_dg[k] = src->view[MR_BUF_DGY];
                tmp_dg[k].data = t->dgy;
                gxs[k] = src->view[MR_BUF_GY].data ? &tmp_g[k] : NULL;
                dgxs[k] = tangent && src->view[MR_BUF_DGY].data ? &tmp_dg[k] : NULL;
            }
            will_write[k] = 1;
        }
        mr_op_call call = {.ctx = &c, .x = xs, .dx = dxs, .y = &n->view[MR_BUF_Y],
                           .dy = &n->view[MR_BUF_DY], .gy = &n->view[MR_BUF_GY],
                           .dgy = &n->view[MR_BUF_DGY], .gx = gxs, .dgx = dgxs};
        MR_TRY(mr_backend_dispatch(be, n->op, MR_PASS_VJP, &call, &n->ran_on));
        if (hook)
            MR_TRY(hook->fn(hook->ctx, net, i, xs, &n->view[MR_BUF_GY], gxs));
        if (tangent)
            MR_TRY(mr_backend_dispatch(be, n->op, MR_PASS_VJP_TANGENT, &call, &n->ran_on));
        for (int k = 0; k < n->nin; k++) {
            if (!will_write[k])
                continue;
            mr_node *src = &net->nodes[n->in[k]];
            if (via_temp[k]) {
                if (gxs[k]) /* the fan-out sum: gy_j += t */
                    be->add(be->ctx, src->view[MR_BUF_GY].data, gxs[k]->data, gxs[k]->numel);
                if (dgxs[k])
                    be->add(be->ctx, src->view[MR_BUF_DGY].data, dgxs[k]->data, dgxs[k]->numel);
            }
            written[n->in[k]] = 1;
        }
    }
    if (!written[0]) { /* the output does not depend on the input */
        if (gx)
            be->zero(be->ctx, gx->data, gx->numel);
        if (dgx)
            be->zero(be->ctx, dgx->data, dgx->numel);
    }
    return MR_OK;
}

/* Sizes the written[] flags once per network build (not per call). */
static int ensure_flags(mr_net *net)
{
    if (net->written_cap >= net->nnodes)
        return MR_OK;
    mr_free(net->written);
    net->written = mr_calloc((size_t)net->nnodes);
    if (!net->written)
        return MR_ENOMEM;
    net->written_cap = net->nnodes;
    return MR_OK;
}

static int forward(mr_net *net, const mr_tensor *x, mr_tensor *y, int inference, const char *what)
{
    char msg[64];
    MR_TRY(check_batch(net, x, what));
    snprintf(msg, sizeof msg, "%s: input", what);
    MR_TRY(mr_tensor_check_finite(x, msg));
    /* Keep gradient buffers reserved alongside if a reverse pass may follow. */
    MR_TRY(mr_graph_reserve(net, x->shape[0], (1u << MR_BUF_Y) | (1u << MR_BUF_GY)));
    MR_TRY(run_forward(net, x, NULL, inference));
    mr_tensor *o = &net->nodes[mr_graph_output(net)].view[MR_BUF_Y];
    if (y) {
        MR_TRY(check_like(y, o, what, "output tensor"));
        net->backend->copy(net->backend->ctx, y->data, o->data, o->numel);
    }
    return MR_OK;
}

int mr_net_forward(mr_net *net, const mr_tensor *x, mr_tensor *y)
{
    return forward(net, x, y, 0, "forward");
}

int mr_net_forward_inference(mr_net *net, const mr_tensor *x, mr_tensor *y)
{
    return forward(net, x, y, 1, "forward_inference");
}

mr_tensor *mr_net_output_get(mr_net *net)
{
    if (!net || net->ran_N == 0)
        return NULL;
    return &net->nodes[mr_graph_output(net)].view[MR_BUF_Y];
}

int mr_net_backward(mr_net *net, const mr_tensor *gy, mr_tensor *gx, int param_grads)
{
    if (!net || !gy)
        return mr_error(MR_EINVAL, "backward: net or gy is NULL");
    if (net->ran_N == 0 || net->ran_tangent)
        return mr_error(MR_ESTATE, "backward: run forward first");
    MR_TRY(ensure_flags(net));
    mr_graph_set_views(net, net->ran_N);
    MR_TRY(check_like(gy, &net->nodes[mr_graph_output(net)].view[MR_BUF_Y], "backward", "gy"));
    mr_tensor xref = net->nodes[0].view[MR_BUF_GY];
    MR_TRY(check_like(gx, &xref, "backward", "gx"));
    return run_backward(net, gy, NULL, gx, NULL, param_grads, 0, NULL);
}

static int jvp(mr_net *net, const mr_tensor *x, const mr_tensor *v, mr_tensor *y, mr_tensor *dy,
               int inference)
{
    MR_TRY(check_batch(net, x, "jvp"));
    if (!v)
        return mr_error(MR_EINVAL, "jvp: tangent v is NULL");
    MR_TRY(check_like(v, x, "jvp", "tangent v"));
    MR_TRY(mr_tensor_check_finite(x, "jvp: input"));
    MR_TRY(mr_tensor_check_finite(v, "jvp: tangent"));
    if (net->training && !inference)
        return mr_error(MR_ESTATE, "jvp: tangents are defined in inference mode only");
    MR_TRY(mr_graph_reserve(net, x->shape[0],
                   (1u << MR_BUF_Y) | (1u << MR_BUF_DY) | (1u << MR_BUF_GY) | (1u << MR_BUF_DGY)));
    MR_TRY(run_forward(net, x, v, inference));
    mr_node *o = &net->nodes[mr_graph_output(net)];
    MR_TRY(check_like(y, &o->view[MR_BUF_Y], "jvp", "output y"));
    MR_TRY(check_like(dy, &o->view[MR_BUF_DY], "jvp", "output dy"));
    const mr_backend *be = net->backend;
    if (y)
        be->copy(be->ctx, y->data, o->view[MR_BUF_Y].data, o->view[MR_BUF_Y].numel);
    if (dy)
        be->copy(be->ctx, dy->data, o->view[MR_BUF_DY].data, o->view[MR_BUF_DY].numel);
    return MR_OK;
}

int mr_net_hvp_backward(mr_net *net, const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *gx,
                        mr_tensor *dgx)
{
    if (!net || !gy)
        return mr_error(MR_EINVAL, "hvp_backward: net or gy is NULL");
    if (net->ran_N == 0 || !net->ran_tangent)
        return mr_error(MR_ESTATE, "hvp_backward: run jvp first");
    MR_TRY(ensure_flags(net));
    mr_graph_set_views(net, net->ran_N);
    mr_tensor *o = &net->nodes[mr_graph_output(net)].view[MR_BUF_Y];
    MR_TRY(check_like(gy, o, "hvp_backward", "gy"));
    MR_TRY(check_like(dgy, o, "hvp_backward", "dgy"));
    mr_tensor xref = net->nodes[0].view[MR_BUF_GY];
    MR_TRY(check_like(gx, &xref, "hvp_backward", "gx"));
    MR_TRY(check_like(dgx, &xref, "hvp_backward", "dgx"));
    return run_backward(net, gy, dgy, gx, dgx, 0, 1, NULL);
}

int mr_net_jvp(mr_net *net, const mr_tensor *x, const mr_tensor *v, mr_tensor *y, mr_tensor *dy)
{
    return jvp(net, x, v, y, dy, 0);
}

int mr_net_jvp_inference(mr_net *net, const mr_tensor *x, const mr_tensor *v, mr_tensor *y, mr_tensor *dy)
{
    return jvp(net, x, v, y, dy, 1);
}

/* Internal: the output node's views after the last forward (the oracle reads
 * logits here). GY and DGY are the output's gradient slot: what is written
 * there before a reverse pass is a valid seed (gy_out is live from before step
 * out), but the pass reuses the slot for other nodes' gradients and fan-out
 * temporaries afterwards. */
mr_tensor *mr_net_output_view(mr_net *net, int buf)
{
    return &net->nodes[mr_graph_output(net)].view[buf];
}

int mr_net_backward_hooked(mr_net *net, const mr_tensor *gy, mr_tensor *gx, const mr_vjp_hook *hook)
{
    if (!net || !gy)
        return mr_error(MR_EINVAL, "backward: net or gy is NULL");
    if (net->ran_N == 0 || net->ran_tangent)
        return mr_error(MR_ESTATE, "backward: run forward first");
    MR_TRY(ensure_flags(net));
    return run_backward(net, gy, NULL, gx, NULL, 0, 0, hook);
}

int mr_net_node_vjp(mr_net *net, int node, const mr_tensor *const *xs, const mr_tensor *gy,
                    mr_tensor *const *gxs)
{
    mr_node *n = &net->nodes[node];
    mr_op_ctx c;
    mr_tensor *pv[MR_MAX_PARAMS], *pg[MR_MAX_PARAMS];
    make_ctx(net, n, node, 0, net->ran_training, &c, pv, pg);
    mr_op_call call = {.ctx = &c, .x = xs, .y = &n->view[MR_BUF_Y], .gy = gy, .gx = gxs};
    return mr_backend_dispatch(net->backend, n->op, MR_PASS_VJP, &call, &n->ran_on);
}

