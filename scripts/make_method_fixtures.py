#!/usr/bin/python3
"""make_method_fixtures.py — PyTorch parity fixtures for moreau.methods.

Run by developers with Debian's python3-torch (not by CI; the committed
fixture lets the suite run without PyTorch):

    /usr/bin/python3 scripts/make_method_fixtures.py     # rewrite tests/fixtures/methods.safetensors

The network is a small softplus CNN on (2, 7, 7) inputs, built as an
nn.Sequential so its state_dict names are the ones moreau's nn.Sequential
gives (tests/methods_parity_spec.lua builds the same net):

    0 Conv2d(2, 4, 3, padding=1)   1 Softplus(beta=3)
    2 Conv2d(4, 4, 3, stride=2, padding=1)   3 Softplus(beta=3)
    4 Flatten()   5 Linear(64, 3)

Weights and the batch of 2 inputs are drawn from fixed seeds and rounded to
float32; every reference is then computed in float64 FROM those rounded values,
written from the math of docs/methods.md (not from the engine's code), so what is
left in the comparison is the engine's own float32 arithmetic:

    gradient, input × gradient, integrated gradients (zero baseline, 16 steps;
    riemann_right, gauss_legendre, trapezoid), SmoothGrad (mean, square,
    vargrad), Sparsified SmoothGrad (two clip/keep settings), DeepLIFT (rescale
    rule, zero baseline, by a custom autograd function whose backward is the
    secant slope), MoreauGrad unregularized (m = 0): vanilla, sparse (L1),
    group-sparse (2×2 blocks spanning both channels; 7×7 leaves partial blocks
    at the border), in both output conventions.

The sampling methods use the EXACT noise the engine draws: Philox-4x32-10
(checked here against the Random123 known-answer vectors) keyed as
engine/src/sampling.c documents — value k of stream s under seed is lane k % 4
of philox(counter = (lo(k/4), hi(k/4), lo(s), hi(s)), key = (lo(seed),
hi(seed))), u = (bits + 0.5) / 2^32, Box-Muller on lane pairs (0,1), (2,3) in
double, rounded to float32; copy i of item n uses stream K_n (the item's noise
key: FNV-1a 64 over its per-item dims as int64 and its
float32 values, all little-endian, then the SplitMix64 finalizer, as
engine/include/moreau.h defines mr_item_keys; the keys go into the metadata so
the spec checks the engine's hash against this one) and offset i·d; the
std is sigma·(max x_n − min x_n) in float32, and the noisy input is x + z
rounded to float32, as the engine forms it. The gradients at those float32
points are then taken in float64.

Sparsified SmoothGrad keeps the keep_k largest |g| of each noisy gradient; a
near-tie between the keep_k-th and (keep_k+1)-th entry could flip between
float32 and float64. The script checks the relative gap at every sample and
refuses to write a fixture where it is below MIN_TIE_GAP.

The file (written by hand: 8-byte little-endian header length, JSON header, raw
float32, names sorted) holds:
    0.weight ... 5.bias          the weights
    __x (2, 2, 7, 7), __labels   the batch and its classes (float32 holding integers)
    __logits                     network output (2, 3)
    __rng_normal                 16 normals, seed 7, stream 1, offset 3, std 1 (RNG check)
    __gradient, __input_x_gradient, __ig_<rule>, __smoothgrad_<variant>,
    __sparsified_smoothgrad, __sparsified_smoothgrad_c05_k25, __deeplift,
    __mg_<vanilla|sparse|group>, __mg_<...>_delta
and __metadata__ with the options of every method (JSON).
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'methods.safetensors')

BETA = 3.0
THRESHOLD = 20.0
MIN_TIE_GAP = 1e-4  # relative gap between the keep_k-th and (keep_k+1)-th |g|; float32 gradients are good to ~1e-6

# The options of every method, mirrored in tests/methods_parity_spec.lua.
OPTS = {
    'ig': {'steps': 16},
    'smoothgrad': {'samples': 32, 'sigma': 0.15, 'seed': 7},
    'sparsified': {'samples': 32, 'sigma': 0.1, 'seed': 11, 'clip': 0.01, 'keep': 0.1},
    'sparsified_c05_k25': {'samples': 32, 'sigma': 0.1, 'seed': 12, 'clip': 0.05, 'keep': 0.25},
    'moreaugrad': {'m': 0, 'T': 30, 'gamma': 0.1, 'rho': 1.0, 'K': 10, 'eta_l1': 0.05, 'eta_group': 0.2,
                   'group_size': 2, 'K_delta': 5},
}


# ------------------------------------------------------------ Philox RNG

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10 on arrays of counters (uint64 arrays holding 32-bit words)."""
    c = [np.asarray(v, dtype=np.uint64) for v in (c0, c1, c2, c3)]
    k0, k1 = int(k0) & MASK, int(k1) & MASK
    m = np.uint64(MASK)
    for _ in range(10):
        p0 = np.uint64(M0) * c[0]  # both factors < 2^32: the product is exact in 64 bits
        p1 = np.uint64(M1) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0), p1 & m,
             (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1), p0 & m]
        k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
    return c


def check_philox():
    """Random123's known-answer vectors for philox4x32_10."""
    kat = [
        ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
        ((MASK,) * 4, (MASK, MASK), (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
        ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
         (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
    ]
    for ctr, key, want in kat:
        got = tuple(int(v) for v in philox4x32_10(*[[w] for w in ctr], *key))
        if got != want:
            sys.exit('philox4x32_10 fails its known-answer vector: ctr %s key %s gave %s, want %s' % (
                [hex(w) for w in ctr], [hex(w) for w in key], [hex(w) for w in got], [hex(w) for w in want]))


FNV_OFFSET, FNV_PRIME, MASK64 = 0xcbf29ce484222325, 0x100000001b3, (1 << 64) - 1


def item_key(item32):
    """The content key of one item (float32 array shaped like the item)."""
    data = b''.join(struct.pack('<q', dim) for dim in item32.shape)
    data += item32.astype('<f4').tobytes()
    h = FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & MASK64
    h = ((h ^ (h >> 30)) * 0xbf58476d1ce4e5b9) & MASK64
    h = ((h ^ (h >> 27)) * 0x94d049bb133111eb) & MASK64
    return h ^ (h >> 31)


def rng_normal(n, seed, stream, offset, std):
    """Values offset..offset+n of (seed, stream) as normals times std, each
    rounded to float32 as the engine does: std * r * cos(2 pi u1) in double.
    std is used as given (a float32 value for the engine's noise)."""
    k = np.arange(offset, offset + n, dtype=np.uint64)
    b = k // np.uint64(4)
    lane = (k % np.uint64(4)).astype(np.int64)
    words = philox4x32_10(b & np.uint64(MASK), b >> np.uint64(32),
                          np.full_like(b, stream & MASK), np.full_like(b, stream >> 32),
                          seed & MASK, seed >> 32)
    words = np.stack(words, axis=1)  # (n, 4)
    out = np.empty(n, dtype=np.float32)
    two_pi = 6.283185307179586476925286766559
    std = float(std)
    for j in range(n):
        base = lane[j] & ~1
        u0 = (float(words[j, base]) + 0.5) * (1.0 / 4294967296.0)
        u1 = (float(words[j, base + 1]) + 0.5) * (1.0 / 4294967296.0)
        r = math.sqrt(-2.0 * math.log(u0))  # libm, as the engine
        a = two_pi * u1
        out[j] = np.float32(std * r * (math.cos(a) if lane[j] % 2 == 0 else math.sin(a)))
    return out


# ----------------------------------------------------------------- the net

def make_net():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.Softplus(beta=BETA, threshold=THRESHOLD),
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.Softplus(beta=BETA, threshold=THRESHOLD),
        nn.Flatten(), nn.Linear(64, 3))


MAX_Z = [0.0]  # the largest beta * pre-activation seen (must stay below the threshold)


def softplus(z):
    MAX_Z[0] = max(MAX_Z[0], float((BETA * z).max()))
    return F.softplus(z, beta=BETA, threshold=THRESHOLD)


def forward(P, x, act=None):
    """The net in float64 from its parameters; act(z, layer) replaces softplus."""
    act = act or (lambda z, layer: softplus(z))
    h = F.conv2d(x, P['0.weight'], P['0.bias'], padding=1)
    h = act(h, 1)
    h = F.conv2d(h, P['2.weight'], P['2.bias'], stride=2, padding=1)
    h = act(h, 3)
    return F.linear(h.flatten(1), P['5.weight'], P['5.bias'])


def grad(P, x, labels):
    """∇x f_c(x) of the class logit, per item (items are independent)."""
    x = x.detach().clone().requires_grad_(True)
    logits = forward(P, x)
    score = logits[torch.arange(x.shape[0]), labels].sum()
    (g,) = torch.autograd.grad(score, x)
    return g.detach()


# ---------------------------------------------------------------- methods

def ig_rule(rule, n):
    if rule == 'riemann_right':
        return [k / n for k in range(1, n + 1)], [1.0 / n] * n
    if rule == 'trapezoid':
        a = [k / (n - 1) for k in range(n)]
        w = [(0.5 if k in (0, n - 1) else 1.0) / (n - 1) for k in range(n)]
        return a, w
    if rule == 'gauss_legendre':
        t, w = np.polynomial.legendre.leggauss(n)  # on [-1, 1]
        return list((t + 1) / 2), list(w / 2)
    raise ValueError(rule)


def integrated_gradients(P, x, labels, rule, steps):
    alphas, weights = ig_rule(rule, steps)
    total = torch.zeros_like(x)
    for a, w in zip(alphas, weights):
        total += w * grad(P, a * x, labels)  # zero baseline: x0 + a (x - x0) = a x
    return x * total


def noisy_grads(P, x32, labels, samples, sigma, seed):
    """The gradient at each noisy copy the engine forms, (samples, N, d) in float64."""
    N = x32.shape[0]
    d = x32[0].size
    keys = [item_key(x32[n]) for n in range(N)]
    out = []
    for i in range(samples):
        pts = np.empty_like(x32)
        for n in range(N):
            xn = x32[n].reshape(-1)
            std = np.float32(np.float32(sigma) * (xn.max() - xn.min()))  # float32, as the engine
            z = rng_normal(d, seed, keys[n], i * d, std)
            pts[n] = (z + xn).reshape(x32[n].shape)  # float32 add, as the engine
        g = grad(P, torch.from_numpy(pts).double(), labels)
        out.append(g.reshape(N, d).numpy())
    return np.stack(out)


def smoothgrad(G, variant):
    if variant == 'mean':
        return G.mean(0)
    if variant == 'square':
        return (G ** 2).mean(0)
    if variant == 'vargrad':
        return ((G - G.mean(0)) ** 2).mean(0)
    raise ValueError(variant)


def sparsified(G, clip, keep, name):
    """Levine et al. 2019: per noisy gradient, a = |g|; tau = the
    floor(clip·d)-th largest a; keep the floor(keep·d) largest nonzero a
    (ties at the cut kept), 1 where a >= tau and a / tau below; average. (The fractions are float32 in the engine's
    options: floor(float32(frac)·d).)"""
    S, N, d = G.shape
    ck = max(1, math.floor(float(np.float32(clip) * np.float32(d))))
    kk = max(1, math.floor(float(np.float32(keep) * np.float32(d))))
    out = np.zeros((N, d))
    min_gap = math.inf
    for s in range(S):
        for n in range(N):
            a = np.abs(G[s, n])
            srt = np.sort(a)[::-1]
            tau, thr = srt[ck - 1], srt[kk - 1]
            if kk < d:
                min_gap = min(min_gap, (srt[kk - 1] - srt[kk]) / srt[kk - 1])
            sel = (a >= thr) & (a > 0)
            out[n] += np.where(sel, np.where(a >= tau, 1.0, a / np.where(tau > 0, tau, 1.0)), 0.0)
    if min_gap < MIN_TIE_GAP:
        sys.exit('%s: keep_k-th and next |g| are within %.2e (relative) at some sample: '
                 'the top-k selection could flip; pick another seed' % (name, min_gap))
    print('  %s: clip_k %d, keep_k %d, smallest relative gap at the keep cut %.3e' % (name, ck, kk, min_gap))
    return out / S, min_gap


class SecantSoftplus(torch.autograd.Function):
    """softplus forward; backward multiplies by the rescale rule's secant slope
    (f(z) − f(z0)) / (z − z0), or f'(z) where |z − z0| < 1e-6."""

    @staticmethod
    def forward(ctx, z, z0):
        y = F.softplus(z, beta=BETA, threshold=THRESHOLD)
        y0 = F.softplus(z0, beta=BETA, threshold=THRESHOLD)
        dz = z - z0
        slope = torch.sigmoid(BETA * z)
        near = dz.abs() < 1e-6
        m = torch.where(near, slope, (y - y0) / torch.where(near, torch.ones_like(dz), dz))
        ctx.save_for_backward(m)
        return y

    @staticmethod
    def backward(ctx, gy):
        (m,) = ctx.saved_tensors
        return gy * m, None


def deeplift(P, x, labels):
    x0 = torch.zeros_like(x)
    z0 = {}

    def record(z, layer):
        z0[layer] = z.detach()
        return softplus(z)

    forward(P, x0, record)
    xr = x.detach().clone().requires_grad_(True)
    logits = forward(P, xr, lambda z, layer: SecantSoftplus.apply(z, z0[layer]))
    (m,) = torch.autograd.grad(logits[torch.arange(x.shape[0]), labels].sum(), xr)
    return (x - x0) * m


def blocks(C, H, W, g):
    """Group id of every entry of a (C, H, W) item: g×g spatial blocks spanning all channels."""
    bw = (W + g - 1) // g
    ids = np.empty((C, H, W), dtype=np.int64)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                ids[c, i, j] = (i // g) * bw + j // g
    return ids.reshape(-1)


def moreau_solver(P, x, labels, reg, eta, T, gamma, rho, K, groups=None):
    """docs/methods.md §7.2, m = 0: δ_0 = 0; δ_{t+½} = δ_t − γ(∇f_c(x + δ_t) + δ_t/ρ);
    δ_{t+1} = ST_{γη}, GST_{γη} or identity; returns the mean of δ_{T−K+1..T}."""
    N = x.shape[0]
    delta = torch.zeros_like(x)
    tail = torch.zeros_like(x)
    a = gamma * eta
    for t in range(1, T + 1):
        g = grad(P, x + delta, labels)
        v = delta - gamma * (g + delta / rho)
        if reg == 'l1':
            v = torch.sign(v) * torch.clamp(v.abs() - a, min=0)
        elif reg == 'group':
            flat = v.reshape(N, -1)
            out = torch.zeros_like(flat)
            for s in np.unique(groups):
                idx = torch.from_numpy(np.nonzero(groups == s)[0])
                vs = flat[:, idx]
                nrm = vs.norm(dim=1, keepdim=True)
                scale = torch.clamp(1 - a / torch.where(nrm > 0, nrm, torch.ones_like(nrm)), min=0)
                out[:, idx] = torch.where(nrm > 0, scale, torch.zeros_like(nrm)) * vs
            v = out.reshape(x.shape)
        delta = v
        if t > T - K:
            tail += delta
    return tail / K


# ------------------------------------------------------------ safetensors

def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(np.asarray(tensors[name], dtype='<f4'))
        data = a.tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(a.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header['__metadata__'] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(',', ':')).encode('utf-8')
    text += b' ' * ((8 - len(text) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


# -------------------------------------------------------------------- main

def main():
    check_philox()
    torch.manual_seed(20240501)
    net = make_net()
    with torch.no_grad():
        # larger than PyTorch's initialization, so both softplus layers work in
        # their curved range and the maps differ visibly from the gradient
        net[0].weight.mul_(2.0)
        net[2].weight.mul_(2.5)
        net[5].weight.mul_(4.0)
    # float32-rounded weights, then float64 copies of exactly those values
    W32 = {k: v.detach().to(torch.float32).numpy().copy() for k, v in net.state_dict().items()}
    P = {k: torch.from_numpy(v).double() for k, v in W32.items()}

    gen = torch.Generator().manual_seed(7)
    x32 = torch.rand(2, 2, 7, 7, generator=gen, dtype=torch.float64).to(torch.float32).numpy()
    x = torch.from_numpy(x32).double()
    labels = torch.tensor([1, 2])

    out = {k: v for k, v in W32.items()}
    out['__x'] = x32
    out['__labels'] = labels.numpy().astype(np.float32)
    with torch.no_grad():
        out['__logits'] = forward(P, x).numpy()
    out['__rng_normal'] = rng_normal(16, 7, 1, 3, 1.0)

    g = grad(P, x, labels)
    out['__gradient'] = g.numpy()
    out['__input_x_gradient'] = (x * g).numpy()
    for rule in ('riemann_right', 'gauss_legendre', 'trapezoid'):
        out['__ig_' + rule] = integrated_gradients(P, x, labels, rule, OPTS['ig']['steps']).numpy()

    o = OPTS['smoothgrad']
    G = noisy_grads(P, x32, labels, o['samples'], o['sigma'], o['seed'])
    for variant in ('mean', 'square', 'vargrad'):
        out['__smoothgrad_' + variant] = smoothgrad(G, variant).reshape(x.shape)

    gaps = {}
    for key, name in (('sparsified', '__sparsified_smoothgrad'),
                      ('sparsified_c05_k25', '__sparsified_smoothgrad_c05_k25')):
        o = OPTS[key]
        G = noisy_grads(P, x32, labels, o['samples'], o['sigma'], o['seed'])
        m, gaps[key] = sparsified(G, o['clip'], o['keep'], key)
        out[name] = m.reshape(x.shape)

    dl = deeplift(P, x, labels).detach()
    with torch.no_grad():  # completeness: the attributions sum to f_c(x) − f_c(x0)
        gap = forward(P, x)[torch.arange(2), labels] - forward(P, torch.zeros_like(x))[torch.arange(2), labels]
    if not torch.allclose(dl.flatten(1).sum(1), gap, rtol=1e-12, atol=1e-12):
        sys.exit('deeplift reference is not complete: %s vs %s' % (dl.flatten(1).sum(1), gap))
    out['__deeplift'] = dl.numpy()

    o = OPTS['moreaugrad']
    groups = blocks(2, 7, 7, o['group_size'])
    for reg, eta, name in (('none', 0.0, 'vanilla'), ('l1', o['eta_l1'], 'sparse'), ('group', o['eta_group'], 'group')):
        tail = moreau_solver(P, x, labels, reg, eta, o['T'], o['gamma'], o['rho'], o['K'], groups)
        out['__mg_' + name] = (-tail / o['rho']).numpy()
        zeros = float((tail == 0).double().mean())
        tail5 = moreau_solver(P, x, labels, reg, eta, o['T'], o['gamma'], o['rho'], o['K_delta'], groups)
        out['__mg_%s_delta' % name] = tail5.numpy()
        print('  moreaugrad %-7s zeros in the map: %.2f' % (name, zeros))

    if MAX_Z[0] >= THRESHOLD:
        sys.exit('beta·z reached the softplus threshold (%g): the linear branch would be compared' % MAX_Z[0])
    print('  largest beta·z seen: %.2f (threshold %g)' % (MAX_Z[0], THRESHOLD))

    meta = {
        'net': 'Sequential(Conv2d(2,4,3,padding=1), Softplus(beta=3), Conv2d(4,4,3,stride=2,padding=1), '
               'Softplus(beta=3), Flatten(), Linear(64,3)) on (2,7,7)',
        'options': json.dumps(OPTS, sort_keys=True),
        'sparsified_min_gap': json.dumps(gaps, sort_keys=True),
        'item_keys': json.dumps(['%016x' % item_key(x32[n]) for n in range(x32.shape[0])]),
        'made_by': 'scripts/make_method_fixtures.py',
        'note': 'references in float64 from the float32-rounded weights and inputs',
    }
    write_safetensors(OUT, out, meta)
    print('wrote %s (%d bytes, %d tensors)' % (os.path.relpath(OUT, ROOT), os.path.getsize(OUT), len(out)))


if __name__ == '__main__':
    main()
