/* graph.h — the network's internal layout (see graph.c). */
#ifndef MR_GRAPH_H
#define MR_GRAPH_H

#include "ops/op.h"

enum { MR_MAX_INPUTS = 2, MR_MAX_PARAMS = 4 };

/* Workspace buffers of a node: y and dy are the node's own, gy and dgy live in
 * a gradient slot shared with nodes whose gradients are never live together
 * (see graph.c). */
enum { MR_BUF_Y, MR_BUF_DY, MR_BUF_GY, MR_BUF_DGY, MR_NBUF };

typedef struct mr_node {
    const mr_op_def *def; /* NULL for the input node */
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
    float *state;             /* op state kept from forward to reverse */
} mr_node;

/* A gradient slot: one gy and one dgy buffer, each capacity x sample_numel. It
 * holds node gradients and fan-out temporaries in turn (see graph.c). */
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

mr_tensor *mr_net_output_view(mr_net *net, int buf);

/* mr_net_jvp of the inference-mode function whatever the net's mode (see
 * mr_net_forward_inference): the oracle's HVPs. */
int mr_net_jvp_inference(mr_net *net, const mr_tensor *x, const mr_tensor *v, mr_tensor *y, mr_tensor *dy);
/* Bytes oneDNN's conv arena may hold for a batch of N (graph.c). */
int64_t mr_net_conv_arena_bound(const mr_net *net, int64_t N);

/* A reverse pass whose input gradients a method may rewrite node by node
 * (DeepLIFT's rescale rule): fn runs right after each node's vjp, with the
 * node's inputs xs, its output gradient gy and the input gradients gxs it
 * just wrote (entries may be NULL). */
typedef struct mr_vjp_hook {
    void (*fn)(void *ctx, mr_net *net, int node, const mr_tensor *const *xs, const mr_tensor *gy,
               mr_tensor *const *gxs);
    void *ctx;
} mr_vjp_hook;

int mr_net_backward_hooked(mr_net *net, const mr_tensor *gy, mr_tensor *gx, const mr_vjp_hook *hook);

#endif
