/*
 * conv2d.c — 2-D convolution (cross-correlation, as PyTorch), with stride,
 * zero padding, dilation and groups (depthwise when groups == Cin).
 *
 * Params: weight W (Cout, Cin/G, kh, kw), optional bias b (Cout).
 * Input x (N, Cin, H, W); output y (N, Cout, Ho, Wo) with
 *   Ho = floor((H + 2 ph - dh (kh - 1) - 1) / sh) + 1      (Wo likewise)
 *
 * With Cg = Cin/G input channels per group and g(o) the group of output channel o:
 *   forward      y[n,o,p,q] = b[o] + sum_{c<Cg,i,j} W[o,c,i,j] x[n, g(o) Cg + c, h, w],
 *                h = p sh - ph + i dh,  w = q sw - pw + j dw  (x is 0 outside the image)
 *   vjp          gx = conv_transpose(gy), the adjoint of x -> y - b                    (=)
 *                dW[o,c,i,j] += sum_{n,p,q} gy[n,o,p,q] x[n, g(o) Cg + c, h, w]        (+=)
 *                db[o]       += sum_{n,p,q} gy[n,o,p,q]                                (+=)
 *   jvp          dy  = conv(dx) without bias          (y is affine in x)
 *   vjp_tangent  dgx = conv_transpose(dgy)            (J does not depend on x: no 2nd-order term)
 *
 * The forward and input-gradient passes go to oneDNN's kernels when the engine
 * was built with it (conv2d_dnnl.c, the default backend; mr_set_conv_backend
 * ("blas") turns it off). Otherwise, and always for the weight gradient,
 * three ways to compute, chosen from the shapes only:
 *   - grouped with few channels per group (depthwise): a direct loop.
 *   - 1x1, stride 1, no padding: per sample and group, y = W x is an sgemm on x
 *     itself, split into blocks of CONV_ROWS output channels.
 *   - otherwise im2col + sgemm, per sample and group:
 *       col (Cg kh kw, Ho Wo),  Y_{n,g} (Cout/G, Ho Wo) = W_g col,
 *     written in place into the (N, Cout, Ho, Wo) layout; the input gradient
 *     is dcol = W_g^T GY_{n,g} followed by col2im. The weight gradient, a sum
 *     over the batch, takes chunks of nb samples: col (Cg kh kw, nb Ho Wo),
 *     dW_g += GY_g col^T by blocks of CONV_ROWS output channels; the chunk nb
 *     keeps the scratch under CONV_SCRATCH_CAP floats.
 *
 * Invariance (README, "How correctness is shown": batch invariance): item
 * n's forward output, input gradient, JVP and VJP tangent are the same bits
 * whatever the batch size N, the item's position in the batch and the thread
 * count. OpenBLAS's sgemm is neither batch-invariant (row r of a product
 * changes in the last bits with the number of rows M: its kernels block M
 * differently) nor, with some kernels (OPENBLAS_CORETYPE=Haswell), thread-
 * count invariant when it runs multithreaded; so the engine lets neither
 * reach an item's sums:
 *   - OpenBLAS always runs on one thread (core/threads.c); the engine's own
 *     OpenMP loops run the BLAS calls in parallel, one task each;
 *   - every per-item GEMM has operands and a shape fixed by the layer's
 *     geometry: one item, one group, and a fixed block of channels (the
 *     blocks come from the shapes, never from N or the thread count);
 *   - the direct loop sums each output in a fixed order on one thread.
 * oneDNN's forward and backward-data kernels keep the same promise on the
 * shapes tested (conv2d_dnnl.c). Parameter gradients sum over the batch, so
 * they depend on it; they are still the same for every thread count (every
 * entry summed by one task in a fixed order).
 *
 * Determinism: OpenMP loops run over independent outputs (sample-channel
 * planes, items, blocks of output channels of a parameter gradient); every
 * sum is taken in a fixed order.
 */
#include "conv2d.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

/* Upper bound (floats) of the im2col scratch: 4 MiB (with oneDNN this path
 * mostly computes weight gradients, whose GEMMs stay efficient on a few
 * samples per chunk; the cap keeps the workspace near the activations' size).
 * One sample may exceed it (then the chunk is one sample). The per-item
 * passes (forward, input gradient) hold one item's col per thread at work:
 * as many as fit under the cap, but at least CONV_MIN_SLOTS (or the number of
 * processors when smaller), so every thread has one. */
#define CONV_SCRATCH_CAP ((int64_t)1 << 20)
#define CONV_MIN_SLOTS 8

/* Output (or input) channels per task of the 1x1 GEMMs and the weight
 * gradient's GEMMs: a partition fixed by the shapes, never by the thread count. */
#define CONV_ROWS 64

/* Grouped convs with at most this many input channels per group use the direct loop. */
#define CONV_DIRECT_MAX_CG 4


enum { PATH_GEMM, PATH_1X1, PATH_DIRECT };

static int64_t or1(int32_t v) { return v == 0 ? 1 : v; }

/* Fills the geometry from the attributes, the input's per-sample (C, H, W) and
 * the weight's shape, checking everything; the message names the shapes. */
static int conv_geom_make(conv_geom *g, const mr_op_attrs *a, int64_t C, int64_t H, int64_t W,
                          const mr_tensor *w)
{
    char ws[64];
    mr_tensor_shape_str(w, ws, sizeof ws);
    if (w->ndim != 4)
        return mr_error(MR_ESHAPE, "conv2d: weight must be 4-D (Cout, Cin/groups, kh, kw), got %s",
                        ws);
    if (a->stride[0] < 0 || a->stride[1] < 0)
        return mr_error(MR_ESHAPE, "conv2d: stride must be positive, got %dx%d", a->stride[0],
                        a->stride[1]);
    if (a->dilation[0] < 0 || a->dilation[1] < 0)
        return mr_error(MR_ESHAPE, "conv2d: dilation must be positive, got %dx%d", a->dilation[0],
                        a->dilation[1]);
    if (a->padding[0] < 0 || a->padding[1] < 0)
        return mr_error(MR_ESHAPE, "conv2d: padding must be >= 0, got %dx%d", a->padding[0],
                        a->padding[1]);
    if (a->groups < 0)
        return mr_error(MR_ESHAPE, "conv2d: groups must be positive, got %d", a->groups);
    g->C = C;
    g->H = H;
    g->W = W;
    g->K = w->shape[0];
    g->kh = w->shape[2];
    g->kw = w->shape[3];
    g->sh = or1(a->stride[0]);
    g->sw = or1(a->stride[1]);
    g->ph = a->padding[0];
    g->pw = a->padding[1];
    g->dh = or1(a->dilation[0]);
    g->dw = or1(a->dilation[1]);
    g->G = or1(a->groups);
    if ((a->kernel[0] || a->kernel[1]) && (a->kernel[0] != g->kh || a->kernel[1] != g->kw))
        return mr_error(MR_ESHAPE, "conv2d: kernel %dx%d does not match weight %s", a->kernel[0],
                        a->kernel[1], ws);
    if (C % g->G != 0)
        return mr_error(MR_ESHAPE, "conv2d: groups %lld does not divide the %lld input channels",
                        (long long)g->G, (long long)C);
    if (g->K % g->G != 0)
        return mr_error(MR_ESHAPE,
                        "conv2d: groups %lld does not divide the %lld output channels (weight %s)",
                        (long long)g->G, (long long)g->K, ws);
    g->cg = C / g->G;
    g->kg = g->K / g->G;
    if (w->shape[1] != g->cg) {
        if (g->G == 1)
            return mr_error(MR_ESHAPE,
                            "conv2d: input has %lld channels, weight expects %lld (weight %s)",
                            (long long)C, (long long)w->shape[1], ws);
        return mr_error(
            MR_ESHAPE,
            "conv2d: input has %lld channels, weight expects %lld per group x %lld groups "
            "= %lld (weight %s)",
            (long long)C, (long long)w->shape[1], (long long)g->G, (long long)(w->shape[1] * g->G),
            ws);
    }
    int64_t eh = g->dh * (g->kh - 1) + 1, ew = g->dw * (g->kw - 1) + 1;
    if (eh > H + 2 * g->ph || ew > W + 2 * g->pw)
        return mr_error(
            MR_ESHAPE,
            "conv2d: kernel %lldx%lld (dilated %lldx%lld) is larger than the padded input "
            "%lldx%lld (input %lldx%lld, padding %lldx%lld)",
            (long long)g->kh, (long long)g->kw, (long long)eh, (long long)ew,
            (long long)(H + 2 * g->ph), (long long)(W + 2 * g->pw), (long long)H, (long long)W,
            (long long)g->ph, (long long)g->pw);
    g->Ho = (H + 2 * g->ph - eh) / g->sh + 1;
    g->Wo = (W + 2 * g->pw - ew) / g->sw + 1;
    return MR_OK;
}

static int conv_path(const conv_geom *g)
{
    if (g->G > 1 && g->cg <= CONV_DIRECT_MAX_CG)
        return PATH_DIRECT; /* tiny GEMMs per group would cost more than they save */
    if (g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0)
        return PATH_1X1;
    return PATH_GEMM;
}

/* Scratch floats per sample of the GEMM path: one group's col plus its output block. */
static int64_t gemm_per_sample(const conv_geom *g)
{
    return (g->cg * g->kh * g->kw + g->kg) * g->Ho * g->Wo;
}

/* Samples per chunk for a batch of N under a cap <= CONV_SCRATCH_CAP:
 * monotone in N, so a scratch sized for the workspace capacity fits every
 * smaller batch. */
static int64_t gemm_chunk(const conv_geom *g, int64_t N, int64_t cap)
{
    int64_t nb = cap / gemm_per_sample(g);
    return MR_MAX(1, MR_MIN(N, nb));
}

/* Floats of one per-item slot of the GEMM path: one group's col (Cg kh kw, Ho Wo). */
static int64_t item_slot(const conv_geom *g) { return g->cg * g->kh * g->kw * g->Ho * g->Wo; }

/* Per-item slots (one per thread at work) for a batch of N: as many as fit
 * under CONV_SCRATCH_CAP, but at least min(procs, CONV_MIN_SLOTS), at most N.
 * Monotone in N and in the slot size, as gemm_chunk. How many threads share
 * the work changes no item's arithmetic. */
static int64_t item_slots(const conv_geom *g, int64_t N)
{
    int64_t least = MR_MIN(omp_get_num_procs(), CONV_MIN_SLOTS);
    return MR_MAX(1, MR_MIN(N, MR_MAX(CONV_SCRATCH_CAP / item_slot(g), least)));
}

/* Blocks of CONV_ROWS in n rows. */
static int64_t blocks(int64_t n) { return (n + CONV_ROWS - 1) / CONV_ROWS; }

/* d[o, p] += b[o] for a block of rows (o < rows, p < P). */
static void add_bias(float *d, const float *b, int64_t rows, int64_t P)
{
    for (int64_t o = 0; o < rows; o++)
        for (int64_t p = 0; p < P; p++)
            d[o * P + p] += b[o];
}

/* The geometry at run time, from the batch tensor and the weight (infer checked them). */
static void geom_of(conv_geom *g, const mr_op_ctx *c, const mr_tensor *x)
{
    int rc = conv_geom_make(g, c->attrs, x->shape[1], x->shape[2], x->shape[3], c->params[0]);
    (void)rc; /* infer has accepted these shapes */
}

/* ------------------------------------------------------------- infer */

static int conv_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                      int nparams, mr_shape *out)
{
    char xs[64];
    mr_shape_str(&in[0], xs, sizeof xs);
    if (in[0].ndim != 3)
        return mr_error(MR_ESHAPE, "conv2d: input samples must be (C, H, W), got %s", xs);
    conv_geom g = {0};
    MR_TRY(conv_geom_make(&g, a, in[0].d[0], in[0].d[1], in[0].d[2], params[0]));
    if (nparams > 1) {
        const mr_tensor *b = params[1];
        if (b->ndim != 1 || b->shape[0] != g.K) {
            char bs[64];
            return mr_error(MR_ESHAPE, "conv2d: bias has shape %s, expected %lld (Cout)",
                            mr_tensor_shape_str(b, bs, sizeof bs), (long long)g.K);
        }
    }
    out->ndim = 3;
    out->d[0] = g.K;
    out->d[1] = g.Ho;
    out->d[2] = g.Wo;
    return MR_OK;
}

/* The op interface gives scratch_floats no parameters, so the kernel size is
 * recovered from the output size when attrs->kernel is 0. With stride > 1 that
 * is ambiguous; the largest kernel consistent with (Ho, Wo) is an upper bound,
 * and so is the scratch it gives:
 *   used = min(N, floor(cap / per)) per <= min(N per_max, max(per_max, cap)).
 * For stride 1 the recovered kernel is exact, so the path (1x1 or not) is too. */
static size_t conv_scratch_floats(const mr_op_attrs *a, const mr_shape *in, const mr_shape *out,
                                  int64_t N)
{
    conv_geom g;
    memset(&g, 0, sizeof g);
    g.C = in[0].d[0];
    g.H = in[0].d[1];
    g.W = in[0].d[2];
    g.K = out->d[0];
    g.Ho = out->d[1];
    g.Wo = out->d[2];
    g.G = or1(a->groups);
    g.cg = g.C / g.G;
    g.kg = g.K / g.G;
    g.sh = or1(a->stride[0]);
    g.sw = or1(a->stride[1]);
    g.ph = a->padding[0];
    g.pw = a->padding[1];
    g.dh = or1(a->dilation[0]);
    g.dw = or1(a->dilation[1]);
    if (a->kernel[0] > 0 && a->kernel[1] > 0) { /* infer checked it against the weight */
        g.kh = a->kernel[0];
        g.kw = a->kernel[1];
    } else { /* the largest k with dh (k - 1) <= H + 2 ph - 1 - (Ho - 1) sh */
        g.kh = (g.H + 2 * g.ph - 1 - (g.Ho - 1) * g.sh) / g.dh + 1;
        g.kw = (g.W + 2 * g.pw - 1 - (g.Wo - 1) * g.sw) / g.dw + 1;
    }
    if (conv_path(&g) != PATH_GEMM)
        return 0;
    /* The larger of the weight gradient's chunk and the per-item slots:
     * item_slots(N) slot <= min(N slot, max(cap, least slot)). */
    int64_t per = gemm_per_sample(&g), slot = item_slot(&g);
    int64_t least = MR_MIN(omp_get_num_procs(), CONV_MIN_SLOTS);
    return (size_t)MR_MAX(MR_MIN(N * per, MR_MAX(per, CONV_SCRATCH_CAP)),
                          MR_MIN(N * slot, MR_MAX(CONV_SCRATCH_CAP, least * slot)));
}

/* ------------------------------------------------------ helpers (GEMM path) */

/* Output positions q in [0, out) with q s + off in [0, in): [*lo, *hi). */
static void valid_range(int64_t out, int64_t in, int64_t s, int64_t off, int64_t *lo, int64_t *hi)
{
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = in - 1 - off < 0 ? 0 : (in - 1 - off) / s + 1;
    *lo = MR_MIN(l, out);
    *hi = MR_MAX(*lo, MR_MIN(h, out));
}

/* d[q] += a s[q stride], q < n; the stride-1 case is the common one and vectorizes. */
static inline void axpy_from_strided(float *restrict d, const float *restrict s, float a, int64_t n,
                                     int64_t stride)
{
    if (stride == 1)
        for (int64_t q = 0; q < n; q++)
            d[q] += a * s[q];
    else
        for (int64_t q = 0; q < n; q++)
            d[q] += a * s[q * stride];
}

/* d[q stride] += a s[q], q < n. */
static inline void axpy_to_strided(float *restrict d, const float *restrict s, float a, int64_t n,
                                   int64_t stride)
{
    if (stride == 1)
        for (int64_t q = 0; q < n; q++)
            d[q] += a * s[q];
    else
        for (int64_t q = 0; q < n; q++)
            d[q * stride] += a * s[q];
}

/* col (Cg kh kw, nb P), P = Ho Wo, row (c, i, j), column (n, p, q), from
 * x = the first channel of the group in the first sample of the chunk. With
 * par = 0 it runs on the calling thread (inside a per-item task). */
static void im2col(const conv_geom *g, const float *x, int64_t nb, float *col, int par)
{
    const int64_t P = g->Ho * g->Wo, HW = g->H * g->W, ld = nb * P;
    const int64_t rows = g->cg * g->kh * g->kw, sstride = g->C * HW;
#pragma omp parallel for collapse(2) schedule(static) num_threads(mr_threads()) if (par)
    for (int64_t n = 0; n < nb; n++)
        for (int64_t r = 0; r < rows; r++) {
            int64_t c = r / (g->kh * g->kw), i = (r / g->kw) % g->kh, j = r % g->kw;
            const float *xp = x + n * sstride + c * HW;
            float *dst = col + r * ld + n * P;
            int64_t offh = i * g->dh - g->ph, offw = j * g->dw - g->pw, qlo, qhi;
            valid_range(g->Wo, g->W, g->sw, offw, &qlo, &qhi);
            for (int64_t p = 0; p < g->Ho; p++) {
                float *d = dst + p * g->Wo;
                int64_t h = p * g->sh + offh;
                if (h < 0 || h >= g->H) {
                    memset(d, 0, (size_t)g->Wo * sizeof(float));
                    continue;
                }
                const float *xr = xp + h * g->W + offw;
                for (int64_t q = 0; q < qlo; q++)
                    d[q] = 0.0f;
                if (g->sw == 1)
                    memcpy(d + qlo, xr + qlo, (size_t)(qhi - qlo) * sizeof(float));
                else
                    for (int64_t q = qlo; q < qhi; q++)
                        d[q] = xr[q * g->sw];
                for (int64_t q = qhi; q < g->Wo; q++)
                    d[q] = 0.0f;
            }
        }
}

/* The adjoint of im2col: gx (the group's channels of the chunk's samples) =
 * sum of col entries over the positions they were read from. Each (n, c) plane
 * is summed in (i, j, p, q) order by one thread (the calling one: it runs
 * inside a per-item task). */
static void col2im(const conv_geom *g, const float *col, int64_t nb, float *gx)
{
    const int64_t P = g->Ho * g->Wo, HW = g->H * g->W, ld = nb * P, sstride = g->C * HW;
    for (int64_t n = 0; n < nb; n++)
        for (int64_t c = 0; c < g->cg; c++) {
            float *plane = gx + n * sstride + c * HW;
            memset(plane, 0, (size_t)HW * sizeof(float));
            for (int64_t i = 0; i < g->kh; i++)
                for (int64_t j = 0; j < g->kw; j++) {
                    const float *src = col + ((c * g->kh + i) * g->kw + j) * ld + n * P;
                    int64_t offh = i * g->dh - g->ph, offw = j * g->dw - g->pw, plo, phi, qlo, qhi;
                    valid_range(g->Ho, g->H, g->sh, offh, &plo, &phi);
                    valid_range(g->Wo, g->W, g->sw, offw, &qlo, &qhi);
                    for (int64_t p = plo; p < phi; p++) {
                        float *dr = plane + (p * g->sh + offh) * g->W + offw;
                        axpy_to_strided(dr + qlo * g->sw, src + p * g->Wo + qlo, 1.0f, qhi - qlo,
                                        g->sw);
                    }
                }
        }
}

/* tmp[o, n P : (n+1) P] = gy[n0+n, grp kg + o, :]. */
static void gather_out(const conv_geom *g, const float *gy, int64_t nb, float *tmp)
{
    const int64_t P = g->Ho * g->Wo, ld = nb * P;
#pragma omp parallel for collapse(2) schedule(static) num_threads(mr_threads())
    for (int64_t n = 0; n < nb; n++)
        for (int64_t o = 0; o < g->kg; o++)
            memcpy(tmp + o * ld + n * P, gy + n * g->K * P + o * P, (size_t)P * sizeof(float));
}

/* ------------------------------------------------------ the three paths */

/* y = conv(x) (+ bias when bias != NULL). */
static void conv_apply(const conv_geom *g, const float *w, const float *bias, const float *x,
                       int64_t N, float *y, float *scratch)
{
    const int64_t P = g->Ho * g->Wo, HW = g->H * g->W, kk = g->kh * g->kw;
    const int64_t xs = g->C * HW, ys = g->K * P;
    if (mr_conv_dnnl_forward(g, N, x, w, bias, y))
        return;
    switch (conv_path(g)) {
    case PATH_1X1: {
        /* One task per (item, group, block of CONV_ROWS output channels):
         * Y_{n,o0:o1} (rows, P) = W_{o0:o1} (rows, Cg) X_{n,g} (Cg, P). */
        const int64_t nb = blocks(g->kg), tasks = N * g->G * nb;
#pragma omp parallel for schedule(static) num_threads(mr_threads())
        for (int64_t t = 0; t < tasks; t++) {
            int64_t n = t / (g->G * nb), gr = (t / nb) % g->G, o0 = gr * g->kg + (t % nb) * CONV_ROWS;
            int64_t rows = MR_MIN(CONV_ROWS, (gr + 1) * g->kg - o0);
            float *d = y + n * ys + o0 * P;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)P, (int)g->cg,
                        1.0f, w + o0 * g->cg, (int)g->cg, x + n * xs + gr * g->cg * HW, (int)HW,
                        0.0f, d, (int)P);
            if (bias)
                add_bias(d, bias + o0, rows, P);
        }
        return;
    }
    case PATH_DIRECT:
#pragma omp parallel for collapse(2) schedule(static) num_threads(mr_threads())
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = 0; o < g->K; o++) {
                float *d = y + n * ys + o * P;
                float b = bias ? bias[o] : 0.0f;
                for (int64_t p = 0; p < P; p++)
                    d[p] = b;
                int64_t c0 = (o / g->kg) * g->cg;
                for (int64_t c = 0; c < g->cg; c++) {
                    const float *xp = x + n * xs + (c0 + c) * HW;
                    for (int64_t i = 0; i < g->kh; i++)
                        for (int64_t j = 0; j < g->kw; j++) {
                            float wv = w[(o * g->cg + c) * kk + i * g->kw + j];
                            int64_t offh = i * g->dh - g->ph, offw = j * g->dw - g->pw, plo, phi,
                                    qlo, qhi;
                            valid_range(g->Ho, g->H, g->sh, offh, &plo, &phi);
                            valid_range(g->Wo, g->W, g->sw, offw, &qlo, &qhi);
                            for (int64_t p = plo; p < phi; p++) {
                                const float *xr = xp + (p * g->sh + offh) * g->W + offw;
                                axpy_from_strided(d + p * g->Wo + qlo, xr + qlo * g->sw, wv,
                                                  qhi - qlo, g->sw);
                            }
                        }
                }
            }
        return;
    case PATH_GEMM: {
        /* One task per (item, group): col_{n,g} (Cg kh kw, P) in the thread's
         * slot, then Y_{n,g} (Cout/G, P) = W_g col_{n,g}, written in place. */
        const int64_t kgr = g->cg * kk, slot = kgr * P, tasks = N * g->G;
        const int nt = (int)MR_MIN(mr_threads(), item_slots(g, N));
#pragma omp parallel num_threads(nt)
        {
            float *col = scratch + omp_get_thread_num() * slot;
#pragma omp for schedule(static)
            for (int64_t t = 0; t < tasks; t++) {
                int64_t n = t / g->G, gr = t % g->G;
                float *d = y + n * ys + gr * g->kg * P;
                im2col(g, x + n * xs + gr * g->cg * HW, 1, col, 0);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->kg, (int)P,
                            (int)kgr, 1.0f, w + gr * g->kg * kgr, (int)kgr, col, (int)P, 0.0f, d,
                            (int)P);
                if (bias)
                    add_bias(d, bias + gr * g->kg, g->kg, P);
            }
        }
        return;
    }
    }
}

/* gx = conv_transpose(gy) (gx may be NULL); with dw != NULL also dw += the
 * weight gradient. The bias gradient is taken separately (conv_bias_grad). */
static void conv_adjoint(const conv_geom *g, const float *w, const float *x, const float *gy,
                         int64_t N, float *gx, float *dw, float *scratch)
{
    const int64_t P = g->Ho * g->Wo, HW = g->H * g->W, kk = g->kh * g->kw;
    const int64_t xs = g->C * HW, ys = g->K * P;
    if (gx && mr_conv_dnnl_backward_data(g, N, gy, w, gx))
        gx = NULL; /* done; what is left is the weight gradient */
    if (!gx && !dw)
        return;
    switch (conv_path(g)) {
    case PATH_1X1:
        if (gx) {
            /* One task per (item, group, block of CONV_ROWS input channels):
             * GX_{n,c0:c1} (rows, P) = W_g[:, c0:c1]^T GY_{n,g}. */
            const int64_t nb = blocks(g->cg), tasks = N * g->G * nb;
#pragma omp parallel for schedule(static) num_threads(mr_threads())
            for (int64_t t = 0; t < tasks; t++) {
                int64_t n = t / (g->G * nb), gr = (t / nb) % g->G, c0 = (t % nb) * CONV_ROWS;
                int64_t rows = MR_MIN(CONV_ROWS, g->cg - c0);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)P, (int)g->kg,
                            1.0f, w + gr * g->kg * g->cg + c0, (int)g->cg,
                            gy + n * ys + gr * g->kg * P, (int)P, 0.0f,
                            gx + n * xs + (gr * g->cg + c0) * HW, (int)HW);
            }
        }
        if (dw) {
            /* dW_{o0:o1} += sum_n GY_{n,o0:o1} X_{n,g}^T, one task per block of
             * CONV_ROWS output channels, accumulated sample by sample in order. */
            const int64_t nb = blocks(g->kg), tasks = g->G * nb;
#pragma omp parallel for schedule(static) num_threads(mr_threads())
            for (int64_t t = 0; t < tasks; t++) {
                int64_t gr = t / nb, o0 = gr * g->kg + (t % nb) * CONV_ROWS;
                int64_t rows = MR_MIN(CONV_ROWS, (gr + 1) * g->kg - o0);
                for (int64_t n = 0; n < N; n++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)g->cg,
                                (int)P, 1.0f, gy + n * ys + o0 * P, (int)P,
                                x + n * xs + gr * g->cg * HW, (int)HW, 1.0f, dw + o0 * g->cg,
                                (int)g->cg);
            }
        }
        return;
    case PATH_DIRECT:
        if (gx) {
            /* Each (n, input channel) plane gathers from its group's output channels. */
#pragma omp parallel for collapse(2) schedule(static) num_threads(mr_threads())
            for (int64_t n = 0; n < N; n++)
                for (int64_t ci = 0; ci < g->C; ci++) {
                    float *d = gx + n * xs + ci * HW;
                    memset(d, 0, (size_t)HW * sizeof(float));
                    int64_t gr = ci / g->cg, c = ci % g->cg;
                    for (int64_t o = gr * g->kg; o < (gr + 1) * g->kg; o++) {
                        const float *gp = gy + n * ys + o * P;
                        for (int64_t i = 0; i < g->kh; i++)
                            for (int64_t j = 0; j < g->kw; j++) {
                                float wv = w[(o * g->cg + c) * kk + i * g->kw + j];
                                int64_t offh = i * g->dh - g->ph, offw = j * g->dw - g->pw, plo,
                                        phi, qlo, qhi;
                                valid_range(g->Ho, g->H, g->sh, offh, &plo, &phi);
                                valid_range(g->Wo, g->W, g->sw, offw, &qlo, &qhi);
                                for (int64_t p = plo; p < phi; p++) {
                                    float *dr = d + (p * g->sh + offh) * g->W + offw;
                                    axpy_to_strided(dr + qlo * g->sw, gp + p * g->Wo + qlo, wv,
                                                    qhi - qlo, g->sw);
                                }
                            }
                    }
                }
        }
        if (dw) {
            /* One weight entry per iteration, summed over (n, p, q) in order. */
            const int64_t nw = g->K * g->cg * kk;
#pragma omp parallel for schedule(static) num_threads(mr_threads())
            for (int64_t e = 0; e < nw; e++) {
                int64_t o = e / (g->cg * kk), c = (e / kk) % g->cg, i = (e / g->kw) % g->kh,
                        j = e % g->kw;
                int64_t ci = (o / g->kg) * g->cg + c;
                int64_t offh = i * g->dh - g->ph, offw = j * g->dw - g->pw, plo, phi, qlo, qhi;
                valid_range(g->Ho, g->H, g->sh, offh, &plo, &phi);
                valid_range(g->Wo, g->W, g->sw, offw, &qlo, &qhi);
                double s = 0.0;
                for (int64_t n = 0; n < N; n++) {
                    const float *gp = gy + n * ys + o * P, *xp = x + n * xs + ci * HW;
                    for (int64_t p = plo; p < phi; p++) {
                        const float *xr = xp + (p * g->sh + offh) * g->W + offw,
                                    *gr_ = gp + p * g->Wo;
                        float rs = 0.0f;
                        for (int64_t q = qlo; q < qhi; q++)
                            rs += gr_[q] * xr[q * g->sw];
                        s += rs;
                    }
                }
                dw[e] += (float)s;
            }
        }
        return;
    case PATH_GEMM: {
        const int64_t kgr = g->cg * kk;
        if (dw) {
            /* Chunks of the batch: col (Cg kh kw, nb P) and GY_g (Cout/G, nb P),
             * then dW_g += GY_g col^T by blocks of CONV_ROWS output channels. */
            const int64_t chunk = gemm_chunk(g, N, CONV_SCRATCH_CAP), nb_rows = blocks(g->kg);
            for (int64_t n0 = 0; n0 < N; n0 += chunk) {
                int64_t nb = MR_MIN(chunk, N - n0), ld = nb * P;
                float *col = scratch, *tmp = scratch + kgr * ld;
                for (int64_t gr = 0; gr < g->G; gr++) {
                    gather_out(g, gy + n0 * ys + gr * g->kg * P, nb, tmp);
                    im2col(g, x + n0 * xs + gr * g->cg * HW, nb, col, 1);
#pragma omp parallel for schedule(static) num_threads(mr_threads())
                    for (int64_t b = 0; b < nb_rows; b++) {
                        int64_t o0 = b * CONV_ROWS, rows = MR_MIN(CONV_ROWS, g->kg - o0);
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)kgr,
                                    (int)ld, 1.0f, tmp + o0 * ld, (int)ld, col, (int)ld, 1.0f,
                                    dw + (gr * g->kg + o0) * kgr, (int)kgr);
                    }
                }
            }
        }
        if (gx) {
            /* One task per (item, group): dcol (Cg kh kw, P) = W_g^T GY_{n,g} in
             * the thread's slot, then col2im into the item's group channels. */
            const int64_t slot = kgr * P, tasks = N * g->G;
            const int nt = (int)MR_MIN(mr_threads(), item_slots(g, N));
#pragma omp parallel num_threads(nt)
            {
                float *col = scratch + omp_get_thread_num() * slot;
#pragma omp for schedule(static)
                for (int64_t t = 0; t < tasks; t++) {
                    int64_t n = t / g->G, gr = t % g->G;
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)kgr, (int)P,
                                (int)g->kg, 1.0f, w + gr * g->kg * kgr, (int)kgr,
                                gy + n * ys + gr * g->kg * P, (int)P, 0.0f, col, (int)P);
                    col2im(g, col, 1, gx + n * xs + gr * g->cg * HW);
                }
            }
        }
        return;
    }
    }
}

/* db[o] += sum over (n, p, q) of gy[n, o, p, q], one output channel per iteration, in order. */
static void conv_bias_grad(const conv_geom *g, const float *gy, int64_t N, float *db)
{
    const int64_t P = g->Ho * g->Wo;
#pragma omp parallel for schedule(static) num_threads(mr_threads())
    for (int64_t o = 0; o < g->K; o++) {
        double s = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *gp = gy + (n * g->K + o) * P;
            float rs = 0.0f;
            for (int64_t p = 0; p < P; p++)
                rs += gp[p];
            s += rs;
        }
        db[o] += (float)s;
    }
}

/* ------------------------------------------------------- the four functions */

static void conv_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    conv_geom g;
    geom_of(&g, c, x[0]);
    const float *bias = c->nparams > 1 ? c->params[1]->data : NULL;
    conv_apply(&g, c->params[0]->data, bias, x[0]->data, x[0]->shape[0], y->data, c->scratch);
}

static void conv_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                     const mr_tensor *gy, mr_tensor *const *gx)
{
    conv_geom g;
    geom_of(&g, c, x[0]);
    int64_t N = x[0]->shape[0];
    float *dw = c->param_grads && c->param_grads[0] ? c->param_grads[0]->data : NULL;
    float *db =
        c->param_grads && c->nparams > 1 && c->param_grads[1] ? c->param_grads[1]->data : NULL;
    if (gx[0] || dw)
        conv_adjoint(&g, c->params[0]->data, x[0]->data, gy->data, N, gx[0] ? gx[0]->data : NULL,
                     dw, c->scratch);
    if (db)
        conv_bias_grad(&g, gy->data, N, db);
}

static void conv_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                     const mr_tensor *y, mr_tensor *dy)
{
    conv_geom g;
    geom_of(&g, c, x[0]);
    conv_apply(&g, c->params[0]->data, NULL, dx[0]->data, x[0]->shape[0], dy->data, c->scratch);
}

static void conv_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                             const mr_tensor *const *dx, const mr_tensor *y, const mr_tensor *dy,
                             const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *const *dgx)
{
    if (!dgx[0])
        return;
    if (!dgy) {
        memset(dgx[0]->data, 0, (size_t)dgx[0]->numel * sizeof(float));
        return;
    }
    conv_geom g;
    geom_of(&g, c, x[0]);
    conv_adjoint(&g, c->params[0]->data, NULL, dgy->data, x[0]->shape[0], dgx[0]->data, NULL,
                 c->scratch);
}

const mr_op_def mr_op_conv2d = {
    .name = "conv2d",
    .deeplift = MR_DL_LINEAR,
    .ninputs = 1,
    .min_params = 1,
    .max_params = 2,
    .infer = conv_infer,
    .scratch_floats = conv_scratch_floats,
    .state_floats = NULL,
    .forward = conv_forward,
    .vjp = conv_vjp,
    .jvp = conv_jvp,
    .vjp_tangent = conv_vjp_tangent,
};
