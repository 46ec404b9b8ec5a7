/* backend/cpu/imported_act.c — the CPU kernels of ops/imported_act.c
 * (formulas there): the loop of pointwise_kernels.h runs the four passes
 * over f, f', f''. */
#include "pointwise_kernels.h"

#include <math.h>

typedef enum { IA_CLIP, IA_HARDSIGMOID, IA_HARDSWISH, IA_GELU, IA_ERF } ia_kind;

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

/* ia_eval where the pass wants only some of f, f', f'' (NULL for the others),
 * as MR_PW_LOOP asks: the values are those of ia_eval. */
static inline void ia_eval_some(ia_kind kind, const mr_op_attrs *a, float x, double *f, double *d1,
                                double *d2)
{
    double v = 0.0, g = 0.0, h = 0.0;
    ia_eval(kind, a, x, &v, &g, &h);
    if (f)
        *f = v;
    if (d1)
        *d1 = g;
    if (d2)
        *d2 = h;
}

/* The four passes (pointwise_kernels.h), over the whole batch. */
static void ia_run(ia_kind kind, const mr_op_attrs *at, mr_pw_pass pass, int64_t n, const float *x,
                   const float *a, const float *b, const float *c, float *out)
{
#define IA_EVAL_(xi, f, d1, d2) ia_eval_some(kind, at, xi, f, d1, d2)
    MR_PW_LOOP(IA_EVAL_, pass, n, 32768, x, a, b, c, out)
#undef IA_EVAL_
}

MR_PW_KERNELS(clip, ia_run, IA_CLIP)
MR_PW_KERNELS(hardsigmoid, ia_run, IA_HARDSIGMOID)
MR_PW_KERNELS(hardswish, ia_run, IA_HARDSWISH)
MR_PW_KERNELS(gelu, ia_run, IA_GELU)
MR_PW_KERNELS(erf, ia_run, IA_ERF)
