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
 *
 * The kernels (the forward and input-gradient passes on oneDNN or im2col +
 * OpenBLAS, the weight gradient, their invariance) are the CPU backend's:
 * backend/cpu/conv2d.c.
 */
#include "conv2d.h"

#include <string.h>

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
    /* The sizes below come from the weight's shape and the attributes: products
     * overflow-checked, and a kernel row Cin/groups*kh*kw (an OpenBLAS int
     * dimension of the GEMM path) within INT_MAX. */
    int64_t eh, ew, kgr;
    MR_TRY(MR_SIZE_PROD(&eh, "conv2d", "dilation*(kh-1)", g->dh, g->kh - 1));
    MR_TRY(MR_SIZE_PROD(&ew, "conv2d", "dilation*(kw-1)", g->dw, g->kw - 1));
    eh++, ew++;
    MR_TRY(MR_SIZE_PROD(&kgr, "conv2d", "Cin/groups*kh*kw", g->cg, g->kh, g->kw));
    MR_TRY(mr_size_int("conv2d", "Cin/groups*kh*kw", kgr));
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

/* ------------------------------------------------------------- infer */

static int conv_infer(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                      int nparams, mr_shape *out, void *cache)
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
    memcpy(cache, &g, sizeof g); /* the kernels' geometry, once per node */
    out->ndim = 3;
    out->d[0] = g.K;
    out->d[1] = g.Ho;
    out->d[2] = g.Wo;
    return MR_OK;
}

/* Scratch of the GEMM path for a batch of N, from the cached geometry: the
 * larger of the weight gradient's chunk and the per-item slots,
 *   gemm_chunk(N) per <= min(N per, max(per, cap)),
 *   item_slots(N) slot <= min(N slot, max(cap, least slot)). */
static size_t conv_scratch_floats(const mr_op_attrs *a, const mr_shape *in, mr_tensor *const *params,
                                  int nparams, const mr_shape *out, const void *cache, int64_t N)
{
    const conv_geom *g = cache;
    if (conv_path(g) != PATH_GEMM)
        return 0;
    int64_t per = gemm_per_sample(g), slot = item_slot(g);
    int64_t least = MR_MIN(omp_get_num_procs(), CONV_MIN_SLOTS);
    /* N is a plain number in mr_net_workspace_estimate: the products saturate, never wrap. */
    int64_t n_per, n_slot, least_slot;
    if (mr_size_mul(N, per, &n_per))
        n_per = INT64_MAX;
    if (mr_size_mul(N, slot, &n_slot))
        n_slot = INT64_MAX;
    if (mr_size_mul(least, slot, &least_slot))
        least_slot = INT64_MAX;
    return (size_t)MR_MAX(MR_MIN(n_per, MR_MAX(per, CONV_SCRATCH_CAP)),
                          MR_MIN(n_slot, MR_MAX(CONV_SCRATCH_CAP, least_slot)));
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
};
