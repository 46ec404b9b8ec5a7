/* backend/cpu/matmul.c — the CPU kernels of ops/matmul.c (formulas and the
 * invariance rule there). */
#include "cpu.h"

#include "../../ops/matmul.h"

#include <cblas.h>
#include <string.h>

/* Rows of x per task of matmul_param, columns of dW per task of its weight
 * gradient: partitions fixed by the layer's shapes. */
#define MATMUL_ROWS 64
#define MATMUL_COLS 64
#define MATMUL_PAR_MIN 32768

static CBLAS_TRANSPOSE tr(int t) { return t ? CblasTrans : CblasNoTrans; }

/* For every task t < T: C_t (M x Nc) = op(A_t) op(B_t) (+ C_t when acc),
 * with X_t = X + t * sX and row-major leading dims lda, ldb, ldc. C_t is
 * zeroed first when not accumulating (beta = 0 must not read what the
 * workspace held). */
static void gemm_tasks(int64_t T, int64_t M, int64_t Nc, int64_t K, int ta, const float *A,
                       int64_t lda, int64_t sA, int tb, const float *Bm, int64_t ldb, int64_t sB,
                       float *C, int64_t ldc, int64_t sC, int acc)
{
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (T > 1 && T * M * Nc * K > MATMUL_PAR_MIN)
    for (int64_t t = 0; t < T; t++) {
        float *c = C + t * sC;
        if (!acc)
            for (int64_t i = 0; i < M; i++)
                memset(c + i * ldc, 0, (size_t)Nc * sizeof(float));
        cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), (int)M, (int)Nc, (int)K, 1.0f, A + t * sA,
                    (int)lda, Bm + t * sB, (int)ldb, 1.0f, c, (int)ldc);
    }
}

/* ---------------------------------------------------------------- matmul */

/* y = a b (acc 0) or y += a b (acc 1), every (item, product). */
static void mm_ab(const matmul_geom *g, int64_t N, const float *a, const float *b, float *y, int acc)
{
    gemm_tasks(N * g->B, g->n, g->m, g->k, 0, a, g->k, g->n * g->k, 0, b, g->m, g->k * g->m, y,
               g->m, g->n * g->m, acc);
}
/* ga (n, k) = gy b^T (+=). */
static void mm_ga(const matmul_geom *g, int64_t N, const float *gy, const float *b, float *ga, int acc)
{
    gemm_tasks(N * g->B, g->n, g->k, g->m, 0, gy, g->m, g->n * g->m, 1, b, g->m, g->k * g->m, ga,
               g->k, g->n * g->k, acc);
}
/* gb (k, m) = a^T gy (+=). */
static void mm_gb(const matmul_geom *g, int64_t N, const float *a, const float *gy, float *gb, int acc)
{
    gemm_tasks(N * g->B, g->k, g->m, g->n, 1, a, g->k, g->n * g->k, 0, gy, g->m, g->n * g->m, gb,
               g->m, g->k * g->m, acc);
}

static void matmul_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    mm_ab(c->cache, y->shape[0], x[0]->data, x[1]->data, y->data, 0);
}
static void matmul_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                       const mr_tensor *gy, mr_tensor *const *gx)
{
    int64_t N = gy->shape[0];
    if (gx[0])
        mm_ga(c->cache, N, gy->data, x[1]->data, gx[0]->data, 0);
    if (gx[1])
        mm_gb(c->cache, N, x[0]->data, gy->data, gx[1]->data, 0);
}
static void matmul_jvp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *const *dx,
                       const mr_tensor *y, mr_tensor *dy)
{
    int64_t N = dy->shape[0];
    mm_ab(c->cache, N, dx[0]->data, x[1]->data, dy->data, 0);
    mm_ab(c->cache, N, x[0]->data, dx[1]->data, dy->data, 1);
}
static void matmul_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                               const mr_tensor *const *dx, const mr_tensor *y, const mr_tensor *dy,
                               const mr_tensor *gy, const mr_tensor *dgy, mr_tensor *const *dgx)
{
    int64_t N = gy->shape[0];
    if (dgx[0]) {
        mm_ga(c->cache, N, dgy->data, x[1]->data, dgx[0]->data, 0);
        mm_ga(c->cache, N, gy->data, dx[1]->data, dgx[0]->data, 1);
    }
    if (dgx[1]) {
        mm_gb(c->cache, N, x[0]->data, dgy->data, dgx[1]->data, 0);
        mm_gb(c->cache, N, dx[0]->data, gy->data, dgx[1]->data, 1);
    }
}

const mr_op_kernels mr_cpu_matmul = {
    .forward = matmul_forward,
    .vjp = matmul_vjp,
    .jvp = matmul_jvp,
    .vjp_tangent = matmul_vjp_tangent,
};

/* ---------------------------------------------------------- matmul_param */

/* out (rows, ncols) = in (rows, nin) op(W) per item, by blocks of MATMUL_ROWS
 * rows: op(W) = W (k, m) when adjoint is 0 (nin = k, ncols = m), W^T when 1
 * (nin = m, ncols = k). bias (m) is added when not NULL. */
static void mp_apply(const matmul_geom *g, int64_t N, const float *w, const float *bias,
                     const float *in, float *out, int adjoint)
{
    const int64_t nin = adjoint ? g->m : g->k, ncols = adjoint ? g->k : g->m;
    const int64_t nb = (g->rows + MATMUL_ROWS - 1) / MATMUL_ROWS, tasks = N * nb;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (tasks > 1 && N * g->rows * g->k * g->m > MATMUL_PAR_MIN)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t n = t / nb, r0 = (t % nb) * MATMUL_ROWS, rows = MR_MIN(MATMUL_ROWS, g->rows - r0);
        float *o = out + (n * g->rows + r0) * ncols;
        memset(o, 0, (size_t)(rows * ncols) * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, tr(adjoint), (int)rows, (int)ncols, (int)nin, 1.0f,
                    in + (n * g->rows + r0) * nin, (int)nin, w, (int)g->m, 0.0f, o, (int)ncols);
        if (bias)
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < ncols; j++)
                    o[r * ncols + j] += bias[j];
    }
}

static void matmul_param_forward(const mr_op_ctx *c, const mr_tensor *const *x, mr_tensor *y)
{
    mp_apply(c->cache, y->shape[0], c->params[0]->data, c->nparams > 1 ? c->params[1]->data : NULL,
             x[0]->data, y->data, 0);
}

static void matmul_param_vjp(const mr_op_ctx *c, const mr_tensor *const *x, const mr_tensor *y,
                             const mr_tensor *gy, mr_tensor *const *gx)
{
    const matmul_geom *g = c->cache;
    const int64_t N = gy->shape[0], R = N * g->rows;
    if (gx[0])
        mp_apply(g, N, c->params[0]->data, NULL, gy->data, gx[0]->data, 1);
    if (!c->param_grads)
        return;
    mr_tensor *dw = c->param_grads[0], *db = c->nparams > 1 ? c->param_grads[1] : NULL;
    if (dw) { /* dW[:, j0:] += Σ_n x_n^T gy_n[:, j0:], items in order */
        const int64_t nb = (g->m + MATMUL_COLS - 1) / MATMUL_COLS;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (nb > 1 && R * g->k * g->m > MATMUL_PAR_MIN)
        for (int64_t t = 0; t < nb; t++) {
            int64_t j0 = t * MATMUL_COLS, cols = MR_MIN(MATMUL_COLS, g->m - j0);
            for (int64_t n = 0; n < N; n++)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)g->k, (int)cols,
                            (int)g->rows, 1.0f, x[0]->data + n * g->rows * g->k, (int)g->k,
                            gy->data + n * g->rows * g->m + j0, (int)g->m, 1.0f, dw->data + j0,
                            (int)g->m);
        }
    }
    if (db) {
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (R * g->m > MATMUL_PAR_MIN)
        for (int64_t j = 0; j < g->m; j++) {
            double s = 0.0;
            for (int64_t r = 0; r < R; r++)
                s += gy->data[r * g->m + j];
            db->data[j] += (float)s;
        }
    }
}

static void matmul_param_jvp(const mr_op_ctx *c, const mr_tensor *const *x,
                             const mr_tensor *const *dx, const mr_tensor *y, mr_tensor *dy)
{
    mp_apply(c->cache, dy->shape[0], c->params[0]->data, NULL, dx[0]->data, dy->data, 0);
}

static void matmul_param_vjp_tangent(const mr_op_ctx *c, const mr_tensor *const *x,
                                     const mr_tensor *const *dx, const mr_tensor *y,
                                     const mr_tensor *dy, const mr_tensor *gy,
                                     const mr_tensor *dgy, mr_tensor *const *dgx)
{
    if (dgx[0])
        mp_apply(c->cache, dgy->shape[0], c->params[0]->data, NULL, dgy->data, dgx[0]->data, 1);
}

const mr_op_kernels mr_cpu_matmul_param = {
    .forward = matmul_param_forward,
    .vjp = matmul_param_vjp,
    .jvp = matmul_param_jvp,
    .vjp_tangent = matmul_param_vjp_tangent,
};
