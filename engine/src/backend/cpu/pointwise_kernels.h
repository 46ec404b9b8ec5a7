/* pointwise_kernels.h — what the kernels of the elementwise activations share
 * (backend/cpu/activation.c and backend/cpu/imported_act.c; formulas in
 * ops/activation.c and ops/imported_act.c): the four passes of y = f(x), the
 * one scalar loop that runs them, and the kernel table around it. */
#ifndef MR_CPU_POINTWISE_KERNELS_H
#define MR_CPU_POINTWISE_KERNELS_H

#include "cpu.h"

/* The passes of y = f(x), entry by entry, with a, b, c the arrays each reads:
 *   MR_PW_FORWARD      out = f(x)
 *   MR_PW_VJP          out = f'(x) a                   (a = gy)
 *   MR_PW_JVP          out = f'(x) a                   (a = dx)
 *   MR_PW_VJP_TANGENT  out = f'(x) a + f''(x) b c      (a = dgy, b = dx, c = gy) */
typedef enum { MR_PW_FORWARD, MR_PW_VJP, MR_PW_JVP, MR_PW_VJP_TANGENT } mr_pw_pass;

#define MR_PW_PRAGMA_(text) _Pragma(#text)

/* The scalar loop of the four passes over n entries (x, a, b, c, out: n
 * floats each, the whole batch). EVAL(xi, f, d1, d2) stores f(xi), f'(xi) and
 * f''(xi) in double through the pointers it gets, NULL for a value the pass
 * does not use (the forward asks for f alone); the result is rounded to float
 * once. Every output entry is independent, so the loop, parallel above
 * par_min entries, is bit-identical for any thread count. A macro rather than
 * a function taking EVAL by pointer: OpenMP outlines the loop body before the
 * compiler inlines, so a pointer would cost an indirect call per entry. */
#define MR_PW_LOOP(EVAL, pass, n, par_min, x, a, b, c, out)                                      \
    MR_PW_PRAGMA_(omp parallel for schedule(static) num_threads(mr_threads()) if ((n) > (par_min))) \
    for (int64_t i_ = 0; i_ < (n); i_++) {                                                      \
        double f_, d1_, d2_;                                                                    \
        switch (pass) {                                                                         \
        case MR_PW_FORWARD:                                                                     \
            EVAL((x)[i_], &f_, NULL, NULL);                                                     \
            (out)[i_] = (float)f_;                                                              \
            break;                                                                              \
        case MR_PW_VJP:                                                                         \
        case MR_PW_JVP:                                                                         \
            EVAL((x)[i_], NULL, &d1_, NULL);                                                    \
            (out)[i_] = (float)(d1_ * (a)[i_]);                                                 \
            break;                                                                              \
        case MR_PW_VJP_TANGENT:                                                                 \
            EVAL((x)[i_], NULL, &d1_, &d2_);                                                    \
            (out)[i_] = (float)(d1_ * (a)[i_] + d2_ * (double)(b)[i_] * (c)[i_]);               \
            break;                                                                              \
        }                                                                                       \
    }

/* The kernel table mr_cpu_<op> of an elementwise op: each pass calls
 * RUN(KIND, attrs, pass, n, x, a, b, c, out) once over the whole batch, with
 * a, b, c as for MR_PW_LOOP; a VJP or tangent whose input gradient is not
 * wanted (gx[0] or dgx[0] NULL) does nothing. */
#define MR_PW_KERNELS(op, RUN, KIND)                                                            \
    static void op##_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)       \
    {                                                                                           \
        RUN(KIND, c->attrs, MR_PW_FORWARD, x[0]->numel, x[0]->data, NULL, NULL, NULL, y->data); \
    }                                                                                           \
    static void op##_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,     \
                         const mr_tensor *gy, mr_tensor *const *gx)                             \
    {                                                                                           \
        if (gx[0])                                                                              \
            RUN(KIND, c->attrs, MR_PW_VJP, x[0]->numel, x[0]->data, gy->data, NULL, NULL,       \
                gx[0]->data);                                                                   \
    }                                                                                           \
    static void op##_jvp(const mr_op_ctx *c, const mr_tensor *const *x,                         \
                         const mr_tensor *const *dx, const mr_tensor *y, mr_tensor *dy)         \
    {                                                                                           \
        RUN(KIND, c->attrs, MR_PW_JVP, x[0]->numel, x[0]->data, dx[0]->data, NULL, NULL,        \
            dy->data);                                                                          \
    }                                                                                           \
    static void op##_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,                 \
                                 const mr_tensor *const *dx, const mr_tensor *y,                \
                                 const mr_tensor *dy, const mr_tensor *gy,                      \
                                 const mr_tensor *dgy, mr_tensor *const *dgx)                   \
    {                                                                                           \
        if (dgx[0])                                                                             \
            RUN(KIND, c->attrs, MR_PW_VJP_TANGENT, x[0]->numel, x[0]->data, dgy->data,          \
                dx[0]->data, gy->data, dgx[0]->data);                                           \
    }                                                                                           \
    const mr_op_kernels mr_cpu_##op = {                                                         \
        .forward = op##_forward,                                                                \
        .vjp = op##_vjp,                                                                        \
        .jvp = op##_jvp,                                                                        \
        .vjp_tangent = op##_vjp_tangent,                                                        \
    };

#endif
