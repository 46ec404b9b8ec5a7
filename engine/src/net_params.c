/*
 * net_params.c — read-only access to a network's parameters, for callers that
 * hold a const network (mr_net_save). The mutable accessors, mr_net_param_get
 * and mr_net_param_grad_get, live with the graph.
 */
#include "graph.h"
#include "internal.h"

const mr_tensor *mr_net_param_value(const mr_net *net, int param)
{
    return net && param >= 0 && param < net->nparams ? net->params[param].value : NULL;
}
