/* backend/cpu/imported_act.c — the CPU kernels of ops/imported_act.c
 * (formulas there): one driver runs the four passes over f, f', f''. */
#include "cpu.h"

#include <math.h>

typedef enum { IA_CLIP, IA_HARDSIGMOID, IA_HARDSWISH, IA_GELU, IA_ERF } ia_kind;
typedef enum { IA_FORWARD, IA_VJP, IA_JVP, IA_VJP_TANGENT } ia_pass;

static const double SQRT1_2 = 0.70710678118654752440;     /* 1/√2 */
static const double INV_SQRT_2PI = 0.39894228040143267794; /* 1/√(2π) */
static const double TWO_OVER_SQRT_PI = 1.12837916709551257390;
static const double GELU_K = 0.79788456080286535588;      /* √(2/π) */
static const double GELU_C = 0.044715;

/* f, f', f'' at x for op kind with attributes a. */
static inline void ia_eval(ia_kind kind, const mr_op_attrs *a, double x, double *f, double *d1,
                           double *d2)
{
    switch (kind) {
    case IA_CLIP: {
        double lo = a->min, hi = a->max;
        *f = x < lo ? lo : (x > hi ? hi : x);
        *d1 = (x > lo && x < hi) ? 1.0 : 0.0;
        *d2 = 0.0;
        break;
    }
    case IA_HARDSIGMOID: {
        double al = a->alpha != 0.0f ? (double)a->alpha : 1.0 / 6.0;
        double be = a->alpha != 0.0f ? (double)a->beta : 0.5;
        double z = al * x + be;
        *f = z < 0.0 ? 0.0 : (z > 1.0 ? 1.0 : z);
        *d1 = (z > 0.0 && z < 1.0) ? al : 0.0;
        *d2 = 0.0;
        break;
    }
    case IA_HARDSWISH:
        if (x < -3.0) {
            *f = 0.0, *d1 = 0.0, *d2 = 0.0;
        } else if (x <= 3.0) {
            *f = x * (x + 3.0) / 6.0, *d1 = x / 3.0 + 0.5, *d2 = 1.0 / 3.0;
        } else {
            *f = x, *d1 = 1.0, *d2 = 0.0;
        }
        break;
    case IA_GELU:
        if (a->approximate == 0) {
            double phi = INV_SQRT_2PI * exp(-0.5 * x * x);
            double Phi = x < 0.0 ? 0.5 * erfc(-x * SQRT1_2) : 0.5 * (1.0 + erf(x * SQRT1_2));
            *f = x * Phi;
            *d1 = Phi + x * phi;
            *d2 = phi * (2.0 - x * x);
        } else {
            double u = GELU_K * (x + GELU_C * x * x * x);
            double u1 = GELU_K * (1.0 + 3.0 * GELU_C * x * x), u2 = 6.0 * GELU_K * GELU_C * x;
            double e = exp(-2.0 * fabs(u));              /* e^{-2|u|} in (0, 1] */
            double one_minus_t2 = 4.0 * e / ((1.0 + e) * (1.0 + e));
            double t = (u < 0.0 ? -1.0 : 1.0) * (1.0 - e) / (1.0 + e);
            double one_plus_t = u >= 0.0 ? 2.0 / (1.0 + e) : 2.0 * e / (1.0 + e); /* 2 σ(2u) */
            *f = 0.5 * x * one_plus_t;
            *d1 = 0.5 * one_plus_t + 0.5 * x * one_minus_t2 * u1;
            *d2 = one_minus_t2 * (u1 + 0.5 * x * (u2 - 2.0 * t * u1 * u1));
        }
        break;
    case IA_ERF: {
        double g = TWO_OVER_SQRT_PI * exp(-x * x);
        *f = erf(x);
        *d1 = g;
        *d2 = -2.0 * x * g;
        break;
    }
    }
}

/* The four passes: out = f(x) | f' a | f' a | f' a + f'' b a2 (a = gy, dx or dgy;
 * b = dx, a2 = gy for the tangent). */
static void ia_run(ia_kind kind, const mr_op_attrs *at, ia_pass pass, int64_t n, const float *x,
                   const float *a, const float *b, const float *a2, float *out)
{
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
        double f = 0.0, d1 = 0.0, d2 = 0.0;
        ia_eval(kind, at, x[i], &f, &d1, &d2);
        switch (pass) {
        case IA_FORWARD: out[i] = (float)f; break;
        case IA_VJP:
        case IA_JVP: out[i] = (float)(d1 * a[i]); break;
        case IA_VJP_TANGENT: out[i] = (float)(d1 * a[i] + d2 * (double)b[i] * a2[i]); break;
        }
    }
}

#define MR_IMPORTED_ACT(op, KIND)                                                               \
    static void op##_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)       \
    {                                                                                           \
        ia_run(KIND, c->attrs, IA_FORWARD, x[0]->numel, x[0]->data, NULL, NULL, NULL, y->data); \
    }                                                                                           \
    static void op##_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,     \
                         const mr_tensor *gy, mr_tensor *const *gx)                             \
    {                                                                                           \
        if (gx[0])                                                                              \
            ia_run(KIND, c->attrs, IA_VJP, x[0]->numel, x[0]->data, gy->data, NULL, NULL,       \
                   gx[0]->data);                                                                \
    }                                                                                           \
    static void op##_jvp(const mr_op_ctx *c, const mr_tensor *const *x,                         \
                         const mr_tensor *const *dx, const mr_tensor *y, mr_tensor *dy)         \
    {                                                                                           \
        ia_run(KIND, c->attrs, IA_JVP, x[0]->numel, x[0]->data, dx[0]->data, NULL, NULL,        \
               dy->data);                                                                       \
    }                                                                                           \
    static void op##_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,                 \
                                 const mr_tensor *const *dx, const mr_tensor *y,                \
                                 const mr_tensor *dy, const mr_tensor *gy,                      \
                                 const mr_tensor *dgy, mr_tensor *const *dgx)                   \
    {                                                                                           \
        if (dgx[0])                                                                             \
            ia_run(KIND, c->attrs, IA_VJP_TANGENT, x[0]->numel, x[0]->data, dgy->data,          \
                   dx[0]->data, gy->data, dgx[0]->data);                                        \
    }                                                                                           \
    const mr_op_kernels mr_cpu_##op = {                                                         \
        .forward = op##_forward,                                                                \
        .vjp = op##_vjp,                                                                        \
        .jvp = op##_jvp,                                                                        \
        .vjp_tangent = op##_vjp_tangent,                                                        \
    };

MR_IMPORTED_ACT(clip, IA_CLIP)
MR_IMPORTED_ACT(hardsigmoid, IA_HARDSIGMOID)
MR_IMPORTED_ACT(hardswish, IA_HARDSWISH)
MR_IMPORTED_ACT(gelu, IA_GELU)
MR_IMPORTED_ACT(erf, IA_ERF)
