#!/usr/bin/python3
"""bench_dataset.py — the PyTorch half of scripts/bench_dataset.lua: the
batch-1 loop of the data-set command's methods on resnet_fmnist.

    bench_dataset.py --input=X.f32 --labels=L.json --images=200 --threads=2
                     --weights=models/resnet_fmnist.safetensors
                     [--samples=50 --T=100 --m=16 --K=100 --eta=0.1]

X.f32 holds the normalized images (N, 1, 28, 28), float32 little-endian;
L.json the class each map explains. Each image goes alone through each
method, as a PyTorch user's loop over a data set does: the gradient (one
forward + backward), SmoothGrad (samples noisy copies in one batch, sigma 0.15
of the image's value range) and Sparse MoreauGrad (docs/methods.md §7: T
iterations of m noisy copies in one batch, L1 weight eta, the mean of the last
K iterates). Prints one JSON object: seconds and images/s of each method.
The models and the solver are scripts/bench_torch.py's.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_torch as bt  # noqa: E402
import torch  # noqa: E402


def main(argv):
    opts = bt.parse_args(argv)
    torch.set_num_threads(int(opts.get('threads', 2)))
    model, shape = bt.build(dict(opts, model='resnet_fmnist'))
    n = int(opts.get('images', 200))
    per = 4 * shape[0] * shape[1] * shape[2]
    x = bt.read_f32(opts['input'], (os.path.getsize(opts['input']) // per,) + shape)[:n]
    n = x.shape[0]
    with open(opts['labels']) as f:
        labels = json.load(f)[:n]
    samples = int(opts.get('samples', 50))
    T, m = int(opts.get('T', 100)), int(opts.get('m', 16))
    K, eta = int(opts.get('K', min(101, T))), float(opts.get('eta', 0.1))
    gen = torch.Generator().manual_seed(0)

    def gradient(xi, c):
        return bt.input_grad(model, xi, torch.tensor([c]))

    def smoothgrad(xi, c):
        s = 0.15 * float(xi.max() - xi.min())
        z = torch.randn((samples,) + shape, generator=gen) * s
        return bt.input_grad(model, xi + z, torch.full((samples,), c, dtype=torch.long)).mean(0)

    def sparse_moreaugrad(xi, c):
        return bt.sparse_moreaugrad(model, xi, c, T, m, rho=1.0, gamma=0.1, eta=eta, sigma=0.1, K=K, gen=gen)

    out = {'images': n, 'threads': torch.get_num_threads(), 'torch': torch.__version__,
           'samples': samples, 'T': T, 'm': m, 'K': K}
    gradient(x[0:1], int(labels[0]))  # warm-up: allocator, oneDNN primitives
    total = 0.0
    for name, fn in (('gradient', gradient), ('smoothgrad', smoothgrad), ('sparse_moreaugrad', sparse_moreaugrad)):
        t0 = time.perf_counter()
        for i in range(n):
            fn(x[i:i + 1], int(labels[i]))
        sec = time.perf_counter() - t0
        total += sec
        out[name + '_s'] = sec
        out[name + '_images_per_s'] = n / sec
        print(f'bench_dataset.py: {name}: {n} images in {sec:.1f} s', file=sys.stderr, flush=True)
    out['all_s'] = total
    out['all_images_per_s'] = n / total
    print(json.dumps(out))


if __name__ == '__main__':
    main(sys.argv[1:])
