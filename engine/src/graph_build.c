/*
 * graph_build.c — building a network (its input, parameters and nodes, each
 * node's shape checked once by its op's infer), introspection, and the choice
 * of backend. The layout and the workspace: graph.h, graph_plan.c.
 */
#include "graph.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ building */

int mr_net_new(mr_net **out)
{
    if (!out)
        return mr_error(MR_EINVAL, "mr_net_new: out is NULL");
    MR_TRY(mr_op_tables_check());
    *out = mr_calloc(sizeof **out);
    if (!*out)
        return MR_ENOMEM;
    (*out)->output = -1;
    (*out)->gslots_output = -1;
    (*out)->backend = &mr_cpu_backend;
    return MR_OK;
}

void mr_net_free(mr_net *net)
{
    if (!net)
        return;
    mr_graph_free_workspace(net);
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

/* Every node's sample (the input's and each op's output) has at most INT_MAX
 * entries, its dims' product overflow-checked: the kernels hand per-sample
 * sizes (a linear layer's in/out features, a conv's Ho*Wo and channel
 * strides) to OpenBLAS's int parameters, and the workspace multiplies them by
 * the batch. fn and what name the call and the sample in the message. */
static int check_sample(const char *fn, const char *what, const mr_shape *s)
{
    int64_t numel;
    MR_TRY(mr_size_prod(&numel, fn, what, s->ndim, s->d));
    return mr_size_int(fn, what, numel);
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
    mr_shape shape = {.ndim = ndim};
    for (int i = 0; i < ndim; i++)
        shape.d[i] = sample_shape[i];
    MR_TRY(check_sample("mr_net_input", "entries per sample", &shape));
    MR_TRY(grow((void **)&net->nodes, &net->node_cap, 1, sizeof(mr_node)));
    mr_node *n = &net->nodes[0];
    memset(n, 0, sizeof *n);
    n->def = NULL;
    n->op = -1;
    n->gslot = -1; /* the input's gradient is the caller's gx */
    n->shape = shape;
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
    _Alignas(16) unsigned char cache[MR_OP_CACHE_BYTES] = {0};
    int rc = def->infer(&a, in, ptens, nparams, &out, cache);
    if (rc < 0) /* the op's message starts with its name; prefix the label when it says more */
        return strcmp(lab, def->name) == 0 ? rc : mr_error(rc, "%s: %s", lab, mr_last_error());
    char what[48];
    snprintf(what, sizeof what, "%s output entries per sample", def->name);
    MR_TRY(check_sample(lab, what, &out));
    MR_TRY(grow((void **)&net->nodes, &net->node_cap, net->nnodes + 1, sizeof(mr_node)));
    mr_node *n = &net->nodes[net->nnodes];
    memset(n, 0, sizeof *n);
    n->def = def;
    n->op = mr_op_index(def);
    memcpy(n->cache, cache, sizeof cache);
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

/* The ids of list[0..n) into ids[0..min(n, cap)); returns n. */
static int node_ids(int *ids, int cap, const int *list, int n)
{
    for (int i = 0; i < n && i < cap; i++)
        ids[i] = list[i];
    return n;
}

int mr_net_node_inputs(int *ids, int cap, const mr_net *net, int node)
{
    if (!net || node < 0 || node >= net->nnodes || cap < 0 || (cap > 0 && !ids))
        return mr_error(MR_EINVAL, "mr_net_node_inputs: no node %d", node);
    return node_ids(ids, cap, net->nodes[node].in, net->nodes[node].nin);
}

int mr_net_node_params(int *ids, int cap, const mr_net *net, int node)
{
    if (!net || node < 0 || node >= net->nnodes || cap < 0 || (cap > 0 && !ids))
        return mr_error(MR_EINVAL, "mr_net_node_params: no node %d", node);
    return node_ids(ids, cap, net->nodes[node].params, net->nodes[node].nparams);
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
            net->backend->zero(net->backend->ctx, net->params[i].grad->data, net->params[i].grad->numel);
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

/* ------------------------------------------------------------- backends */

int mr_net_set_backend(mr_net *net, const char *name)
{
    if (!net)
        return mr_error(MR_EINVAL, "mr_net_set_backend: net is NULL");
    const mr_backend *b = mr_backend_get(name);
    if (!b)
        return mr_error(MR_ENOTFOUND, "mr_net_set_backend: no backend named '%s'",
                        name ? name : "(null)");
    if (b == net->backend)
        return MR_OK;
    mr_graph_free_workspace(net); /* allocated by the old backend */
    net->backend = b;
    net->ran_N = 0; /* a reverse pass needs a forward on the new backend */
    for (int i = 0; i < net->nnodes; i++)
        net->nodes[i].ran_on = NULL;
    return MR_OK;
}

const char *mr_net_backend_name(const mr_net *net) { return net ? net->backend->name : NULL; }

const char *mr_net_node_ran_on(const mr_net *net, int node)
{
    if (!net || node < 0 || node >= net->nnodes || !net->nodes[node].ran_on)
        return NULL;
    return net->nodes[node].ran_on->name;
}

/* ------------------------------------------------- for methods (graph.h) */

int mr_net_node_info(mr_net *net, int node, mr_node_info *out)
{
    if (!net || !out || node < 0 || node >= net->nnodes)
        return mr_error(MR_EINVAL, "mr_net_node_info: no node %d", node);
    mr_node *n = &net->nodes[node];
    out->op = n->def ? n->def->name : "input";
    out->label = n->label;
    out->rule = n->def ? n->def->deeplift : MR_DL_LINEAR;
    out->nin = n->nin;
    out->in = n->in;
    out->attrs = &n->attrs;
    out->sample_numel = mr_shape_numel(&n->shape);
    out->y = net->ran_N > 0 ? &n->view[MR_BUF_Y] : NULL;
    out->state = n->state;
    return MR_OK;
}

int mr_net_output_node(const mr_net *net) { return mr_graph_output(net); }

const mr_backend *mr_net_backend(const mr_net *net) { return net->backend; }
