/* sampling.c — noise keys and scales, the memory budget, noisy-copy
 * gradients (see sampling.h) and SmoothGrad with its variants:
 *   mean        (1/t) sum_i g_i                         SmoothGrad
 *   square      (1/t) sum_i g_i^2                       SmoothGrad^2
 *   var         (1/t) sum_i (g_i - mean)^2              VarGrad, by Welford's update
 *   sparsified  (1/t) sum_i S(|g_i|)   (Levine et al. 2019): with tau the
 *               (clip_frac d)-th largest |g_i|, S(a) = 1 for a >= tau, a / tau
 *               otherwise, on the entries with a >= the (keep_frac d)-th
 *               largest |g_i| and a > 0; 0 elsewhere.
 * moreau.h ("noisy gradients, SmoothGrad") gives the definitions and why each
 * form was chosen.
 */
#include "sampling.h"
#include "graph.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ noise keys */

static const uint64_t fnv_offset = 0xcbf29ce484222325ull, fnv_prime = 0x100000001b3ull;

/* FNV-1a 64 over n bytes, little-endian order of the values given. */
static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t j = 0; j < n; j++)
        h = (h ^ p[j]) * fnv_prime;
    return h;
}

static uint64_t fnv1a_u64(uint64_t h, uint64_t v)
{
    unsigned char b[8];
    for (int k = 0; k < 8; k++)
        b[k] = (unsigned char)(v >> (8 * k));
    return fnv1a(h, b, 8);
}

/* SplitMix64's finalizer (Steele, Lea & Flood 2014). */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int mr_item_keys(uint64_t *keys, const mr_tensor *x, const uint64_t *ids)
{
    if (!keys || !x || !x->data)
        return mr_error(MR_EINVAL, "item_keys: keys or x is NULL");
    int64_t N = x->shape[0], d = x->numel / N;
    for (int64_t n = 0; n < N; n++) {
        if (ids) {
            keys[n] = ids[n];
            continue;
        }
        uint64_t h = fnv_offset;
        for (int k = 1; k < x->ndim; k++)
            h = fnv1a_u64(h, (uint64_t)x->shape[k]);
        const float *p = x->data + n * d;
        for (int64_t j = 0; j < d; j++) {
            uint32_t u;
            memcpy(&u, p + j, 4);
            unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                                  (unsigned char)(u >> 24)};
            h = fnv1a(h, b, 4);
        }
        keys[n] = mix64(h);
    }
    return MR_OK;
}

int mr_noise_scales(float *scales, int64_t *imax, int64_t *imin, const mr_tensor *x, float sigma)
{
    if (!scales || !x || !x->data)
        return mr_error(MR_EINVAL, "noise_scales: scales or x is NULL");
    if (!(sigma >= 0) || !isfinite(sigma))
        return mr_error(MR_EINVAL, "noise_scales: sigma must be finite and >= 0, got %g", (double)sigma);
    MR_TRY(mr_tensor_check_finite(x, "input"));
    int64_t N = x->shape[0], d = x->numel / N;
    for (int64_t n = 0; n < N; n++) {
        const float *p = x->data + n * d;
        float lo = p[0], hi = p[0];
        int64_t jlo = 0, jhi = 0;
        for (int64_t j = 1; j < d; j++) {
            if (p[j] < lo)
                lo = p[j], jlo = j;
            if (p[j] > hi)
                hi = p[j], jhi = j;
        }
        scales[n] = sigma * (hi - lo);
        if (imax)
            imax[n] = jhi;
        if (imin)
            imin[n] = jlo;
    }
    return MR_OK;
}

/* The noise of copy i of an item in round t starts at this offset of the
 * item's stream (docs/determinism.md): rounds and copies never share draws. */
static uint64_t noise_offset(uint64_t t, int32_t samples, int32_t i, int64_t d)
{
    return (t * (uint64_t)samples + (uint64_t)i) * (uint64_t)d;
}

int mr_noise_copies(mr_tensor *xb, float *eps, const mr_tensor *x, const float *scales, const uint64_t *keys,
                    uint64_t seed, int32_t samples, int64_t p0)
{
    if (!xb || !x || !x->data || !xb->data || !scales || !keys)
        return mr_error(MR_EINVAL, "noise_copies: xb, x, scales or keys is NULL");
    if (x->ndim < 1 || x->shape[0] < 1)
        return mr_error(MR_EINVAL, "noise_copies: x has no items");
    int64_t N = x->shape[0], d = x->numel / N, k = xb->shape[0];
    int same = xb->ndim == x->ndim && k >= 1;
    for (int a = 1; a < x->ndim && same; a++)
        same = xb->shape[a] == x->shape[a];
    if (!same) {
        char a[64], b[64];
        return mr_error(MR_ESHAPE, "noise_copies: xb %s must be (k, sample shape) of x %s",
                        mr_tensor_shape_str(xb, a, sizeof a), mr_tensor_shape_str(x, b, sizeof b));
    }
    /* p0 and samples are plain numbers: N * samples, p0 + k and the noise
     * offsets i * d (i < samples) are overflow-checked before any is used. */
    int64_t copies = 0, end = 0, span = 0;
    if (samples < 1 || p0 < 0 || mr_size_mul(N, samples, &copies) || mr_size_add(p0, k, &end) || end > copies) {
        if (p0 >= 0 && p0 <= INT64_MAX - k)
            return mr_error(MR_EINVAL, "noise_copies: copies %lld..%lld out of range for %lld items x %d samples",
                            (long long)p0, (long long)(p0 + k - 1), (long long)N, samples);
        return mr_error(MR_EINVAL, "noise_copies: %lld copies from copy %lld: out of range for %lld items x %d samples",
                        (long long)k, (long long)p0, (long long)N, samples);
    }
    MR_TRY(MR_SIZE_PROD(&span, "noise_copies", "noise values per item samples*d", samples, d));
    for (int64_t q = 0; q < k; q++) {
        int64_t n = (p0 + q) / samples;
        int32_t i = (int32_t)((p0 + q) % samples);
        float *xq = xb->data + q * d;
        const float *xn = x->data + n * d;
        uint64_t offset = noise_offset(0, samples, i, d); /* round 0 of mr_sampler_round */
        MR_TRY(mr_rng_normal(xq, d, seed, keys[n], offset, 0.f, scales[n]));
        for (int64_t j = 0; j < d; j++)
            xq[j] += xn[j];
        if (eps)
            MR_TRY(mr_rng_normal(eps + q * d, d, seed, keys[n], offset, 0.f, 1.f));
    }
    return MR_OK;
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Sparsified SmoothGrad's selection of one gradient g (d floats): tau = the
 * clip_k-th largest |g|, keep = the keep_k-th largest; tmp: d floats of scratch. */
static void sparsify_thresholds(float *tau, float *keep, const float *g, int64_t d, int64_t clip_k, int64_t keep_k,
                                float *tmp)
{
    for (int64_t j = 0; j < d; j++)
        tmp[j] = fabsf(g[j]);
    qsort(tmp, (size_t)d, sizeof(float), cmp_desc);
    *tau = tmp[clip_k - 1];
    *keep = tmp[keep_k - 1];
}

int mr_sparsify_thresholds(float *tau, float *keep, const float *g, int64_t d, int64_t clip_k, int64_t keep_k,
                           float *scratch)
{
    if (!tau || !keep || !g || !scratch)
        return mr_error(MR_EINVAL, "sparsify_thresholds: tau, keep, g or scratch is NULL");
    if (clip_k < 1 || clip_k > d || keep_k < 1 || keep_k > d)
        return mr_error(MR_EINVAL, "sparsify_thresholds: clip_k (%lld) and keep_k (%lld) must be in [1, d = %lld]",
                        (long long)clip_k, (long long)keep_k, (long long)d);
    sparsify_thresholds(tau, keep, g, d, clip_k, keep_k, scratch);
    return MR_OK;
}

int mr_sparsify_counts(int64_t *clip_k, int64_t *keep_k, int64_t d, float clip_frac, float keep_frac)
{
    if (!clip_k || !keep_k)
        return mr_error(MR_EINVAL, "sparsify_counts: clip_k or keep_k is NULL");
    if (!(clip_frac > 0 && clip_frac <= 1 && keep_frac > 0 && keep_frac <= 1))
        return mr_error(MR_EINVAL, "smoothgrad: sparsified needs clip and keep fractions in (0, 1], got %g and %g",
                        (double)clip_frac, (double)keep_frac);
    if (d < 1)
        return mr_error(MR_EINVAL, "sparsify_counts: d must be >= 1 entries, got %lld", (long long)d);
    /* float * int64_t is a float product (C's usual conversions), floored in
     * double. Past 2^24 the float d may round above d (16777219 -> 16777220),
     * and a count past d would read past the item: counts are capped at d,
     * compared in double before the cast (which past 2^63 would be undefined). */
    double c = floor(clip_frac * d), k = floor(keep_frac * d);
    *clip_k = c >= (double)d ? d : MR_MAX((int64_t)1, (int64_t)c);
    *keep_k = k >= (double)d ? d : MR_MAX((int64_t)1, (int64_t)k);
    return MR_OK;
}

/* --------------------------------------------------------- memory budget */

static atomic_llong memory_budget;

int mr_set_memory_budget(int64_t bytes)
{
    mr_budget_store(&memory_budget, bytes);
    return MR_OK;
}

int64_t mr_get_memory_budget(void) { return mr_budget_load(&memory_budget, (int64_t)MR_MEMORY_BUDGET_MIB << 20); }

int mr_auto_chunk(int64_t *chunk, mr_net *net, int64_t copies, int tangents, int64_t per_copy_bytes,
                  int64_t budget)
{
    if (!chunk || !net)
        return mr_error(MR_EINVAL, "auto_chunk: chunk or net is NULL");
    if (copies < 1 || per_copy_bytes < 0)
        return mr_error(MR_EINVAL, "auto_chunk: copies (%lld) must be >= 1 and per-copy bytes (%lld) >= 0",
                        (long long)copies, (long long)per_copy_bytes);
    if (budget <= 0)
        budget = mr_get_memory_budget();
    /* The cost est(k) + arena(k) + k * per_copy_bytes grows with k: bisect for the
     * largest k in 1..copies within the budget (lo always fits or is 1). The
     * cost is summed overflow-checked: a cost past int64 fits no budget. */
    int64_t lo = 1, hi = MR_MIN(copies, (int64_t)INT32_MAX);
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2, ws, per, cost;
        int rc = mr_net_workspace_estimate(&ws, net, mid, tangents);
        if (rc < 0 && rc != MR_EINVAL) /* MR_EINVAL: more than 2^63 bytes (mid >= 1, net checked) */
            return rc;
        int fits = rc == MR_OK && !mr_size_mul(mid, per_copy_bytes, &per) &&
                   !mr_size_add(ws, mr_net_conv_arena_bound(net, mid), &cost) && !mr_size_add(cost, per, &cost) &&
                   cost <= budget;
        if (fits)
            lo = mid;
        else
            hi = mid - 1;
    }
    *chunk = lo;
    return MR_OK;
}

/* ---------------------------------------------------------------- sampler */

int mr_sampler_init(mr_sampler *s, mr_net *net, const mr_tensor *x, const int32_t *labels, int32_t samples,
                    int32_t chunk, float sigma, int32_t score_kind, uint64_t seed, const uint64_t *keys,
                    int64_t budget)
{
    memset(s, 0, sizeof *s);
    if (!net || !x || !labels)
        return mr_error(MR_EINVAL, "sampler: net, x or labels is NULL");
    if (samples < 0)
        return mr_error(MR_EINVAL, "sampler: samples must be >= 0, got %d", samples);
    if (chunk < 0)
        return mr_error(MR_EINVAL, "sampler: chunk must be >= 0 (0: automatic), got %d", chunk);
    if (!(sigma >= 0) || !isfinite(sigma))
        return mr_error(MR_EINVAL, "sampler: sigma must be finite and >= 0, got %g", (double)sigma);
    /* x's non-finite entries are refused once, by mr_noise_scales below. */
    s->net = net;
    s->x = x;
    s->N = x->shape[0];
    s->d = x->numel / s->N;
    s->samples = samples;
    /* samples (and the solver's T) are plain numbers: the copies per round N * samples
     * and one round's noise values per item samples * d must fit int64. */
    int64_t copies, span;
    MR_TRY(MR_SIZE_PROD(&copies, "sampler", "copies N*samples", s->N, samples > 0 ? samples : 1));
    MR_TRY(MR_SIZE_PROD(&span, "sampler", "noise values per item samples*d", samples, s->d));
    if (chunk == 0) {
        int64_t k;
        MR_TRY(mr_auto_chunk(&k, net, copies, 0, 2 * s->d * (int64_t)sizeof(float) + 8, budget));
        s->chunk = (int32_t)k;
    } else {
        s->chunk = (int32_t)(chunk < copies ? chunk : copies);
    }
    s->score_kind = score_kind;
    s->seed = seed;
    s->labels = (int32_t *)labels;
    /* N * 8 bytes: N <= numel, whose float32 bytes mr_tensor_new checked, so
     * N * 8 <= 2 * numel * 4 fits too. */
    s->keys = mr_alloc((size_t)s->N * sizeof(uint64_t));
    s->noise_std = mr_alloc((size_t)s->N * sizeof(float));
    s->items = mr_alloc((size_t)s->N * sizeof(int64_t));
    s->chunk_labels = mr_alloc((size_t)s->chunk * sizeof(int32_t));
    s->chunk_scores = mr_alloc((size_t)s->chunk * sizeof(float));
    int64_t shape[4] = {s->chunk, x->shape[1], x->shape[2], x->shape[3]};
    if (!s->keys || !s->noise_std || !s->items || !s->chunk_labels || !s->chunk_scores ||
        mr_tensor_new(&s->xb, x->ndim, shape) < 0 || mr_tensor_new(&s->gb, x->ndim, shape) < 0) {
        mr_sampler_release(s);
        return MR_ENOMEM;
    }
    int rc = mr_item_keys(s->keys, x, keys);
    if (rc == MR_OK)
        rc = mr_noise_scales(s->noise_std, NULL, NULL, x, sigma);
    if (rc < 0) {
        mr_sampler_release(s);
        return rc;
    }
    return MR_OK;
}

void mr_sampler_release(mr_sampler *s)
{
    mr_free(s->keys);
    mr_free(s->noise_std);
    mr_free(s->items);
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

int mr_sampler_round(mr_sampler *s, const float *shift, uint64_t t, const unsigned char *active,
                     mr_sample_visit visit, void *ctx)
{
    int32_t per = s->samples > 0 ? s->samples : 1;
    int64_t d = s->d, M = 0;
    for (int64_t n = 0; n < s->N; n++)
        if (!active || active[n])
            s->items[M++] = n;
    int64_t copies = M * per;
    const mr_backend *be = mr_net_backend(s->net); /* the noise fill and the adds run where the net does */
    for (int64_t p0 = 0; p0 < copies; p0 += s->chunk) {
        int64_t k = MR_MIN((int64_t)s->chunk, copies - p0);
        set_batch(s->xb, k, d);
        set_batch(s->gb, k, d);
        for (int64_t q = 0; q < k; q++) {
            int64_t n = s->items[(p0 + q) / per];
            int32_t i = (int32_t)((p0 + q) % per);
            float *xq = s->xb->data + q * d;
            const float *xn = s->x->data + n * d;
            s->chunk_labels[q] = s->labels[n];
            if (s->samples > 0) { /* x_n + noise, then + shift: one float add each */
                unsigned long serial = mr_error_serial();
                int rc = be->fill_normal(be->ctx, xq, d, s->seed, s->keys[n], noise_offset(t, s->samples, i, d),
                                         0.f, s->noise_std[n]);
                MR_TRY(mr_backend_status(be, "fill_normal", rc, serial));
                be->add(be->ctx, xq, xn, d);
            } else {
                be->copy(be->ctx, xq, xn, d);
            }
            if (shift)
                be->add(be->ctx, xq, shift + n * d, d);
        }
        MR_TRY(mr_oracle_grad(s->net, s->xb, s->chunk_labels, s->score_kind, s->chunk_scores, s->gb));
        for (int64_t q = 0; q < k; q++)
            visit(ctx, s->items[(p0 + q) / per], (int32_t)((p0 + q) % per), s->gb->data + q * d, s->chunk_scores[q]);
        if (s->progress)
            mr_progress_update(s->progress, p0 + k);
    }
    set_batch(s->xb, s->chunk, d);
    set_batch(s->gb, s->chunk, d);
    return MR_OK;
}

/* ---------------------------------------------------------- SmoothGrad */

typedef struct sg_ctx {
    const mr_smoothgrad_opts *o;
    int64_t d;
    float *out;   /* N*d: running sum (mean, square, sparsified); Welford's mean (var) */
    float *sq;    /* N*d: Welford's sum of squared deviations M2 (var) */
    float *tmp;   /* d: |g| for the sparsified selection */
    int64_t clip_k, keep_k;
} sg_ctx;

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
        /* Welford (1962): with k = i + 1 samples seen and delta = g - mean_{k-1},
         * mean_k = mean_{k-1} + delta / k and M2_k = M2_{k-1} + delta^2 (k - 1) / k
         * (= delta (g - mean_k) in exact arithmetic). Every increment is >= 0 in
         * float too, so the variance M2 / t cannot go negative by cancellation,
         * and a constant g gives exactly 0. Samples of an item arrive in order i. */
        float *q = c->sq + n * c->d;
        float inv_k = 1.f / (float)(i + 1), w = (float)i / (float)(i + 1);
        for (int64_t j = 0; j < c->d; j++) {
            float delta = g[j] - o[j];
            o[j] += delta * inv_k;
            q[j] += (delta * delta) * w;
        }
        break;
    }
    case MR_SG_SPARSIFIED: {
        /* tau = clip_k-th largest |g|, keep = keep_k-th largest |g|; every entry
         * tied at keep is kept (a rule on values, so positions cannot matter).
         * Kept entries at or above tau are clipped to 1, the others give a / tau:
         * with tau = 0 (fewer than clip_k nonzero entries) every kept nonzero
         * entry is 1, the limit of min(a, tau) / tau, instead of a 0/0 that would
         * drop the sample. */
        float tau, keep;
        sparsify_thresholds(&tau, &keep, g, c->d, c->clip_k, c->keep_k, c->tmp);
        for (int64_t j = 0; j < c->d; j++) {
            float a = fabsf(g[j]);
            if (a >= keep && a > 0)
                o[j] += a >= tau ? 1.f : a / tau;
        }
        break;
    }
    }
    (void)score;
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
    if (o->memory_budget < 0)
        return mr_error(MR_EINVAL, "smoothgrad: memory_budget must be >= 0 bytes (0: the global budget), got %lld",
                        (long long)o->memory_budget);
    mr_sampler s;
    MR_TRY(mr_sampler_init(&s, net, x, labels, o->samples, o->chunk, o->sigma, o->score_kind, o->seed, o->keys,
                           o->memory_budget));
    sg_ctx c = {.o = o, .d = s.d, .out = out->data};
    if (o->mode == MR_SG_SPARSIFIED) {
        int rc = mr_sparsify_counts(&c.clip_k, &c.keep_k, s.d, o->clip_frac, o->keep_frac);
        if (rc < 0) {
            mr_sampler_release(&s);
            return rc;
        }
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
    mr_progress p;
    mr_progress_begin(&p, o->mode == MR_SG_SPARSIFIED ? "Sparsified SmoothGrad" : o->mode == MR_SG_VAR ? "VarGrad"
                                                                                 : "SmoothGrad",
                      "copy", 0, s.N * (int64_t)o->samples);
    s.progress = &p;
    int rc = mr_sampler_round(&s, NULL, 0, NULL, sg_visit, &c);
    mr_progress_end(&p);
    if (rc == MR_OK) {
        float inv = 1.f / (float)o->samples;
        const float *src = o->mode == MR_SG_VAR ? c.sq : out->data;
        for (int64_t j = 0; j < x->numel; j++)
            out->data[j] = src[j] * inv;
    }
    mr_free(c.tmp);
    mr_free(c.sq);
    mr_sampler_release(&s);
    return rc;
}
