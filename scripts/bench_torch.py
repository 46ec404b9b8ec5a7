#!/usr/bin/python3
"""bench_torch.py — the PyTorch CPU half of scripts/bench.lua.

scripts/bench.lua runs it with Debian's /usr/bin/python3 (python3-torch,
python3-torchvision) through io.popen and reads one JSON object from the last
line of stdout. Each call is a fresh process, so ru_maxrss is the peak of that
one measurement. Progress and warnings go to stderr.

    bench_torch.py probe
        {"torch": version, "torchvision": version}
    bench_torch.py forward --threads=2 --repeats=5 --batches=1,16,32
                   [--weights=W.safetensors] [--check-input=X.f32 --check-n=2]
        resnet18_cifar (softplus beta 1): median seconds of the forward pass
        (torch.no_grad) and of forward + input gradient (logit of a class,
        parameters frozen so no weight gradient is computed) per batch, and
        the logits of the check input (to compare with the engine).
    bench_torch.py moreau --model=resnet18_cifar|resnet_fmnist --input=X.f32
                   --label=C --T=300 --m=32 --threads=2 [--weights=W.safetensors]
                   [--beta=B --width=W --num-classes=K] [--out=MAP.f32] [--seed=S]
                   [--precision=fp32|bf16] [--grad-out=GRAD.f32]
        one Sparse MoreauGrad explanation of one image (docs/methods.md §7), seconds,
        resident set before it and ru_maxrss after it. --precision=bf16 runs
        each forward under torch.autocast('cpu', dtype=torch.bfloat16) (the
        backward follows the types autocast chose; the input gradient and the
        solver stay float32). --grad-out: the plain input gradient of the
        class at the image, in the same precision, after the timing.
    bench_torch.py batch --input=X.f32 --labels=L.json --images=64 --T=20 --m=16
                   --threads=2 --weights=W.safetensors [--beta=B --width=W --num-classes=K]
        resnet_fmnist: Sparse MoreauGrad of each of the images in turn (the
        batch-1 loop: one image's m noisy copies per forward pass), seconds.
    bench_torch.py methods --input=X.f32 --label=C --samples=50 --steps=50
                   --threads=2 --repeats=3 [--weights=W.safetensors]
        resnet18_cifar, one image: SmoothGrad (samples noisy copies, sigma
        0.15 of the value range, one batch) and Integrated Gradients (steps
        points of the zero-baseline path, right Riemann sum, one batch),
        median seconds of each.
    bench_torch.py train --threads=2 --repeats=5 --batch=128
        resnet_fmnist training steps (batchnorm in training mode, cross-entropy,
        SGD with Nesterov momentum and weight decay): median seconds per step.
    bench_torch.py efficientnet_init --out=W.safetensors [--seed=S]
        torchvision's efficientnet_b0 (1000 classes) with its own random
        initialization (torch.manual_seed(S)), the batchnorm running
        statistics those of one batch of 16 N(0, 1) images, saved as float32
        safetensors (num_batches_tracked left out); its parameter count.
    bench_torch.py efficientnet_grad --threads=2 --repeats=5 --batch=16
                   --weights=W.safetensors [--check-input=X.f32 --check-n=2]
        torchvision's efficientnet_b0 at 224x224 (1000 classes) with the
        engine's weights: median seconds of forward + input gradient at one
        batch, the parameter count, and the logits of the check input.
    bench_torch.py efficientnet_moreau --input=X.f32 --label=C --T=20 --m=16
                   --threads=2 --weights=W.safetensors [--out=MAP.f32] [--seed=S]
        one Sparse MoreauGrad explanation of one 3x224x224 image by the same
        network, as the task moreau.
    bench_torch.py resnet50_export --out=M.onnx --weights=W.safetensors [--seed=S]
                   [--check-input=X.f32 --check-n=2]
        torchvision's resnet50 (1000 classes) with its own random
        initialization (torch.manual_seed(S)), batchnorm statistics of one
        batch as efficientnet_init: the weights saved as float32 safetensors,
        the model exported to ONNX (opset 13, eval mode: batchnorm folded into
        the convolutions, batch axis dynamic) for moreau.models.onnx; its
        parameter count, forward FLOPs per image and the logits of the check
        input.
    bench_torch.py resnet50_grad --threads=2 --repeats=5 --batch=16
                   --weights=W.safetensors [--check-input=X.f32 --check-n=2]
    bench_torch.py resnet50_moreau --input=X.f32 --label=C --T=20 --m=16
                   --threads=2 --weights=W.safetensors [--out=MAP.f32] [--seed=S]
        as efficientnet_grad and efficientnet_moreau, for torchvision's
        resnet50 with those weights (batchnorm kept as PyTorch runs it).

The models are torchvision's names and layout, as moreau.models builds them:
resnet18_cifar is torchvision's resnet18 with the CIFAR stem (conv1 3x3
stride 1 padding 1, no max-pool) and every ReLU replaced by Softplus(beta);
resnet_fmnist is conv1 3x3 1->32 + bn1 + softplus, layer1..3 of one
BasicBlock each (32, 64 stride 2, 128 stride 2), average pool, fc. Weights
come from a safetensors file read here by hand (8-byte little-endian header
length, JSON header, raw little-endian data) or stay PyTorch's random init.
Input files are raw little-endian float32, batch first.
"""
import json
import math
import os
import resource
import struct
import sys
import time

import torch
import torch.nn as nn
import torchvision


def parse_args(argv):
    opts = {}
    for a in argv:
        if not a.startswith('--') or '=' not in a:
            raise SystemExit('bench_torch.py: arguments are --key=value, got ' + a)
        k, v = a[2:].split('=', 1)
        opts[k.replace('-', '_')] = v
    return opts


# ------------------------------------------------------------ safetensors

_DTYPES = {'F32': (torch.float32, 4), 'F64': (torch.float64, 8), 'F16': (torch.float16, 2),
           'I64': (torch.int64, 8), 'I32': (torch.int32, 4), 'U8': (torch.uint8, 1)}


def load_safetensors(path):
    """{name: tensor} from a safetensors file, every offset checked against the file."""
    with open(path, 'rb') as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f'{path}: {len(blob)} bytes, too short for a safetensors header')
    (hlen,) = struct.unpack('<Q', blob[:8])
    if 8 + hlen > len(blob):
        raise ValueError(f'{path}: header of {hlen} bytes runs past the end ({len(blob)} bytes)')
    header = json.loads(blob[8:8 + hlen].decode('utf-8'))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        dtype, size = _DTYPES[info['dtype']]
        begin, end = info['data_offsets']
        shape = info['shape']
        n = math.prod(shape)
        if not (0 <= begin <= end and base + end <= len(blob) and end - begin == n * size):
            raise ValueError(f'{path}: tensor {name} has offsets {begin}..{end} that do not fit '
                             f'its shape {shape} or the file')
        raw = bytearray(blob[base + begin:base + end])
        t = torch.frombuffer(raw, dtype=dtype) if n > 0 else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(shape).clone()
    return out


def load_weights(model, path):
    sd = load_safetensors(path)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith('num_batches_tracked')]
    if missing or unexpected:
        raise ValueError(f'{path}: missing {missing[:5]}, unexpected {unexpected[:5]}')


def save_safetensors(path, tensors):
    """Writes {name: float32 tensor} as safetensors: the 8-byte little-endian
    header length, the JSON header (dtype, shape, data_offsets), the raw data."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = t.detach().contiguous().to(torch.float32).numpy().tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode('utf-8')
    head += b' ' * (-len(head) % 8)  # the data starts 8-byte aligned
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(head)))
        f.write(head)
        for raw in blobs:
            f.write(raw)


def read_f32(path, shape):
    with open(path, 'rb') as f:
        raw = bytearray(f.read())
    n = math.prod(shape)
    if len(raw) != 4 * n:
        raise ValueError(f'{path}: {len(raw)} bytes, expected {4 * n} for shape {shape}')
    return torch.frombuffer(raw, dtype=torch.float32).reshape(shape).clone()


def write_f32(path, t):
    with open(path, 'wb') as f:
        f.write(t.detach().contiguous().to(torch.float32).numpy().tobytes())


# ------------------------------------------------------------ models

def softplus_everywhere(module, beta):
    """Replaces every nn.ReLU below module by nn.Softplus(beta)."""
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Softplus(beta=beta))
        else:
            softplus_everywhere(child, beta)
    return module


def resnet18_cifar(num_classes=10, beta=1.0):
    m = torchvision.models.resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return softplus_everywhere(m, beta)


class ResNetFMNIST(nn.Module):
    """moreau.models.resnet_fmnist: the same names, so the same state_dict."""

    def __init__(self, num_classes=10, beta=10.0, width=1.0):
        super().__init__()

        def scale(c):
            return max(1, int(math.floor(c * width + 0.5)))

        BasicBlock = torchvision.models.resnet.BasicBlock
        c0 = scale(32)
        self.conv1 = nn.Conv2d(1, c0, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c0)
        self.act = nn.Softplus(beta=beta)
        cin = c0
        for i, (ch, stride) in enumerate([(32, 1), (64, 2), (128, 2)], start=1):
            cout = scale(ch)
            ds = None
            if stride != 1 or cin != cout:
                ds = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            setattr(self, f'layer{i}', nn.Sequential(BasicBlock(cin, cout, stride, ds)))
            cin = cout
        softplus_everywhere(self, beta)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build(opts):
    name = opts.get('model', 'resnet18_cifar')
    k = int(opts.get('num_classes', 10))
    if name == 'resnet18_cifar':
        model, shape = resnet18_cifar(k, float(opts.get('beta', 1))), (3, 32, 32)
    elif name == 'resnet_fmnist':
        model = ResNetFMNIST(k, float(opts.get('beta', 10)), float(opts.get('width', 1)))
        shape = (1, 28, 28)
    else:
        raise SystemExit('bench_torch.py: unknown model ' + name)
    if opts.get('weights'):
        load_weights(model, opts['weights'])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)  # input gradients only, as the engine's oracle
    return model, shape


# ------------------------------------------------------------ measurements

def rss_bytes(field='VmRSS'):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    return 0


def input_grad(model, x, labels, bf16=False):
    """Scores f_c(x) and ∇x f_c(x) of the class logits, one forward + backward;
    bf16: the forward under CPU bfloat16 autocast."""
    x = x.detach().requires_grad_(True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
    score = out.float().gather(1, labels[:, None]).sum()
    (g,) = torch.autograd.grad(score, x)
    return g


def median_seconds(fn, repeats):
    fn()  # warm-up: allocator, oneDNN primitives
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def task_forward(opts):
    model, shape = build(opts)
    repeats = int(opts.get('repeats', 5))
    result = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'batches': []}
    gen = torch.Generator().manual_seed(0)
    for n in [int(b) for b in opts.get('batches', '1,16,32').split(',')]:
        x = torch.randn((n,) + shape, generator=gen)
        labels = torch.arange(n) % 10

        def fwd():
            with torch.no_grad():
                model(x)

        tf = median_seconds(fwd, repeats)
        tg = median_seconds(lambda: input_grad(model, x, labels), repeats)
        print(f'bench_torch: batch {n}: forward {tf * 1e3:.1f} ms, forward+grad {tg * 1e3:.1f} ms',
              file=sys.stderr)
        result['batches'].append({'batch': n, 'forward_s': tf, 'grad_s': tg})
    if opts.get('check_input'):
        n = int(opts.get('check_n', 1))
        x = read_f32(opts['check_input'], (n,) + shape)
        with torch.no_grad():
            result['check_logits'] = model(x).reshape(-1).tolist()
    return result


def sparse_moreaugrad(model, x, c, T, m, rho, gamma, eta, sigma, K, gen, bf16=False):
    """docs/methods.md §7, reg = L1, for one image x (1, C, H, W) and class c:
         δ_0 = 0,  s = sigma·(max x − min x)
         g_t = (1/m) Σ_i ∇f_c(x + δ_t + z_i), z_i ~ N(0, s² I) fresh each iteration (m noisy
               copies through the network as one batch); m = 0: g_t = ∇f_c(x + δ_t)
         δ_{t+1} = ST_{gamma·eta}(δ_t − gamma·(g_t + δ_t/rho))
         map = −mean(δ_{T−K+1..T}) / rho
    """
    s = sigma * float(x.max() - x.min())
    delta = torch.zeros_like(x)
    tail = torch.zeros_like(x)
    thr = gamma * eta
    labels = torch.full((max(m, 1),), c, dtype=torch.long)
    for t in range(1, T + 1):
        if m > 0:
            z = torch.randn((m,) + tuple(x.shape[1:]), generator=gen) * s
            g = input_grad(model, x + delta + z, labels, bf16).mean(0, keepdim=True)
        else:
            g = input_grad(model, x + delta, labels, bf16)
        v = delta - gamma * (g + delta / rho)
        delta = torch.sign(v) * torch.clamp(v.abs() - thr, min=0.0)
        if t > T - K:
            tail += delta
    return -(tail / K) / rho


def task_moreau(opts):
    model, shape = build(opts)
    x = read_f32(opts['input'], (1,) + shape)
    c = int(opts['label'])
    T, m = int(opts.get('T', 300)), int(opts.get('m', 32))
    K = int(opts.get('K', min(101, T)))
    gen = torch.Generator().manual_seed(int(opts.get('seed', 0)))
    precision = opts.get('precision', 'fp32')
    if precision not in ('fp32', 'bf16'):
        raise SystemExit(f"bench_torch.py: --precision must be fp32 or bf16, got {precision}")
    with torch.no_grad():
        logits = model(x).reshape(-1).tolist()  # to compare with the engine's: same net?
    rss_before = rss_bytes()
    t0 = time.perf_counter()
    out = sparse_moreaugrad(model, x, c, T, m, rho=float(opts.get('rho', 1)),
                            gamma=float(opts.get('gamma', 0.1)), eta=float(opts.get('eta', 5e-3)),
                            sigma=float(opts.get('sigma', 0.1)), K=K, gen=gen,
                            bf16=precision == 'bf16')
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    if opts.get('out'):
        write_f32(opts['out'], out)
    if opts.get('grad_out'):
        write_f32(opts['grad_out'], input_grad(model, x, torch.tensor([c]), precision == 'bf16'))
    return {'seconds': seconds, 'peak_rss': peak, 'rss_before': rss_before, 'T': T, 'm': m, 'K': K,
            'threads': torch.get_num_threads(), 'sparsity': float((out == 0).float().mean()),
            'torch': torch.__version__, 'logits': logits, 'precision': precision}


def task_batch(opts):
    model, shape = build(dict(opts, model='resnet_fmnist'))
    n = int(opts.get('images', 64))
    x = read_f32(opts['input'], (n,) + shape)
    with open(opts['labels']) as f:
        labels = json.load(f)
    T, m = int(opts.get('T', 20)), int(opts.get('m', 16))
    K = min(101, T)
    gen = torch.Generator().manual_seed(int(opts.get('seed', 0)))
    t0 = time.perf_counter()
    for i in range(n):
        sparse_moreaugrad(model, x[i:i + 1], int(labels[i]), T, m, rho=1.0, gamma=0.1, eta=5e-3,
                          sigma=0.1, K=K, gen=gen)
    seconds = time.perf_counter() - t0
    return {'seconds': seconds, 'images': n, 'images_per_s': n / seconds, 'T': T, 'm': m,
            'threads': torch.get_num_threads(), 'torch': torch.__version__}


def task_methods(opts):
    model, shape = build(dict(opts, model='resnet18_cifar'))
    x = read_f32(opts['input'], (1,) + shape)
    c = int(opts['label'])
    samples, steps = int(opts.get('samples', 50)), int(opts.get('steps', 50))
    repeats = int(opts.get('repeats', 3))
    gen = torch.Generator().manual_seed(0)
    s = 0.15 * float(x.max() - x.min())

    def smoothgrad():
        z = torch.randn((samples,) + shape, generator=gen) * s
        return input_grad(model, x + z, torch.full((samples,), c, dtype=torch.long)).mean(0)

    def integrated_gradients():
        alphas = torch.arange(1, steps + 1, dtype=torch.float32).reshape(-1, 1, 1, 1) / steps
        g = input_grad(model, alphas * x, torch.full((steps,), c, dtype=torch.long))
        return x[0] * g.mean(0)

    return {'smoothgrad_s': median_seconds(smoothgrad, repeats),
            'ig_s': median_seconds(integrated_gradients, repeats),
            'threads': torch.get_num_threads(), 'torch': torch.__version__}


def task_train(opts):
    """Training steps of resnet_fmnist as recipes/train_fmnist.lua takes them:
    batch statistics in batchnorm, cross-entropy, SGD (lr 0.1, Nesterov
    momentum 0.9, weight decay 5e-4); median seconds per step."""
    opts = dict(opts, model='resnet_fmnist')
    model, shape = build(opts)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    n = int(opts.get('batch', 128))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((n,) + shape, generator=gen)
    labels = torch.arange(n) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), labels)
        loss.backward()
        opt.step()

    t = median_seconds(step, int(opts.get('repeats', 5)))
    return {'step_s': t, 'batch': n, 'images_per_s': n / t, 'threads': torch.get_num_threads(),
            'torch': torch.__version__}


# ------------------------------------------------------------ ImageNet-size models at 224x224

def frozen(model, opts):
    """model with the weights of opts['weights'] (when given), in eval mode
    (dropout and stochastic depth the identity), parameters frozen."""
    if opts.get('weights'):
        load_weights(model, opts['weights'])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def efficientnet_b0(opts):
    """torchvision's efficientnet_b0 (1000 classes; moreau.models.efficientnet_b0
    builds the same modules under the same names), weights from opts['weights']."""
    return frozen(torchvision.models.efficientnet_b0(num_classes=1000), opts)


def resnet50(opts):
    """torchvision's resnet50 (1000 classes), weights from opts['weights']."""
    return frozen(torchvision.models.resnet50(num_classes=1000), opts)


def calibrated_init(model):
    """model's own random initialization, with the batchnorm running statistics
    set to those of one batch of 16 N(0, 1) images (drawn from torch's global
    generator, after the weights): with the initial ones (mean 0, variance 1)
    inference-mode batchnorm is the identity, and the activations of a deep
    net drift far from O(1) (efficientnet_b0: each depthwise layer scales its
    input's variance by about 2/C, the logits come out ~1e-14; resnet50: the
    residual branches add up, and the logits reach ~1e2 on N(0, 1) images);
    normalized by actual batch statistics, as in a trained network, the
    activations stay O(1) (and no pass runs on subnormal floats). Returns the
    state_dict without num_batches_tracked."""
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None  # a cumulative average: one batch sets the statistics outright
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 3, 224, 224))
    model.eval()
    return {k: v for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')}


def task_efficientnet_init(opts):
    """torchvision's efficientnet_b0 with its own initialization (kaiming-normal
    fan-out convolutions, unit batchnorm, uniform(±1/sqrt(out)) classifier),
    batchnorm statistics calibrated (calibrated_init), saved as float32
    safetensors."""
    torch.manual_seed(int(opts.get('seed', 0)))
    model = torchvision.models.efficientnet_b0(num_classes=1000)
    sd = calibrated_init(model)
    save_safetensors(opts['out'], sd)
    return {'num_params': sum(p.numel() for p in model.parameters()), 'tensors': len(sd),
            'torch': torch.__version__}


def task_resnet50_export(opts):
    """torchvision's resnet50 with its own initialization (kaiming-normal
    fan-out convolutions, unit batchnorm, uniform(±1/sqrt(in)) fc; seed
    --seed), batchnorm statistics calibrated (calibrated_init), saved as
    float32 safetensors (--weights, read back by resnet50_grad and
    resnet50_moreau) and exported to ONNX (--out) as scripts/export_onnx.py
    exports: opset 13, batch axis dynamic, eval mode, so the exporter folds
    each BatchNormalization into the Conv before it. The logits of
    --check-input (--check-n images, float32, eval mode) let the engine check
    that it reads the same network before anything is timed."""
    torch.manual_seed(int(opts.get('seed', 0)))
    model = torchvision.models.resnet50(num_classes=1000)
    sd = calibrated_init(model)
    save_safetensors(opts['weights'], sd)
    frozen(model, {})
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), opts['out'], opset_version=13,
                      input_names=['input'], output_names=['logits'],
                      dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}}, do_constant_folding=True)
    result = {'num_params': sum(p.numel() for p in model.parameters()), 'tensors': len(sd),
              'onnx_bytes': os.path.getsize(opts['out']), 'torch': torch.__version__}
    # forward FLOPs per image, counted as the engine's net:flops() counts them
    # (a multiply-add = 2): conv 2·numel(weight)·Ho·Wo, linear 2·numel(weight)
    flops = []

    def count(mod, inp, out):
        area = out.shape[2] * out.shape[3] if isinstance(mod, nn.Conv2d) else 1
        flops.append(2 * mod.weight.numel() * area)

    hooks = [mod.register_forward_hook(count) for mod in model.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    k = int(opts.get('check_n', 1)) if opts.get('check_input') else 1
    xc = read_f32(opts['check_input'], (k, 3, 224, 224)) if opts.get('check_input') else torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        yc = model(xc)
    for h in hooks:
        h.remove()
    result['flops'] = sum(flops)
    if opts.get('check_input'):
        result['check_logits'] = yc.reshape(-1).tolist()
    return result


def grad_224(model, opts):
    """Median seconds of forward + input gradient of model at one batch of
    --batch N(0, 1) 3x224x224 images (class i mod 1000 for item i), the
    parameter count, and the logits of --check-input (--check-n images)."""
    n = int(opts.get('batch', 16))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((n, 3, 224, 224), generator=gen)
    labels = torch.arange(n) % 1000
    tg = median_seconds(lambda: input_grad(model, x, labels), int(opts.get('repeats', 5)))
    print(f'bench_torch: batch {n}: forward+grad {tg * 1e3:.1f} ms', file=sys.stderr)
    result = {'grad_s': tg, 'batch': n, 'num_params': sum(p.numel() for p in model.parameters()),
              'threads': torch.get_num_threads(), 'torch': torch.__version__}
    if opts.get('check_input'):
        k = int(opts.get('check_n', 1))
        xc = read_f32(opts['check_input'], (k, 3, 224, 224))
        with torch.no_grad():
            result['check_logits'] = model(xc).reshape(-1).tolist()
    return result


def moreau_224(model, opts):
    """One Sparse MoreauGrad explanation (the settings of the task moreau) of
    the 3x224x224 image --input for class --label by model: seconds, resident
    set before and ru_maxrss after; the map to --out."""
    x = read_f32(opts['input'], (1, 3, 224, 224))
    T, m = int(opts.get('T', 20)), int(opts.get('m', 16))
    gen = torch.Generator().manual_seed(int(opts.get('seed', 0)))
    rss_before = rss_bytes()
    t0 = time.perf_counter()
    out = sparse_moreaugrad(model, x, int(opts['label']), T, m, rho=1.0, gamma=0.1, eta=5e-3, sigma=0.1,
                            K=min(101, T), gen=gen)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    if opts.get('out'):
        write_f32(opts['out'], out)
    return {'seconds': seconds, 'peak_rss': peak, 'rss_before': rss_before, 'T': T, 'm': m,
            'threads': torch.get_num_threads(), 'torch': torch.__version__}


def main(argv):
    if not argv:
        raise SystemExit(__doc__)
    task, opts = argv[0], parse_args(argv[1:])
    torch.set_num_threads(int(opts.get('threads', 1)))
    torch.manual_seed(0)
    if task == 'probe':
        result = {'torch': torch.__version__, 'torchvision': torchvision.__version__}
    elif task == 'forward':
        result = task_forward(opts)
    elif task == 'moreau':
        result = task_moreau(opts)
    elif task == 'train':
        result = task_train(opts)
    elif task == 'batch':
        result = task_batch(opts)
    elif task == 'methods':
        result = task_methods(opts)
    elif task == 'efficientnet_init':
        result = task_efficientnet_init(opts)
    elif task == 'efficientnet_grad':
        result = grad_224(efficientnet_b0(opts), opts)
    elif task == 'efficientnet_moreau':
        result = moreau_224(efficientnet_b0(opts), opts)
    elif task == 'resnet50_export':
        result = task_resnet50_export(opts)
    elif task == 'resnet50_grad':
        result = grad_224(resnet50(opts), opts)
    elif task == 'resnet50_moreau':
        result = moreau_224(resnet50(opts), opts)
    else:
        raise SystemExit('bench_torch.py: unknown task ' + task)
    sys.stdout.write(json.dumps(result) + '\n')


if __name__ == '__main__':
    main(sys.argv[1:])
