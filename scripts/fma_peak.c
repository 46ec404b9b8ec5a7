/*
 * fma_peak.c — the machine's FP32 fused-multiply-add peak, measured.
 *
 * scripts/bench.lua compiles it on the fly:
 *     cc -O2 -march=native -fopenmp scripts/fma_peak.c -o fma_peak
 *     ./fma_peak 1 2          # thread counts to measure
 * and prints, for each instruction set the CPU has and each thread count, one
 * line "ISA THREADS GFLOPS" (ISA = avx512 | avx2).
 *
 * Each thread runs NACC independent dependency chains acc = acc * a + b on
 * vector registers: enough chains to cover the FMA latency (4-5 cycles) times
 * the number of FMA pipes (2), so the loop is bound by FMA throughput, not
 * latency. One FMA on a vector of L floats counts 2·L floating-point
 * operations. a is just below 1 and b tiny, so the accumulators converge to
 * b / (1 − a) and never overflow or go denormal. The best of a few timed runs
 * is reported (other processes on the machine only ever make it slower).
 */
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static volatile float sink; /* keeps the results alive */

/* 16 chains × 16 floats: 512 flops per iteration. */
__attribute__((target("avx512f"))) static void chains_avx512(long iters)
{
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    __m512 c0 = _mm512_set1_ps(0.0f), c1 = _mm512_set1_ps(0.01f), c2 = _mm512_set1_ps(0.02f),
           c3 = _mm512_set1_ps(0.03f), c4 = _mm512_set1_ps(0.04f), c5 = _mm512_set1_ps(0.05f),
           c6 = _mm512_set1_ps(0.06f), c7 = _mm512_set1_ps(0.07f), c8 = _mm512_set1_ps(0.08f),
           c9 = _mm512_set1_ps(0.09f), c10 = _mm512_set1_ps(0.10f), c11 = _mm512_set1_ps(0.11f),
           c12 = _mm512_set1_ps(0.12f), c13 = _mm512_set1_ps(0.13f), c14 = _mm512_set1_ps(0.14f),
           c15 = _mm512_set1_ps(0.15f);
    for (long i = 0; i < iters; i++) {
        c0 = _mm512_fmadd_ps(c0, a, b);   c1 = _mm512_fmadd_ps(c1, a, b);
        c2 = _mm512_fmadd_ps(c2, a, b);   c3 = _mm512_fmadd_ps(c3, a, b);
        c4 = _mm512_fmadd_ps(c4, a, b);   c5 = _mm512_fmadd_ps(c5, a, b);
        c6 = _mm512_fmadd_ps(c6, a, b);   c7 = _mm512_fmadd_ps(c7, a, b);
        c8 = _mm512_fmadd_ps(c8, a, b);   c9 = _mm512_fmadd_ps(c9, a, b);
        c10 = _mm512_fmadd_ps(c10, a, b); c11 = _mm512_fmadd_ps(c11, a, b);
        c12 = _mm512_fmadd_ps(c12, a, b); c13 = _mm512_fmadd_ps(c13, a, b);
        c14 = _mm512_fmadd_ps(c14, a, b); c15 = _mm512_fmadd_ps(c15, a, b);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                                       _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
    sink = _mm512_reduce_add_ps(s);
}

/* 12 chains × 8 floats (16 ymm registers: 12 chains + a + b): 192 flops per iteration. */
__attribute__((target("avx2,fma"))) static void chains_avx2(long iters)
{
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    __m256 c0 = _mm256_set1_ps(0.0f), c1 = _mm256_set1_ps(0.01f), c2 = _mm256_set1_ps(0.02f),
           c3 = _mm256_set1_ps(0.03f), c4 = _mm256_set1_ps(0.04f), c5 = _mm256_set1_ps(0.05f),
           c6 = _mm256_set1_ps(0.06f), c7 = _mm256_set1_ps(0.07f), c8 = _mm256_set1_ps(0.08f),
           c9 = _mm256_set1_ps(0.09f), c10 = _mm256_set1_ps(0.10f), c11 = _mm256_set1_ps(0.11f);
    for (long i = 0; i < iters; i++) {
        c0 = _mm256_fmadd_ps(c0, a, b);   c1 = _mm256_fmadd_ps(c1, a, b);
        c2 = _mm256_fmadd_ps(c2, a, b);   c3 = _mm256_fmadd_ps(c3, a, b);
        c4 = _mm256_fmadd_ps(c4, a, b);   c5 = _mm256_fmadd_ps(c5, a, b);
        c6 = _mm256_fmadd_ps(c6, a, b);   c7 = _mm256_fmadd_ps(c7, a, b);
        c8 = _mm256_fmadd_ps(c8, a, b);   c9 = _mm256_fmadd_ps(c9, a, b);
        c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    float v[8];
    _mm256_storeu_ps(v, s);
    sink = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

typedef void (*kernel_fn)(long);

/* Seconds for `threads` threads each running kernel(iters) at once. */
static double timed(kernel_fn kernel, long iters, int threads)
{
    double t0 = now();
#pragma omp parallel num_threads(threads)
    kernel(iters);
    return now() - t0;
}

/* GFLOP/s of `threads` threads: calibrated to about 0.25 s a run, best of 5. */
static double measure(kernel_fn kernel, double flops_per_iter, int threads)
{
    long iters = 1L << 16;
    double t;
    while ((t = timed(kernel, iters, threads)) < 0.05) iters *= 2;
    iters = (long)(iters * (0.25 / t)) + 1;
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        t = timed(kernel, iters, threads);
        if (t < best) best = t;
    }
    return flops_per_iter * (double)iters * threads / best * 1e-9;
}

int main(int argc, char **argv)
{
    int counts[8], n = 0;
    for (int i = 1; i < argc && n < 8; i++) counts[n++] = atoi(argv[i]);
    if (n == 0) counts[n++] = 1;
    __builtin_cpu_init();
    for (int i = 0; i < n; i++) {
        if (counts[i] < 1) continue;
        if (__builtin_cpu_supports("avx512f"))
            printf("avx512 %d %.1f\n", counts[i], measure(chains_avx512, 16 * 16 * 2, counts[i]));
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            printf("avx2 %d %.1f\n", counts[i], measure(chains_avx2, 12 * 8 * 2, counts[i]));
        fflush(stdout);
    }
    return 0;
}
