/*
 * sampling.h — gradients of a class score at noisy copies of a batch, batched
 * through the network `chunk` copies at a time. Shared by SmoothGrad and the
 * Moreau solver.
 *
 * Copy i of item n at round t is x_n + shift_n + s_n z, z ~ N(0, I) from the
 * counter-based RNG with (seed, stream = K_n, offset = (t * samples + i) * d),
 * K_n the item's noise key and s_n = sigma (max x_n - min x_n) (moreau.h,
 * "noisy gradients"): nothing depends on the item's batch position. With
 * samples == 0 there is one copy per item and no noise (the plain gradient at
 * x + shift).
 */
#ifndef MR_SAMPLING_H
#define MR_SAMPLING_H

#include "internal.h"

typedef struct mr_sampler {
    mr_net *net;
    const mr_tensor *x;
    int64_t N, d;
    int32_t samples; /* 0: no noise, one copy */
    int32_t chunk;   /* copies per forward pass */
    int32_t score_kind;
    uint64_t seed;
    uint64_t *keys;      /* N noise keys */
    float *noise_std;    /* N */
    int64_t *items;      /* N: the items of the current round */
    int32_t *labels;     /* N, borrowed */
    int32_t *chunk_labels; /* chunk */
    float *chunk_scores;   /* chunk */
    mr_tensor *xb, *gb;  /* (chunk, sample shape) */
    mr_progress *progress; /* NULL, or reported to after each chunk of a round (copies done) */
} mr_sampler;

/* Called for every copy in order (n, i): g its gradient (d floats), score its score. */
typedef void (*mr_sample_visit)(void *ctx, int64_t n, int32_t i, const float *g, float score);

/* keys: N noise keys or NULL (the content keys); chunk 0: automatic, from
 * budget (bytes; 0: the global budget) over the network's workspace and the
 * sampler's own two (chunk, d) buffers. */
int mr_sampler_init(mr_sampler *s, mr_net *net, const mr_tensor *x, const int32_t *labels, int32_t samples,
                    int32_t chunk, float sigma, int32_t score_kind, uint64_t seed, const uint64_t *keys,
                    int64_t budget);
void mr_sampler_release(mr_sampler *s);
/* Runs round t at x + shift (shift: N*d floats or NULL) for the items with
 * active[n] != 0 (active NULL: all items). */
int mr_sampler_round(mr_sampler *s, const float *shift, uint64_t t, const unsigned char *active,
                     mr_sample_visit visit, void *ctx);

#endif
