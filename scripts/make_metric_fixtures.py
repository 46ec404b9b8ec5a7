#!/usr/bin/python3
"""Reference numbers for tests/metrics_spec.lua, written to tests/fixtures/metrics.lua.

    /usr/bin/python3 scripts/make_metric_fixtures.py > tests/fixtures/metrics.lua

Needs Debian's python3-skimage (with numpy and scipy). The maps are not stored:
both sides build them from the same integer formulas (exact in double, then
rounded to float32), so the fixture holds only the expected numbers.

  a[i] = 0 if v % 7 == 0 else (v - 504) / 1009,        v = (7919 i + 13) mod 1009
  b[i] = a[i] + (((131 i + 7) mod 97) - 48) / 388
  c[i] = floor(16 a[i]) / 16                           (ties, for Spearman)

i is the flat row-major index over the whole (N, C, H, W) batch.

References:
  ssim display  skimage.metrics.structural_similarity(gaussian_weights=True,
                sigma=1.5, use_sample_covariance=False, data_range=1) of the
                display-normalized planes (sum_c |map|, clipped at the 99th
                percentile q (np.percentile), divided by q)
  ssim pytorch  pytorch-ssim's formula: each channel correlated with the 11x11
                Gaussian (sigma 1.5), zero padding 'same' (scipy.ndimage,
                mode='constant'), C1 = 0.01^2, C2 = 0.03^2, mean over C, H, W
  spearman      scipy.stats.spearmanr (average ranks for ties)
  the rest      numpy, following the definitions in bindings/moreau/metrics.lua
                (top-k: fuzzy memberships of the block tied at the k-th place,
                zero entries never members; c has such ties)
"""
import numpy as np
from scipy import ndimage, stats
from skimage.metrics import structural_similarity

N, C, H, W = 2, 2, 12, 13


def maps():
    n = N * C * H * W
    i = np.arange(n, dtype=np.int64)
    v = (7919 * i + 13) % 1009
    a = np.where(v % 7 == 0, 0.0, (v - 504) / 1009.0)
    b = a + (((131 * i + 7) % 97) - 48) / 388.0
    c = np.floor(16 * a) / 16
    f = lambda x: x.astype(np.float32).astype(np.float64).reshape(N, C, H, W)
    return f(a), f(b), f(c)


def display(m):
    s = np.abs(m).sum(axis=0)
    q = np.percentile(s, 99)
    if q <= 0:
        q = s.max()
    return np.minimum(s, q) / q if q > 0 else s


def gauss2d(size=11, sigma=1.5):
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    g /= g.sum()
    return np.outer(g, g)


def ssim_pytorch(x, y):
    k = gauss2d()
    C1, C2 = 0.01 ** 2, 0.03 ** 2
    vals = []
    for c in range(x.shape[0]):
        f = lambda z: ndimage.correlate(z, k, mode='constant', cval=0.0)
        mx, my = f(x[c]), f(y[c])
        vx = f(x[c] * x[c]) - mx * mx
        vy = f(y[c] * y[c]) - my * my
        vxy = f(x[c] * y[c]) - mx * my
        s = ((2 * mx * my + C1) * (2 * vxy + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))
        vals.append(s)
    return float(np.mean(vals))


def normalized_distance(x, y):
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    return float(np.linalg.norm(x / nx - y / ny))


def topk_members(x, k, signed):
    """Top-k memberships: features are the entries with key > 0 (key |x|, or x
    when signed); when more than k, the block tied at the k-th largest key shares
    the places left equally."""
    key = x if signed else np.abs(x)
    feat = key > 0
    m = np.zeros(x.size)
    if np.count_nonzero(feat) <= k:
        m[feat] = 1.0
        return m
    vk = np.sort(key[feat])[::-1][k - 1]
    above, tied = key > vk, key == vk
    m[above] = 1.0
    m[tied] = (k - np.count_nonzero(above)) / np.count_nonzero(tied)
    return m


def topk(x, y, signed=False, frac=0.4):
    x, y = x.ravel(), y.ravel()
    nfeat = np.count_nonzero((x if signed else np.abs(x)) > 0)
    k = max(1, int(np.floor(frac * nfeat)))
    mx, my = topk_members(x, k, signed), topk_members(y, k, signed)
    # fuzzy intersection over the size of the original's top-k set
    return float(np.minimum(mx, my).sum() / min(k, nfeat))


def gini(x):
    c = np.sort(np.abs(x.ravel()))
    n = c.size
    k = np.arange(1, n + 1)
    return float(1 - 2 * np.sum((c / c.sum()) * ((n - k + 0.5) / n)))


def lua_list(vals):
    return '{ ' + ', '.join(repr(float(v)) for v in vals) + ' }'


def main():
    a, b, c = maps()
    out = {
        'ssim_display': [structural_similarity(display(a[n]), display(b[n]), gaussian_weights=True,
                                               sigma=1.5, use_sample_covariance=False, data_range=1.0)
                         for n in range(N)],
        'ssim_display_ac': [structural_similarity(display(a[n]), display(c[n]), gaussian_weights=True,
                                                  sigma=1.5, use_sample_covariance=False, data_range=1.0)
                            for n in range(N)],
        'ssim_pytorch': [ssim_pytorch(a[n], b[n]) for n in range(N)],
        'spearman_ab': [stats.spearmanr(a[n].ravel(), b[n].ravel()).correlation for n in range(N)],
        'spearman_ac': [stats.spearmanr(a[n].ravel(), c[n].ravel()).correlation for n in range(N)],
        'normalized_distance': [normalized_distance(a[n], b[n]) for n in range(N)],
        'topk_abs': [topk(a[n], b[n]) for n in range(N)],
        'topk_signed': [topk(a[n], b[n], signed=True) for n in range(N)],
        'topk_ac': [topk(a[n], c[n]) for n in range(N)],
        'topk_ca': [topk(c[n], a[n]) for n in range(N)],
        'topk_ca_signed': [topk(c[n], a[n], signed=True) for n in range(N)],
        'gini_a': [gini(a[n]) for n in range(N)],
        'gini_c': [gini(c[n]) for n in range(N)],
        'sparsity_a': [float(np.mean(a[n] == 0)) for n in range(N)],
        'sparsity_c': [float(np.mean(c[n] == 0)) for n in range(N)],
    }
    print('-- Generated by scripts/make_metric_fixtures.py (skimage %s, scipy, numpy %s); do not edit.'
          % (__import__('skimage').__version__, np.__version__))
    print('-- Maps: see the formulas in the script; shape (N, C, H, W) = (%d, %d, %d, %d).' % (N, C, H, W))
    print('return {')
    print('  shape = { %d, %d, %d, %d },' % (N, C, H, W))
    for k in sorted(out):
        print('  %s = %s,' % (k, lua_list(out[k])))
    print('}')


if __name__ == '__main__':
    main()
