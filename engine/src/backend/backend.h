/*
 * backend.h — the seam between the graph and the code that computes (see the
 * "backends" block of moreau.h and docs/architecture.md).
 *
 * The graph, the sampler and DeepLIFT reach memory and kernels only through a
 * network's backend (mr_backend): workspace allocation, copies, zeroing, adds,
 * the normal RNG fill, and one `run` per op pass. An op's shape half (ops/)
 * is shared by every backend; its kernels live in backend/<name>/.
 */
#ifndef MR_BACKEND_H
#define MR_BACKEND_H

#include "../ops/op.h"

/* The arguments of one pass of one node (the kernels' signature in op.h);
 * the entries a pass does not use are NULL. */
struct mr_op_call {
    const mr_op_ctx *ctx;
    const mr_tensor *const *x;  /* the inputs at the forward point */
    const mr_tensor *const *dx; /* their tangents (jvp, vjp_tangent) */
    mr_tensor *y;               /* written by forward; read by the other passes */
    mr_tensor *dy;              /* written by jvp; read by vjp_tangent */
    const mr_tensor *gy, *dgy;  /* the output gradient and its tangent */
    mr_tensor *const *gx;       /* written by vjp */
    mr_tensor *const *dgx;      /* written by vjp_tangent */
};

/* The CPU backend (backend/cpu/cpu.c). */
extern const mr_backend mr_cpu_backend;

/* rc from backend b's entry `entry` (e.g. "fill_normal"), called when
 * mr_error_serial() was `serial`: a negative rc gets the fresh message
 * "backend 'NAME': ENTRY failed (MR_E...)" unless the entry set its own during
 * the call (so an old, unrelated message never surfaces). Returns rc. */
int mr_backend_status(const mr_backend *b, const char *entry, int rc, unsigned long serial);

/* The same for `run`: the entry is named "PASS of OP" (e.g. "vjp of conv2d"). */
int mr_backend_run_status(const mr_backend *b, int op, int pass, int rc, unsigned long serial);

/* Runs `pass` of op `op` on b, or on the CPU backend when b does not support
 * it (the fallback rule of moreau.h); *ran = the backend that ran it. 0, or
 * the backend's MR_E* with its message (mr_backend_run_status). */
static inline int mr_backend_dispatch(const mr_backend *b, int op, int pass, const mr_op_call *call,
                                      const mr_backend **ran)
{
    if (b != &mr_cpu_backend && !b->supports(b->ctx, op, pass))
        b = &mr_cpu_backend;
    *ran = b;
    unsigned long serial = mr_error_serial();
    int rc = b->run(b->ctx, op, pass, call);
    return rc < 0 ? mr_backend_run_status(b, op, pass, rc, serial) : MR_OK;
}

#endif
