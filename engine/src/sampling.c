/* sampling.c — noisy-copy gradients (see sampling.h) and SmoothGrad with its
 * variants:
 *   mean        (1/t) sum_i g_i                         SmoothGrad
 *   square      (1/t) sum_i g_i^2                       SmoothGrad^2
 *   var         (1/t) sum_i g_i^2 - ((1/t) sum_i g_i)^2 VarGrad
 *   sparsified  (1/t) sum_i S(|g_i|)   (Levine et al. 2019): with tau the
 *               (clip_frac d)-th largest |g_i|, S(a) = min(a, tau) / tau on the
 *               (keep_frac d) largest entries and 0 elsewhere.
 */
#include "sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int mr_sampler_init(mr_sampler *s, mr_net *net, const mr_tensor *x, const int32_t *labels, int32_t samples,
                    int32_t chunk, float sigma, int32_t score_kind, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    if (!net || !x || !labels)
        return mr_error(MR_EINVAL, "sampler: net, x or labels is NULL");
    if (samples < 0)
        return mr_error(MR_EINVAL, "sampler: samples must be >= 0, got %d", samples);
    if (!(sigma >= 0) || !isfinite(sigma))
        return mr_error(MR_EINVAL, "sampler: sigma must be finite and >= 0, got %g", (double)sigma);
    MR_TRY(mr_tensor_check_finite(x, "input"));
    s->net = net;
    s->x = x;
    s->N = x->shape[0];
    s->d = x->numel / s->N;
    s->samples = samples;
    int64_t copies = s->N * (samples > 0 ? samples : 1);
    s->chunk = (int32_t)(chunk > 0 && chunk < copies ? chunk : copies);
    s->score_kind = score_kind;
    s->seed = seed;
    s->labels = (int32_t *)labels;
    s->noise_std = mr_alloc((size_t)s->N * sizeof(float));
    s->chunk_labels = mr_alloc((size_t)s->chunk * sizeof(int32_t));
    s->chunk_scores = mr_alloc((size_t)s->chunk * sizeof(float));
    int64_t shape[4] = {s->chunk, x->shape[1], x->shape[2], x->shape[3]};
    if (!s->noise_std || !s->chunk_labels || !s->chunk_scores || mr_tensor_new(&s->xb, x->ndim, shape) < 0 ||
        mr_tensor_new(&s->gb, x->ndim, shape) < 0) {
        mr_sampler_release(s);
        return MR_ENOMEM;
    }
    for (int64_t n = 0; n < s->N; n++) {
        const float *p = x->data + n * s->d;
        float lo = p[0], hi = p[0];
        for (int64_t j = 1; j < s->d; j++)
            lo = p[j] < lo ? p[j] : lo, hi = p[j] > hi ? p[j] : hi;
        s->noise_std[n] = sigma * (hi - lo);
    }
    return MR_OK;
}

void mr_sampler_release(mr_sampler *s)
{
    mr_free(s->noise_std);
    mr_free(s->chunk_labels);
    mr_free(s->chunk_scores);
    mr_tensor_free(s->xb);
    mr_tensor_free(s->gb);
    memset(s, 0, sizeof *s);
}

/* Sets the batch dim of a chunk tensor (its buffer holds `chunk` items). */
static void set_batch(mr_tensor *t, int64_t k, int64_t d)
{
    t->shape[0] = k;
    t->numel = k * d;
}

int mr_sampler_round(mr_sampler *s, const float *shift, uint64_t t, mr_sample_visit visit, void *ctx)
{
    int32_t per = s->samples > 0 ? s->samples : 1;
    int64_t copies = s->N * per, d = s->d;
    for (int64_t p0 = 0; p0 < copies; p0 += s->chunk) {
        int64_t k = MR_MIN((int64_t)s->chunk, copies - p0);
        set_batch(s->xb, k, d);
        set_batch(s->gb, k, d);
        for (int64_t q = 0; q < k; q++) {
            int64_t n = (p0 + q) / per;
            int32_t i = (int32_t)((p0 + q) % per);
            float *xq = s->xb->data + q * d;
            const float *xn = s->x->data + n * d;
            s->chunk_labels[q] = s->labels[n];
            if (s->samples > 0) {
                MR_TRY(mr_rng_normal(xq, d, s->seed, (uint64_t)n, (t * (uint64_t)s->samples + (uint64_t)i) * (uint64_t)d,
                                     0.f, s->noise_std[n]));
                for (int64_t j = 0; j < d; j++)
                    xq[j] += xn[j];
            } else {
                memcpy(xq, xn, (size_t)d * sizeof(float));
            }
            if (shift)
                for (int64_t j = 0; j < d; j++)
                    xq[j] += shift[n * d + j];
        }
        MR_TRY(mr_oracle_grad(s->net, s->xb, s->chunk_labels, s->score_kind, s->chunk_scores, s->gb));
        for (int64_t q = 0; q < k; q++)
            visit(ctx, (p0 + q) / per, (int32_t)((p0 + q) % per), s->gb->data + q * d, s->chunk_scores[q]);
    }
    set_batch(s->xb, s->chunk, d);
    set_batch(s->gb, s->chunk, d);
    return MR_OK;
}

/* ---------------------------------------------------------- SmoothGrad */

typedef struct sg_ctx {
    const mr_smoothgrad_opts *o;
    int64_t d;
    float *out;   /* N*d: running sum of the transformed gradients */
    float *sq;    /* N*d: running sum of squares (var mode) */
    float *tmp;   /* d: |g| for the sparsified selection */
    int64_t clip_k, keep_k;
} sg_ctx;

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void sg_visit(void *vctx, int64_t n, int32_t i, const float *g, float score)
{
    sg_ctx *c = vctx;
    float *o = c->out + n * c->d;
    switch (c->o->mode) {
    case MR_SG_MEAN:
        for (int64_t j = 0; j < c->d; j++)
            o[j] += g[j];
        break;
    case MR_SG_SQUARE:
        for (int64_t j = 0; j < c->d; j++)
            o[j] += g[j] * g[j];
        break;
    case MR_SG_VAR: {
        float *q = c->sq + n * c->d;
        for (int64_t j = 0; j < c->d; j++)
            o[j] += g[j], q[j] += g[j] * g[j];
        break;
    }
    case MR_SG_SPARSIFIED: {
        /* tau = clip_k-th largest |g|, keep = keep_k-th largest |g| (ties kept). */
        for (int64_t j = 0; j < c->d; j++)
            c->tmp[j] = fabsf(g[j]);
        qsort(c->tmp, (size_t)c->d, sizeof(float), cmp_desc);
        float tau = c->tmp[c->clip_k - 1], keep = c->tmp[c->keep_k - 1];
        if (tau > 0)
            for (int64_t j = 0; j < c->d; j++) {
                float a = fabsf(g[j]);
                if (a >= keep && a > 0)
                    o[j] += (a < tau ? a : tau) / tau;
            }
        break;
    }
    }
    (void)i, (void)score;
}

int mr_smoothgrad(mr_tensor *out, mr_net *net, const mr_tensor *x, const int32_t *labels,
                  const mr_smoothgrad_opts *o)
{
    if (!out || !x || !o)
        return mr_error(MR_EINVAL, "smoothgrad: out, x or opts is NULL");
    if (!mr_same_shape(out, x)) {
        char a[64], b[64];
        return mr_error(MR_ESHAPE, "smoothgrad: out %s must be shaped like x %s", mr_tensor_shape_str(out, a, sizeof a),
                        mr_tensor_shape_str(x, b, sizeof b));
    }
    if (o->samples < 1)
        return mr_error(MR_EINVAL, "smoothgrad: samples must be >= 1, got %d", o->samples);
    if (o->mode < MR_SG_MEAN || o->mode > MR_SG_SPARSIFIED)
        return mr_error(MR_EINVAL, "smoothgrad: unknown mode %d", o->mode);
    mr_sampler s;
    MR_TRY(mr_sampler_init(&s, net, x, labels, o->samples, o->chunk, o->sigma, o->score_kind, o->seed));
    sg_ctx c = {.o = o, .d = s.d, .out = out->data};
    if (o->mode == MR_SG_SPARSIFIED) {
        if (!(o->clip_frac > 0 && o->clip_frac <= 1 && o->keep_frac > 0 && o->keep_frac <= 1)) {
            mr_sampler_release(&s);
            return mr_error(MR_EINVAL, "smoothgrad: sparsified needs clip and keep fractions in (0, 1], got %g and %g",
                            (double)o->clip_frac, (double)o->keep_frac);
        }
        c.clip_k = MR_MAX((int64_t)1, (int64_t)floor(o->clip_frac * s.d));
        c.keep_k = MR_MAX((int64_t)1, (int64_t)floor(o->keep_frac * s.d));
    }
    c.tmp = mr_alloc((size_t)s.d * sizeof(float));
    c.sq = o->mode == MR_SG_VAR ? mr_calloc((size_t)x->numel * sizeof(float)) : NULL;
    if (!c.tmp || (o->mode == MR_SG_VAR && !c.sq)) {
        mr_free(c.tmp);
        mr_free(c.sq);
        mr_sampler_release(&s);
        return MR_ENOMEM;
    }
    memset(out->data, 0, (size_t)out->numel * sizeof(float));
    int rc = mr_sampler_round(&s, NULL, 0, sg_visit, &c);
    if (rc == MR_OK) {
        float inv = 1.f / (float)o->samples;
        for (int64_t j = 0; j < x->numel; j++) {
            float mean = out->data[j] * inv;
            out->data[j] = o->mode == MR_SG_VAR ? c.sq[j] * inv - mean * mean : mean;
        }
    }
    mr_free(c.tmp);
    mr_free(c.sq);
    mr_sampler_release(&s);
    return rc;
}
