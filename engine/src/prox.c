/*
 * prox.c — proximal operators and projections.
 *
 *   ST_a(v)_i  = sign(v_i) max(|v_i| - a, 0)              prox of a ||.||_1
 *   GST_a(v)_S = max(1 - a / ||v_S||_2, 0) v_S             prox of a sum_S ||v_S||_2
 *   P_ball(x)  = c + (x - c) min(1, r / ||x - c||_2)      L2 ball of radius r around c
 *   P_box(x)   = min(max(x, lo), hi)
 */
#include "prox.h"

#include <math.h>
#include <string.h>

struct mr_groups {
    int64_t d;
    int32_t ngroups;
    int32_t *map;
    double *norms; /* scratch: squared norms per group */
};

static int groups_alloc(mr_groups **out, int64_t d, int32_t ngroups)
{
    int64_t map_bytes, norm_bytes;
    MR_TRY(mr_bytes_of(&map_bytes, "groups", "map", d, (int64_t)sizeof(int32_t)));
    MR_TRY(mr_bytes_of(&norm_bytes, "groups", "norms", ngroups, (int64_t)sizeof(double)));
    mr_groups *g = mr_calloc(sizeof *g);
    if (!g)
        return MR_ENOMEM;
    g->d = d;
    g->ngroups = ngroups;
    g->map = mr_alloc((size_t)map_bytes);
    g->norms = mr_alloc((size_t)norm_bytes);
    if (!g->map || !g->norms) {
        mr_groups_free(g);
        return MR_ENOMEM;
    }
    *out = g;
    return MR_OK;
}

int mr_groups_new_blocks(mr_groups **out, int64_t C, int64_t H, int64_t W, int64_t gh, int64_t gw)
{
    if (!out)
        return mr_error(MR_EINVAL, "groups: out is NULL");
    *out = NULL;
    if (C < 1 || H < 1 || W < 1 || gh < 1 || gw < 1)
        return mr_error(MR_EINVAL, "groups: sample %lldx%lldx%lld and block %lldx%lld must be positive",
                        (long long)C, (long long)H, (long long)W, (long long)gh, (long long)gw);
    int64_t bh = (H + gh - 1) / gh, bw = (W + gw - 1) / gw, HW, d, nb;
    if (mr_size_mul(H, W, &HW) || mr_size_mul(C, HW, &d) || d > INT32_MAX || mr_size_mul(bh, bw, &nb) ||
        nb > INT32_MAX)
        return mr_error(MR_EINVAL, "groups: sample %lldx%lldx%lld is too large (at most 2^31 - 1 entries)",
                        (long long)C, (long long)H, (long long)W);
    mr_groups *g;
    MR_TRY(groups_alloc(&g, d, (int32_t)nb));
    for (int64_t c = 0; c < C; c++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t w = 0; w < W; w++)
                g->map[(c * H + h) * W + w] = (int32_t)((h / gh) * bw + w / gw);
    *out = g;
    return MR_OK;
}

int mr_groups_new(mr_groups **out, int64_t d, const int32_t *map, int32_t ngroups)
{
    if (!out || !map)
        return mr_error(MR_EINVAL, "groups: out or map is NULL");
    *out = NULL;
    if (d < 1 || ngroups < 1)
        return mr_error(MR_EINVAL, "groups: need d >= 1 and ngroups >= 1, got %lld and %d", (long long)d,
                        ngroups);
    for (int64_t j = 0; j < d; j++)
        if (map[j] < 0 || map[j] >= ngroups)
            return mr_error(MR_EINVAL, "groups: entry %lld maps to group %d, outside 0..%d", (long long)j,
                            map[j], ngroups - 1);
    mr_groups *g;
    MR_TRY(groups_alloc(&g, d, ngroups));
    memcpy(g->map, map, (size_t)d * sizeof(int32_t));
    *out = g;
    return MR_OK;
}

void mr_groups_free(mr_groups *g)
{
    if (!g)
        return;
    mr_free(g->map);
    mr_free(g->norms);
    mr_free(g);
}

int32_t mr_groups_count(const mr_groups *g) { return g ? g->ngroups : 0; }
int64_t mr_groups_dim(const mr_groups *g) { return g ? g->d : 0; }

void mr_soft_threshold(float *v, int64_t n, float a)
{
    for (int64_t i = 0; i < n; i++) {
        float x = v[i];
        v[i] = x > a ? x - a : (x < -a ? x + a : 0.f);
    }
}

static void group_sq_norms(const float *v, mr_groups *g)
{
    memset(g->norms, 0, (size_t)g->ngroups * sizeof(double));
    for (int64_t j = 0; j < g->d; j++)
        g->norms[g->map[j]] += (double)v[j] * v[j];
}

double mr_group_norm_sum(const float *v, mr_groups *g)
{
    group_sq_norms(v, g);
    double r = 0;
    for (int32_t k = 0; k < g->ngroups; k++)
        r += sqrt(g->norms[k]);
    return r;
}

void mr_group_soft_threshold(float *v, mr_groups *g, float a)
{
    group_sq_norms(v, g);
    for (int32_t k = 0; k < g->ngroups; k++) {
        double norm = sqrt(g->norms[k]);
        g->norms[k] = norm > a ? 1.0 - a / norm : 0.0; /* the group's scale */
    }
    for (int64_t j = 0; j < g->d; j++)
        v[j] = (float)(v[j] * g->norms[g->map[j]]);
}

int mr_prox_soft_threshold(mr_tensor *v, float a)
{
    if (!v)
        return mr_error(MR_EINVAL, "soft_threshold: tensor is NULL");
    if (!(a >= 0) || !isfinite(a))
        return mr_error(MR_EINVAL, "soft_threshold: threshold must be finite and >= 0, got %g", (double)a);
    mr_soft_threshold(v->data, v->numel, a);
    return MR_OK;
}

int mr_prox_group_soft_threshold(mr_tensor *v, mr_groups *g, float a)
{
    if (!v || !g)
        return mr_error(MR_EINVAL, "group_soft_threshold: tensor or groups is NULL");
    if (!(a >= 0) || !isfinite(a))
        return mr_error(MR_EINVAL, "group_soft_threshold: threshold must be finite and >= 0, got %g",
                        (double)a);
    int64_t N = v->shape[0], covered;
    if (mr_size_mul(N, g->d, &covered) || v->numel != covered) {
        char buf[64];
        return mr_error(MR_ESHAPE, "group_soft_threshold: the group map covers %lld entries per item, tensor %s has %lld",
                        (long long)g->d, mr_tensor_shape_str(v, buf, sizeof buf), (long long)(v->numel / N));
    }
    for (int64_t n = 0; n < N; n++)
        mr_group_soft_threshold(v->data + n * g->d, g, a);
    return MR_OK;
}

int mr_proj_l2_ball(mr_tensor *x, const mr_tensor *center, float radius)
{
    if (!x || !center)
        return mr_error(MR_EINVAL, "proj_l2_ball: tensor is NULL");
    if (!mr_same_shape(x, center)) {
        char a[64], b[64];
        return mr_error(MR_ESHAPE, "proj_l2_ball: x %s and center %s differ", mr_tensor_shape_str(x, a, sizeof a),
                        mr_tensor_shape_str(center, b, sizeof b));
    }
    if (!(radius >= 0) || !isfinite(radius))
        return mr_error(MR_EINVAL, "proj_l2_ball: radius must be finite and >= 0, got %g", (double)radius);
    int64_t N = x->shape[0], d = x->numel / N;
    for (int64_t n = 0; n < N; n++) {
        float *p = x->data + n * d;
        const float *c = center->data + n * d;
        double s = 0;
        for (int64_t j = 0; j < d; j++)
            s += (double)(p[j] - c[j]) * (p[j] - c[j]);
        double norm = sqrt(s);
        if (norm > radius) {
            double k = radius / norm;
            for (int64_t j = 0; j < d; j++)
                p[j] = (float)(c[j] + (p[j] - c[j]) * k);
        }
    }
    return MR_OK;
}

int mr_proj_box(mr_tensor *x, float lo, float hi)
{
    if (!x)
        return mr_error(MR_EINVAL, "proj_box: tensor is NULL");
    if (!(lo <= hi))
        return mr_error(MR_EINVAL, "proj_box: need lo <= hi, got [%g, %g]", (double)lo, (double)hi);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = x->data[i] < lo ? lo : (x->data[i] > hi ? hi : x->data[i]);
    return MR_OK;
}
