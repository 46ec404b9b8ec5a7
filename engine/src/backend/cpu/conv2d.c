/*
 * backend/cpu/conv2d.c — conv2d's CPU kernels (the formulas: ops/conv2d.c).
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
 *   - OpenBLAS always runs on one thread (backend/cpu/threads.c); the engine's own
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
#include "cpu.h"
#include "../../ops/conv2d.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

/* Blocks of CONV_ROWS in n rows. */
static int64_t blocks(int64_t n) { return (n + CONV_ROWS - 1) / CONV_ROWS; }

/* d[o, p] += b[o] for a block of rows (o < rows, p < P). */
static void add_bias(float *d, const float *b, int64_t rows, int64_t P)
{
    for (int64_t o = 0; o < rows; o++)
        for (int64_t p = 0; p < P; p++)
            d[o * P + p] += b[o];
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
    const conv_geom *g = c->cache; /* cached by infer: computed once per node */
    const float *bias = c->nparams > 1 ? c->params[1]->data : NULL;
    conv_apply(g, c->params[0]->data, bias, x[0]->data, x[0]->shape[0], y->data, c->scratch);
}

static void conv_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                     const mr_tensor *gy, mr_tensor *const *gx)
{
    const conv_geom *g = c->cache; /* cached by infer: computed once per node */
    int64_t N = x[0]->shape[0];
    float *dw = c->param_grads && c->param_grads[0] ? c->param_grads[0]->data : NULL;
    float *db =
        c->param_grads && c->nparams > 1 && c->param_grads[1] ? c->param_grads[1]->data : NULL;
    if (gx[0] || dw)
        conv_adjoint(g, c->params[0]->data, x[0]->data, gy->data, N, gx[0] ? gx[0]->data : NULL,
                     dw, c->scratch);
    if (db)
        conv_bias_grad(g, gy->data, N, db);
}

static void conv_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                     const mr_tensor *y, mr_tensor *dy)
{
    const conv_geom *g = c->cache; /* cached by infer: computed once per node */
    conv_apply(g, c->params[0]->data, NULL, dx[0]->data, x[0]->shape[0], dy->data, c->scratch);
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
    const conv_geom *g = c->cache; /* cached by infer: computed once per node */
    conv_adjoint(g, c->params[0]->data, NULL, dgy->data, x[0]->shape[0], dgx[0]->data, NULL,
                 c->scratch);
}

const mr_op_kernels mr_cpu_conv2d = {
    .forward = conv_forward,
    .vjp = conv_vjp,
    .jvp = conv_jvp,
    .vjp_tangent = conv_vjp_tangent,
};
