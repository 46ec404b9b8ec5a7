/*
 * oracle.c — scores, input gradients and exact Hessian-vector products of a
 * class score of the network's output z (N, K).
 *
 * With p = softmax(z_n) and e_c the one-hot of class c, the score s and the
 * seed gy = ds/dz of the reverse pass, and the seed's tangent dgy along the
 * output tangent dz (ṗ = p ⊙ (dz − ⟨p, dz⟩)):
 *
 *   logit        s = z_c               gy = e_c              dgy = 0
 *   log-softmax  s = z_c − lse(z)      gy = e_c − p          dgy = −ṗ
 *   softmax      s = p_c               gy = p_c (e_c − p)    dgy = ṗ_c (e_c − p) − p_c ṗ
 *
 * The gradient is one forward + one reverse pass; the HVP one forward pass
 * with tangent v and one reverse pass with its tangent (forward-over-reverse).
 *
 * Both differentiate the inference-mode function f (batchnorm with its running
 * statistics, dropout the identity) whatever mr_net_set_training says, and
 * write no parameter or buffer (README, "Training mode"): an explanation is of
 * the model as it predicts, and must not change it.
 */
#include "graph.h"

#include <math.h>
#include <string.h>

static int check_oracle_args(mr_net *net, const mr_tensor *x, const int32_t *labels, int kind,
                             const char *what)
{
    if (!net || !x)
        return mr_error(MR_EINVAL, "%s: net or x is NULL", what);
    if (!labels)
        return mr_error(MR_EINVAL, "%s: labels are NULL", what);
    if (kind < MR_SCORE_LOGIT || kind > MR_SCORE_SOFTMAX)
        return mr_error(MR_EINVAL, "%s: unknown score kind %d", what, kind);
    int last = mr_net_output_node(net), ndim;
    int64_t d[3];
    if (last < 1)
        return mr_error(MR_ESTATE, "%s: the network has no layers", what);
    MR_TRY(mr_net_node_shape(net, last, &ndim, d));
    if (ndim != 1)
        return mr_error(MR_ESHAPE, "%s: the network output must be (N, K) class scores, got %d dims per sample",
                        what, ndim);
    for (int64_t n = 0; n < x->shape[0]; n++)
        if (labels[n] < 0 || labels[n] >= d[0])
            return mr_error(MR_EINVAL, "%s: label %d of item %lld is outside 0..%lld", what, labels[n],
                            (long long)n, (long long)d[0] - 1);
    return MR_OK;
}

/* Writes the scores and the reverse seed gy (and its tangent dgy when dz is given). */
static void score_seed(const mr_tensor *z, const mr_tensor *dz, const int32_t *labels, int kind,
                       float *scores, mr_tensor *gy, mr_tensor *dgy)
{
    int64_t N = z->shape[0], K = z->shape[1];
    for (int64_t n = 0; n < N; n++) {
        const float *zn = z->data + n * K;
        float *g = gy->data + n * K;
        float *dg = dgy ? dgy->data + n * K : NULL;
        int c = labels[n];
        memset(g, 0, (size_t)K * sizeof(float));
        if (dg)
            memset(dg, 0, (size_t)K * sizeof(float));
        if (kind == MR_SCORE_LOGIT) {
            g[c] = 1.f;
            if (scores)
                scores[n] = zn[c];
            continue;
        }
        double zmax = zn[0];
        for (int64_t k = 1; k < K; k++)
            zmax = zn[k] > zmax ? zn[k] : zmax;
        double sum = 0;
        for (int64_t k = 0; k < K; k++)
            sum += exp((double)zn[k] - zmax);
        double lse = zmax + log(sum);
        double pdz = 0; /* ⟨p, dz⟩ */
        if (dg)
            for (int64_t k = 0; k < K; k++)
                pdz += exp((double)zn[k] - lse) * dz->data[n * K + k];
        double pc = exp((double)zn[c] - lse);
        double dpc = dg ? pc * (dz->data[n * K + c] - pdz) : 0;
        for (int64_t k = 0; k < K; k++) {
            double pk = exp((double)zn[k] - lse);
            double ek = k == c ? 1.0 : 0.0;
            double dpk = dg ? pk * (dz->data[n * K + k] - pdz) : 0;
            if (kind == MR_SCORE_LOG_SOFTMAX) {
                g[k] = (float)(ek - pk);
                if (dg)
                    dg[k] = (float)(-dpk);
            } else {
                g[k] = (float)(pc * (ek - pk));
                if (dg)
                    dg[k] = (float)(dpc * (ek - pk) - pc * dpk);
            }
        }
        if (scores)
            scores[n] = (float)(kind == MR_SCORE_LOG_SOFTMAX ? zn[c] - lse : pc);
    }
}

/* gy / dgy seeds live in the output node's own gradient buffers; score_seed
 * writes them into a small scratch owned by the net: no allocation per call. */
int mr_oracle_grad(mr_net *net, const mr_tensor *x, const int32_t *labels, int score_kind,
                   float *scores, mr_tensor *grad)
{
    MR_TRY(mr_interrupt_check());
    MR_TRY(check_oracle_args(net, x, labels, score_kind, "oracle.grad"));
    if (grad && !mr_same_shape(grad, x)) {
        char a[64], b[64];
        return mr_error(MR_ESHAPE, "oracle.grad: grad has shape %s, x has %s",
                        mr_tensor_shape_str(grad, a, sizeof a), mr_tensor_shape_str(x, b, sizeof b));
    }
    MR_TRY(mr_net_forward_inference(net, x, NULL));
    mr_tensor *z = mr_net_output_view(net, MR_BUF_Y);
    mr_tensor *gy = mr_net_output_view(net, MR_BUF_GY);
    score_seed(z, NULL, labels, score_kind, scores, gy, NULL);
    if (!grad)
        return MR_OK;
    /* backward copies gy into the output node's buffer: same buffer, a no-op move. */
    return mr_net_backward(net, gy, grad, 0);
}

int mr_oracle_hvp(mr_net *net, const mr_tensor *x, const int32_t *labels, int score_kind,
                  const mr_tensor *v, float *scores, mr_tensor *grad, mr_tensor *hv)
{
    MR_TRY(mr_interrupt_check());
    MR_TRY(check_oracle_args(net, x, labels, score_kind, "oracle.hvp"));
    if (!v || !hv)
        return mr_error(MR_EINVAL, "oracle.hvp: v and hv are required");
    if (!mr_same_shape(v, x) || !mr_same_shape(hv, x) || (grad && !mr_same_shape(grad, x))) {
        char a[64], b[64], c[64];
        return mr_error(MR_ESHAPE, "oracle.hvp: v %s and hv %s must be shaped like x %s",
                        mr_tensor_shape_str(v, a, sizeof a), mr_tensor_shape_str(hv, b, sizeof b),
                        mr_tensor_shape_str(x, c, sizeof c));
    }
    MR_TRY(mr_net_jvp_inference(net, x, v, NULL, NULL));
    mr_tensor *z = mr_net_output_view(net, MR_BUF_Y);
    mr_tensor *dz = mr_net_output_view(net, MR_BUF_DY);
    mr_tensor *gy = mr_net_output_view(net, MR_BUF_GY);
    mr_tensor *dgy = mr_net_output_view(net, MR_BUF_DGY);
    score_seed(z, dz, labels, score_kind, scores, gy, dgy);
    return mr_net_hvp_backward(net, gy, dgy, grad, hv);
}
