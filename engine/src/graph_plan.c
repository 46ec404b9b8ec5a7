/*
 * graph_plan.c — the workspace of a network: the gradient-slot planner, the
 * buffers (allocated by the network's backend) and their views.
 *
 * Lifetimes. Let R(j) be the highest-numbered consumer of j that the reverse
 * pass reaches. gy_j is first written at step R(j) and last read at step j,
 * so it is live over the closed interval of steps [j, R(j)]; the seed gy_out
 * is written before step out and read there: [out, out]. Nodes after the
 * output or with no path to it have no gradient and get no buffer; the input's
 * gradient is the caller's gx. At step i = R(j) both gy_i and gy_j are in use,
 * hence closed intervals. A fan-out temporary of step i is written by i's vjp
 * and read by the add that ends the step: it is live over [i, i], together
 * with gy_i, the gy_j step i writes and every gradient held across step i.
 * Gradients and temporaries whose intervals are disjoint share a slot. dgy_j
 * and the temporaries' tangents are written and read at the same steps as
 * their gy, so they follow the same slot map in a second set of buffers.
 *
 * The slot map replays the reverse pass (plan_pass): at step i every input j
 * of i without a slot takes a free one, then every temporary of step i takes
 * a free one (the smallest that fits, else the largest, grown; a new one only
 * when none is free), then the temporaries' slots and i's slot are freed. That
 * is the greedy partition of the intervals in order of decreasing right end,
 * which uses as few slots as the most intervals ever live at one step: 2 on a
 * chain (gy_i and gy_{i-1} alternate; no temporaries), 3 across a residual
 * block (its input's gradient is held while the branch's alternate, and the
 * temporary at the block's first layer takes the slot the branch is done
 * with). A slot holds capacity x the largest sample numel assigned to it.
 *
 * Fewest slots is not fewest bytes: best fit does not look at lifetimes, and a
 * temporary that grows a slot or takes one early can steer later gradients
 * into larger slots. plan_slots therefore also replays with the temporaries of
 * input position k in one slot of their own, never freed (sized to the largest
 * node they carry; the node slots then come out as without temporaries), and
 * keeps whichever map sums fewer floats per sample. So the gradient part of the
 * workspace is at most S + T0 + T1, with S the slots without temporaries and
 * Tk the largest node whose gradient goes through a temporary at position k
 * (per sample and per set of buffers), below the S + 2 M of two dedicated
 * buffers of the largest gradient M (input included) that a chain would pay
 * too. The map is recomputed only when the output node moves
 * (mr_net_set_output) or a node is added.
 */
#include "graph.h"

#include <string.h>

void mr_graph_free_workspace(mr_net *net)
{
    const mr_backend *be = net->backend;
    for (int i = 0; i < net->nnodes; i++) {
        mr_node *n = &net->nodes[i];
        for (int b = 0; b < MR_BUF_GY; b++) {
            be->free(be->ctx, n->buf_data[b]);
            n->buf_data[b] = NULL;
        }
        be->free(be->ctx, n->state);
        n->state = NULL;
    }
    for (int s = 0; s < net->ngslots; s++) { /* the slot map itself stays */
        be->free(be->ctx, net->gslots[s].gy);
        be->free(be->ctx, net->gslots[s].dgy);
        net->gslots[s].gy = net->gslots[s].dgy = NULL;
    }
    be->free(be->ctx, net->scratch);
    net->scratch = NULL;
    net->capacity = 0;
    net->bufs_have = 0;
    net->workspace_bytes = 0;
}

/* Floats of scratch or state (f: the op's scratch_floats or state_floats,
 * NULL: none) node n needs for a batch of N. */
typedef size_t (*mr_floats_fn)(const mr_op_attrs *, const mr_shape *, mr_tensor *const *, int,
                               const mr_shape *, const void *, int64_t);
static size_t node_floats(const mr_net *net, const mr_node *n, mr_floats_fn f, int64_t N)
{
    if (!f)
        return 0;
    mr_shape ins[MR_MAX_INPUTS];
    mr_tensor *pv[MR_MAX_PARAMS];
    for (int k = 0; k < n->nin; k++)
        ins[k] = net->nodes[n->in[k]].shape;
    for (int k = 0; k < n->nparams; k++)
        pv[k] = net->params[n->params[k]].value;
    return f(&n->attrs, ins, pv, n->nparams, &n->shape, n->cache, N);
}



/* A free slot for a gradient of `numel` floats per sample: the smallest free
 * slot that holds it, else the largest free one (grown), else a new one. */
static int take_slot(mr_gslot *slots, int *nslots, const int *owner, int64_t numel)
{
    int fit = -1, big = -1;
    for (int s = 0; s < *nslots; s++) {
        if (owner[s] >= 0)
            continue;
        int64_t have = slots[s].sample_numel;
        if (have >= numel && (fit < 0 || have < slots[fit].sample_numel))
            fit = s;
        if (big < 0 || have > slots[big].sample_numel)
            big = s;
    }
    int s = fit >= 0 ? fit : big >= 0 ? big : (*nslots)++;
    slots[s].sample_numel = MR_MAX(slots[s].sample_numel, numel);
    return s;
}

/* One replay of the reverse pass (see the header) into net->gslots and the
 * nodes' gslot and tslot. fold: a fan-out temporary takes a slot free at its
 * step and gives it back after; otherwise the temporaries of input position k
 * share one slot of their own that is never given back. *floats: the slots'
 * per-sample floats in all. */
static int plan_pass(mr_net *net, int fold, int64_t *floats)
{
    int out = mr_graph_output(net);
    mr_free(net->gslots);
    net->gslots = NULL;
    net->ngslots = 0;
    for (int i = 0; i < net->nnodes; i++) {
        net->nodes[i].gslot = -1;
        for (int k = 0; k < MR_MAX_INPUTS; k++)
            net->nodes[i].tslot[k] = -1;
    }
    *floats = 0;
    if (out == 0) /* the output is the input: its gradient is the caller's gx */
        return MR_OK;
    /* A slot is taken only when none is free, so there are at most as many as
     * are ever owned at once: the gradients of nodes 1..out and, at one step,
     * a temporary per input position. owner[s]: the node whose gradient (or
     * whose step's temporary) slot s holds now; -1: free. */
    int max_slots = out + MR_MAX_INPUTS;
    mr_gslot *slots = mr_calloc((size_t)max_slots * sizeof *slots);
    int *owner = mr_alloc((size_t)max_slots * sizeof *owner);
    /* holds[j]: node j's gradient has been written by this point of the
     * replay, as written[] in the reverse pass (the fan-out rule's input) */
    unsigned char *holds = mr_calloc((size_t)net->nnodes);
    if (!slots || !owner || !holds) {
        mr_free(slots);
        mr_free(owner);
        mr_free(holds);
        return MR_ENOMEM;
    }
    int nslots = 0, own_slot[MR_MAX_INPUTS] = {-1, -1};
    mr_node *o = &net->nodes[out];
    o->gslot = take_slot(slots, &nslots, owner, mr_shape_numel(&o->shape));
    owner[o->gslot] = out;
    holds[out] = 1;
    for (int i = out; i >= 1; i--) {
        mr_node *n = &net->nodes[i];
        if (n->gslot < 0)
            continue; /* no gradient reaches i */
        /* the reverse pass's test (graph.h, mr_fanout_via_temp) */
        int already[MR_MAX_INPUTS];
        for (int k = 0; k < n->nin; k++)
            already[k] = mr_fanout_via_temp(n, k, holds);
        for (int k = 0; k < n->nin; k++) {
            int j = n->in[k];
            mr_node *src = &net->nodes[j];
            if (j != 0 && !already[k]) { /* the input's gradient is the caller's gx: no slot */
                src->gslot = take_slot(slots, &nslots, owner, mr_shape_numel(&src->shape));
                owner[src->gslot] = j;
            }
            holds[j] = 1;
        }
        for (int k = 0; k < n->nin; k++) {
            if (!already[k])
                continue;
            int64_t numel = mr_shape_numel(&net->nodes[n->in[k]].shape);
            if (fold) {
                n->tslot[k] = take_slot(slots, &nslots, owner, numel);
                owner[n->tslot[k]] = i;
            } else {
                if (own_slot[k] < 0) {
                    own_slot[k] = nslots++;
                    owner[own_slot[k]] = i; /* for good */
                }
                slots[own_slot[k]].sample_numel = MR_MAX(slots[own_slot[k]].sample_numel, numel);
                n->tslot[k] = own_slot[k];
            }
        }
        for (int k = 0; k < n->nin && fold; k++)
            if (n->tslot[k] >= 0)
                owner[n->tslot[k]] = -1; /* read by the add at the end of step i */
        owner[n->gslot] = -1;            /* step i is gy_i's last read */
    }
    mr_free(owner);
    mr_free(holds);
    for (int s = 0; s < nslots; s++)
        *floats += slots[s].sample_numel;
    net->gslots = slots; /* max_slots entries, nslots used */
    net->ngslots = nslots;
    return MR_OK;
}

/* Computes the slot map: the folded replay, unless the one with dedicated
 * temporaries sums fewer floats (best fit can lose more than folding saves:
 * rare, see the header), so the workspace never exceeds the layout with
 * dedicated fan-out buffers. Allocates only here, once per output node. */
static int plan_slots(mr_net *net)
{
    int64_t folded, dedicated;
    net->gslots_output = -1;
    MR_TRY(plan_pass(net, 0, &dedicated));
    MR_TRY(plan_pass(net, 1, &folded));
    if (folded > dedicated)
        MR_TRY(plan_pass(net, 0, &dedicated));
    net->gslots_output = mr_graph_output(net);
    return MR_OK;
}

/* Workspace sizes multiply the batch (a plain number in the estimate) by
 * per-sample sizes: saturating at INT64_MAX, which no budget admits and no
 * allocation serves. */
static int64_t sat_mul(int64_t a, int64_t b)
{
    int64_t p;
    return mr_size_mul(a, b, &p) ? INT64_MAX : p;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t s;
    return mr_size_add(a, b, &s) ? INT64_MAX : s;
}

/* Bytes of the buffers `have` (MR_BUF_* bits), the state and the scratch for
 * a batch of N, as mr_graph_reserve allocates them; INT64_MAX when that
 * passes int64. The slot map must be current. */
static int64_t workspace_bytes(const mr_net *net, int64_t N, unsigned have)
{
    int grads = (have & (1u << MR_BUF_GY)) != 0, tangents = (have & (1u << MR_BUF_DGY)) != 0;
    int64_t total = 0, max_scratch = 0;
    for (int i = 0; i < net->nnodes; i++) {
        const mr_node *n = &net->nodes[i];
        int64_t bytes = sat_mul(sat_mul(N, mr_shape_numel(&n->shape)), (int64_t)sizeof(float));
        for (int b = 0; b < MR_BUF_GY; b++)
            if ((have & (1u << b)) && !(i == 0 && b == MR_BUF_Y))
                total = sat_add(total, bytes);
        if (n->def) {
            max_scratch = MR_MAX(max_scratch, (int64_t)node_floats(net, n, n->def->scratch_floats, N));
            total = sat_add(total, sat_mul((int64_t)node_floats(net, n, n->def->state_floats, N),
                                           (int64_t)sizeof(float)));
        }
    }
    for (int s = 0; s < net->ngslots && grads; s++)
        total = sat_add(total, sat_mul(sat_mul(sat_mul(tangents ? 2 : 1, N), net->gslots[s].sample_numel),
                                       (int64_t)sizeof(float)));
    return sat_add(total, sat_mul(max_scratch, (int64_t)sizeof(float)));
}

/* Makes sure buffers `need` (MR_BUF_* bits) exist for a batch of N. Allocates
 * only when the batch grows past the capacity, a new kind of buffer is needed,
 * or the slot map is stale. */
int mr_graph_reserve(mr_net *net, int64_t N, unsigned need)
{
    int replan = net->gslots_output != mr_graph_output(net);
    if (!replan && N <= net->capacity && (need & ~net->bufs_have) == 0)
        return MR_OK;
    int64_t cap = MR_MAX(N, net->capacity);
    unsigned have = net->bufs_have | need;
    int grads = (have & (1u << MR_BUF_GY)) != 0, tangents = (have & (1u << MR_BUF_DGY)) != 0;
    int64_t bytes = 0;
    size_t max_scratch = 0;
    const mr_backend *be = net->backend;
    mr_graph_free_workspace(net);
    if (replan && plan_slots(net) < 0)
        goto oom;
    if (workspace_bytes(net, cap, have) == INT64_MAX) {
        net->gslots_output = -1;
        return mr_error(MR_ENOMEM, "network workspace: a batch of %lld needs more than 2^63 bytes",
                        (long long)cap);
    }
    for (int i = 0; i < net->nnodes; i++) {
        mr_node *n = &net->nodes[i];
        int64_t numel = cap * mr_shape_numel(&n->shape);
        for (int b = 0; b < MR_BUF_GY; b++) {
            if (!(have & (1u << b)) || (i == 0 && b == MR_BUF_Y))
                continue; /* the input's activation is the caller's x */
            n->buf_data[b] = be->alloc(be->ctx, (size_t)numel * sizeof(float));
            if (!n->buf_data[b])
                goto oom;
            bytes += numel * (int64_t)sizeof(float);
        }
        if (n->def) {
            size_t sc = node_floats(net, n, n->def->scratch_floats, cap);
            max_scratch = MR_MAX(max_scratch, sc);
            size_t st = node_floats(net, n, n->def->state_floats, cap);
            if (st) {
                n->state = be->alloc(be->ctx, st * sizeof(float));
                if (!n->state)
                    goto oom;
                be->zero(be->ctx, n->state, (int64_t)st);
                bytes += (int64_t)(st * sizeof(float));
            }
        }
    }
    for (int s = 0; s < net->ngslots && grads; s++) {
        mr_gslot *g = &net->gslots[s];
        int64_t numel = cap * g->sample_numel;
        g->gy = be->alloc(be->ctx, (size_t)numel * sizeof(float));
        g->dgy = tangents ? be->alloc(be->ctx, (size_t)numel * sizeof(float)) : NULL;
        if (!g->gy || (tangents && !g->dgy))
            goto oom;
        bytes += (tangents ? 2 : 1) * numel * (int64_t)sizeof(float);
    }
    if (max_scratch) {
        net->scratch = be->alloc(be->ctx, max_scratch * sizeof(float));
        if (!net->scratch)
            goto oom;
        bytes += (int64_t)(max_scratch * sizeof(float));
    }
    net->capacity = cap;
    net->bufs_have = have;
    net->workspace_bytes = bytes;
    return MR_OK;
oom:
    mr_graph_free_workspace(net);
    net->gslots_output = -1; /* plan again next time */
    return mr_error(MR_ENOMEM, "network workspace: out of memory for a batch of %lld", (long long)cap);
}

/* The bytes reserve(net, N, need) would hold, without allocating (the slot map
 * aside): the same sizing loop over the buffer kinds net already has plus
 * `need`. tests/batch_independence_spec.lua checks it against
 * mr_net_workspace_bytes after a pass. */
int mr_net_workspace_estimate(int64_t *bytes, mr_net *net, int64_t N, int tangents)
{
    if (!bytes || !net)
        return mr_error(MR_EINVAL, "workspace_estimate: bytes or net is NULL");
    if (N < 1)
        return mr_error(MR_EINVAL, "workspace_estimate: batch must be >= 1, got %lld", (long long)N);
    *bytes = 0;
    if (net->nnodes < 2)
        return mr_error(MR_ESTATE, "workspace_estimate: the network has no layers");
    if (net->gslots_output != mr_graph_output(net))
        MR_TRY(plan_slots(net));
    unsigned need = (1u << MR_BUF_Y) | (1u << MR_BUF_GY);
    if (tangents)
        need |= (1u << MR_BUF_DY) | (1u << MR_BUF_DGY);
    int64_t total = workspace_bytes(net, N, net->bufs_have | need);
    if (total == INT64_MAX)
        return mr_error(MR_EINVAL, "mr_net_workspace_estimate: a batch of %lld needs more than 2^63 bytes",
                        (long long)N);
    *bytes = total;
    return MR_OK;
}

/* With oneDNN as the conv backend, a conv pass also copies its input and
 * output into blocked layouts (channels padded to 16) in the backend's arena
 * (conv2d_dnnl.c), outside the workspace: the largest such pair over the conv
 * nodes, in bytes for a batch of N (0 with the BLAS backend), so that the
 * automatic chunk's budget covers it. oneDNN's own scratchpad is not counted. */
int64_t mr_net_conv_arena_bound(const mr_net *net, int64_t N)
{
    if (strcmp(mr_get_conv_backend(), "onednn") != 0)
        return 0;
    int64_t most = 0;
    for (int i = 1; i < net->nnodes; i++) {
        const mr_node *n = &net->nodes[i];
        if (!n->def || strcmp(n->def->name, "conv2d") != 0 || n->shape.ndim != 3)
            continue;
        const mr_shape *in = &net->nodes[n->in[0]].shape;
        int64_t blocked = (in->d[0] + 15) / 16 * 16 * in->d[1] * in->d[2] +
                          (n->shape.d[0] + 15) / 16 * 16 * n->shape.d[1] * n->shape.d[2];
        most = MR_MAX(most, blocked);
    }
    return sat_mul(sat_mul(most, N), (int64_t)sizeof(float));
}

/* Points the node's tensor views at its buffers for a batch of N: y and dy at
 * its own, gy and dgy at its gradient slot's (NULL without one). */void mr_graph_set_views(mr_net *net, int64_t N)
{
    for (int i = 0; i < net->nnodes; i++) {
        mr_node *n = &net->nodes[i];
        mr_gslot *g = n->gslot >= 0 ? &net->gslots[n->gslot] : NULL;
        for (int b = 0; b < MR_NBUF; b++) {
            mr_tensor *t = &n->view[b];
            memset(t, 0, sizeof *t);
            t->data = b < MR_BUF_GY ? n->buf_data[b] : !g ? NULL : b == MR_BUF_GY ? g->gy : g->dgy;
            t->ndim = 1 + n->shape.ndim;
            t->shape[0] = N;
            for (int d = 0; d < 3; d++)
                t->shape[1 + d] = d < n->shape.ndim ? n->shape.d[d] : 1;
            t->numel = N * mr_shape_numel(&n->shape);
        }
    }
}

