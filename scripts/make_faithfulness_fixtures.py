#!/usr/bin/python3
"""Reference curves for tests/faithfulness_spec.lua, written to tests/fixtures/faithfulness/fixture.lua.

    /usr/bin/python3 scripts/make_faithfulness_fixtures.py > tests/fixtures/faithfulness/fixture.lua

An implementation of its own, in numpy and float64, of the definitions stated
in bindings/moreau/faithfulness.lua (docs/evaluation.md, "Faithfulness"):
deletion and insertion (Petsiuk et al. 2018), pixel-flipping (Bach et al.
2015) and ROAD's noisy linear imputation (Rong et al. 2022; noise off here,
sigma = 0, since the engine's noise comes from its own counter-based RNG):
the removed pixels' linear system is solved directly (numpy.linalg.solve),
not by conjugate gradients as the library does.

The network: a 2-layer net on (2, 4, 4) inputs, flatten, fc1 32 -> 6,
softplus (beta 1, threshold 20, as PyTorch), fc2 6 -> 3. Its weights, the two
images and the two maps are drawn from numpy's default_rng(20181130), rounded
to float32, and stored in the fixture so the spec loads the same numbers.
Map 1 has ties (values on a coarse grid) to pin the tie-breaking rule: the
lower flat position h*W + w first, in both orders.
"""
import numpy as np

N, C, H, W = 2, 2, 4, 4
P = H * W
HIDDEN, K = 6, 3
LABELS = [0, 2]


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


rng = np.random.default_rng(20181130)
fc1_w = f32(rng.uniform(-1, 1, (HIDDEN, C * P)) / np.sqrt(C * P) * 3)
fc1_b = f32(rng.uniform(-0.3, 0.3, HIDDEN))
fc2_w = f32(rng.uniform(-1, 1, (K, HIDDEN)) * 1.5)
fc2_b = f32(rng.uniform(-0.2, 0.2, K))
x = f32(rng.normal(0, 1, (N, C, H, W)))
maps = np.empty((N, C, H, W))
maps[0] = f32(np.round(rng.normal(0, 1, (C, H, W)) * 2) / 4)  # coarse grid: ties
maps[1] = f32(rng.normal(0, 1, (C, H, W)))


def softplus(z):
    return np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20))))


def logits(imgs):
    flat = imgs.reshape(imgs.shape[0], -1)
    h = softplus(flat @ fc1_w.T + fc1_b)
    return h @ fc2_w.T + fc2_b


def score(imgs, label, kind):
    y = logits(imgs)
    if kind == 'logit':
        return y[:, label]
    z = np.exp(y - y.max(axis=1, keepdims=True))
    return z[:, label] / z.sum(axis=1)


def ranking(m, order, use_abs):
    r = (np.abs(m) if use_abs else m).sum(axis=0).reshape(-1)
    pos = np.arange(P)
    key = -r if order == 'morf' else r
    return np.lexsort((pos, key))  # by key, then by position


def blur(img, size, sigma):
    t = np.arange(size) - (size - 1) / 2
    g = np.exp(-t ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    k2 = np.outer(g, g)
    r = size // 2
    out = np.zeros_like(img)
    for c in range(img.shape[0]):  # the 2-D kernel over a zero-padded plane
        pad = np.zeros((H + 2 * r, W + 2 * r))
        pad[r:r + H, r:r + W] = img[c]
        for h in range(H):
            for w in range(W):
                out[c, h, w] = np.sum(k2 * pad[h:h + size, w:w + size])
    return out


def baseline(img, name, opts):
    if name == 'zero':
        return np.zeros_like(img)
    if name == 'mean':
        return np.broadcast_to(img.mean(axis=(1, 2), keepdims=True), img.shape).copy()
    if name == 'blur':
        return blur(img, opts.get('blur_size', 11), opts.get('blur_sigma', 5))
    return np.full_like(img, float(name))


def impute(img, removed):
    """ROAD's linear imputation, noise off: each removed pixel the weighted mean of its
    neighbours inside the image (1/6 direct, 1/12 diagonal), solved directly."""
    nbrs = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
            (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]
    out = img.copy()
    idx = {p: k for k, p in enumerate(removed)}
    m = len(removed)
    if m == 0:
        return out
    for c in range(img.shape[0]):
        A = np.zeros((m, m))
        b = np.zeros(m)
        for k, p in enumerate(removed):
            h, w = divmod(p, W)
            for dh, dw, wt in nbrs:
                hh, ww = h + dh, w + dw
                if 0 <= hh < H and 0 <= ww < W:
                    q = hh * W + ww
                    A[k, k] += wt
                    if q in idx:
                        A[k, idx[q]] -= wt
                    else:
                        b[k] += wt * img[c, hh, ww]
        u = np.linalg.solve(A, b)
        flat = out[c].reshape(-1)
        flat[list(removed)] = u
    return out


def curve(kind, n, opts):
    order = opts.get('order', 'morf')
    use_abs = opts.get('abs', False)
    rk = ranking(maps[n], order, use_abs)
    img = x[n]
    if kind == 'road':
        fr = opts.get('fractions', [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
        counts = [int(np.floor(f * P + 0.5)) for f in fr]
        fracs = list(fr)
        sc = opts.get('score', 'probability')
        imgs = np.stack([impute(img, [int(p) for p in rk[:k]]) for k in counts])
    else:
        step = opts.get('step', 1 if kind == 'pixel_flipping' else W)
        S = -(-P // step)
        counts = [min(s * step, P) for s in range(S + 1)]
        fracs = [k / P for k in counts]
        sc = opts.get('score', 'logit' if kind == 'pixel_flipping' else 'probability')
        base = baseline(img, opts.get('baseline', 'blur' if kind == 'insertion' else 'zero'), opts)
        imgs = []
        for k in counts:
            mask = np.zeros(P, dtype=bool)
            mask[rk[:k]] = True
            mask = np.broadcast_to(mask.reshape(1, H, W), img.shape)
            if kind == 'insertion':
                imgs.append(np.where(mask, img, base))
            else:
                imgs.append(np.where(mask, base, img))
        imgs = np.stack(imgs)
    y = score(imgs, LABELS[n], sc)
    fr = np.array(fracs, dtype=np.float64)
    auc = float(np.sum((fr[1:] - fr[:-1]) * (y[1:] + y[:-1]) / 2) / (fr[-1] - fr[0]))
    aopc = float(np.mean(y[0] - y))
    return [float(v) for v in y], auc, aopc, counts, rk


CASES = [
    ('deletion_morf', 'deletion', {'order': 'morf'}),
    ('deletion_lerf', 'deletion', {'order': 'lerf'}),
    ('deletion_mean_step3', 'deletion', {'order': 'morf', 'baseline': 'mean', 'step': 3, 'score': 'logit'}),
    ('deletion_abs', 'deletion', {'order': 'morf', 'abs': True, 'step': 2}),
    ('insertion_morf', 'insertion', {'order': 'morf'}),
    ('insertion_lerf_blur3', 'insertion', {'order': 'lerf', 'blur_size': 3, 'blur_sigma': 1}),
    ('pixel_flipping_morf', 'pixel_flipping', {'order': 'morf'}),
    ('pixel_flipping_lerf', 'pixel_flipping', {'order': 'lerf', 'baseline': -0.5}),
    ('road_morf', 'road', {'order': 'morf', 'sigma': 0}),
    ('road_lerf', 'road', {'order': 'lerf', 'sigma': 0, 'score': 'logit'}),
    ('road_fractions', 'road', {'order': 'morf', 'sigma': 0, 'fractions': [0.25, 0.5, 0.75]}),
]


def lua(v):
    if isinstance(v, dict):
        return '{ ' + ', '.join('%s = %s' % (k, lua(v[k])) for k in sorted(v)) + ' }'
    if isinstance(v, (list, tuple, np.ndarray)):
        return '{ ' + ', '.join(lua(e) for e in v) + ' }'
    if isinstance(v, str):
        return "'%s'" % v
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v))


def main():
    print('-- Generated by scripts/make_faithfulness_fixtures.py (numpy %s); do not edit.' % np.__version__)
    print('-- A 2-layer net on (2, 4, 4) inputs; expected curves in float64 (see the script).')
    print('return {')
    print('  shape = %s,' % lua([N, C, H, W]))
    print('  labels = %s,' % lua(LABELS))
    print('  fc1_weight = %s,' % lua(fc1_w.reshape(-1)))
    print('  fc1_bias = %s,' % lua(fc1_b))
    print('  fc2_weight = %s,' % lua(fc2_w.reshape(-1)))
    print('  fc2_bias = %s,' % lua(fc2_b))
    print('  x = %s,' % lua(x.reshape(-1)))
    print('  maps = %s,' % lua(maps.reshape(-1)))
    print('  cases = {')
    for name, kind, opts in CASES:
        curves, aucs, aopcs, ranks = [], [], [], []
        for n in range(N):
            y, auc, aopc, counts, rk = curve(kind, n, opts)
            curves.append(y)
            aucs.append(auc)
            aopcs.append(aopc)
            ranks.append([int(p) for p in rk])
        print('    { name = %s, kind = %s, opts = %s,' % (lua(name), lua(kind), lua(opts)))
        print('      counts = %s,' % lua(counts))
        print('      ranking = %s,' % lua(ranks))
        print('      curves = %s,' % lua(curves))
        print('      auc = %s, aopc = %s },' % (lua(aucs), lua(aopcs)))
    print('  },')
    print('}')


if __name__ == '__main__':
    main()
