#!/usr/bin/python3
"""make_fixtures.py — PyTorch parity fixtures for moreau.models.

Run by developers with Debian's python3-torch and python3-torchvision (not by
CI; the committed fixtures let the test suite run without PyTorch):

    /usr/bin/python3 scripts/make_fixtures.py            # rewrite tests/fixtures/*
    /usr/bin/python3 scripts/make_fixtures.py --full     # full-size ResNet-18 vs the engine

For each model it builds the network in PyTorch with torchvision's parameter
names, at a reduced width, from fixed seeds, and makes batchnorm do real work:
the running statistics are calibrated on a random batch and then perturbed,
and the affine weights and biases are drawn at random. Every parameter and
input is rounded to float32 first; the references are then computed in float64
(model.double(), eval mode) FROM those rounded values, so the only error left
in the comparison is the engine's own float32 arithmetic.

One safetensors file per model (tests/fixtures/<model>.safetensors):
    <state_dict name>     the weights and buffers (float32; num_batches_tracked left out)
    __x                   input batch (2 items)
    __v                   direction of the Hessian-vector product
    __labels              the class of each item (float32 holding integers)
    __logits              network output (N, K)
    __scores, __grad, __hvp                 score = logit of the class:  f, ∇x f, ∇²x f · v
    __scores_logsm, __grad_logsm, __hvp_logsm   score = log-softmax of the class
    __relu_logits, __relu_grad              (resnet18_cifar only) the same weights with ReLU
and __metadata__ {model, options (JSON), note}.

It also writes tests/fixtures/<model>_state_dict.txt for resnet18_cifar and
efficientnet_b0 at width 1, straight from torchvision: one line per
state_dict entry, "name<TAB>shape<TAB>weight|buffer" (num_batches_tracked left
out), so the suite checks the names and shapes the engine builds.

The safetensors files are written by hand (8-byte little-endian header length,
JSON header, raw little-endian data) since the python safetensors package may
be absent.
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures')


# ----------------------------------------------------------- safetensors

def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered name -> float tensor (written as F32)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous().cpu()
        data = t.numpy().astype('<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header['__metadata__'] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(',', ':')).encode('utf-8')
    text += b' ' * ((8 - len(text) % 8) % 8)  # the data starts 8-aligned, as the reference writer does
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


# ----------------------------------------------------------------- models

def scale(c, width):
    """moreau.models: channels × width, rounded to nearest, at least 1."""
    return max(1, int(math.floor(c * width + 0.5)))


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (same names), with a chosen activation."""

    def __init__(self, cin, cout, stride, act):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = act

    def forward(self, x):
        h = self.act(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        s = x if self.downsample is None else self.downsample(x)
        return self.act(h + s)


class ResNet(nn.Module):
    """conv1 3x3 s1 + bn1 + act (no max-pool), stages of BasicBlocks, avgpool, fc."""

    def __init__(self, cin, stem, stages, num_classes, width, act):
        super().__init__()
        c = scale(stem, width)
        self.conv1 = nn.Conv2d(cin, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.act = act
        for i, (ch, blocks, stride) in enumerate(stages):
            cout = scale(ch, width)
            layer = []
            for k in range(blocks):
                layer.append(BasicBlock(c, cout, stride if k == 0 else 1, act))
                c = cout
            setattr(self, 'layer%d' % (i + 1), nn.Sequential(*layer))
        self.nstages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x):
        h = self.act(self.bn1(self.conv1(x)))
        for i in range(self.nstages):
            h = getattr(self, 'layer%d' % (i + 1))(h)
        return self.fc(torch.flatten(self.avgpool(h), 1))


def activation(name, beta):
    return nn.ReLU() if name == 'relu' else nn.Softplus(beta=beta)


def resnet18_cifar(num_classes=10, activation_name='relu', beta=1.0, width=1.0):
    return ResNet(3, 64, [(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)], num_classes, width,
                  activation(activation_name, beta))


def resnet_fmnist(num_classes=10, beta=10.0, width=1.0):
    return ResNet(1, 32, [(32, 1, 1), (64, 1, 2), (128, 1, 2)], num_classes, width, nn.Softplus(beta=beta))


def efficientnet_b0(num_classes=1000, width=1.0, depth=1.0):
    setting, last_channel = _efficientnet_conf('efficientnet_b0', width_mult=width, depth_mult=depth)
    return EfficientNet(setting, 0.2, num_classes=num_classes, last_channel=last_channel)


def torchvision_resnet18_cifar(num_classes=10):
    """torchvision's resnet18 with the usual CIFAR stem: conv1 3x3 stride 1, no max-pool."""
    m = torchvision.models.resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


def state_dict_list(model):
    buffers = {n for n, _ in model.named_buffers()}
    return [(k, tuple(v.shape), 'buffer' if k in buffers else 'weight')
            for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')]


def self_check():
    """Our PyTorch ResNet is torchvision's (names, shapes, and outputs)."""
    ours, tv = resnet18_cifar(10, 'relu'), torchvision_resnet18_cifar(10)
    assert state_dict_list(ours) == state_dict_list(tv), 'ResNet names differ from torchvision'
    tv.load_state_dict(ours.state_dict())
    randomize_bn(ours, torch.randn(4, 3, 32, 32), seed=1)
    tv.load_state_dict(ours.state_dict())
    ours.eval(), tv.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(ours(x), tv(x), atol=1e-6), 'ResNet output differs from torchvision'
    n = sum(p.numel() for p in ours.parameters())
    assert n == 11173962, n


# ------------------------------------------------------------- batchnorm

def randomize_bn(model, calib, seed):
    """Makes every batchnorm do real work while activations stay O(1) in eval
    mode: layer by layer, in order, the running statistics are set to those of
    the layer's actual eval-mode input on `calib` (with the layers before it
    already randomized), then perturbed (mean shifted by 0.2 sd, variance
    scaled by exp(0.3 z)); the affine weight is drawn from U(0.6, 1.4) and the
    bias from N(0, 0.2²). Nothing else of the model changes."""
    g = torch.Generator().manual_seed(seed)
    model.eval()
    seen = {}

    def grab(m, inputs):
        seen['x'] = inputs[0]

    with torch.no_grad():
        for m in [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]:
            hook = m.register_forward_pre_hook(grab)
            model(calib)
            hook.remove()
            h = seen['x'].transpose(0, 1).reshape(m.num_features, -1)
            c = m.num_features
            mean, var = h.mean(1), h.var(1, unbiased=False) + 1e-3
            m.running_mean.copy_(mean + 0.2 * var.sqrt() * torch.randn(c, generator=g))
            m.running_var.copy_(var * torch.exp(0.3 * torch.randn(c, generator=g)))
            m.weight.copy_(0.6 + 0.8 * torch.rand(c, generator=g))
            m.bias.copy_(0.2 * torch.randn(c, generator=g))


def round_params_to_f32(model):
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.to(torch.float32).to(t.dtype))


# ------------------------------------------------------------ references

def references(model, x, labels, v):
    """float64, eval mode: logits, and for each score kind (logit, log-softmax)
    the scores, input gradients and Hessian-vector products per item."""
    model = model.double().eval()
    x = x.double().requires_grad_(True)
    v = v.double()
    idx = torch.arange(x.shape[0])
    out = {}
    for kind in ('logit', 'logsm'):
        z = model(x)
        if kind == 'logit':
            s = z[idx, labels]
            out['__logits'] = z.detach()
        else:
            s = F.log_softmax(z, dim=1)[idx, labels]
        # items are independent in eval mode: the gradient of the sum is each item's gradient
        (grad,) = torch.autograd.grad(s.sum(), x, create_graph=True)
        (hvp,) = torch.autograd.grad((grad * v).sum(), x)
        sfx = '' if kind == 'logit' else '_logsm'
        out['__scores' + sfx] = s.detach()
        out['__grad' + sfx] = grad.detach()
        out['__hvp' + sfx] = hvp.detach()
    return out


def make_fixture(name, model, options, input_shape, x_kind, seed, num_classes, extra=None):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1000)
    N = 2
    calib = torch.randn((16,) + input_shape, generator=g)
    if x_kind == 'unit':
        calib = calib.abs().clamp(max=1.0)
    randomize_bn(model, calib, seed + 2000)
    round_params_to_f32(model)
    if x_kind == 'unit':  # [0, 1] pixels, as Fashion-MNIST
        x = torch.rand((N,) + input_shape, generator=g)
    else:  # normalized images
        x = torch.randn((N,) + input_shape, generator=g)
    v = torch.randn((N,) + input_shape, generator=g)
    x, v = x.float(), v.float()  # the inputs are the float32-rounded values
    labels = torch.tensor([3, 7]) % num_classes
    tensors = {k: t.float() for k, t in model.state_dict().items() if not k.endswith('num_batches_tracked')}
    tensors['__x'], tensors['__v'], tensors['__labels'] = x, v, labels.float()
    tensors.update(references(model, x, labels, v))
    if extra:
        tensors.update(extra(model, x, labels))
    meta = {'model': name, 'options': json.dumps(options, sort_keys=True),
            'note': 'made by scripts/make_fixtures.py; references in float64 from the float32 values',
            'torch': torch.__version__}
    return tensors, meta


def relu_extra(model_fn):
    """Logits and logit gradients of the same weights with ReLU instead of softplus."""
    def extra(model, x, labels):
        relu = model_fn()
        relu.load_state_dict(model.state_dict())
        ref = references(relu, x, labels, torch.zeros_like(x))
        return {'__relu_logits': ref['__logits'], '__relu_grad': ref['__grad']}
    return extra


def fixture_specs():
    """(file stem, model name, moreau options, model, input shape, x kind, seed, classes, extra)"""
    torch.manual_seed(0)
    r18 = dict(num_classes=10, activation='softplus', beta=2.0, width=0.125)
    fm = dict(num_classes=10, beta=10.0, width=1.0)
    eff = dict(num_classes=10, width=0.125, depth=1.0, image_size=32)
    return [
        ('resnet18_cifar', 'resnet18_cifar', r18,
         lambda: resnet18_cifar(10, 'softplus', 2.0, 0.125), (3, 32, 32), 'normal', 11, 10,
         lambda: relu_extra(lambda: resnet18_cifar(10, 'relu', 1.0, 0.125))),
        ('resnet_fmnist', 'resnet_fmnist', fm, lambda: resnet_fmnist(10, 10.0, 1.0), (1, 28, 28), 'unit', 12, 10,
         lambda: None),
        ('efficientnet_b0', 'efficientnet_b0', eff, lambda: efficientnet_b0(10, 0.125, 1.0), (3, 32, 32),
         'normal', 13, 10, lambda: None),
    ]


def write_state_dict_list(path, model):
    with open(path, 'w') as f:
        f.write('# torchvision %s state_dict: name, shape, kind (num_batches_tracked left out).\n'
                '# Written by scripts/make_fixtures.py.\n' % torchvision.__version__)
        for k, shape, kind in state_dict_list(model):
            f.write('%s\t%s\t%s\n' % (k, 'x'.join(str(d) for d in shape) or '1', kind))


def main_fixtures():
    os.makedirs(FIXTURES, exist_ok=True)
    self_check()
    total = 0
    for stem, name, options, build, shape, x_kind, seed, classes, extra in fixture_specs():
        torch.manual_seed(seed)
        model = build()
        tensors, meta = make_fixture(name, model, options, shape, x_kind, seed, classes, extra())
        path = os.path.join(FIXTURES, stem + '.safetensors')
        write_safetensors(path, tensors, meta)
        size = os.path.getsize(path)
        total += size
        nparams = sum(p.numel() for p in model.parameters())
        print('%-45s %8d bytes  %8d parameters  |grad| %.3g  |hvp| %.3g' % (
            os.path.relpath(path, ROOT), size, nparams, tensors['__grad'].norm(), tensors['__hvp'].norm()))
    write_state_dict_list(os.path.join(FIXTURES, 'resnet18_cifar_state_dict.txt'), torchvision_resnet18_cifar(10))
    write_state_dict_list(os.path.join(FIXTURES, 'efficientnet_b0_state_dict.txt'),
                          torchvision.models.efficientnet_b0())
    print('total %d bytes' % total)


# ---------------------------------------------------------------- --full

FULL_CHECK_LUA = r'''
local models = require 'moreau.models'
local oracle = require 'moreau.oracle'
local st = require 'moreau.safetensors'
local path = arg[1]
local t = st.load(path)
local net = models.resnet18_cifar { num_classes = 10, activation = 'softplus', beta = 1 }
models.load(net, path, { strict = false })
local labels = { t.__labels:data()[0], t.__labels:data()[1] }
local function rel(a, b) return (a - b):norm() / b:norm() end
local y = net:forward(t.__x)
local hv, _, g = oracle.hvp(net, t.__x, labels, t.__v)
print(('logits  max abs err %.3g  rel %.3g'):format(y:max_abs_diff(t.__logits), rel(y, t.__logits)))
print(('grad    max abs err %.3g  rel %.3g'):format(g:max_abs_diff(t.__grad), rel(g, t.__grad)))
print(('hvp     max abs err %.3g  rel %.3g'):format(hv:max_abs_diff(t.__hvp), rel(hv, t.__hvp)))
hv, _, g = oracle.hvp(net, t.__x, labels, t.__v, { score = 'log_softmax' })
print(('grad (log-softmax) rel %.3g   hvp (log-softmax) rel %.3g'):format(rel(g, t.__grad_logsm), rel(hv, t.__hvp_logsm)))
'''


def main_full(lib):
    torch.manual_seed(21)
    model = resnet18_cifar(10, 'softplus', 1.0, 1.0)
    tensors, meta = make_fixture('resnet18_cifar', model, dict(num_classes=10, activation='softplus', beta=1.0,
                                 width=1.0), (3, 32, 32), 'normal', 21, 10)
    path = '/tmp/moreau_resnet18_cifar_full.safetensors'
    write_safetensors(path, tensors, meta)
    print('wrote %s (%d bytes); |logits| %.3g |grad| %.3g |hvp| %.3g' % (
        path, os.path.getsize(path), tensors['__logits'].norm(), tensors['__grad'].norm(), tensors['__hvp'].norm()))
    env = dict(os.environ)
    if lib:
        env['MOREAU_LIB'] = lib
    lpath = '%s/bindings/?.lua;%s/bindings/?/init.lua;' % (ROOT, ROOT)
    # luajit reads the script from stdin ('-'); arg[1] is the fixture
    r = subprocess.run(['luajit', '-e', "package.path='%s'..package.path" % lpath, '-', path],
                       input=FULL_CHECK_LUA.encode(), env=env, cwd=ROOT)
    return r.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--full', action='store_true',
                    help='full-size resnet18_cifar: fixture to /tmp, compare with the engine (needs luajit)')
    ap.add_argument('--lib', help='libmoreau.so for --full (default: $MOREAU_LIB or build/libmoreau.so)')
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if a.full:
        sys.exit(main_full(a.lib))
    main_fixtures()


if __name__ == '__main__':
    main()
