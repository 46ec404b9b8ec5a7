/*
 * graph.h — a network: a DAG of ops over one input, its named parameters, and
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
 * The code is in three files: graph_build.c (nodes, shapes, parameters,
 * introspection), graph_plan.c (the gradient-slot planner and the workspace)
 * and graph_pass.c (forward, backward, jvp and hvp passes). Every pass reaches
 * memory and kernels through the network's backend (backend/backend.h).
 */
#ifndef MR_GRAPH_H
#define MR_GRAPH_H

#include "backend/backend.h"

enum { MR_MAX_INPUTS = 2, MR_MAX_PARAMS = 4 };

/* Workspace buffers of a node: y and dy are the node's own, gy and dgy live in
 * a gradient slot shared with nodes whose gradients are never live together
 * (see graph_plan.c). */
enum { MR_BUF_Y, MR_BUF_DY, MR_BUF_GY, MR_BUF_DGY, MR_NBUF };

typedef struct mr_node {
    const mr_op_def *def; /* NULL for the input node */
    int op;               /* MR_OP_* of def; -1 for the input node */
    int in[MR_MAX_INPUTS];
    int nin;
    int params[MR_MAX_PARAMS];
    int nparams;
    mr_op_attrs attrs;
    mr_shape shape; /* per-sample output shape */
    int nconsumers;
    char label[96];
    float *buf_data[MR_BUF_GY]; /* owned y and dy, capacity x sample numel */
    int gslot;                  /* gradient slot of gy and dgy; -1: no gradient reaches the node */
    int tslot[MR_MAX_INPUTS];   /* slot of the fan-out temporary of input k at this node's reverse
                                   step; -1: input k's gradient is written in place */
    mr_tensor view[MR_NBUF];    /* views of the buffers at the current batch size */
    float *state;               /* op state kept from forward to reverse */
    const mr_backend *ran_on;   /* the backend that ran the node's last pass; NULL: none yet */
    _Alignas(16) unsigned char cache[MR_OP_CACHE_BYTES]; /* what def->infer cached (op.h) */
} mr_node;

/* A gradient slot: one gy and one dgy buffer, each capacity x sample_numel. It
 * holds node gradients and fan-out temporaries in turn (see graph_plan.c). */
typedef struct mr_gslot {
    int64_t sample_numel; /* the largest per-sample numel among the nodes assigned */
    float *gy, *dgy;      /* dgy: NULL until a tangent pass needs it */
} mr_gslot;

typedef struct mr_param {
    char *name;
    int kind;
    mr_tensor *value;
    mr_tensor *grad; /* NULL for buffers */
} mr_param;

struct mr_net {
    mr_node *nodes;
    int nnodes, node_cap;
    mr_param *params;
    int nparams, param_cap;
    int output; /* -1: the last node */
    int training; /* the mode of mr_net_forward / mr_net_backward (mr_net_set_training) */
    uint64_t seed, calls; /* calls: forwards run in the net's mode (dropout's counter) */
    const mr_backend *backend; /* owns the workspace memory and runs the passes */
    /* workspace */
    int64_t capacity;  /* largest batch the buffers hold */
    unsigned bufs_have; /* MR_BUF_* bits allocated */
    mr_gslot *gslots;   /* the slot map, computed once per output node */
    int ngslots;
    int gslots_output;  /* the output node the slot map is for; -1: none yet */
    float *scratch;
    int64_t workspace_bytes;
    unsigned char *written;
    int written_cap;
    /* the last forward */
    int64_t ran_N;
    int ran_tangent;
    int ran_training; /* the mode the last forward ran in: its reverse passes differentiate it */
    float *ran_x; /* the caller's input: it must outlive the reverse pass */
};

static inline int mr_graph_output(const mr_net *net)
{
    return net->output >= 0 ? net->output : net->nnodes - 1;
}

/* The fan-out rule, used by the planner (graph_plan.c) and the reverse pass
 * (graph_pass.c) alike: at node n's reverse step, input k's gradient goes
 * through a temporary (then gy_j += temporary) when j = in[k] already holds a
 * gradient this pass (holds[j]: a later step wrote it), or when k = 1 and
 * in[0] = j (the step's own first write). Otherwise it is written in place. */
static inline int mr_fanout_via_temp(const mr_node *n, int k, const unsigned char *holds)
{
    int j = n->in[k];
    return holds[j] || (k == 1 && n->in[0] == j);
}

/* graph_plan.c: frees the workspace buffers (the slot map stays); makes sure
 * buffers `need` (MR_BUF_* bits) exist for a batch of N; points every node's
 * views at its buffers for a batch of N. */
void mr_graph_free_workspace(mr_net *net);
int mr_graph_reserve(mr_net *net, int64_t N, unsigned need);
void mr_graph_set_views(mr_net *net, int64_t N);
/* backend.c: the op tables are complete (MR_ESTATE naming the row if not). */
int mr_op_tables_check(void);

mr_tensor *mr_net_output_view(mr_net *net, int buf);

/* mr_net_jvp of the inference-mode function whatever the net's mode (see
 * mr_net_forward_inference): the oracle's HVPs. */
int mr_net_jvp_inference(mr_net *net, const mr_tensor *x, const mr_tensor *v, mr_tensor *y, mr_tensor *dy);
/* Bytes oneDNN's conv arena may hold for a batch of N, saturating at
 * INT64_MAX (graph_plan.c). */
int64_t mr_net_conv_arena_bound(const mr_net *net, int64_t N);

/* A reverse pass whose input gradients a method may rewrite node by node
 * (DeepLIFT's rescale rule): fn runs right after each node's vjp, with the
 * node's inputs xs, its output gradient gy and the input gradients gxs it
 * just wrote (entries may be NULL). */
typedef struct mr_vjp_hook {
    int (*fn)(void *ctx, mr_net *net, int node, const mr_tensor *const *xs, const mr_tensor *gy,
              mr_tensor *const *gxs); /* 0 or MR_E*, which stops the pass */
    void *ctx;
} mr_vjp_hook;

int mr_net_backward_hooked(mr_net *net, const mr_tensor *gy, mr_tensor *gx, const mr_vjp_hook *hook);

/* What a method that walks the graph itself (DeepLIFT) reads of a node,
 * without the graph's layout. Borrowed pointers, valid until the network
 * changes or its workspace grows. */
typedef struct mr_node_info {
    const char *op, *label; /* "input" for node 0 */
    int rule;               /* the op's MR_DL_* rule; MR_DL_LINEAR for the input */
    int nin;                /* inputs, node ids in[0..nin) */
    const int *in;
    const mr_op_attrs *attrs;
    int64_t sample_numel;   /* floats of one sample of the output */
    const mr_tensor *y;     /* the output of the last forward (NULL before one) */
    const void *state;      /* the op state after the last forward (NULL: none) */
} mr_node_info;

/* Fills *out for node `node` (MR_EINVAL if there is no such node). */
int mr_net_node_info(mr_net *net, int node, mr_node_info *out);
/* The output node's id. */
int mr_net_output_node(const mr_net *net);
/* The network's backend (never NULL). */
const mr_backend *mr_net_backend(const mr_net *net);

/* Node `node`'s vjp at the inputs xs (its own or others, e.g. DeepLIFT's
 * midpoints), through the network's backend, without parameter gradients:
 * gxs = J(xs)^T gy. 0 or the backend's MR_E* (mr_backend_dispatch). */
int mr_net_node_vjp(mr_net *net, int node, const mr_tensor *const *xs, const mr_tensor *gy,
                    mr_tensor *const *gxs);

#endif
