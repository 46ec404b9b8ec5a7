/*
 * conv2d_dnnl.c — conv2d's forward and input-gradient passes on oneDNN's JIT
 * kernels (Debian's libdnnl), the engine's default conv backend when it was
 * built with oneDNN. The mathematics is conv2d.c's; only the schedule differs.
 *
 * Why: the im2col + OpenBLAS path tops out at ~45% of this machine's FMA peak
 * (the environment pins OpenBLAS to its AVX2 kernels, and im2col/col2im move
 * every activation kh·kw times); oneDNN's direct kernels work on channel-
 * blocked layouts (nChw16c) and reach ~90% of the peak in executed FLOPs.
 *
 * How a call runs. Tensors stay NCHW everywhere else in the engine, so a call
 *   1. reorders its inputs (x or gy, and the weight) from the engine's plain
 *      layout into the layouts the primitive chose (format "any"),
 *   2. runs the primitive,
 *   3. reorders the result back into the caller's plain buffer.
 * The reorders cost a few percent of the convolution; when the primitive takes
 * a plain layout as is, the reorder is skipped.
 *
 * A plan (primitive, reorders, memory objects) is built once per geometry,
 * batch size, direction and thread count, and kept in a per-thread cache; the
 * blocked copies and oneDNN's scratchpad live in one per-thread arena that
 * only grows. So after the first pass over a network nothing is allocated or
 * compiled. Plans and the arena are kept for the life of the process (a thread
 * that exits leaves its own behind; the engine is driven from one thread, the
 * Lua one). A geometry oneDNN rejects is remembered as unsupported and takes
 * conv2d.c's own path.
 *
 * Determinism and batch invariance: the forward and backward-data kernels
 * sum each output over (input channel, kernel tap) inside one thread, in an
 * order fixed by the blocking, which depends on the shapes and the CPU's
 * instruction set only; the minibatch is never part of a sum (the jit,
 * jit_1x1 and jit_dw kernels block over channels and rows; the gemm kernel
 * that oneDNN 2.6 picks for depthwise convs on 1x1 and 2x2 maps runs one
 * GEMM per image and group). So item n's output is the same bits for every
 * minibatch size, position and thread count: tested on every geometry of
 * tests/batch_invariance_spec.lua and its zoo nets, and checked once on the
 * full-width resnet18_cifar and the shipped resnet_fmnist (minibatches 1, 7
 * and 64, 1 to 3 threads; oneDNN 2.6.3 on avx512_core). The results differ
 * in the last bits from the OpenBLAS path. The engine's OpenMP default team
 * size is 1 (backend/cpu/threads.c); run() sets it to mr_threads() for the length of
 * a call, as oneDNN sizes its regions from it.
 * oneDNN's weight-gradient kernels split the sum over the batch between
 * threads (1 and 3 threads differ in the last bits, tried), so the weight
 * gradient stays on conv2d.c's path, which keeps the engine's promise.
 *
 * Precision (mr_set_precision): in bf16 a plan converts its inputs to
 * bfloat16 in the reorders it already makes and runs oneDNN's bf16 kernels,
 * which accumulate in float32 and write a float32 result (make_pd). The
 * precision is part of the plan key, so fp32 plans are untouched. The bf16
 * kernels block like the float32 ones (no sum split between threads or over
 * the batch): the invariance above holds in bf16 too, tested on the blocked,
 * depthwise and zoo geometries in tests/precision_spec.lua.
 */
#include "cpu.h"
#include "../../ops/conv2d.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int backend_blas; /* 1: mr_set_conv_backend("blas") */
static int precision_bf16; /* 1: mr_set_precision("bf16") */

/* Diagnostics (mr_conv_backend_counts): passes oneDNN computed, and passes it
 * handed back to conv2d.c's path while it was the backend. */
static _Atomic int64_t count_onednn, count_fallback;
/* Of count_onednn, the passes that ran oneDNN's bf16 kernels (mr_conv_bf16_passes). */
static _Atomic int64_t count_bf16;

#ifdef MR_HAVE_DNNL

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

enum { PLAN_FORWARD, PLAN_BACKWARD_DATA };

/* Everything a plan depends on. */
typedef struct plan_key {
    int64_t C, H, W, K, kh, kw, sh, sw, ph, pw, dh, dw, G, N;
    int64_t direction, has_bias, threads;
    int64_t bf16; /* the precision asked for (mr_set_precision): 1 bf16, 0 fp32 */
} plan_key;

/* One tensor a plan moves: the caller's plain buffer and the primitive's copy. */
typedef struct operand {
    int arg;                  /* DNNL_ARG_* of the primitive */
    dnnl_memory_t user;       /* plain layout; data handle set per call */
    dnnl_memory_t inner;      /* the primitive's layout in the arena (NULL: uses user) */
    dnnl_primitive_t reorder; /* user -> inner for inputs, inner -> user for the output */
    size_t offset;            /* arena offset of inner, bytes */
} operand;

typedef struct plan {
    plan_key key;
    int supported; /* 0: oneDNN rejected the geometry; use the engine's path */
    int bf16;      /* 1: the primitive reads bf16 copies of its inputs */
    dnnl_primitive_t prim;
    operand in[2], out;
    dnnl_memory_t bias;       /* forward only, plain (K) */
    dnnl_memory_t scratchpad; /* NULL when the primitive needs none */
    size_t scratch_offset, arena_bytes;
} plan;

/* Per-thread state: the engine, its stream, the plan cache and the arena. */
typedef struct dnnl_state {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int broken; /* the engine or stream could not be made */
    plan **plans;
    int nplans, plan_cap;
    char *arena;
    size_t arena_bytes;
} dnnl_state;

static _Thread_local dnnl_state tls;

/* Most plans a thread keeps; past it the cache is emptied (varying batch sizes). */
#define PLAN_CACHE_MAX 256

static dnnl_state *state(void)
{
    if (!tls.engine && !tls.broken) {
        if (dnnl_engine_create(&tls.engine, dnnl_cpu, 0) != dnnl_success ||
            dnnl_stream_create(&tls.stream, tls.engine, dnnl_stream_default_flags) != dnnl_success)
            tls.broken = 1;
    }
    return tls.broken ? NULL : &tls;
}

static void operand_destroy(operand *o)
{
    if (o->reorder)
        dnnl_primitive_destroy(o->reorder);
    if (o->inner)
        dnnl_memory_destroy(o->inner);
    if (o->user)
        dnnl_memory_destroy(o->user);
}

static void plan_destroy(plan *p)
{
    if (!p)
        return;
    if (p->prim)
        dnnl_primitive_destroy(p->prim);
    operand_destroy(&p->in[0]);
    operand_destroy(&p->in[1]);
    operand_destroy(&p->out);
    if (p->bias)
        dnnl_memory_destroy(p->bias);
    if (p->scratchpad)
        dnnl_memory_destroy(p->scratchpad);
    free(p);
}

/* Arena offsets rounded to cache lines. */
static size_t arena_take(size_t *top, size_t bytes)
{
    size_t at = *top;
    *top += (bytes + 63) & ~(size_t)63;
    return at;
}

/* Sets up operand o: the plain memory `user_md` and, when the primitive wants
 * `inner_md` in another layout, an arena copy plus the reorder between them
 * (user -> inner when is_input, else inner -> user). */
static int operand_init(dnnl_state *s, operand *o, int arg, const dnnl_memory_desc_t *user_md,
                        const dnnl_memory_desc_t *inner_md, int is_input, size_t *top)
{
    o->arg = arg;
    if (dnnl_memory_create(&o->user, user_md, s->engine, DNNL_MEMORY_NONE) != dnnl_success)
        return 0;
    if (dnnl_memory_desc_equal(user_md, inner_md))
        return 1;
    if (dnnl_memory_create(&o->inner, inner_md, s->engine, DNNL_MEMORY_NONE) != dnnl_success)
        return 0;
    o->offset = arena_take(top, dnnl_memory_desc_get_size(inner_md));
    dnnl_primitive_desc_t rpd;
    dnnl_status_t st = is_input
                           ? dnnl_reorder_primitive_desc_create(&rpd, user_md, s->engine, inner_md,
                                                                s->engine, NULL)
                           : dnnl_reorder_primitive_desc_create(&rpd, inner_md, s->engine, user_md,
                                                                s->engine, NULL);
    if (st != dnnl_success)
        return 0;
    st = dnnl_primitive_create(&o->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    return st == dnnl_success;
}

/* The plain descriptors of a geometry: x (N, C, H, W), y (N, K, Ho, Wo), and the
 * weight (K, C/G, kh, kw), seen by oneDNN as (G, K/G, C/G, kh, kw) when grouped;
 * the _any ones leave the layout to the primitive, in float32 and (_bf16) in
 * bfloat16, the type a bf16 plan's inputs are converted to. */
typedef struct plain_mds {
    dnnl_memory_desc_t x, y, w, b;
    dnnl_memory_desc_t x_any, y_any, w_any;
    dnnl_memory_desc_t x_bf16, y_bf16, w_bf16;
} plain_mds;

static int plain_mds_init(plain_mds *m, const conv_geom *g, int64_t N)
{
    dnnl_dims_t xd = {N, g->C, g->H, g->W}, yd = {N, g->K, g->Ho, g->Wo}, bd = {g->K};
    dnnl_dims_t wd = {g->K, g->cg, g->kh, g->kw}, gwd = {g->G, g->kg, g->cg, g->kh, g->kw};
    int grouped = g->G > 1;
    const int64_t *wdims = grouped ? gwd : wd;
    int wnd = grouped ? 5 : 4;
    dnnl_format_tag_t wtag = grouped ? dnnl_goihw : dnnl_oihw;
    return dnnl_memory_desc_init_by_tag(&m->x, 4, xd, dnnl_f32, dnnl_nchw) == dnnl_success &&
           dnnl_memory_desc_init_by_tag(&m->y, 4, yd, dnnl_f32, dnnl_nchw) == dnnl_success &&
           dnnl_memory_desc_init_by_tag(&m->w, wnd, wdims, dnnl_f32, wtag) == dnnl_success &&
           dnnl_memory_desc_init_by_tag(&m->b, 1, bd, dnnl_f32, dnnl_a) == dnnl_success &&
           dnnl_memory_desc_init_by_tag(&m->x_any, 4, xd, dnnl_f32, dnnl_format_tag_any) ==
               dnnl_success &&
           dnnl_memory_desc_init_by_tag(&m->y_any, 4, yd, dnnl_f32, dnnl_format_tag_any) ==
               dnnl_success &&
           dnnl_memory_desc_init_by_tag(&m->w_any, wnd, wdims, dnnl_f32, dnnl_format_tag_any) ==
               dnnl_success &&
           dnnl_memory_desc_init_by_tag(&m->x_bf16, 4, xd, dnnl_bf16, dnnl_format_tag_any) ==
               dnnl_success &&
           dnnl_memory_desc_init_by_tag(&m->y_bf16, 4, yd, dnnl_bf16, dnnl_format_tag_any) ==
               dnnl_success &&
           dnnl_memory_desc_init_by_tag(&m->w_bf16, wnd, wdims, dnnl_bf16, dnnl_format_tag_any) ==
               dnnl_success;
}

/* oneDNN's padding: left = PyTorch's padding; right = whatever makes the output
 * size come out as PyTorch's floor: (Ho - 1) sh + dh (kh - 1) + 1 = H + pl + pr.
 * Dilation counts the gaps (PyTorch's dilation - 1). */
static void conv_dims(const conv_geom *g, dnnl_dims_t strides, dnnl_dims_t dil, dnnl_dims_t pl,
                      dnnl_dims_t pr)
{
    strides[0] = g->sh;
    strides[1] = g->sw;
    dil[0] = g->dh - 1;
    dil[1] = g->dw - 1;
    pl[0] = g->ph;
    pl[1] = g->pw;
    pr[0] = (g->Ho - 1) * g->sh + g->dh * (g->kh - 1) + 1 - g->H - g->ph;
    pr[1] = (g->Wo - 1) * g->sw + g->dw * (g->kw - 1) + 1 - g->W - g->pw;
}

/* Builds the primitive of `direction`; returns its descriptor (the caller
 * destroys it) or NULL when oneDNN has no implementation for it.
 *
 * bf16: the primitive's inputs (x or gy, and w) are bfloat16, its output
 * float32: oneDNN rounds each input to bf16 (round to nearest even, in the
 * reorder from the caller's float32) and its avx512_core_bf16 / AMX kernels
 * multiply pairs of bf16 values and accumulate in float32 (vdpbf16ps). Why
 * not the fpmath attribute (dnnl_fpmath_mode_bf16), which asks for the same
 * with float32 tensors: oneDNN 2.6.3 ignores it on avx512_core_bf16, the
 * primitive stays "jit:avx512_core" in float32, no faster (docs/promises.md,
 * section 9), while bf16 tensors select "jit_bf16:avx512_core_bf16". */
static dnnl_primitive_desc_t make_pd(dnnl_state *s, const conv_geom *g, const plain_mds *m,
                                     int direction, int has_bias, int bf16,
                                     const dnnl_primitive_attr_t attr)
{
    const dnnl_memory_desc_t *x_in = bf16 ? &m->x_bf16 : &m->x_any;
    const dnnl_memory_desc_t *w_in = bf16 ? &m->w_bf16 : &m->w_any;
    const dnnl_memory_desc_t *gy_in = bf16 ? &m->y_bf16 : &m->y_any;
    dnnl_dims_t strides, dil, pl, pr;
    conv_dims(g, strides, dil, pl, pr);
    /* forward_training, also for the forward plan: for inference oneDNN 2.6
     * picks its brgconv kernels on NHWC, whose reorders from NCHW cost more
     * than they save (measured: 185 -> 175 ms per Sparse MoreauGrad iteration
     * of resnet18_cifar at m = 16 with forward_training's nChw16c kernels). */
    dnnl_convolution_desc_t fwd;
    dnnl_primitive_desc_t fwd_pd = NULL, pd = NULL;
    if (dnnl_dilated_convolution_forward_desc_init(
            &fwd, dnnl_forward_training,
            dnnl_convolution_direct, x_in, w_in, has_bias ? &m->b : NULL, &m->y_any,
            strides, dil, pl, pr) != dnnl_success)
        return NULL;
    if (dnnl_primitive_desc_create(&fwd_pd, &fwd, attr, s->engine, NULL) != dnnl_success)
        return NULL;
    if (direction == PLAN_FORWARD)
        return fwd_pd;
    /* The backward-data primitive takes the forward one as a hint. */
    dnnl_convolution_desc_t bwd;
    if (dnnl_dilated_convolution_backward_data_desc_init(&bwd, dnnl_convolution_direct, &m->x_any,
                                                         w_in, gy_in, strides, dil, pl,
                                                         pr) == dnnl_success)
        dnnl_primitive_desc_create(&pd, &bwd, attr, s->engine, fwd_pd);
    dnnl_primitive_desc_destroy(fwd_pd);
    return pd;
}

static plan *plan_build(dnnl_state *s, const plan_key *key, const conv_geom *g)
{
    plan *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->key = *key;
    plain_mds m;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int ok = plain_mds_init(&m, g, key->N) && dnnl_primitive_attr_create(&attr) == dnnl_success &&
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) ==
                 dnnl_success;
    /* A geometry oneDNN has no bf16 kernel for runs its float32 one: counted
     * apart (mr_conv_bf16_passes), never slower than the fp32 mode. */
    if (ok && key->bf16) {
        pd = make_pd(s, g, &m, (int)key->direction, (int)key->has_bias, 1, attr);
        p->bf16 = pd != NULL;
    }
    if (ok && !pd)
        pd = make_pd(s, g, &m, (int)key->direction, (int)key->has_bias, 0, attr);
    ok = ok && pd && dnnl_primitive_create(&p->prim, pd) == dnnl_success;
    size_t top = 0;
    if (ok && key->direction == PLAN_FORWARD) {
        ok = operand_init(s, &p->in[0], DNNL_ARG_SRC, &m.x,
                          dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), 1, &top) &&
             operand_init(s, &p->in[1], DNNL_ARG_WEIGHTS, &m.w,
                          dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), 1, &top) &&
             operand_init(s, &p->out, DNNL_ARG_DST, &m.y,
                          dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), 0, &top);
        if (ok && key->has_bias)
            ok = dnnl_memory_create(&p->bias, &m.b, s->engine, DNNL_MEMORY_NONE) == dnnl_success;
    } else if (ok) {
        ok = operand_init(s, &p->in[0], DNNL_ARG_DIFF_DST, &m.y,
                          dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0), 1, &top) &&
             operand_init(s, &p->in[1], DNNL_ARG_WEIGHTS, &m.w,
                          dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), 1, &top) &&
             operand_init(s, &p->out, DNNL_ARG_DIFF_SRC, &m.x,
                          dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0), 0, &top);
    }
    if (ok) {
        const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        size_t bytes = sp ? dnnl_memory_desc_get_size(sp) : 0;
        if (bytes) {
            p->scratch_offset = arena_take(&top, bytes);
            ok = dnnl_memory_create(&p->scratchpad, sp, s->engine, DNNL_MEMORY_NONE) ==
                 dnnl_success;
        }
    }
    p->arena_bytes = top;
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (!ok) { /* keep only the key: this geometry takes the engine's path */
        plan_destroy(p);
        p = calloc(1, sizeof *p);
        if (p)
            p->key = *key;
        return p;
    }
    p->supported = 1;
    return p;
}

static plan *plan_get(dnnl_state *s, const conv_geom *g, int64_t N, int direction, int has_bias)
{
    plan_key key;
    memset(&key, 0, sizeof key);
    key.C = g->C, key.H = g->H, key.W = g->W, key.K = g->K, key.kh = g->kh, key.kw = g->kw;
    key.sh = g->sh, key.sw = g->sw, key.ph = g->ph, key.pw = g->pw, key.dh = g->dh, key.dw = g->dw;
    key.G = g->G, key.N = N, key.direction = direction, key.has_bias = has_bias;
    key.threads = mr_threads();
    key.bf16 = precision_bf16;
    for (int i = 0; i < s->nplans; i++)
        if (memcmp(&s->plans[i]->key, &key, sizeof key) == 0)
            return s->plans[i];
    if (s->nplans == PLAN_CACHE_MAX) {
        for (int i = 0; i < s->nplans; i++)
            plan_destroy(s->plans[i]);
        s->nplans = 0;
    }
    if (s->nplans == s->plan_cap) {
        int cap = s->plan_cap ? 2 * s->plan_cap : 32;
        plan **grown = realloc(s->plans, (size_t)cap * sizeof *grown);
        if (!grown)
            return NULL;
        s->plans = grown;
        s->plan_cap = cap;
    }
    plan *p = plan_build(s, &key, g);
    if (p)
        s->plans[s->nplans++] = p;
    return p;
}

/* Grows the arena to hold `bytes` (the only allocation, on a plan's first use).
 * Its contents live only within one call, so the old block is freed before the
 * new one is taken: the peak is the larger arena, not both. */
static int arena_reserve(dnnl_state *s, size_t bytes)
{
    if (bytes <= s->arena_bytes)
        return 1;
    mr_free(s->arena);
    s->arena = mr_alloc(bytes);
    mr_cpu_advise_huge(s->arena, bytes);
    s->arena_bytes = s->arena ? bytes : 0;
    return s->arena != NULL;
}

/* Points the operand's memories at this call's buffers; returns the memory
 * the primitive reads or writes, NULL if oneDNN refused a handle. */
static dnnl_memory_t operand_bind(dnnl_state *s, operand *o, void *user)
{
    if (dnnl_memory_set_data_handle(o->user, user) != dnnl_success)
        return NULL;
    if (!o->inner)
        return o->user;
    if (dnnl_memory_set_data_handle(o->inner, s->arena + o->offset) != dnnl_success)
        return NULL;
    return o->inner;
}

static int reorder(dnnl_state *s, dnnl_primitive_t r, dnnl_memory_t from, dnnl_memory_t to)
{
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    return dnnl_primitive_execute(r, s->stream, 2, args) == dnnl_success;
}

/* Runs plan p (its arena reserved): inputs a (x or gy) and w, optional bias,
 * result into out. */
static int plan_run(dnnl_state *s, plan *p, const float *a, const float *w, const float *bias,
                    float *out)
{
    dnnl_memory_t in0 = operand_bind(s, &p->in[0], (void *)a);
    dnnl_memory_t in1 = operand_bind(s, &p->in[1], (void *)w);
    dnnl_memory_t res = operand_bind(s, &p->out, out);
    if (!in0 || !in1 || !res)
        return 0;
    int ok = (!p->in[0].reorder || reorder(s, p->in[0].reorder, p->in[0].user, in0)) &&
             (!p->in[1].reorder || reorder(s, p->in[1].reorder, p->in[1].user, in1));
    dnnl_exec_arg_t args[5];
    int n = 0;
    args[n++] = (dnnl_exec_arg_t){p->in[0].arg, in0};
    args[n++] = (dnnl_exec_arg_t){p->in[1].arg, in1};
    args[n++] = (dnnl_exec_arg_t){p->out.arg, res};
    if (p->bias) {
        ok = ok && dnnl_memory_set_data_handle(p->bias, (void *)bias) == dnnl_success;
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->bias};
    }
    if (p->scratchpad) {
        ok = ok && dnnl_memory_set_data_handle(p->scratchpad, s->arena + p->scratch_offset) ==
                       dnnl_success;
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratchpad};
    }
    ok = ok && dnnl_primitive_execute(p->prim, s->stream, n, args) == dnnl_success;
    ok = ok && (!p->out.reorder || reorder(s, p->out.reorder, res, p->out.user));
    return ok && dnnl_stream_wait(s->stream) == dnnl_success;
}

static int run_plan(const conv_geom *g, int64_t N, int direction, const float *a, const float *w,
                    const float *bias, float *out)
{
    dnnl_state *s = state();
    plan *p = s ? plan_get(s, g, N, direction, bias != NULL) : NULL;
    if (!p || !p->supported || !arena_reserve(s, p->arena_bytes)) {
        count_fallback++; /* out of memory is not remembered: a later call may succeed */
        return 0;
    }
    if (!plan_run(s, p, a, w, bias, out)) {
        p->supported = 0; /* do not retry a failing plan; the caller recomputes */
        count_fallback++;
        return 0;
    }
    count_onednn++;
    if (p->bf16)
        count_bf16++;
    return 1;
}

static int run(const conv_geom *g, int64_t N, int direction, const float *a, const float *w,
               const float *bias, float *out)
{
    if (backend_blas || N <= 0)
        return 0;
    /* oneDNN sizes a primitive for OpenMP's thread count when it creates it,
     * and runs its regions with that count: set it before a plan is built,
     * and back to the engine's default of 1 after (backend/cpu/threads.c: outside
     * the engine's regions OpenBLAS follows it). */
    int outer = omp_get_max_threads();
    omp_set_num_threads(mr_threads());
    int done = run_plan(g, N, direction, a, w, bias, out);
    omp_set_num_threads(outer);
    return done;
}

int mr_conv_dnnl_forward(const conv_geom *g, int64_t N, const float *x, const float *w,
                         const float *bias, float *y)
{
    return run(g, N, PLAN_FORWARD, x, w, bias, y);
}

int mr_conv_dnnl_backward_data(const conv_geom *g, int64_t N, const float *gy, const float *w,
                               float *gx)
{
    /* A first layer (the image's 1 or 3 channels): oneDNN pads the input
     * gradient to 16 channels, 16/C times the work, and the engine's col2im
     * path is faster (a 3x3 conv to 32 channels on 32 images of 28x28: 1.35
     * vs 0.59 ms for 1 channel, 1.59 vs 0.99 for 3; at 8 oneDNN is ahead). */
    if (g->G == 1 && g->C < 8)
        return 0;
    return run(g, N, PLAN_BACKWARD_DATA, gy, w, NULL, gx);
}

static const char *dnnl_isa_name(void)
{
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    default: return "other";
    }
}

const char *mr_conv_backend_info(void)
{
    static char info[96];
    const dnnl_version_t *v = dnnl_version();
    snprintf(info, sizeof info, "conv2d: %s (oneDNN %d.%d.%d, %s)",
             backend_blas ? "blas" : "onednn", v->major, v->minor, v->patch, dnnl_isa_name());
    return info;
}

/* NULL when oneDNN dispatches bf16 kernels on this machine, else the name of
 * the instruction set it dispatches. oneDNN's ISA values are bit sets, each
 * holding the bits of the sets it extends (avx512_core_amx those of
 * avx512_core_bf16), so one mask test accepts avx512_core_bf16 and AMX. The
 * effective ISA is the CPU's, capped by DNNL_MAX_CPU_ISA when that is set. */
static const char *bf16_missing(void)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if ((isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16)
        return NULL;
    return dnnl_isa_name();
}

static const int have_dnnl = 1;

#else /* built without oneDNN */

int mr_conv_dnnl_forward(const conv_geom *g, int64_t N, const float *x, const float *w,
                         const float *bias, float *y)
{
    return 0;
}

int mr_conv_dnnl_backward_data(const conv_geom *g, int64_t N, const float *gy, const float *w,
                               float *gx)
{
    return 0;
}

const char *mr_conv_backend_info(void) { return "conv2d: blas (built without oneDNN)"; }

static const char *bf16_missing(void) { return "none"; }

static const int have_dnnl = 0;

#endif

int mr_set_conv_backend(const char *name)
{
    if (!name)
        return mr_error(MR_EINVAL, "mr_set_conv_backend: name is NULL");
    if (strcmp(name, "blas") == 0) {
        if (precision_bf16)
            return mr_error(MR_ESTATE, "conv backend 'blas' has no bf16 kernels and the precision "
                                       "is 'bf16' (set the precision to 'fp32' first)");
        backend_blas = 1;
        return MR_OK;
    }
    if (strcmp(name, "onednn") == 0) {
        if (!have_dnnl)
            return mr_error(MR_EINVAL,
                            "conv backend 'onednn': this build has no oneDNN (install libdnnl-dev "
                            "and rebuild)");
        backend_blas = 0;
        return MR_OK;
    }
    return mr_error(MR_ENOTFOUND, "unknown conv backend '%s' (expected 'onednn' or 'blas')", name);
}

const char *mr_get_conv_backend(void) { return have_dnnl && !backend_blas ? "onednn" : "blas"; }

void mr_conv_backend_counts(int64_t *onednn, int64_t *fallbacks)
{
    if (onednn)
        *onednn = count_onednn;
    if (fallbacks)
        *fallbacks = count_fallback;
}

int mr_set_precision(const char *name)
{
    if (!name)
        return mr_error(MR_EINVAL, "mr_set_precision: name is NULL");
    if (strcmp(name, "fp32") == 0) {
        precision_bf16 = 0;
        return MR_OK;
    }
    if (strcmp(name, "bf16") != 0)
        return mr_error(MR_ENOTFOUND, "unknown precision '%s' (expected 'fp32' or 'bf16')", name);
    if (!have_dnnl)
        return mr_error(MR_EINVAL, "precision 'bf16' runs on oneDNN's bf16 kernels and this build "
                                   "has no oneDNN (install libdnnl-dev and rebuild)");
    const char *isa = bf16_missing();
    if (isa)
        return mr_error(MR_EINVAL,
                        "precision 'bf16' needs AVX-512 BF16 or AMX instructions "
                        "(oneDNN's avx512_core_bf16 or avx512_core_amx); oneDNN dispatches %s "
                        "on this machine (the CPU lacks them, or DNNL_MAX_CPU_ISA caps them)",
                        isa);
    if (backend_blas)
        return mr_error(MR_ESTATE, "precision 'bf16' runs on the conv backend 'onednn' and the "
                                   "backend is 'blas' (set the conv backend to 'onednn' first)");
    precision_bf16 = 1;
    return MR_OK;
}

const char *mr_get_precision(void) { return precision_bf16 ? "bf16" : "fp32"; }

int64_t mr_conv_bf16_passes(void) { return count_bf16; }
