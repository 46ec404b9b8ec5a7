/*
 * moreau.c — the Moreau-envelope solver behind MoreauGrad (docs/methods.md §7; paper
 * Algorithm 1, Definitions 2 and 5, Theorems 1 and 2).
 *
 * Minimizes over d, for every item n of the batch independently,
 *
 *     F(d) = f_c(x + d) + ||d||^2 / (2 rho) + eta R(d)
 *
 * by proximal gradient with step gamma:
 *
 *     g_t     = (1/m) sum_i grad f_c(x + d_t + z_i)      z_i ~ N(0, s^2 I) fresh each t   (m > 0)
 *             = grad f_c(x + d_t)                                                        (m = 0)
 *     d_{t+½} = d_t - gamma (g_t + d_t / rho)
 *     d_{t+1} = ST_{gamma eta}(d_{t+½})   or   GST_{gamma eta}(d_{t+½})   or   d_{t+½}
 *
 * and returns MG = -mean(d_{T-K+1..T}) / rho (output gradient: by Theorem 1
 * part 2, grad g^rho(x) = -(x~* - x) / rho, so rho -> 0 gives the gradient and
 * a linear score w.x gives w, ST_eta(w), GST_eta(w) exactly) or that mean
 * itself (output delta, as the authors' code).
 *
 * Each item stops on its own: with tol > 0, item n freezes at the first t with
 * ||d_{t+1} - d_t|| <= tol max(1, ||d_t||): its iterate, tail sum and
 * statistics stop changing and its copies leave the network batch, so its map
 * is the one it would get alone (docs/determinism.md). Its map is the mean of
 * the tail iterates it reached (the current iterate if none).
 *
 * Divergence (README "Option domains"). The prox maps are nonexpansive with
 * prox(0) = 0 and d_0 = 0, so for gamma <= rho
 *
 *     ||d_{t+1}|| <= (1 - gamma/rho) ||d_t|| + gamma ||g_t||  <=  rho G_t,
 *     G_t = max_{s <= t} ||g_s||,
 *
 * by induction; for rho < gamma < 2 rho the bound grows to rho G_t gamma / (2 rho
 * - gamma), and for gamma >= 2 rho the iteration d -> (1 - gamma/rho) d is not a
 * contraction at all. A step stops with MR_ESTATE ("diverged ... lower gamma or
 * raise rho") when an item's d_{t+1} or objective is not finite or
 * ||d_{t+1}|| > MR_MOREAU_BLOWUP * c * rho * G_t (+ 1e-30, so a zero gradient
 * and a zero iterate do not count), c = max(1, gamma / (2 rho - gamma)) for
 * gamma < 2 rho and 1 beyond: a factor 1000 of headroom over the bound that
 * every plain run with gamma < 2 rho keeps (FISTA's extrapolation may
 * overshoot it by a small factor, not by 1000). The solver then refuses to
 * step again or to return a map.
 *
 * Accelerated (FISTA, Beck & Teboulle 2009, with the gradient restart of
 * O'Donoghue & Candès 2015): the gradient step is taken at the extrapolated
 * point y_t = d_t + ((k_t - 1) / k_{t+1}) (d_t - d_{t-1}); momentum restarts
 * when <y_t - d_{t+1}, d_{t+1} - d_t> > 0.
 */
#include "graph.h"
#include "prox.h"
#include "sampling.h"

#include <math.h>
#include <string.h>

/* ||d_t|| beyond this many times rho * max_s ||g_s|| means the run diverged. */
#define MR_MOREAU_BLOWUP 1000.0

struct mr_moreau {
    mr_moreau_opts o;
    mr_net *net;
    mr_groups *groups;
    mr_sampler sampler;
    int64_t N, d;
    int32_t iter;
    float *delta, *prev, *point; /* d_t, d_{t-1}, the point where g is taken (FISTA: y_t) */
    float *g;                    /* g_t (N*d) */
    float *tail;                 /* sum of tail iterates (N*d) */
    int32_t *tail_count;         /* N: tail iterates summed per item */
    unsigned char *active;       /* N: 1 while the item iterates (not converged) */
    float *score;                /* N: score at the point (mean over samples) */
    double *momentum;            /* N: FISTA k_t per item */
    double *gmax;                /* N: max over iterations of ||g_t|| (the divergence bound) */
    int diverged;                /* 1 after a step found a diverged item: no result */
    unsigned char *converged;    /* N */
    mr_moreau_stats *stats;      /* N */
    mr_tensor delta_view, grad_view;
};

static int check_opts(const mr_moreau_opts *o, const mr_groups *groups, int64_t d)
{
    if (!(o->rho > 0) || !isfinite(o->rho))
        return mr_error(MR_EINVAL, "moreau: rho must be > 0, got %g", (double)o->rho);
    if (!(o->eta >= 0) || !isfinite(o->eta))
        return mr_error(MR_EINVAL, "moreau: eta must be >= 0, got %g", (double)o->eta);
    if (!(o->gamma > 0) || !isfinite(o->gamma))
        return mr_error(MR_EINVAL, "moreau: gamma must be > 0, got %g", (double)o->gamma);
    if (!(o->sigma >= 0) || !isfinite(o->sigma))
        return mr_error(MR_EINVAL, "moreau: sigma must be >= 0, got %g", (double)o->sigma);
    if (!(o->tol >= 0) || !isfinite(o->tol))
        return mr_error(MR_EINVAL, "moreau: tol must be >= 0, got %g", (double)o->tol);
    if (o->T < 1)
        return mr_error(MR_EINVAL, "moreau: T must be >= 1, got %d", o->T);
    if (o->memory_budget < 0)
        return mr_error(MR_EINVAL, "moreau: memory_budget must be >= 0 bytes (0: the global budget), got %lld",
                        (long long)o->memory_budget);
    if (o->m < 0)
        return mr_error(MR_EINVAL, "moreau: m must be >= 0, got %d", o->m);
    /* Iteration t's noise for item n is values (t m + i) d .. of its stream
     * (t < T, i < m): the last offset, below T m d, must fit int64, or the
     * stream would wrap and repeat its first draws. */
    int64_t span;
    if (o->m > 0)
        MR_TRY(MR_SIZE_PROD(&span, "moreau", "noise values per item T*m*d", o->T, o->m, d));
    if (o->K < 1 || o->K > o->T)
        return mr_error(MR_EINVAL, "moreau: K must be in 1..T (%d), got %d", o->T, o->K);
    if (o->reg < MR_REG_NONE || o->reg > MR_REG_GROUP)
        return mr_error(MR_EINVAL, "moreau: unknown regularizer %d", o->reg);
    if (o->output != MR_MG_GRADIENT && o->output != MR_MG_DELTA)
        return mr_error(MR_EINVAL, "moreau: unknown output convention %d", o->output);
    if (o->reg == MR_REG_GROUP && !groups)
        return mr_error(MR_EINVAL, "moreau: group-sparse MoreauGrad needs a group map");
    if (o->reg == MR_REG_GROUP && mr_groups_dim(groups) != d)
        return mr_error(MR_ESHAPE, "moreau: the group map covers %lld entries, an item has %lld",
                        (long long)mr_groups_dim(groups), (long long)d);
    return MR_OK;
}

void mr_moreau_free(mr_moreau *s)
{
    if (!s)
        return;
    mr_sampler_release(&s->sampler);
    mr_free(s->delta);
    mr_free(s->prev);
    mr_free(s->point);
    mr_free(s->g);
    mr_free(s->tail);
    mr_free(s->tail_count);
    mr_free(s->active);
    mr_free(s->score);
    mr_free(s->momentum);
    mr_free(s->gmax);
    mr_free(s->converged);
    mr_free(s->stats);
    mr_free(s);
}

int mr_moreau_new(mr_moreau **out, mr_net *net, const mr_tensor *x, const int32_t *labels,
                  const mr_moreau_opts *opts, mr_groups *groups)
{
    if (!out || !net || !x || !labels || !opts)
        return mr_error(MR_EINVAL, "moreau: out, net, x, labels and opts are required");
    *out = NULL;
    int64_t N = x->shape[0], d = x->numel / N;
    MR_TRY(check_opts(opts, groups, d));
    mr_moreau *s = mr_calloc(sizeof *s);
    if (!s)
        return MR_ENOMEM;
    s->o = *opts;
    s->net = net;
    s->groups = groups;
    s->N = N;
    s->d = d;
    int rc = mr_sampler_init(&s->sampler, net, x, labels, opts->m, opts->chunk, opts->sigma,
                             opts->score_kind, opts->seed, opts->keys, opts->memory_budget);
    if (rc < 0) {
        mr_free(s);
        return rc;
    }
    size_t bytes = (size_t)(N * d) * sizeof(float);
    s->delta = mr_calloc(bytes);
    s->prev = mr_calloc(bytes);
    s->point = mr_calloc(bytes);
    s->g = mr_calloc(bytes);
    s->tail = mr_calloc(bytes);
    s->tail_count = mr_calloc((size_t)N * sizeof(int32_t));
    s->active = mr_calloc((size_t)N);
    s->score = mr_calloc((size_t)N * sizeof(float));
    s->momentum = mr_calloc((size_t)N * sizeof(double));
    s->gmax = mr_calloc((size_t)N * sizeof(double));
    s->converged = mr_calloc((size_t)N);
    s->stats = mr_calloc((size_t)N * sizeof(mr_moreau_stats));
    if (!s->delta || !s->prev || !s->point || !s->g || !s->tail || !s->tail_count || !s->active || !s->score ||
        !s->momentum || !s->gmax || !s->converged || !s->stats) {
        mr_moreau_free(s);
        return MR_ENOMEM;
    }
    for (int64_t n = 0; n < N; n++)
        s->momentum[n] = 1.0, s->active[n] = 1;
    s->delta_view = *x;
    s->delta_view.data = s->delta;
    s->delta_view.owns_data = 0;
    s->grad_view = s->delta_view;
    s->grad_view.data = s->g;
    *out = s;
    return MR_OK;
}

/* Accumulates the mean gradient and score over the noise samples. */
typedef struct grad_ctx {
    mr_moreau *s;
    float inv;
} grad_ctx;

static void grad_visit(void *vctx, int64_t n, int32_t i, const float *g, float score)
{
    grad_ctx *c = vctx;
    float *dst = c->s->g + n * c->s->d;
    if (i == 0) {
        for (int64_t j = 0; j < c->s->d; j++)
            dst[j] = g[j] * c->inv;
        c->s->score[n] = score * c->inv;
    } else {
        for (int64_t j = 0; j < c->s->d; j++)
            dst[j] += g[j] * c->inv;
        c->s->score[n] += score * c->inv;
    }
}

static double norm2(const float *v, int64_t n)
{
    double s = 0;
    for (int64_t j = 0; j < n; j++)
        s += (double)v[j] * v[j];
    return sqrt(s);
}

static double regularizer(mr_moreau *s, const float *dn)
{
    if (s->o.reg == MR_REG_L1) {
        double r = 0;
        for (int64_t j = 0; j < s->d; j++)
            r += fabs(dn[j]);
        return r;
    }
    if (s->o.reg == MR_REG_GROUP)
        return mr_group_norm_sum(dn, s->groups);
    return 0;
}

int mr_moreau_step(mr_moreau *s)
{
    if (!s)
        return mr_error(MR_EINVAL, "moreau_step: solver is NULL");
    const mr_moreau_opts *o = &s->o;
    if (s->diverged)
        return mr_error(MR_ESTATE, "moreau_step: the solver diverged; make a new one with other options");
    if (s->iter >= o->T)
        return 1;
    int64_t N = s->N, d = s->d;
    int accel = o->accelerated != 0;

    /* The point where the gradient is taken: d_t, or FISTA's extrapolation.
     * Converged items are frozen: nothing of theirs changes below. */
    const unsigned char *act = s->active;
    for (int64_t n = 0; n < N; n++) {
        if (!act[n])
            continue;
        if (accel) {
            double k = s->momentum[n], k1 = (1 + sqrt(1 + 4 * k * k)) / 2;
            float beta = (float)((k - 1) / k1);
            for (int64_t j = n * d; j < (n + 1) * d; j++)
                s->point[j] = s->delta[j] + beta * (s->delta[j] - s->prev[j]);
        } else {
            memcpy(s->point + n * d, s->delta + n * d, (size_t)d * sizeof(float));
        }
    }
    grad_ctx c = {s, o->m > 0 ? 1.f / (float)o->m : 1.f};
    MR_TRY(mr_sampler_round(&s->sampler, s->point, (uint64_t)s->iter, act, grad_visit, &c));

    /* Proximal gradient step from the point; keep d_t in prev. */
    float inv_rho = 1.f / o->rho, thr = o->gamma * o->eta;
    for (int64_t n = 0; n < N; n++) {
        if (!act[n])
            continue;
        float *dn = s->delta + n * d, *pn = s->prev + n * d, *yn = s->point + n * d, *gn = s->g + n * d;
        memcpy(pn, dn, (size_t)d * sizeof(float));
        for (int64_t j = 0; j < d; j++)
            dn[j] = yn[j] - o->gamma * (gn[j] + yn[j] * inv_rho);
        if (o->reg == MR_REG_L1)
            mr_soft_threshold(dn, d, thr);
        else if (o->reg == MR_REG_GROUP)
            mr_group_soft_threshold(dn, s->groups, thr);
    }
    s->iter++;

    /* Restart, statistics, convergence, tail average: per item. */
    int all_done = 1;
    int in_tail = s->iter > o->T - o->K;
    for (int64_t n = 0; n < N; n++) {
        if (!act[n])
            continue;
        float *dn = s->delta + n * d, *pn = s->prev + n * d, *yn = s->point + n * d, *gn = s->g + n * d;
        if (accel) {
            double dot = 0;
            for (int64_t j = 0; j < d; j++)
                dot += (double)(yn[j] - dn[j]) * (dn[j] - pn[j]);
            double k = s->momentum[n];
            s->momentum[n] = dot > 0 ? 1.0 : (1 + sqrt(1 + 4 * k * k)) / 2;
        }
        double step = 0, gsm = 0;
        int64_t zeros = 0;
        for (int64_t j = 0; j < d; j++) {
            step += (double)(dn[j] - pn[j]) * (dn[j] - pn[j]);
            double gj = gn[j] + yn[j] * inv_rho;
            gsm += gj * gj;
            zeros += dn[j] == 0.f;
        }
        mr_moreau_stats *st = &s->stats[n];
        double pnorm = norm2(pn, d), dnorm = norm2(dn, d);
        st->iter = s->iter;
        st->score = s->score[n];
        st->delta_norm = (float)dnorm;
        st->step_norm = (float)sqrt(step);
        st->grad_norm = (float)sqrt(gsm);
        st->sparsity = (float)zeros / (float)d;
        double ynorm = norm2(yn, d);
        st->objective = (float)(s->score[n] + ynorm * ynorm / (2 * o->rho) + o->eta * regularizer(s, yn));
        double gnorm = norm2(gn, d);
        if (gnorm > s->gmax[n] || gnorm != gnorm)
            s->gmax[n] = gnorm;
        double slack = o->gamma < 2 * o->rho ? fmax(1.0, o->gamma / (2 * o->rho - o->gamma)) : 1.0;
        double bound = MR_MOREAU_BLOWUP * slack * o->rho * s->gmax[n] + 1e-30;
        if (!isfinite(dnorm) || !isfinite(st->objective) || !(dnorm <= bound)) {
            s->diverged = 1;
            return mr_error(MR_ESTATE,
                            "moreau: the solver diverged at iteration %d, item %lld of %lld (|delta| = %g, bound "
                            "%g, objective %g): lower gamma (now %g) or raise rho (now %g)",
                            s->iter, (long long)n + 1, (long long)N, dnorm, bound, (double)st->objective, (double)o->gamma,
                            (double)o->rho);
        }
        if (in_tail) {
            float *tn = s->tail + n * d;
            for (int64_t j = 0; j < d; j++)
                tn[j] += dn[j];
            s->tail_count[n]++;
        }
        if (o->tol > 0 && st->step_norm <= o->tol * (pnorm > 1 ? pnorm : 1))
            s->converged[n] = 1, s->active[n] = 0;
        st->converged = s->converged[n];
    }
    for (int64_t n = 0; n < N; n++)
        all_done &= s->converged[n];
    return (s->iter >= o->T || (o->tol > 0 && all_done)) ? 1 : 0;
}

int mr_moreau_run(mr_moreau *s)
{
    int rc;
    mr_progress p;
    int32_t first = s->iter;
    mr_progress_begin(&p, s->o.reg == MR_REG_NONE ? "MoreauGrad" : s->o.reg == MR_REG_L1 ? "Sparse MoreauGrad"
                                                                                           : "Group-Sparse MoreauGrad",
                      "iteration", first, s->o.T);
    while ((rc = mr_interrupt_check()) == 0 && (rc = mr_moreau_step(s)) == 0)
        mr_progress_update(&p, s->iter);
    if (rc == 1) /* the last iteration, or every item converged: all the work is done */
        mr_progress_update(&p, s->o.T);
    mr_progress_end(&p);
    return rc < 0 ? rc : MR_OK;
}

int mr_moreau_result(mr_moreau *s, mr_tensor *out)
{
    if (!s || !out)
        return mr_error(MR_EINVAL, "moreau_result: solver or out is NULL");
    if (s->diverged)
        return mr_error(MR_ESTATE, "moreau_result: the solver diverged; no map (lower gamma or raise rho)");
    if (!mr_same_shape(out, &s->delta_view)) {
        char a[64], b[64];
        return mr_error(MR_ESHAPE, "moreau_result: out has shape %s, the batch has shape %s",
                        mr_tensor_shape_str(out, a, sizeof a), mr_tensor_shape_str(&s->delta_view, b, sizeof b));
    }
    /* Per item: the tail mean when its tail was reached, else (it converged
     * earlier) its current iterate. */
    for (int64_t n = 0; n < s->N; n++) {
        int32_t c = s->tail_count[n];
        const float *src = (c > 0 ? s->tail : s->delta) + n * s->d;
        float scale = c > 0 ? 1.f / (float)c : 1.f;
        if (s->o.output == MR_MG_GRADIENT)
            scale *= -1.f / s->o.rho;
        for (int64_t j = 0; j < s->d; j++)
            out->data[n * s->d + j] = src[j] * scale;
    }
    return MR_OK;
}

mr_tensor *mr_moreau_delta_get(mr_moreau *s) { return s ? &s->delta_view : NULL; }
mr_tensor *mr_moreau_grad_get(mr_moreau *s) { return s ? &s->grad_view : NULL; }

int mr_moreau_stats_get(const mr_moreau *s, int item, mr_moreau_stats *out)
{
    if (!s || !out || item < 0 || item >= s->N)
        return mr_error(MR_EINVAL, "moreau_stats: no item %d", item);
    *out = s->stats[item];
    return MR_OK;
}

int mr_moreau_set(mr_moreau *s, float rho, float eta, float gamma)
{
    if (!s)
        return mr_error(MR_EINVAL, "moreau_set: solver is NULL");
    mr_moreau_opts o = s->o;
    o.rho = rho, o.eta = eta, o.gamma = gamma;
    MR_TRY(check_opts(&o, s->groups, s->d));
    /* New knobs define a new problem: items that had converged under the old
     * ones iterate again (each still stops on its own tolerance). */
    if (o.rho != s->o.rho || o.eta != s->o.eta || o.gamma != s->o.gamma)
        for (int64_t n = 0; n < s->N; n++)
            s->converged[n] = 0, s->active[n] = 1;
    s->o = o;
    return MR_OK;
}
