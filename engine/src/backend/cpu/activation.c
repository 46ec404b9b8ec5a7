/* backend/cpu/activation.c — the CPU kernels of ops/activation.c (formulas
 * and numerics there). */
#include "pointwise_kernels.h"

#include <math.h>

typedef enum { ACT_RELU, ACT_SOFTPLUS, ACT_SILU, ACT_SIGMOID, ACT_TANH } act_kind;

typedef struct act_params {
    act_kind kind;
    float beta;      /* softplus only, defaults resolved */
    float threshold; /* softplus only, defaults resolved */
} act_params;

/* s(z) and 1 - s(z), both without cancellation, given e = e^{-|z|} in (0, 1]. */
static inline void sigmoid_pair_e(double z, double e, double *s, double *one_minus_s)
{
    double a = 1.0 / (1.0 + e), b = e / (1.0 + e);
    if (z >= 0) {
        *s = a;
        *one_minus_s = b;
    } else {
        *s = b;
        *one_minus_s = a;
    }
}

static inline void sigmoid_pair(double z, double *s, double *one_minus_s)
{
    sigmoid_pair_e(z, (double)expf(-fabsf((float)z)), s, one_minus_s);
}

/* f, f', f'' at x (any pointer may be NULL if that value is not wanted). */
static inline void act_eval(const act_params *p, float x, double *f, double *d1, double *d2)
{
    double xd = x, v = 0, g = 0, h = 0;
    switch (p->kind) {
    case ACT_RELU: /* a NaN stays NaN, as in PyTorch; its derivative is 0 there, as PyTorch's */
        v = x <= 0 ? 0.0 : xd;
        g = x > 0 ? 1.0 : 0.0;
        break;
    case ACT_SOFTPLUS: /* softplus_eval, vectorized */
        break;
    case ACT_SILU: {
        double s, t;
        sigmoid_pair(xd, &s, &t);
        v = xd * s;
        g = s * (1.0 + xd * t);
        h = s * t * (2.0 + xd * (t - s));
        break;
    }
    case ACT_SIGMOID: {
        double s, t;
        sigmoid_pair(xd, &s, &t);
        v = s;
        g = s * t;
        h = s * t * (t - s);
        break;
    }
    case ACT_TANH: {
        /* With e = e^{-2|x|}: tanh = sign(x)(1 - e)/(1 + e), 1 - tanh^2 = 4e/(1 + e)^2,
         * so f' keeps its relative accuracy in the tails instead of cancelling to 0. */
        double e = exp(-2.0 * fabs(xd)), th = copysign((1.0 - e) / (1.0 + e), xd);
        double sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e));
        v = th;
        g = sech2;
        h = -2.0 * th * sech2;
        break;
    }
    }
    if (f)
        *f = v;
    if (d1)
        *d1 = g;
    if (d2)
        *d2 = h;
}

/* ------------------------------------------------ softplus, vectorized
 *
 * Softplus sits after every convolution of the networks MoreauGrad explains,
 * and libm's scalar exp/log1p cost as much as the convolutions' GEMMs. This
 * path uses branch-free float kernels the compiler vectorizes:
 *
 *   e^{-a}, a >= 0:  k = round(a log2 e), r = k ln2 - a (Cody-Waite, |r| <= ln2/2),
 *                    e^{-a} = 2^{-k} (1 + r + r^2/2! + ... + r^7/7!)
 *                    (truncation < 3e-8 relative; 2^{-k} in two factors reaches the subnormals)
 *   log1p(e), 0 <= e <= 1:  t = e / (2 + e) in [0, 1/3],
 *                    log1p(e) = 2 atanh(t) = 2t (1 + t^2/3 + t^4/5 + ... + t^14/15)
 *                    (truncation < 2e-9 relative, and exact relative accuracy for tiny e)
 *
 * so f = (max(z, 0) + log1p(e^{-|z|})) / beta, s = sigmoid(z) = (z >= 0 ? 1 : e) / (1 + e),
 * and, past the threshold (beta x > t, tested in float as PyTorch), f = x, s = 1.
 * Errors stay within a few float ulps of the correctly rounded values (tested). */
static inline float exp_neg(float a)
{
    a = a < 104.0f ? a : 104.0f; /* e^{-104} is below the smallest subnormal */
    /* round to nearest by the 1.5 * 2^23 trick: exact for |v| < 2^22, and vectorizable */
    float k = (a * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = k * 0.693359375f - a;
    r = r + k * -2.12194440e-4f;
    float q = 1.98412698e-4f;
    q = q * r + 1.38888889e-3f;
    q = q * r + 8.33333333e-3f;
    q = q * r + 4.16666667e-2f;
    q = q * r + 1.66666667e-1f;
    q = q * r + 0.5f;
    q = q * r + 1.0f;
    q = q * r + 1.0f;
    /* 2^{-k} as two normal factors, so results down in the subnormals come out right */
    int32_t k1 = (int32_t)k >> 1, k2 = (int32_t)k - k1;
    union {
        int32_t i;
        float f;
    } s1 = {.i = (127 - k1) << 23}, s2 = {.i = (127 - k2) << 23};
    return q * s1.f * s2.f;
}

static inline float log1p_unit(float e)
{
    float t = e / (2.0f + e), t2 = t * t;
    float q = 1.0f / 15;
    q = q * t2 + 1.0f / 13;
    q = q * t2 + 1.0f / 11;
    q = q * t2 + 1.0f / 9;
    q = q * t2 + 1.0f / 7;
    q = q * t2 + 1.0f / 5;
    q = q * t2 + 1.0f / 3;
    q = q * t2 + 1.0f;
    return 2.0f * t * q;
}

/* f, f' = s and f'' = beta s (1 - s) of softplus at x. */
static inline void softplus_eval(float beta, float threshold, float x, float *f, float *s, float *h)
{
    float z = beta * x, e = exp_neg(fabsf(z));
    float sg = (z >= 0.0f ? 1.0f : e) / (1.0f + e);
    int linear = z > threshold;
    /* a NaN x gives NaN f, f' and f'' as in PyTorch (e is then e^{-104}, unused) */
    *f = linear ? x : ((z <= 0.0f ? 0.0f : z) + log1p_unit(e)) / beta;
    sg = z == z ? sg : z;
    *s = linear ? 1.0f : sg;
    *h = linear ? 0.0f : beta * sg * (1.0f - sg);
}

static void softplus_run(const act_params *p, mr_pw_pass pass, int64_t n, const float *x, const float *a,
                         const float *b, const float *c, float *out)
{
    float beta = p->beta, thr = p->threshold;
    /* one loop per pass: a loop that might read a NULL a/b/c does not vectorize */
    if (pass == MR_PW_FORWARD) {
#pragma omp parallel for simd schedule(static) num_threads(mr_threads()) if (n > 16384)
        for (int64_t i = 0; i < n; i++) {
            float f, sg, h;
            softplus_eval(beta, thr, x[i], &f, &sg, &h);
            out[i] = f;
        }
    } else if (pass == MR_PW_VJP_TANGENT) {
#pragma omp parallel for simd schedule(static) num_threads(mr_threads()) if (n > 16384)
        for (int64_t i = 0; i < n; i++) {
            float f, sg, h;
            softplus_eval(beta, thr, x[i], &f, &sg, &h);
            out[i] = sg * a[i] + h * b[i] * c[i];
        }
    } else {
#pragma omp parallel for simd schedule(static) num_threads(mr_threads()) if (n > 16384)
        for (int64_t i = 0; i < n; i++) {
            float f, sg, h;
            softplus_eval(beta, thr, x[i], &f, &sg, &h);
            out[i] = sg * a[i];
        }
    }
}

/* ------------------------------------------------ silu and sigmoid, vectorized
 *
 * EfficientNet puts SiLU after each of its ~50 convolutions and a sigmoid in
 * each squeeze-excitation gate; a scalar expf per entry and the double
 * arithmetic around it cost more than the network's convolutions (at
 * 224x224, batch 16). The values are the same formulas as act_eval, still
 * evaluated in double and rounded once, with e = e^{-|x|} from a branch-free
 * double kernel the compiler vectorizes instead of (double)expf:
 *
 *   e^{-a}, a >= 0:  k = round(a log2 e), r = k ln2 - a (Cody-Waite: ln2 split
 *                    in a high part exact for |k| < 2^11 and a low part),
 *                    |r| <= ln2/2, e^{-a} = 2^{-k} (1 + r + ... + r^11/11!)
 *                    (truncation < r^12/12! < 7e-15 relative)
 *
 * a is capped at 700 (2^{-k} stays a normal double); past it, e = 0 exactly
 * (as expf's result underflowed before: silu(-inf) = -inf * 0 = NaN), and a
 * NaN x gives e = NaN. With s = 1/(1 + e) or e/(1 + e) (by the sign of x) and
 * 1 - s the other one, neither cancels, as in sigmoid_pair_e. Being more
 * accurate than the float e it replaces, the results move by at most an ulp
 * of the float output, and stay within a few ulps of the correctly rounded
 * values (tests/ops_pointwise_spec.lua). */
static inline double exp_neg_d(double a)
{
    double c = a < 700.0 ? a : 700.0; /* NaN -> 700: the conversion below stays defined */
    /* round to nearest by the 1.5 * 2^52 trick: exact for |v| < 2^51, and vectorizable */
    double k = (c * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
    double r = k * 6.93147180369123816490e-01 - c; /* ln2 high: 32 significant bits, k ln2hi exact */
    r = fma(k, 1.90821492927058770002e-10, r);     /* ln2 low */
    /* Horner with explicit fma: one rounding per step, and the same instruction
     * in the vector body and the scalar remainder (the build does not contract
     * a * b + c on its own: -std=c11 implies -ffp-contract=off) */
    double q = 1.0 / 39916800;
    q = fma(q, r, 1.0 / 3628800);
    q = fma(q, r, 1.0 / 362880);
    q = fma(q, r, 1.0 / 40320);
    q = fma(q, r, 1.0 / 5040);
    q = fma(q, r, 1.0 / 720);
    q = fma(q, r, 1.0 / 120);
    q = fma(q, r, 1.0 / 24);
    q = fma(q, r, 1.0 / 6);
    q = fma(q, r, 0.5);
    q = fma(q, r, 1.0);
    q = fma(q, r, 1.0);
    union {
        int64_t i;
        double f;
    } s2 = {.i = (int64_t)(1023 - (int64_t)k) << 52};
    double e = q * s2.f;
    e = a <= 700.0 ? e : 0.0; /* a NaN goes on below */
    return a == a ? e : a;
}

/* f, f' and f'' of silu (silu != 0) or sigmoid at x, in double (act_eval's forms). */
static inline void logistic_eval(const int silu, float x, double *f, double *d1, double *d2)
{
    double xd = x, e = exp_neg_d(fabs(xd));
    double a = 1.0 / (1.0 + e), b = e * a; /* one division: b within an ulp of e / (1 + e) */
    double s = xd >= 0 ? a : b, t = xd >= 0 ? b : a; /* s(x) and 1 - s(x) */
    if (silu) {
        *f = xd * s;
        *d1 = s * (1.0 + xd * t);
        *d2 = s * t * (2.0 + xd * (t - s));
    } else {
        *f = s;
        *d1 = s * t;
        *d2 = s * t * (t - s);
    }
}

/* act_run's passes for silu or sigmoid (silu a constant after inlining): one
 * loop per pass, none reading a pointer that may be NULL, so each vectorizes. */
static inline void logistic_loops(const int silu, mr_pw_pass pass, int64_t n, const float *x, const float *a,
                                  const float *b, const float *c, float *out)
{
    if (pass == MR_PW_FORWARD) {
#pragma omp parallel for simd schedule(static) num_threads(mr_threads()) if (n > 16384)
        for (int64_t i = 0; i < n; i++) {
            double f, d1, d2;
            logistic_eval(silu, x[i], &f, &d1, &d2);
            out[i] = (float)f;
        }
    } else if (pass == MR_PW_VJP_TANGENT) {
#pragma omp parallel for simd schedule(static) num_threads(mr_threads()) if (n > 16384)
        for (int64_t i = 0; i < n; i++) {
            double f, d1, d2;
            logistic_eval(silu, x[i], &f, &d1, &d2);
            out[i] = (float)(d1 * a[i] + d2 * (double)b[i] * c[i]);
        }
    } else {
#pragma omp parallel for simd schedule(static) num_threads(mr_threads()) if (n > 16384)
        for (int64_t i = 0; i < n; i++) {
            double f, d1, d2;
            logistic_eval(silu, x[i], &f, &d1, &d2);
            out[i] = (float)(d1 * a[i]);
        }
    }
}

/* relu's forward, VJP and JVP, vectorized: act_run's generic loop branches on
 * the pass and converts to double per entry, which at 224x224 (resnet50, batch
 * 16: ~145M relu outputs per pass) cost a quarter of a forward + input
 * gradient. The same values bit for bit as act_eval's: f = x <= 0 ? 0 : x (a NaN
 * stays NaN, as in PyTorch), and
 * f' a with f' in {0, 1} is a float product as exact as the double one it
 * replaces (1 a = a; 0 a = a zero of a's sign, or NaN for an infinite or NaN
 * a). The tangent pass (f'' = 0) keeps the generic loop. */
static void relu_loops(mr_pw_pass pass, int64_t n, const float *x, const float *a, float *out)
{
    if (pass == MR_PW_FORWARD) {
#pragma omp parallel for simd schedule(static) num_threads(mr_threads()) if (n > 16384)
        for (int64_t i = 0; i < n; i++)
            out[i] = x[i] <= 0.0f ? 0.0f : x[i];
    } else {
#pragma omp parallel for simd schedule(static) num_threads(mr_threads()) if (n > 16384)
        for (int64_t i = 0; i < n; i++)
            out[i] = (x[i] > 0.0f ? 1.0f : 0.0f) * a[i];
    }
}

/* The passes of every activation (pointwise_kernels.h gives them; x, a, b, c, out: n
 * floats each, the whole batch): softplus, silu, sigmoid and relu (but for its
 * tangent pass) by their vectorized loops, tanh by the shared scalar loop. */
static void act_run(const act_params *p, mr_pw_pass pass, int64_t n, const float *x, const float *a,
                    const float *b, const float *c, float *out)
{
    if (p->kind == ACT_SOFTPLUS) {
        softplus_run(p, pass, n, x, a, b, c, out);
        return;
    }
    if (p->kind == ACT_RELU && pass != MR_PW_VJP_TANGENT) {
        relu_loops(pass, n, x, a, out);
        return;
    }
    if (p->kind == ACT_SILU) {
        logistic_loops(1, pass, n, x, a, b, c, out);
        return;
    }
    if (p->kind == ACT_SIGMOID) {
        logistic_loops(0, pass, n, x, a, b, c, out);
        return;
    }
#define ACT_EVAL_(xi, f, d1, d2) act_eval(p, xi, f, d1, d2)
    MR_PW_LOOP(ACT_EVAL_, pass, n, 16384, x, a, b, c, out)
#undef ACT_EVAL_
}

static act_params params_of(act_kind kind, const mr_op_attrs *a)
{
    act_params p;
    p.kind = kind;
    p.beta = a->beta != 0.0f ? a->beta : 1.0f;
    p.threshold = a->threshold != 0.0f ? a->threshold : 20.0f;
    return p;
}

/* act_run for the op of kind `kind`, its attributes' defaults resolved. */
static void act_run_kind(act_kind kind, const mr_op_attrs *attrs, mr_pw_pass pass, int64_t n,
                         const float *x, const float *a, const float *b, const float *c, float *out)
{
    act_params p = params_of(kind, attrs);
    act_run(&p, pass, n, x, a, b, c, out);
}

MR_PW_KERNELS(relu, act_run_kind, ACT_RELU)
MR_PW_KERNELS(softplus, act_run_kind, ACT_SOFTPLUS)
MR_PW_KERNELS(silu, act_run_kind, ACT_SILU)
MR_PW_KERNELS(sigmoid, act_run_kind, ACT_SIGMOID)
MR_PW_KERNELS(tanh, act_run_kind, ACT_TANH)
