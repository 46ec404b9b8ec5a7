/*
 * train.c — what training needs beyond the network's passes: the
 * cross-entropy loss of class scores and the optimizers that update weights.
 *
 * Cross-entropy over logits z (N, K), labels y_n, label smoothing e, as
 * PyTorch's nn.CrossEntropyLoss(label_smoothing=e) with mean reduction:
 *
 *   lse_n  = max_k z_nk + log sum_k exp(z_nk - max_k z_nk)
 *   p_nk   = exp(z_nk - lse_n)
 *   q_nk   = (1 - e) [k = y_n] + e / K                 (the smoothed target)
 *   loss   = (1/N) sum_n sum_k q_nk (lse_n - z_nk)
 *          = (1/N) sum_n [ (1 - e)(lse_n - z_ny) + (e/K) sum_k (lse_n - z_nk) ]
 *   dloss/dz_nk = (p_nk - q_nk) / N
 *
 * All sums run in double, item by item in a fixed order.
 *
 * Optimizers, as torch.optim (every MR_PARAM_WEIGHT parameter w with gradient
 * g; buffers such as running statistics are never touched; t = 1, 2, ...):
 *
 *   SGD (momentum mu, weight decay wd, dampening 0):
 *     d = g + wd w
 *     b = d                    (t = 1)       b = mu b + d    (t > 1)     [mu > 0]
 *     w -= lr (d + mu b)       (nesterov)    w -= lr b       (otherwise); mu = 0: w -= lr d
 *
 *   Adam (beta1, beta2, eps 1e-8, L2 weight decay wd):
 *     d = g + wd w
 *     m = beta1 m + (1 - beta1) d,    v = beta2 v + (1 - beta2) d^2
 *     w -= (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 *
 * Each element is updated in double and stored as float32. The state buffers
 * are allocated once, by mr_optim_new; a step allocates nothing.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ the loss */

static int check_logits(const mr_tensor *logits, const int32_t *labels, const char *what,
                        int64_t *N, int64_t *K)
{
    char buf[64];
    if (!logits || !logits->data)
        return mr_error(MR_EINVAL, "%s: logits are NULL", what);
    if (!labels)
        return mr_error(MR_EINVAL, "%s: labels are NULL", what);
    if (logits->ndim != 2)
        return mr_error(MR_ESHAPE, "%s: logits must be (N, K), got %s", what,
                        mr_tensor_shape_str(logits, buf, sizeof buf));
    *N = logits->shape[0];
    *K = logits->shape[1];
    for (int64_t n = 0; n < *N; n++)
        if (labels[n] < 0 || labels[n] >= *K)
            return mr_error(MR_EINVAL, "%s: label %d of item %lld is outside 0..%lld", what,
                            (int)labels[n], (long long)n, (long long)*K - 1);
    return MR_OK;
}

int mr_cross_entropy(float *loss, mr_tensor *grad_logits, const mr_tensor *logits,
                     const int32_t *labels, float label_smoothing)
{
    const char *what = "cross_entropy";
    int64_t N, K;
    MR_TRY(check_logits(logits, labels, what, &N, &K));
    if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
        return mr_error(MR_EINVAL, "%s: label_smoothing %g is outside [0, 1]", what,
                        (double)label_smoothing);
    if (grad_logits) {
        char a[64], b[64];
        if (!mr_same_shape(grad_logits, logits))
            return mr_error(MR_ESHAPE, "%s: grad_logits has shape %s, logits %s", what,
                            mr_tensor_shape_str(grad_logits, a, sizeof a),
                            mr_tensor_shape_str(logits, b, sizeof b));
    }
    const double e = label_smoothing, on = 1.0 - e, off = e / (double)K;
    double total = 0.0;
    for (int64_t n = 0; n < N; n++) {
        const float *z = logits->data + n * K;
        double zmax = z[0];
        for (int64_t k = 1; k < K; k++)
            zmax = z[k] > zmax ? z[k] : zmax;
        double sum = 0.0, zsum = 0.0;
        for (int64_t k = 0; k < K; k++) {
            sum += exp((double)z[k] - zmax);
            zsum += z[k];
        }
        double lse = zmax + log(sum);
        int y = labels[n];
        double ln = on * (lse - (double)z[y]);
        if (e != 0.0)
            ln += off * ((double)K * lse - zsum);
        if (!isfinite(ln))
            return mr_error(MR_EINVAL, "%s: loss is NaN (item %lld has a non-finite logit)", what,
                            (long long)n);
        total += ln;
        if (grad_logits) {
            float *g = grad_logits->data + n * K;
            for (int64_t k = 0; k < K; k++) {
                double q = (k == y ? on : 0.0) + off;
                g[k] = (float)((exp((double)z[k] - lse) - q) / (double)N);
            }
        }
    }
    if (loss)
        *loss = (float)(total / (double)N);
    return MR_OK;
}

int mr_accuracy_count(int64_t *correct, const mr_tensor *logits, const int32_t *labels)
{
    int64_t N, K;
    if (!correct)
        return mr_error(MR_EINVAL, "accuracy_count: correct is NULL");
    MR_TRY(check_logits(logits, labels, "accuracy_count", &N, &K));
    int64_t c = 0;
    for (int64_t n = 0; n < N; n++) {
        const float *z = logits->data + n * K;
        int64_t best = 0; /* the first of tied maxima, as torch.argmax */
        for (int64_t k = 1; k < K; k++)
            if (z[k] > z[best])
                best = k;
        c += best == labels[n];
    }
    *correct = c;
    return MR_OK;
}

/* ------------------------------------------------------- optimizers */

struct mr_optim {
    mr_net *net;   /* borrowed: must outlive the optimizer */
    int kind;
    double lr, beta1, beta2, wd, eps;
    int nesterov;
    int64_t t;     /* steps taken */
    int nparams_net; /* the net's parameter count at creation */
    int n;         /* trained parameters */
    int *ids;      /* their ids in the net */
    float **s1;    /* SGD momentum buffer / Adam first moment (NULL for plain SGD) */
    float **s2;    /* Adam second moment */
};

void mr_optim_free(mr_optim *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n; i++) {
        if (o->s1)
            mr_free(o->s1[i]);
        if (o->s2)
            mr_free(o->s2[i]);
    }
    mr_free(o->s1);
    mr_free(o->s2);
    mr_free(o->ids);
    mr_free(o);
}

static int check_hyper(int kind, double lr, double m, double b2, double wd, int nesterov)
{
    if (!(lr >= 0.0) || !isfinite(lr))
        return mr_error(MR_EINVAL, "optim: learning rate %g must be finite and >= 0", lr);
    if (!(wd >= 0.0) || !isfinite(wd))
        return mr_error(MR_EINVAL, "optim: weight decay %g must be finite and >= 0", wd);
    if (kind == MR_OPTIM_SGD) {
        if (!(m >= 0.0 && m < 1.0))
            return mr_error(MR_EINVAL, "optim: SGD momentum %g is outside [0, 1)", m);
        if (nesterov && m == 0.0)
            return mr_error(MR_EINVAL, "optim: Nesterov momentum needs momentum > 0");
    } else if (kind == MR_OPTIM_ADAM) {
        if (!(m >= 0.0 && m < 1.0))
            return mr_error(MR_EINVAL, "optim: Adam beta1 %g is outside [0, 1)", m);
        if (!(b2 >= 0.0 && b2 < 1.0))
            return mr_error(MR_EINVAL, "optim: Adam beta2 %g is outside [0, 1)", b2);
        if (nesterov)
            return mr_error(MR_EINVAL, "optim: Adam has no Nesterov option");
    } else {
        return mr_error(MR_EINVAL, "optim: unknown kind %d (MR_OPTIM_SGD or MR_OPTIM_ADAM)", kind);
    }
    return MR_OK;
}

int mr_optim_new(mr_optim **out, mr_net *net, int kind, float lr, float momentum_or_beta1,
                 float beta2, float weight_decay, int nesterov)
{
    if (!out)
        return mr_error(MR_EINVAL, "optim_new: out is NULL");
    *out = NULL;
    if (!net)
        return mr_error(MR_EINVAL, "optim_new: net is NULL");
    MR_TRY(check_hyper(kind, lr, momentum_or_beta1, beta2, weight_decay, nesterov));
    int np = mr_net_param_count(net), n = 0;
    for (int i = 0; i < np; i++)
        n += mr_net_param_kind(net, i) == MR_PARAM_WEIGHT;
    if (n == 0)
        return mr_error(MR_EINVAL, "optim_new: the network has no weights to train");
    mr_optim *o = mr_calloc(sizeof *o);
    if (!o)
        return MR_ENOMEM;
    o->net = net;
    o->kind = kind;
    o->lr = lr;
    o->beta1 = momentum_or_beta1;
    o->beta2 = beta2;
    o->wd = weight_decay;
    o->eps = 1e-8;
    o->nesterov = nesterov != 0;
    o->nparams_net = np;
    o->ids = mr_calloc((size_t)n * sizeof(int));
    int need1 = kind == MR_OPTIM_ADAM || momentum_or_beta1 != 0.0f;
    int need2 = kind == MR_OPTIM_ADAM;
    if (!o->ids || (need1 && !(o->s1 = mr_calloc((size_t)n * sizeof(float *)))) ||
        (need2 && !(o->s2 = mr_calloc((size_t)n * sizeof(float *))))) {
        mr_optim_free(o);
        return MR_ENOMEM;
    }
    for (int i = 0; i < np; i++) {
        if (mr_net_param_kind(net, i) != MR_PARAM_WEIGHT)
            continue;
        o->ids[o->n] = i;
        size_t bytes = (size_t)mr_net_param_get(net, i)->numel * sizeof(float);
        o->n++; /* counted before allocating so that free sees the slot */
        if ((o->s1 && !(o->s1[o->n - 1] = mr_calloc(bytes))) ||
            (o->s2 && !(o->s2[o->n - 1] = mr_calloc(bytes)))) {
            mr_optim_free(o);
            return mr_error(MR_ENOMEM, "optim_new: out of memory for the state of '%s'",
                            mr_net_param_name(net, i));
        }
    }
    *out = o;
    return MR_OK;
}

int mr_optim_set_lr(mr_optim *o, float lr)
{
    if (!o)
        return mr_error(MR_EINVAL, "optim_set_lr: optimizer is NULL");
    if (!(lr >= 0.0f) || !isfinite(lr))
        return mr_error(MR_EINVAL, "optim_set_lr: learning rate %g must be finite and >= 0",
                        (double)lr);
    o->lr = lr;
    return MR_OK;
}

float mr_optim_get_lr(const mr_optim *o) { return o ? (float)o->lr : 0.0f; }

int64_t mr_optim_steps(const mr_optim *o) { return o ? o->t : 0; }

static void sgd_update(const mr_optim *o, float *w, const float *g, float *buf, int64_t n)
{
    const double lr = o->lr, mu = o->beta1, wd = o->wd;
    const int first = o->t == 1, nest = o->nesterov;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
        double d = (double)g[i] + wd * (double)w[i];
        if (buf) {
            double b = first ? d : mu * (double)buf[i] + d;
            buf[i] = (float)b;
            d = nest ? d + mu * (double)buf[i] : (double)buf[i];
        }
        w[i] = (float)((double)w[i] - lr * d);
    }
}

static void adam_update(const mr_optim *o, float *w, const float *g, float *m, float *v, int64_t n)
{
    const double b1 = o->beta1, b2 = o->beta2, wd = o->wd, eps = o->eps;
    const double step = o->lr / (1.0 - pow(b1, (double)o->t));
    const double bc2 = sqrt(1.0 - pow(b2, (double)o->t));
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
        double d = (double)g[i] + wd * (double)w[i];
        m[i] = (float)(b1 * (double)m[i] + (1.0 - b1) * d);
        v[i] = (float)(b2 * (double)v[i] + (1.0 - b2) * d * d);
        w[i] = (float)((double)w[i] - step * (double)m[i] / (sqrt((double)v[i]) / bc2 + eps));
    }
}

int mr_optim_step(mr_optim *o)
{
    if (!o)
        return mr_error(MR_EINVAL, "optim_step: optimizer is NULL");
    MR_TRY(mr_interrupt_check());
    if (mr_net_param_count(o->net) != o->nparams_net)
        return mr_error(MR_ESTATE, "optim_step: the network has %d parameters, it had %d when the "
                        "optimizer was made", mr_net_param_count(o->net), o->nparams_net);
    /* A non-finite gradient would poison the weights for good: refuse the whole
     * step before touching anything. */
    for (int i = 0; i < o->n; i++) {
        const mr_tensor *g = mr_net_param_grad_get(o->net, o->ids[i]);
        for (int64_t k = 0; k < g->numel; k++)
            if (!isfinite(g->data[k]))
                return mr_error(MR_EINVAL, "optim_step: the gradient of '%s' is %s at entry %lld",
                                mr_net_param_name(o->net, o->ids[i]),
                                isnan(g->data[k]) ? "NaN" : "infinite", (long long)k);
    }
    o->t++;
    for (int i = 0; i < o->n; i++) {
        mr_tensor *w = mr_net_param_get(o->net, o->ids[i]);
        const mr_tensor *g = mr_net_param_grad_get(o->net, o->ids[i]);
        if (o->kind == MR_OPTIM_SGD)
            sgd_update(o, w->data, g->data, o->s1 ? o->s1[i] : NULL, w->numel);
        else
            adam_update(o, w->data, g->data, o->s1[i], o->s2[i], w->numel);
    }
    return MR_OK;
}
