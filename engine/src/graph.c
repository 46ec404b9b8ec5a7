/*
 * graph.c — a network: a DAG of ops over one input, its named parameters, and
 * the workspace its passes run in.
 *
 * Nodes are numbered in creation order (a topological order); node 0 is the
 * input. The workspace gives every node two batch buffers of its own,
 *
 *   y    activation            (forward)
 *   dy   forward tangent       (jvp)
 *
 * read by the reverse pass at every node, and two that live in a gradient
 * slot shared between nodes,
 *
 *   gy   reverse gradient      (backward)
 *   dgy  tangent of gy         (hvp_backward)
 *
 * all allocated only when a pass needs them and only when the batch grows.
 *
 * Reverse passes run steps i = out, out-1, ..., 1 (out: the output node). Step
 * i reads gy_i (and dgy_i) and writes gy_j (and dgy_j) for the inputs j of i.
 * Ops overwrite their input gradients; when a node feeds several consumers
 * the first to run writes into the node's own buffer and later ones into a
 * fan-out temporary t that is then added (gy_j += t, so gy_j = the sum over
 * consumers, in decreasing consumer order). Input k of step i goes through a
 * temporary when j = in[k] already holds a gradient: a later step wrote it, or
 * k = 1 and in[0] = j. A node that no gradient reached is skipped.
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
 *
 * Modes. mr_net_forward (and mr_net_jvp) run in the net's mode
 * (mr_net_set_training); mr_net_forward_inference and mr_net_jvp_inference run
 * the inference-mode function whatever that mode is, the mode being an
 * argument of the pass, never a flip of the net's flag that an error could
 * leave behind. A reverse pass differentiates the forward that ran
 * (ran_training), so a mode change between the two cannot mix them.
 */
#include "graph.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ building */

int mr_net_new(mr_net **out)
{
    if (!out)
        return mr_error(MR_EINVAL, "mr_net_new: out is NULL");
    *out = mr_calloc(sizeof **out);
    if (!*out)
        return MR_ENOMEM;
    (*out)->output = -1;
    (*out)->gslots_output = -1;
    return MR_OK;
}

static void free_workspace(mr_net *net)
{
    for (int i = 0; i < net->nnodes; i++) {
        mr_node *n = &net->nodes[i];
        for (int b = 0; b < MR_BUF_GY; b++) {
            mr_free(n->buf_data[b]);
            n->buf_data[b] = NULL;
        }
        mr_free(n->state);
        n->state = NULL;
    }
    for (int s = 0; s < net->ngslots; s++) { /* the slot map itself stays */
        mr_free(net->gslots[s].gy);
        mr_free(net->gslots[s].dgy);
        net->gslots[s].gy = net->gslots[s].dgy = NULL;
    }
    mr_free(net->scratch);
    net->scratch = NULL;
    net->capacity = 0;
    net->bufs_have = 0;
    net->workspace_bytes = 0;
}

void mr_net_free(mr_net *net)
{
    if (!net)
        return;
    free_workspace(net);
    for (int i = 0; i < net->nparams; i++) {
        mr_tensor_free(net->params[i].value);
        mr_tensor_free(net->params[i].grad);
        mr_free(net->params[i].name);
    }
    mr_free(net->params);
    mr_free(net->gslots);
    mr_free(net->nodes);
    mr_free(net->written);
    mr_free(net);
}

static int grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return MR_OK;
    int ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = mr_calloc((size_t)ncap * elem);
    if (!p)
        return MR_ENOMEM;
    if (*arr)
        memcpy(p, *arr, (size_t)*cap * elem);
    mr_free(*arr);
    *arr = p;
    *cap = ncap;
    return MR_OK;
}

static int check_building(mr_net *net, const char *what)
{
    if (!net)
        return mr_error(MR_EINVAL, "%s: net is NULL", what);
    if (net->capacity > 0)
        return mr_error(MR_ESTATE, "%s: the network has already run; build it fully first", what);
    return MR_OK;
}

int mr_net_input(mr_net *net, int ndim, const int64_t *sample_shape)
{
    MR_TRY(check_building(net, "mr_net_input"));
    if (net->nnodes > 0)
        return mr_error(MR_ESTATE, "mr_net_input: the network already has an input");
    if (ndim < 1 || ndim > 3 || !sample_shape)
        return mr_error(MR_ESHAPE, "mr_net_input: a sample has 1..3 dims, got %d", ndim);
    for (int i = 0; i < ndim; i++)
        if (sample_shape[i] < 1)
            return mr_error(MR_ESHAPE, "mr_net_input: dim %d is %lld", i, (long long)sample_shape[i]);
    MR_TRY(grow((void **)&net->nodes, &net->node_cap, 1, sizeof(mr_node)));
    mr_node *n = &net->nodes[0];
    memset(n, 0, sizeof *n);
    n->def = NULL;
    n->gslot = -1; /* the input's gradient is the caller's gx */
    n->shape.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        n->shape.d[i] = sample_shape[i];
    snprintf(n->label, sizeof n->label, "input");
    net->nnodes = 1;
    return 0;
}

int mr_net_param(mr_net *net, const char *name, int ndim, const int64_t *shape, int kind)
{
    MR_TRY(check_building(net, "mr_net_param"));
    if (!name || !*name)
        return mr_error(MR_EINVAL, "mr_net_param: a parameter needs a name");
    if (kind != MR_PARAM_WEIGHT && kind != MR_PARAM_BUFFER)
        return mr_error(MR_EINVAL, "mr_net_param: '%s': unknown kind %d", name, kind);
    if (mr_net_param_find(net, name) >= 0)
        return mr_error(MR_EINVAL, "mr_net_param: duplicate parameter name '%s'", name);
    MR_TRY(grow((void **)&net->params, &net->param_cap, net->nparams + 1, sizeof(mr_param)));
    mr_param *p = &net->params[net->nparams];
    memset(p, 0, sizeof *p);
    int rc = mr_tensor_new(&p->value, ndim, shape);
    if (rc < 0)
        return mr_error(rc, "mr_net_param: '%s': %s", name, mr_last_error());
    if (kind == MR_PARAM_WEIGHT && (rc = mr_tensor_new(&p->grad, ndim, shape)) < 0) {
        mr_tensor_free(p->value);
        return rc;
    }
    size_t len = strlen(name);
    p->name = mr_alloc(len + 1);
    if (!p->name) {
        mr_tensor_free(p->value);
        mr_tensor_free(p->grad);
        return MR_ENOMEM;
    }
    memcpy(p->name, name, len + 1);
    p->kind = kind;
    return net->nparams++;
}

int mr_net_node(mr_net *net, const char *op_name, const int *inputs, int ninputs, const int *params,
                int nparams, const mr_op_attrs *attrs, const char *label)
{
    MR_TRY(check_building(net, "mr_net_node"));
    const char *lab = label && *label ? label : (op_name ? op_name : "?");
    if (net->nnodes == 0)
        return mr_error(MR_ESTATE, "%s: declare the network input before adding nodes", lab);
    const mr_op_def *def = mr_op_find(op_name);
    if (!def)
        return mr_error(MR_ENOTFOUND, "%s: unknown op '%s'", lab, op_name ? op_name : "(null)");
    if (ninputs != def->ninputs || (ninputs > 0 && !inputs))
        return mr_error(MR_EINVAL, "%s: %s takes %d input(s), got %d", lab, def->name, def->ninputs,
                        ninputs);
    if (nparams < def->min_params || nparams > def->max_params || (nparams > 0 && !params))
        return mr_error(MR_EINVAL, "%s: %s takes %d..%d parameters, got %d", lab, def->name,
                        def->min_params, def->max_params, nparams);
    mr_shape in[MR_MAX_INPUTS];
    for (int k = 0; k < ninputs; k++) {
        if (inputs[k] < 0 || inputs[k] >= net->nnodes)
            return mr_error(MR_EINVAL, "%s: input %d refers to node %d, which does not exist", lab, k,
                            inputs[k]);
        in[k] = net->nodes[inputs[k]].shape;
    }
    mr_tensor *ptens[MR_MAX_PARAMS];
    for (int k = 0; k < nparams; k++) {
        if (params[k] < 0 || params[k] >= net->nparams)
            return mr_error(MR_EINVAL, "%s: parameter %d refers to id %d, which does not exist", lab,
                            k, params[k]);
        ptens[k] = net->params[params[k]].value;
    }
    mr_op_attrs a;
    if (attrs)
        a = *attrs;
    else
        memset(&a, 0, sizeof a);
    mr_shape out;
    memset(&out, 0, sizeof out);
    int rc = def->infer(&a, in, ptens, nparams, &out);
    if (rc < 0) /* the op's message starts with its name; prefix the label when it says more */
        return strcmp(lab, def->name) == 0 ? rc : mr_error(rc, "%s: %s", lab, mr_last_error());
    MR_TRY(grow((void **)&net->nodes, &net->node_cap, net->nnodes + 1, sizeof(mr_node)));
    mr_node *n = &net->nodes[net->nnodes];
    memset(n, 0, sizeof *n);
    n->def = def;
    n->nin = ninputs;
    for (int k = 0; k < ninputs; k++) {
        n->in[k] = inputs[k];
        net->nodes[inputs[k]].nconsumers++;
    }
    n->nparams = nparams;
    for (int k = 0; k < nparams; k++)
        n->params[k] = params[k];
    n->attrs = a;
    n->shape = out;
    n->gslot = -1;
    snprintf(n->label, sizeof n->label, "%s", lab);
    net->gslots_output = -1; /* the slot map is computed again at the next reserve */
    return net->nnodes++;
}

int mr_net_set_output(mr_net *net, int node)
{
    if (!net)
        return mr_error(MR_EINVAL, "mr_net_set_output: net is NULL");
    if (node < 0 || node >= net->nnodes)
        return mr_error(MR_EINVAL, "mr_net_set_output: node %d does not exist", node);
    net->output = node;
    return MR_OK;
}

/* -------------------------------------------------------- introspection */

int mr_net_node_count(const mr_net *net) { return net ? net->nnodes : 0; }

const char *mr_net_node_op(const mr_net *net, int node)
{
    if (!net || node < 0 || node >= net->nnodes)
        return NULL;
    return net->nodes[node].def ? net->nodes[node].def->name : "input";
}

const char *mr_net_node_label(const mr_net *net, int node)
{
    if (!net || node < 0 || node >= net->nnodes)
        return NULL;
    return net->nodes[node].label;
}

int mr_net_node_shape(const mr_net *net, int node, int *ndim, int64_t *shape)
{
    if (!net || node < 0 || node >= net->nnodes || !ndim || !shape)
        return mr_error(MR_EINVAL, "mr_net_node_shape: no node %d", node);
    const mr_shape *s = &net->nodes[node].shape;
    *ndim = s->ndim;
    for (int i = 0; i < s->ndim; i++)
        shape[i] = s->d[i];
    return MR_OK;
}

int mr_net_param_count(const mr_net *net) { return net ? net->nparams : 0; }

const char *mr_net_param_name(const mr_net *net, int p)
{
    return net && p >= 0 && p < net->nparams ? net->params[p].name : NULL;
}

int mr_net_param_kind(const mr_net *net, int p)
{
    if (!net || p < 0 || p >= net->nparams)
        return mr_error(MR_EINVAL, "mr_net_param_kind: no parameter %d", p);
    return net->params[p].kind;
}

int mr_net_param_find(const mr_net *net, const char *name)
{
    if (net && name)
        for (int i = 0; i < net->nparams; i++)
            if (strcmp(net->params[i].name, name) == 0)
                return i;
    return mr_error(MR_ENOTFOUND, "no parameter named '%s'", name ? name : "(null)");
}

mr_tensor *mr_net_param_get(mr_net *net, int p)
{
    return net && p >= 0 && p < net->nparams ? net->params[p].value : NULL;
}

mr_tensor *mr_net_param_grad_get(mr_net *net, int p)
{
    return net && p >= 0 && p < net->nparams ? net->params[p].grad : NULL;
}

int mr_net_zero_grad(mr_net *net)
{
    if (!net)
        return mr_error(MR_EINVAL, "mr_net_zero_grad: net is NULL");
    for (int i = 0; i < net->nparams; i++)
        if (net->params[i].grad)
            memset(net->params[i].grad->data, 0, (size_t)net->params[i].grad->numel * sizeof(float));
    return MR_OK;
}

int mr_net_set_training(mr_net *net, int training)
{
    if (!net)
        return mr_error(MR_EINVAL, "mr_net_set_training: net is NULL");
    net->training = training != 0;
    return MR_OK;
}

int mr_net_set_seed(mr_net *net, uint64_t seed)
{
    if (!net)
        return mr_error(MR_EINVAL, "mr_net_set_seed: net is NULL");
    net->seed = seed;
    net->calls = 0;
    return MR_OK;
}

int64_t mr_net_workspace_bytes(const mr_net *net) { return net ? net->workspace_bytes : 0; }

/* ------------------------------------------------------------ workspace */

static int output_node(const mr_net *net) { return net->output >= 0 ? net->output : net->nnodes - 1; }

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
    int out = output_node(net);
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
    if (!slots || !owner) {
        mr_free(slots);
        mr_free(owner);
        return MR_ENOMEM;
    }
    int nslots = 0, input_reached = 0, own_slot[MR_MAX_INPUTS] = {-1, -1};
    mr_node *o = &net->nodes[out];
    o->gslot = take_slot(slots, &nslots, owner, mr_shape_numel(&o->shape));
    owner[o->gslot] = out;
    for (int i = out; i >= 1; i--) {
        mr_node *n = &net->nodes[i];
        if (n->gslot < 0)
            continue; /* no gradient reaches i */
        /* run_backward's test: input k holds a gradient from a later step
         * (written[j]), or from input 0 of this one (in[0] == in[1]) */
        int already[MR_MAX_INPUTS];
        for (int k = 0; k < n->nin; k++) {
            int j = n->in[k];
            already[k] = (j == 0 ? input_reached : net->nodes[j].gslot >= 0) ||
                         (k == 1 && n->in[0] == j);
        }
        for (int k = 0; k < n->nin; k++) {
            int j = n->in[k];
            mr_node *src = &net->nodes[j];
            if (j == 0)
                input_reached = 1; /* the caller's gx: no slot */
            else if (!already[k]) {
                src->gslot = take_slot(slots, &nslots, owner, mr_shape_numel(&src->shape));
                owner[src->gslot] = j;
            }
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
    net->gslots_output = output_node(net);
    return MR_OK;
}

/* Makes sure buffers `need` (MR_BUF_* bits) exist for a batch of N. Allocates
 * only when the batch grows past the capacity, a new kind of buffer is needed,
 * or the slot map is stale. */
static int reserve(mr_net *net, int64_t N, unsigned need)
{
    int replan = net->gslots_output != output_node(net);
    if (!replan && N <= net->capacity && (need & ~net->bufs_have) == 0)
        return MR_OK;
    int64_t cap = MR_MAX(N, net->capacity);
    unsigned have = net->bufs_have | need;
    int grads = (have & (1u << MR_BUF_GY)) != 0, tangents = (have & (1u << MR_BUF_DGY)) != 0;
    int64_t bytes = 0;
    size_t max_scratch = 0;
    free_workspace(net);
    if (replan && plan_slots(net) < 0)
        goto oom;
    for (int i = 0; i < net->nnodes; i++) {
        mr_node *n = &net->nodes[i];
        int64_t numel = cap * mr_shape_numel(&n->shape);
        for (int b = 0; b < MR_BUF_GY; b++) {
            if (!(have & (1u << b)) || (i == 0 && b == MR_BUF_Y))
                continue; /* the input's activation is the caller's x */
            n->buf_data[b] = mr_alloc((size_t)numel * sizeof(float));
            if (!n->buf_data[b])
                goto oom;
            bytes += numel * (int64_t)sizeof(float);
        }
        if (n->def) {
            mr_shape ins[MR_MAX_INPUTS];
            for (int k = 0; k < n->nin; k++)
                ins[k] = net->nodes[n->in[k]].shape;
            if (n->def->scratch_floats)
                max_scratch = MR_MAX(max_scratch, n->def->scratch_floats(&n->attrs, ins, &n->shape, cap));
            size_t st = n->def->state_floats ? n->def->state_floats(&n->attrs, ins, &n->shape, cap) : 0;
            if (st) {
                n->state = mr_calloc(st * sizeof(float));
                if (!n->state)
                    goto oom;
                bytes += (int64_t)(st * sizeof(float));
            }
        }
    }
    for (int s = 0; s < net->ngslots && grads; s++) {
        mr_gslot *g = &net->gslots[s];
        int64_t numel = cap * g->sample_numel;
        g->gy = mr_alloc((size_t)numel * sizeof(float));
        g->dgy = tangents ? mr_alloc((size_t)numel * sizeof(float)) : NULL;
        if (!g->gy || (tangents && !g->dgy))
            goto oom;
        bytes += (tangents ? 2 : 1) * numel * (int64_t)sizeof(float);
    }
    if (max_scratch) {
        net->scratch = mr_alloc(max_scratch * sizeof(float));
        if (!net->scratch)
            goto oom;
        bytes += (int64_t)(max_scratch * sizeof(float));
    }
    net->capacity = cap;
    net->bufs_have = have;
    net->workspace_bytes = bytes;
    return MR_OK;
oom:
    free_workspace(net);
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
    if (net->gslots_output != output_node(net))
        MR_TRY(plan_slots(net));
    unsigned need = (1u << MR_BUF_Y) | (1u << MR_BUF_GY);
    if (tangents)
        need |= (1u << MR_BUF_DY) | (1u << MR_BUF_DGY);
    unsigned have = net->bufs_have | need;
    int tang = (have & (1u << MR_BUF_DGY)) != 0;
    int64_t total = 0;
    size_t max_scratch = 0;
    for (int i = 0; i < net->nnodes; i++) {
        mr_node *n = &net->nodes[i];
        int64_t numel = N * mr_shape_numel(&n->shape);
        for (int b = 0; b < MR_BUF_GY; b++)
            if ((have & (1u << b)) && !(i == 0 && b == MR_BUF_Y))
                total += numel * (int64_t)sizeof(float);
        if (n->def) {
            mr_shape ins[MR_MAX_INPUTS];
            for (int k = 0; k < n->nin; k++)
                ins[k] = net->nodes[n->in[k]].shape;
            if (n->def->scratch_floats)
                max_scratch = MR_MAX(max_scratch, n->def->scratch_floats(&n->attrs, ins, &n->shape, N));
            if (n->def->state_floats)
                total += (int64_t)(n->def->state_floats(&n->attrs, ins, &n->shape, N) * sizeof(float));
        }
    }
    for (int s = 0; s < net->ngslots; s++)
        total += (tang ? 2 : 1) * N * net->gslots[s].sample_numel * (int64_t)sizeof(float);
    total += (int64_t)(max_scratch * sizeof(float));
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
    return most * N * (int64_t)sizeof(float);
}

/* Points the node's tensor views at its buffers for a batch of N: y and dy at
 * its own, gy and dgy at its gradient slot's (NULL without one). */
static void set_views(mr_net *net, int64_t N)
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
            t->device = MR_DEVICE_CPU;
        }
    }
}

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
    return MR_OK;
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
    MR_TRY(reserve(net, N, need));
    set_views(net, N);
    net->nodes[0].view[MR_BUF_Y].data = x->data; /* read only */
    if (v)
        memcpy(net->nodes[0].view[MR_BUF_DY].data, v->data, (size_t)v->numel * sizeof(float));
    int training = inference ? 0 : net->training;
    if (!inference)
        net->calls++;
    int last = output_node(net);
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
        n->def->forward(&c, xs, &n->view[MR_BUF_Y]);
        if (v)
            n->def->jvp(&c, xs, dxs, &n->view[MR_BUF_Y], &n->view[MR_BUF_DY]);
    }
    net->ran_N = N;
    net->ran_tangent = v != NULL;
    net->ran_training = training;
    net->ran_x = x->data;
    return MR_OK;
}

static void add_into(float *dst, const float *src, int64_t n)
{
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > 32768)
    for (int64_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* The reverse pass. With tangent, also the tangent of the reverse pass (for
 * HVPs). gx/dgx: the caller's outputs for the input node (may be NULL). */
static int run_backward(mr_net *net, const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *gx,
                        mr_tensor *dgx, int param_grads, int tangent, const mr_vjp_hook *hook)
{
    int64_t N = net->ran_N;
    int last = output_node(net);
    const char *what = tangent ? "hvp_backward" : "backward";
    unsigned need = (1u << MR_BUF_GY) | (tangent ? 1u << MR_BUF_DGY : 0);
    if ((need & ~net->bufs_have) != 0) {
        /* Reserving new buffers reallocates; the forward activations would be lost. */
        return mr_error(MR_ESTATE, "%s: internal: workspace lacks gradient buffers", what);
    }
    if (net->gslots_output != last) /* the slot map (and the forward) are for another output */
        return mr_error(MR_ESTATE, "%s: the output node moved to %d after the forward pass; run it again",
                        what, last);
    set_views(net, N);
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
        memmove(out->view[MR_BUF_GY].data, gy->data, (size_t)gy->numel * sizeof(float));
    if (tangent && out->view[MR_BUF_DGY].data) {
        if (dgy)
            memmove(out->view[MR_BUF_DGY].data, dgy->data, (size_t)dgy->numel * sizeof(float));
        else
            memset(out->view[MR_BUF_DGY].data, 0, (size_t)gy->numel * sizeof(float));
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
            int already = written[j] || (k == 1 && n->in[0] == j);
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
        n->def->vjp(&c, xs, &n->view[MR_BUF_Y], &n->view[MR_BUF_GY], gxs);
        if (hook)
            hook->fn(hook->ctx, net, i, xs, &n->view[MR_BUF_GY], gxs);
        if (tangent)
            n->def->vjp_tangent(&c, xs, dxs, &n->view[MR_BUF_Y], &n->view[MR_BUF_DY],
                                &n->view[MR_BUF_GY], &n->view[MR_BUF_DGY], dgxs);
        for (int k = 0; k < n->nin; k++) {
            if (!will_write[k])
                continue;
            mr_node *src = &net->nodes[n->in[k]];
            if (via_temp[k]) {
                if (gxs[k])
                    add_into(src->view[MR_BUF_GY].data, gxs[k]->data, gxs[k]->numel);
                if (dgxs[k])
                    add_into(src->view[MR_BUF_DGY].data, dgxs[k]->data, dgxs[k]->numel);
            }
            written[n->in[k]] = 1;
        }
    }
    if (!written[0]) { /* the output does not depend on the input */
        if (gx)
            memset(gx->data, 0, (size_t)gx->numel * sizeof(float));
        if (dgx)
            memset(dgx->data, 0, (size_t)dgx->numel * sizeof(float));
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
    MR_TRY(reserve(net, x->shape[0], (1u << MR_BUF_Y) | (1u << MR_BUF_GY)));
    MR_TRY(run_forward(net, x, NULL, inference));
    mr_tensor *o = &net->nodes[output_node(net)].view[MR_BUF_Y];
    if (y) {
        MR_TRY(check_like(y, o, what, "output tensor"));
        memcpy(y->data, o->data, (size_t)o->numel * sizeof(float));
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
    return &net->nodes[output_node(net)].view[MR_BUF_Y];
}

int mr_net_backward(mr_net *net, const mr_tensor *gy, mr_tensor *gx, int param_grads)
{
    if (!net || !gy)
        return mr_error(MR_EINVAL, "backward: net or gy is NULL");
    if (net->ran_N == 0 || net->ran_tangent)
        return mr_error(MR_ESTATE, "backward: run forward first");
    MR_TRY(ensure_flags(net));
    set_views(net, net->ran_N);
    MR_TRY(check_like(gy, &net->nodes[output_node(net)].view[MR_BUF_Y], "backward", "gy"));
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
    MR_TRY(reserve(net, x->shape[0],
                   (1u << MR_BUF_Y) | (1u << MR_BUF_DY) | (1u << MR_BUF_GY) | (1u << MR_BUF_DGY)));
    MR_TRY(run_forward(net, x, v, inference));
    mr_node *o = &net->nodes[output_node(net)];
    MR_TRY(check_like(y, &o->view[MR_BUF_Y], "jvp", "output y"));
    MR_TRY(check_like(dy, &o->view[MR_BUF_DY], "jvp", "output dy"));
    if (y)
        memcpy(y->data, o->view[MR_BUF_Y].data, (size_t)o->view[MR_BUF_Y].numel * sizeof(float));
    if (dy)
        memcpy(dy->data, o->view[MR_BUF_DY].data, (size_t)o->view[MR_BUF_DY].numel * sizeof(float));
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
    set_views(net, net->ran_N);
    mr_tensor *o = &net->nodes[output_node(net)].view[MR_BUF_Y];
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
    return &net->nodes[output_node(net)].view[buf];
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
