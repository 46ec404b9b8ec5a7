/*
 * Counter-based RNG: Philox-4x32-10 (Salmon et al., "Parallel random numbers:
 * as easy as 1, 2, 3", SC 2011).
 *
 *   round:  (L0, R0, L1, R1) -> (hi(M1*R1) ^ L0 ^ k0, lo(M1*R1), hi(M0*R0) ^ L1 ^ k1, lo(M0*R0))
 *   with M0 = 0xD2511F53, M1 = 0xCD9E8D57, key bumped by W0 = 0x9E3779B9, W1 = 0xBB67AE85
 *   after each of the 10 rounds but the last.
 *
 * Value number k of stream s under seed: block b = k / 4, lane k % 4 of
 * philox(counter = (lo(b), hi(b), lo(s), hi(s)), key = (lo(seed), hi(seed))).
 * Uniforms are (u + 0.5) / 2^32 in (0, 1); normals pair lanes (0,1) and (2,3)
 * by Box-Muller: r = sqrt(-2 ln u0), (r cos 2 pi u1, r sin 2 pi u1). The value
 * depends only on (seed, s, k): thread counts and request splits cannot change it.
 */
#include "../internal.h"

#include <math.h>

void mr_philox4x32(uint32_t *out, const uint32_t *ctr, const uint32_t *key)
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

static void block(uint32_t out[4], uint64_t seed, uint64_t stream, uint64_t b)
{
    uint32_t ctr[4] = {(uint32_t)b, (uint32_t)(b >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    mr_philox4x32(out, ctr, key);
}

static inline double to_unit(uint32_t u) { return ((double)u + 0.5) * (1.0 / 4294967296.0); }

/* Fills out[0..n) with values offset..offset+n of the stream; each 4-block is
 * computed whole and the wanted lanes taken. */
static void fill(float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, int normal,
                 float mean, float std)
{
    const double two_pi = 6.283185307179586476925286766559;
#pragma omp parallel for schedule(static) num_threads(mr_threads()) if (n > 65536)
    for (int64_t j0 = -(int64_t)(offset % 4); j0 < n; j0 += 4) {
        uint64_t b = (offset + (uint64_t)j0) / 4; /* j0 >= -(offset % 4): no underflow */
        uint32_t r[4];
        block(r, seed, stream, b);
        float v[4];
        if (normal) {
            for (int h = 0; h < 4; h += 2) {
                double rad = sqrt(-2.0 * log(to_unit(r[h])));
                double ang = two_pi * to_unit(r[h + 1]);
                v[h] = (float)(mean + std * rad * cos(ang));
                v[h + 1] = (float)(mean + std * rad * sin(ang));
            }
        } else {
            for (int h = 0; h < 4; h++)
                v[h] = (float)to_unit(r[h]);
        }
        for (int h = 0; h < 4; h++) {
            int64_t j = j0 + h;
            if (j >= 0 && j < n)
                out[j] = v[h];
        }
    }
}

/* The values offset .. offset + n - 1 of a stream must not wrap past 2^64 - 1
 * (a wrapped offset would silently repeat the stream's first values). */
static int offsets_fit(const char *what, int64_t n, uint64_t offset)
{
    if (n > 0 && (uint64_t)(n - 1) > UINT64_MAX - offset)
        return mr_error(MR_EINVAL, "%s: offset %llu + %lld values passes 2^64", what, (unsigned long long)offset,
                        (long long)n);
    return MR_OK;
}

int mr_rng_uniform(float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset)
{
    if (!out || n < 0)
        return mr_error(MR_EINVAL, "rng_uniform: bad output buffer or count %lld", (long long)n);
    MR_TRY(offsets_fit("rng_uniform", n, offset));
    fill(out, n, seed, stream, offset, 0, 0.f, 1.f);
    return MR_OK;
}

int mr_rng_normal(float *out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, float mean,
                  float std)
{
    if (!out || n < 0)
        return mr_error(MR_EINVAL, "rng_normal: bad output buffer or count %lld", (long long)n);
    MR_TRY(offsets_fit("rng_normal", n, offset));
    if (!isfinite(mean) || !isfinite(std) || std < 0)
        return mr_error(MR_EINVAL, "rng_normal: mean %g and std %g must be finite, std >= 0",
                        (double)mean, (double)std);
    fill(out, n, seed, stream, offset, 1, mean, std);
    return MR_OK;
}
