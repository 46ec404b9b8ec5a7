#!/usr/bin/python3
"""export_onnx.py — ONNX models and PyTorch references for moreau.models.onnx.

Developer-run with Debian's python3-torch (1.13), python3-torchvision and
python3-onnx; the committed fixtures let the test suite run without them:

    /usr/bin/python3 scripts/export_onnx.py           # rewrite tests/fixtures/onnx/*
    /usr/bin/python3 scripts/export_onnx.py --full    # full-size torchvision models: parity table
    /usr/bin/python3 scripts/export_onnx.py --load-only   # full-size: which load, logits vs float32
    /usr/bin/python3 scripts/export_onnx.py --only vit_tiny   # rewrite only the fixtures named

Fixtures (tests/fixtures/onnx/): for each model NAME, NAME.onnx (exported by
torch.onnx.export at opset 13, batch axis dynamic, eval mode, so the exporter
folds each BatchNormalization that follows a Conv into it) and NAME.safetensors
with the references, computed as scripts/make_fixtures.py does: random weights
from fixed seeds, batchnorm statistics far from the identity, every parameter
and input rounded to float32, then float64 PyTorch (eval mode) from those
values:
    __x, __v, __labels     input batch, HVP direction, the class of each item
    __logits               network output
    __grad, __hvp          score = logit of the class: grad_x, Hessian_x . v
    __sp_logits, __sp_grad, __sp_hvp   (resnet18) the same with every ReLU
                           replaced by Softplus(beta = SOFTPLUS_BETA)
The models are reduced in width or resolution to keep the files small:
    tiny_ops   a small net using the classic ops the reader maps (3x16x16)
    tiny_modern  the ops of newer classifiers (LayerNorm, GELU, ...; opset 17)
    resnet18   torchvision's ResNet-18 structure (BasicBlock, 7x7 stem,
               max-pool) at width 1/16, 3x32x32
    resnet50   torchvision's ResNet-50 structure (Bottleneck) at width 1/16, 3x64x64
    vgg11_bn   torchvision's VGG-11 features with batchnorm at width 1/16, a
               global average pool and a small classifier, 3x32x32
    vit_tiny   torchvision's VisionTransformer (vit_b_16's class) at 3x32x32,
               patch 8, 2 layers, 2 heads, hidden 32, MLP 64 (opset 17): the
               exporter's Shape arithmetic on the dynamic batch axis,
               Expand of the class token, attention over (L, N, E) with N
               merged into the heads, MatMul of two computed values
Hand-written graphs (onnx.helper) exercise what torch does not emit: typed
initializer fields, Constant and Identity nodes, Gemm's transB / alpha / beta,
opset-11 Softmax, external data; and the loader's errors (bad_*.onnx).

--full exports the torchvision models at 224x224 with random weights into a
temporary folder and prints, per model, the max absolute and relative error of
logits, input gradient and HVP (ReLU swapped for softplus(beta = 10) so the
HVP is not zero) of the engine against float64 PyTorch, or why the model does
not load; the README's table is this output. Under each row, PyTorch's own
float32 gradient and HVP against float64: the floor a float32 engine can reach
(the reference writes Hardsigmoid/Hardswish through clamp so autograd can take
their second derivative).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from onnx import TensorProto, helper, numpy_helper
from torchvision.models.resnet import BasicBlock, Bottleneck

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_fixtures import randomize_bn, references, round_params_to_f32, write_safetensors  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, '..'))
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'onnx')
SOFTPLUS_BETA = 5.0


# ----------------------------------------------------------------- models

class SmallResNet(nn.Module):
    """torchvision's ResNet (7x7 stride-2 stem, 3x3 max-pool, four stages of
    BasicBlock or Bottleneck, global average pool, fc) with every width
    scaled by `width`, built from torchvision's own block classes."""

    def __init__(self, block, layers, width, num_classes):
        super().__init__()
        c = lambda n: max(1, int(round(n * width)))  # noqa: E731
        self.inplanes = c(64)
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, c(64), layers[0], 1)
        self.layer2 = self._make_layer(block, c(128), layers[1], 2)
        self.layer3 = self._make_layer(block, c(256), layers[2], 2)
        self.layer4 = self._make_layer(block, c(512), layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.inplanes, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        down = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                 nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, down)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TinyOps(nn.Module):
    """Every op the reader maps from what torch exports: Conv (bias, stride,
    dilation, groups), BatchNormalization folded and kept, Relu, softplus(beta)
    (Mul -> Softplus -> Div), GlobalAveragePool, Tanh, Sigmoid, Mul (a
    squeeze-excitation gate), Add, MaxPool (padding, ceil mode), AveragePool
    (padding, count_include_pad = 0), Flatten, Gemm, Dropout, MatMul + Add,
    Reshape to (-1, 12)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=2, dilation=2, groups=2, bias=False)
        self.se1 = nn.Conv2d(8, 4, 1)
        self.se2 = nn.Conv2d(4, 8, 1)
        self.bn2 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
        self.avg = nn.AvgPool2d(2, 2, padding=1, count_include_pad=False)
        self.fc1 = nn.Linear(8 * 3 * 3, 16)
        self.drop = nn.Dropout(0.3)
        self.w = nn.Parameter(0.3 * torch.randn(16, 12))
        self.b = nn.Parameter(0.1 * torch.randn(12))
        self.fc2 = nn.Linear(12, 5)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.softplus(self.conv2(h), beta=2.0)
        g = torch.sigmoid(self.se2(torch.tanh(self.se1(F.adaptive_avg_pool2d(h, 1)))))
        h = self.bn2(h * g + h)
        h = self.avg(self.pool(h))
        h = self.drop(F.relu(self.fc1(torch.flatten(h, 1))))
        h = torch.tanh(h @ self.w + self.b).reshape(-1, 12)
        return self.fc2(h)


class TinyModern(nn.Module):
    """The ops of newer classifiers, as torch exports them at opset 17:
    Transpose, LayerNormalization, Linear over the last axis of (H, W, C)
    (MatMul + Add), GELU (Div, Erf, Add, Mul, Mul), a layer scale (Mul by a
    constant), Pad, depthwise Conv, Clip (ReLU6), HardSwish, HardSigmoid,
    ReduceMean (kept and dropped dims), Sub of a constant, Softmax over the
    last axis, Slice, a three-way Concat, Unsqueeze, Squeeze."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, 2)
        self.ln = nn.LayerNorm(8, eps=1e-6)
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 8)
        self.gamma = nn.Parameter(0.5 + 0.1 * torch.randn(8))
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.se = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(24, 6)
        # PyTorch 1.13 has no second derivative of hardsigmoid / hardswish:
        # the references use the same functions written with clamp
        self.hardswish, self.hardsigmoid = F.hardswish, F.hardsigmoid

    def for_reference(self):
        self.hardswish = lambda z: z * torch.clamp(z + 3, 0, 6) / 6
        self.hardsigmoid = lambda z: torch.clamp(z / 6 + 0.5, 0, 1)
        return self

    def forward(self, x):
        h = self.stem(x)
        t = self.fc2(F.gelu(self.fc1(self.ln(h.permute(0, 2, 3, 1)))))
        h = h + (self.gamma * t).permute(0, 3, 1, 2)
        a = F.relu6(self.dw(F.pad(h, (1, 1, 1, 1))))[:, :, 1:-1, 1:-1]
        b = self.hardswish(h) * self.hardsigmoid(self.se(h.mean((2, 3), keepdim=True)))
        c = h - 0.25
        c = c * torch.softmax(c, dim=3)
        v = torch.cat([a, b, c], 1).mean((2, 3))
        return self.head(v.unsqueeze(1).squeeze(1))


def vgg11_bn_tiny(num_classes=10):
    """torchvision's VGG-11 features with batchnorm (configuration A) at width
    1/16, then a global average pool and a two-layer classifier."""
    cfg = [4, 'M', 8, 'M', 16, 16, 'M', 32, 32, 'M', 32, 32, 'M']
    m = torchvision.models.vgg.VGG(torchvision.models.vgg.make_layers(cfg, batch_norm=True), num_classes=10)
    m.avgpool = nn.AdaptiveAvgPool2d(1)
    m.classifier = nn.Sequential(nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, num_classes))
    return m


def vit_tiny(num_classes=10):
    """torchvision's VisionTransformer (the vit_b_16 class: patch Conv,
    class token, position embedding, pre-LayerNorm encoder blocks of
    nn.MultiheadAttention and a GELU MLP, the class token's head) at 32x32,
    patch 8 (16 tokens + the class token), 2 layers, 2 heads, hidden 32, MLP
    64. torchvision initializes the class token, biases and head to zero and
    LayerNorm to the identity: every parameter is drawn at random instead
    (weights N(0, 1/fan_in), the others N(0, 0.1^2), LayerNorm weights about
    1), so that each one matters to the logits."""
    from torchvision.models.vision_transformer import VisionTransformer
    m = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                          num_classes=num_classes)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() >= 2 and 'embedding' not in name and 'token' not in name:
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
            elif name.endswith('weight'):  # LayerNorm
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    return m


def nonzero_init(model):
    """torchvision's ViTs start with a zero head, class token and biases, so
    the logits and their gradient would be exactly 0: every parameter that
    is all zeros is drawn from N(0, 0.02^2) (the std torchvision gives the
    position embedding) for the full-size checks."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
    return model


def relu_to_softplus(model, beta):
    for name, mod in model.named_children():
        if isinstance(mod, nn.ReLU):
            setattr(model, name, nn.Softplus(beta=beta))
        else:
            relu_to_softplus(mod, beta)
    return model


class HardsigmoidClamp(nn.Module):
    """hardsigmoid(x) = clamp(x + 3, 0, 6) / 6, written with clamp: torch 1.13
    has no second derivative for F.hardsigmoid (an HVP through it raises)."""

    def forward(self, x):
        return torch.clamp(x + 3, 0, 6) / 6


class HardswishClamp(nn.Module):
    """hardswish(x) = x * clamp(x + 3, 0, 6) / 6, twice differentiable in autograd."""

    def forward(self, x):
        return x * torch.clamp(x + 3, 0, 6) / 6


def twice_differentiable(model):
    """The same function with Hardsigmoid and Hardswish written through clamp,
    so that autograd can take the HVP of the reference (mobilenet_v3)."""
    for name, mod in model.named_children():
        if isinstance(mod, nn.Hardsigmoid):
            setattr(model, name, HardsigmoidClamp())
        elif isinstance(mod, nn.Hardswish):
            setattr(model, name, HardswishClamp())
        else:
            twice_differentiable(mod)
    return model


class functional_relu_as_softplus:
    """Within this block F.relu is softplus(beta): the engine's swap replaces
    every Relu node of the graph, and an exported Relu can come from a
    functional call that relu_to_softplus's module swap does not reach
    (densenet's final F.relu)."""

    def __init__(self, beta):
        self.beta = beta

    def __enter__(self):
        self.relu, beta, softplus = F.relu, self.beta, F.softplus
        F.relu = lambda x, inplace=False: softplus(x, beta=beta)  # noqa: E731

    def __exit__(self, *exc):
        F.relu = self.relu


def float32_error(model, x, labels, v, ref):
    """What float32 itself costs: PyTorch's own float32 gradient and HVP
    against its float64 ones (max abs error over max |reference|). A model
    whose float32 PyTorch is far from float64 (a max-pool window whose top two
    values differ by less than float32 resolves flips its argmax) cannot be
    matched closer by any float32 engine."""
    model = model.float().eval()
    xx = x.float().requires_grad_(True)
    s = model(xx)[torch.arange(x.shape[0]), labels]
    (g,) = torch.autograd.grad(s.sum(), xx, create_graph=True)
    (h,) = torch.autograd.grad((g * v.float()).sum(), xx)
    rel = lambda a, b: ((a.double() - b).abs().max() / b.abs().max()).item()  # noqa: E731
    return rel(g, ref['__grad']), rel(h, ref['__hvp'])


# ------------------------------------------------------------- exporting

def export(model, x, path, opset=13):
    torch.onnx.export(model.float().eval(), x.float(), path, opset_version=opset, input_names=['input'],
                      output_names=['logits'], dynamic_axes={'input': {0: 'N'}, 'logits': {0: 'N'}},
                      do_constant_folding=True)
    return sorted({n.op_type for n in onnx.load(path).graph.node})


def prepare(model, shape, n, seed):
    """Random weights, calibrated batchnorm, float32-rounded; an input batch,
    labels and an HVP direction."""
    g = torch.Generator().manual_seed(seed + 1000)
    x = torch.randn((n,) + shape, generator=g).float()
    v = torch.randn((n,) + shape, generator=g).float()
    model.eval()
    randomize_bn(model, torch.randn((8,) + shape, generator=g), seed)
    round_params_to_f32(model)
    with torch.no_grad():
        labels = model(x).argmin(1)  # the least likely class: its gradient is not saturated
    return x, v, labels


def fixture(name, model, shape, n, seed, softplus=False, opset=13):
    if not wanted(name):
        return
    x, v, labels = prepare(model, shape, n, seed)
    path = os.path.join(OUT, name + '.onnx')
    ops = export(model, x, path, opset)
    import copy
    ref_model = copy.deepcopy(model)
    if hasattr(ref_model, 'for_reference'):
        ref_model.for_reference()
    ref = references(ref_model, x, labels, v)
    tensors = {'__x': x, '__v': v, '__labels': labels.float(), '__logits': ref['__logits'],
               '__grad': ref['__grad'], '__hvp': ref['__hvp']}
    if softplus:
        sp = references(relu_to_softplus(copy.deepcopy(model), SOFTPLUS_BETA), x, labels, v)
        tensors.update({'__sp_logits': sp['__logits'], '__sp_grad': sp['__grad'], '__sp_hvp': sp['__hvp']})
    write_safetensors(os.path.join(OUT, name + '.safetensors'), tensors,
                      {'model': name, 'ops': ','.join(ops), 'softplus_beta': SOFTPLUS_BETA})
    print('%-10s %8d bytes  ops: %s' % (name, os.path.getsize(path), ' '.join(ops)))


# ------------------------------------------------------ hand-written graphs

ONLY = None  # --only: the fixtures to write (names without .onnx); None: all


def wanted(name):
    return ONLY is None or name.split('.')[0] in ONLY


def save(model, name, **kw):
    if wanted(name):
        onnx.save(model, os.path.join(OUT, name), **kw)


def mlp_typed():
    """An MLP written with typed fields (float_data, int64_data), a Constant,
    an Identity, Gemm with transB = 0, alpha and beta, and opset-11 Softmax
    (axis 1 of a 2-D input). Returns the model and its float64 reference."""
    rng = np.random.default_rng(7)
    w1 = rng.standard_normal((6, 4)).astype(np.float32)  # (in, out): transB = 0
    b1 = rng.standard_normal(4).astype(np.float32)
    w2 = rng.standard_normal((3, 4)).astype(np.float32)  # (out, in): transB = 1
    b2 = rng.standard_normal((1, 3)).astype(np.float32)
    x = rng.standard_normal((2, 6)).astype(np.float32)
    inits = [
        helper.make_tensor('w1', TensorProto.FLOAT, w1.shape, w1.ravel().tolist()),  # float_data
        helper.make_tensor('b1', TensorProto.DOUBLE, b1.shape, b1.astype(np.float64).ravel().tolist()),
        numpy_helper.from_array(w2, 'w2'),  # raw_data
        helper.make_tensor('b2', TensorProto.FLOAT16, b2.shape, b2.astype(np.float16).ravel().tolist()),  # int32_data bits
        helper.make_tensor('shape', TensorProto.INT64, [2], [0, -1]),  # int64_data
    ]
    nodes = [
        helper.make_node('Constant', [], ['unused'], value_float=3.0),
        helper.make_node('Identity', ['x'], ['x1'], name='id'),
        helper.make_node('Gemm', ['x1', 'w1', 'b1'], ['h'], name='gemm1', alpha=0.5, beta=2.0, transB=0),
        helper.make_node('Tanh', ['h'], ['t']),
        helper.make_node('Reshape', ['t', 'shape'], ['t2'], name='reshape'),
        helper.make_node('Gemm', ['t2', 'w2', 'b2'], ['z'], name='gemm2', transB=1),
        helper.make_node('LogSoftmax', ['z'], ['y'], name='logsm'),
    ]
    g = helper.make_graph(nodes, 'mlp', [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 6])],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 11)])
    h = np.tanh(0.5 * x.astype(np.float64) @ w1 + 2.0 * b1)
    z = h @ w2.T.astype(np.float64) + b2.astype(np.float16).astype(np.float64)
    y = z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    return m, x, y


def small_conv_graph(op='Relu', op_name='act7', conv_attrs=None, w_raw=None, w_dims=(4, 3, 3, 3), extra_nodes=(),
                     batch='N', inputs_override=None):
    """x (N,3,8,8) -> Conv(w) -> op -> GlobalAveragePool -> Flatten: a
    template the error fixtures bend one way each."""
    w = np.full((4, 3, 3, 3), 0.1, np.float32)
    wt = numpy_helper.from_array(w, 'w')
    if w_raw is not None:
        wt.raw_data = w_raw
    del wt.dims[:]
    wt.dims.extend(w_dims)
    nodes = [helper.make_node('Conv', ['x', 'w'], ['c'], name='conv', kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              **(conv_attrs or {})),
             helper.make_node(op, inputs_override or ['c'], ['a'], name=op_name),
             helper.make_node('GlobalAveragePool', ['a'], ['p'], name='gap'),
             helper.make_node('Flatten', ['p'], ['y'], name='flat')] + list(extra_nodes)
    g = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [batch, 3, 8, 8])],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, [batch, 4])], [wt])
    return helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)])


def batch_graph(nodes, out_dims, inits=(), in_dims=('N', 4, 6)):
    """x (N, 4, 6) -> nodes -> y: the graphs the shape folder and the batch
    axis bookkeeping refuse, one thing each."""
    i64 = lambda name, vals: helper.make_tensor(name, TensorProto.INT64, [len(vals)], vals)  # noqa: E731
    g = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, list(in_dims))],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, list(out_dims))],
                          [i64(*a) if isinstance(a, tuple) else a for a in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid('', 17)])


def rows_graph():
    """x (N, 4, 16) -> Reshape(x, [-1, 16]) -> MatMul W (16, 3) -> Reshape to
    (N, 12) through Shape: the tokens of all items as rows, x.reshape(-1, E)."""
    g = np.random.default_rng(7)
    w = numpy_helper.from_array(g.standard_normal((16, 3)).astype(np.float32), 'w')
    i64 = lambda name, vals: helper.make_tensor(name, TensorProto.INT64, [len(vals)], vals)  # noqa: E731
    nodes = [helper.make_node('Reshape', ['x', 'rows_shape'], ['r'], name='rows'),
             helper.make_node('MatMul', ['r', 'w'], ['m'], name='proj'),
             helper.make_node('Shape', ['x'], ['s'], name='shape'),
             helper.make_node('Gather', ['s', 'zero'], ['n'], name='n', axis=0),
             helper.make_node('Unsqueeze', ['n', 'zero1'], ['n1'], name='n1'),
             helper.make_node('Concat', ['n1', 'twelve'], ['t'], name='target', axis=0),
             helper.make_node('Reshape', ['m', 't'], ['y'], name='back')]
    gr = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 4, 16])],
                           [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 12])],
                           [w, i64('rows_shape', [-1, 16]), helper.make_tensor('zero', TensorProto.INT64, [], [0]),
                            i64('zero1', [0]), i64('twelve', [12])])
    save(helper.make_model(gr, opset_imports=[helper.make_opsetid('', 13)]), 'rows_reshape.onnx')


def scale_graph():
    """An attention scale from a traced shape: d = float(x.shape[2]) (6),
    y = x * d ** -0.5 / sqrt(d); Pow and Sqrt of constants fold."""
    i64 = lambda name, vals: helper.make_tensor(name, TensorProto.INT64, [len(vals)], vals)  # noqa: E731
    nodes = [helper.make_node('Shape', ['x'], ['s'], name='shape'),
             helper.make_node('Gather', ['s', 'two'], ['d_int'], name='head_dim', axis=0),
             helper.make_node('Cast', ['d_int'], ['d'], name='to_float', to=TensorProto.FLOAT),
             helper.make_node('Pow', ['d', 'minus_half'], ['scale'], name='pow'),
             helper.make_node('Sqrt', ['d'], ['root'], name='sqrt'),
             helper.make_node('Mul', ['x', 'scale'], ['xs'], name='scaled'),
             helper.make_node('Div', ['xs', 'root'], ['y'], name='y')]
    g = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 4, 6])],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 4, 6])],
                          [helper.make_tensor('two', TensorProto.INT64, [], [2]),
                           helper.make_tensor('minus_half', TensorProto.FLOAT, [], [-0.5])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]), 'scale_fold.onnx')


def layernorm_split_graph(second_axis, name):
    """LayerNorm as torch < opset 17 writes it, over the last axis of x (N, 4, 6); with
    the variance's ReduceMean over another axis it is not a LayerNorm and must not match."""
    nodes = [helper.make_node('ReduceMean', ['x'], ['m'], name='mean', axes=[-1]),
             helper.make_node('Sub', ['x', 'm'], ['d'], name='centre'),
             helper.make_node('Pow', ['d', 'two'], ['p'], name='square'),
             helper.make_node('ReduceMean', ['p'], ['v'], name='var', axes=[second_axis]),
             helper.make_node('Add', ['v', 'eps'], ['ve'], name='plus_eps'),
             helper.make_node('Sqrt', ['ve'], ['s'], name='std'),
             helper.make_node('Div', ['d', 's'], ['y'], name='normalized')]
    g = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 4, 6])],
                          [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 4, 6])],
                          [helper.make_tensor('two', TensorProto.FLOAT, [], [2.0]),
                           helper.make_tensor('eps', TensorProto.FLOAT, [], [1e-5])])
    save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)]), name)


def batch_errors():
    layernorm_split_graph(-1, 'layernorm_split.onnx')
    layernorm_split_graph(1, 'bad_layernorm_axes.onnx')
    rows_graph()
    scale_graph()
    # a class token concatenated at the fixed batch 1: the exporter leaves it a constant
    cls = numpy_helper.from_array(np.full((1, 1, 6), 0.5, np.float32), 'cls')
    save(batch_graph([helper.make_node('Concat', ['cls', 'x'], ['y'], name='tokens', axis=1)], [1, 5, 6], [cls],
                     in_dims=(1, 4, 6)), 'bad_cls_batch1.onnx')
    # N + 1 as a reshape target: no one number or multiple of N
    save(batch_graph([helper.make_node('Shape', ['x'], ['s'], name='shape'),
                      helper.make_node('Gather', ['s', 'zero'], ['n'], name='n', axis=0),
                      helper.make_node('Add', ['n', 'one'], ['n1'], name='plus_one'),
                      helper.make_node('Concat', ['n1', 'rest'], ['t'], name='target', axis=0),
                      helper.make_node('Reshape', ['x', 't'], ['y'], name='reshape')], ['N', 24],
                     [('zero', [0]), ('one', [1]), ('rest', [-1])]), 'bad_shape_add.onnx')
    # (N, 4, 6) -> (4, N, 6) by Reshape: N moves in the row-major order
    save(batch_graph([helper.make_node('Shape', ['x'], ['s'], name='shape'),
                      helper.make_node('Gather', ['s', 'zero'], ['n'], name='n', axis=0),
                      helper.make_node('Concat', ['four', 'n', 'six'], ['t'], name='target', axis=0),
                      helper.make_node('Reshape', ['x', 't'], ['r'], name='mix'),
                      helper.make_node('Transpose', ['r'], ['y'], name='back', perm=[1, 0, 2])], ['N', 4, 6],
                     [('zero', [0]), ('four', [4]), ('six', [6])]), 'bad_reshape_mix.onnx')
    # x^T x over the batch: a product along N
    save(batch_graph([helper.make_node('Transpose', ['x'], ['xt'], name='xt', perm=[1, 2, 0]),
                      helper.make_node('Transpose', ['x'], ['xs'], name='xs', perm=[1, 0, 2]),
                      helper.make_node('MatMul', ['xt', 'xs'], ['y'], name='gram')], [4, 6, 6]),
         'bad_matmul_batch.onnx')
    # N left in the middle of the output
    save(batch_graph([helper.make_node('Transpose', ['x'], ['t'], name='swap', perm=[1, 0, 2]),
                      helper.make_node('Relu', ['t'], ['y'], name='relu')], [4, 'N', 6]), 'bad_output_layout.onnx')
    # N where a number is needed: a Slice ending at N
    save(batch_graph([helper.make_node('Shape', ['x'], ['s'], name='shape'),
                      helper.make_node('Slice', ['s', 'zero', 'one'], ['n'], name='n'),
                      helper.make_node('Slice', ['x', 'zero', 'n', 'one'], ['y'], name='slice_to_n')], ['N', 4, 6],
                     [('zero', [0]), ('one', [1])]), 'bad_slice_n.onnx')
    # a computed value expanded to another shape
    save(batch_graph([helper.make_node('Expand', ['x', 'to'], ['y'], name='expand')], ['N', 4, 4, 6],
                     [('to', [1, 4, 4, 6])]), 'bad_expand_value.onnx')
    # a convolution of a value whose N is not first
    save(batch_graph([helper.make_node('Transpose', ['x'], ['xs'], name='swap', perm=[1, 0, 2, 3]),
                      helper.make_node('Conv', ['xs', 'w'], ['y'], name='conv', kernel_shape=[1, 1])],
                     [3, 'N', 4, 4], [numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), 'w')],
                     in_dims=('N', 3, 4, 4)), 'bad_conv_layout.onnx')


def hand_written():
    m, x, y = mlp_typed()
    save(m, 'mlp_typed.onnx')
    if wanted('mlp_typed'):
        write_safetensors(os.path.join(OUT, 'mlp_typed.safetensors'),
                          {'__x': torch.from_numpy(x), '__logits': torch.from_numpy(y)}, {'model': 'mlp_typed'})
    # the conv template itself loads (the error fixtures differ from it in one thing)
    save(small_conv_graph(), 'conv_ok.onnx')
    save(small_conv_graph(op='LeakyRelu'), 'bad_op.onnx')
    save(small_conv_graph(op='LeakyRelu', op_name='n' * 5000), 'bad_long_name.onnx')  # the reason survives it
    # Div by a constant that is not a power of two: x / c rounds once, as PyTorch's (x * (1/c) would round twice)
    div = helper.make_graph([helper.make_node('Div', ['x', 'c'], ['y'], name='div')], 'g',
                            [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 64])],
                            [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['N', 64])],
                            [numpy_helper.from_array(np.array([3.0], np.float32), 'c')])
    save(helper.make_model(div, opset_imports=[helper.make_opsetid('', 13)]), 'div_const.onnx')
    # Dropout in training mode: its flag is a BOOL Constant the reader cannot hold
    train = small_conv_graph()
    train.graph.node[2].input[0] = 'd'
    train.graph.node.insert(2, helper.make_node('Dropout', ['a', 'ratio', 'train'], ['d'], name='drop'))
    train.graph.node.insert(0, helper.make_node('Constant', [], ['train'], name='train_flag',
                                                value=helper.make_tensor('', TensorProto.BOOL, [], [True])))
    train.graph.node.insert(0, helper.make_node('Constant', [], ['ratio'], name='ratio',
                                                value=helper.make_tensor('', TensorProto.FLOAT, [], [0.5])))
    save(train, 'bad_dropout_train.onnx')
    declared = small_conv_graph()
    declared.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7  # the network gives Nx4
    save(declared, 'bad_output_shape.onnx')
    save(small_conv_graph(conv_attrs={'auto_pad': 'SAME_UPPER'}), 'bad_attr.onnx')
    save(small_conv_graph(w_raw=b'\0' * (4 * 3 * 3 * 3 * 4 - 8)), 'bad_init_size.onnx')
    save(small_conv_graph(w_dims=(4, -3, 3, 3)), 'bad_dims_negative.onnx')
    w_nan = np.full((4, 3, 3, 3), 0.1, np.float32)
    w_nan.flat[5] = np.nan
    save(small_conv_graph(w_raw=w_nan.tobytes()), 'bad_nan_weight.onnx')
    save(small_conv_graph(w_dims=(1 << 31, 1 << 31, 1 << 31, 3)), 'bad_dims_overflow.onnx')
    save(small_conv_graph(inputs_override=['nowhere']), 'bad_dangling.onnx')
    save(small_conv_graph(batch=8), 'bad_batch.onnx')
    # a Reshape whose target merges the batch axis with the others: (N, 4, 8, 8) -> (-1, 2)
    merge = small_conv_graph()
    merge.graph.initializer.append(helper.make_tensor('target', TensorProto.INT64, [2], [-1, 2]))
    merge.graph.node[1].input[0] = 'r'
    merge.graph.node.insert(1, helper.make_node('Reshape', ['c', 'target'], ['r'], name='merge'))
    save(merge, 'bad_reshape_batch.onnx')
    # Flatten written as Reshape(p, [1, -1]): the batch axis only when the input's batch is the fixed 1
    for batch, name in (('N', 'bad_reshape_one.onnx'), (1, 'reshape_one_batch1.onnx')):
        one = small_conv_graph(batch=batch)
        one.graph.initializer.append(helper.make_tensor('one_row', TensorProto.INT64, [2], [1, -1]))
        one.graph.node[3].CopyFrom(helper.make_node('Reshape', ['p', 'one_row'], ['y'], name='one_row'))
        save(one, name)
    # a cycle: a = Relu(b), b = Relu(a), feeding the output
    cyc = small_conv_graph()
    cyc.graph.node[1].input[0] = 'b'
    cyc.graph.node.append(helper.make_node('Relu', ['a'], ['b'], name='loop'))
    save(cyc, 'bad_cycle.onnx')
    # external data: beside the model, and one that tries to leave the folder
    ext = small_conv_graph()
    if wanted('ext_ok') and os.path.exists(os.path.join(OUT, 'ext_ok.bin')):
        os.remove(os.path.join(OUT, 'ext_ok.bin'))  # onnx.save appends to an existing data file
    save(ext, 'ext_ok.onnx', save_as_external_data=True, all_tensors_to_one_file=True, location='ext_ok.bin',
         size_threshold=0)
    esc = onnx.load(os.path.join(OUT, 'ext_ok.onnx'), load_external_data=False)
    for e in esc.graph.initializer[0].external_data:
        if e.key == 'location':
            e.value = '../onnx/ext_ok.bin'
    save(esc, 'bad_ext_escape.onnx')
    # a location naming no file: only slashes (the root folder)
    slashes = onnx.load(os.path.join(OUT, 'ext_ok.onnx'), load_external_data=False)
    for e in slashes.graph.initializer[0].external_data:
        if e.key == 'location':
            e.value = '///'
    save(slashes, 'bad_ext_slashes.onnx')
    short = onnx.load(os.path.join(OUT, 'ext_ok.onnx'), load_external_data=False)
    for e in short.graph.initializer[0].external_data:
        if e.key == 'length':
            e.value = str(int(e.value) - 4)
    save(short, 'bad_ext_length.onnx')
    batch_errors()


def main_fixtures():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(3)
    fixture('tiny_ops', TinyOps(), (3, 16, 16), 2, 3)
    torch.manual_seed(4)
    fixture('tiny_modern', TinyModern(), (3, 16, 16), 2, 4, opset=17)
    torch.manual_seed(4)  # the same net at opset 14: LayerNorm split into ReduceMean, Sub, Pow, Sqrt, Div
    fixture('tiny_modern_op14', TinyModern(), (3, 16, 16), 2, 4, opset=14)
    torch.manual_seed(18)
    fixture('resnet18', SmallResNet(BasicBlock, [2, 2, 2, 2], 1 / 16, 10), (3, 32, 32), 2, 18, softplus=True)
    torch.manual_seed(50)
    fixture('resnet50', SmallResNet(Bottleneck, [3, 4, 6, 3], 1 / 16, 10), (3, 64, 64), 1, 50)
    torch.manual_seed(11)
    fixture('vgg11_bn', vgg11_bn_tiny(), (3, 32, 32), 2, 11)
    torch.manual_seed(16)
    fixture('vit_tiny', vit_tiny(), (3, 32, 32), 2, 16, opset=17)
    hand_written()


# ------------------------------------------------------------- full size

FULL = ['resnet18', 'resnet50', 'vgg11_bn', 'squeezenet1_1', 'mobilenet_v2', 'mobilenet_v3_small',
        'efficientnet_b0', 'densenet121', 'convnext_tiny', 'vit_b_16']
FULL_BETA = 10.0

FULL_CHECK_LUA = r"""
local models = require 'moreau.models'
local st = require 'moreau.safetensors'
local oracle = require 'moreau.oracle'
local dir, names = arg[1], {}
for i = 3, #arg do names[#names + 1] = arg[i] end
local function err(a, b)
  local pa, pb, ma, mr, mb = a:data(), b:data(), 0, 0, 0
  for i = 0, b:numel() - 1 do
    ma = math.max(ma, math.abs(pa[i] - pb[i])); mb = math.max(mb, math.abs(pb[i]))
  end
  return ma, ma / mb
end
if arg[2] == 'header' then
  print(('%-20s %-21s %-21s %-21s'):format('model', 'logits abs / rel', 'gradient abs / rel', 'HVP abs / rel'))
end
for _, name in ipairs(names) do
  local ok, net = pcall(models.onnx, dir .. '/' .. name .. '.onnx', { softplus = FULL_BETA, max_bytes = 4e9 })
  if not ok then
    print(('%-20s does not load: %s'):format(name, tostring(net)))
  else
    local t = st.load(dir .. '/' .. name .. '.safetensors')
    local labels = {}
    for i = 0, t.__labels:numel() - 1 do labels[i + 1] = t.__labels:data()[i] end
    local y = net:forward(t.__x)
    local _, g = oracle.grad(net, t.__x, labels)
    local hv = oracle.hvp(net, t.__x, labels, t.__v)
    local a1, r1 = err(y, t.__logits)
    local a2, r2 = err(g, t.__grad)
    local a3, r3 = err(hv, t.__hvp)
    print(('%-20s %.1e / %.1e      %.1e / %.1e      %.1e / %.1e'):format(name, a1, r1, a2, r2, a3, r3))
  end
end
""".replace('FULL_BETA', repr(FULL_BETA))


LOAD_CHECK_LUA = r"""
local models = require 'moreau.models'
local st = require 'moreau.safetensors'
local path, ref = arg[1], arg[2]
local ok, net = pcall(models.onnx, path, { max_bytes = 4e9 })
if not ok then print('does not load: ' .. tostring(net)) os.exit(0) end
local t = st.load(ref)
local y = net:forward(t.__x)
local pa, pb, ma, mb = y:data(), t.__logits:data(), 0, 0
for i = 0, y:numel() - 1 do ma = math.max(ma, math.abs(pa[i] - pb[i])); mb = math.max(mb, math.abs(pb[i])) end
print(('loads: %d nodes; logits max abs err %.1e, rel %.1e (float32 PyTorch)'):format(#net:nodes(), ma, ma / mb))
"""


def main_load(names, lib):
    """--load-only: each full-size model exported at 224x224 (opset 17) and
    read by the engine; its logits against float32 PyTorch, or why it does
    not load. Cheap next to --full (no float64 HVP)."""
    d = tempfile.mkdtemp(prefix='moreau-onnx-')
    env = dict(os.environ)
    if lib:
        env['MOREAU_LIB'] = lib
    lpath = '%s/bindings/?.lua;%s/bindings/?/init.lua;' % (ROOT, ROOT)
    for name in names:
        torch.manual_seed(1)
        model = getattr(torchvision.models, name)(num_classes=1000).eval()
        if name.startswith('vit'):
            nonzero_init(model)
        x = torch.randn((1, 3, 224, 224), generator=torch.Generator().manual_seed(2))
        path = os.path.join(d, name + '.onnx')
        try:
            export(model, x, path, opset=17)
        except Exception as e:
            print('%-20s export failed: %s' % (name, str(e).splitlines()[0]), flush=True)
            continue
        with torch.no_grad():
            logits = model(x)
        ref = os.path.join(d, name + '.safetensors')
        write_safetensors(ref, {'__x': x, '__logits': logits})
        r = subprocess.run(['luajit', '-e', "package.path='%s'..package.path" % lpath, '-', path, ref],
                           input=LOAD_CHECK_LUA.encode(), env=env, cwd=ROOT, capture_output=True)
        out = (r.stdout.decode() + r.stderr.decode()).strip().replace(d + '/', '')
        print('%-20s %s' % (name, out), flush=True)
        os.remove(path)
    return 0


def main_full(names, lib):
    d = tempfile.mkdtemp(prefix='moreau-onnx-')
    env = dict(os.environ)
    if lib:
        env['MOREAU_LIB'] = lib
    lpath = '%s/bindings/?.lua;%s/bindings/?/init.lua;' % (ROOT, ROOT)
    rc = 0
    for k, name in enumerate(names):
        torch.manual_seed(1)
        model = getattr(torchvision.models, name)(num_classes=1000)
        if name.startswith('vit'):
            nonzero_init(model)
        model = relu_to_softplus(model, FULL_BETA)  # the same as the engine's swap (ReLU6, GELU... stay)
        x, v, labels = prepare(model, (3, 224, 224), 1, 1)
        path = os.path.join(d, name + '.onnx')
        try:
            export(model, x, path, opset=17)  # LayerNormalization (ConvNeXt, ViT) is an op from 17
        except Exception as e:  # an exporter failure is a row of the table too
            print('%-20s export failed: %s' % (name, str(e).splitlines()[0]), flush=True)
            continue
        import copy
        reference = twice_differentiable(copy.deepcopy(model))
        with functional_relu_as_softplus(FULL_BETA):
            ref = references(copy.deepcopy(reference), x, labels, v)
            g32, h32 = float32_error(reference, x, labels, v, ref)
        write_safetensors(os.path.join(d, name + '.safetensors'),
                          {'__x': x, '__v': v, '__labels': labels.float(), '__logits': ref['__logits'],
                           '__grad': ref['__grad'], '__hvp': ref['__hvp']}, {'model': name})
        # one row per model as soon as it is ready (the header with the first)
        r = subprocess.run(['luajit', '-e', "package.path='%s'..package.path" % lpath, '-', d,
                            'header' if k == 0 else 'noheader', name],
                           input=FULL_CHECK_LUA.encode(), env=env, cwd=ROOT)
        rc = rc or r.returncode
        print('%-20s (float32 PyTorch against float64: gradient rel %.1e, HVP rel %.1e)' % ('', g32, h32))
        sys.stdout.flush()
    print('(models and references in %s)' % d)
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--full', nargs='*', metavar='MODEL',
                    help='full-size torchvision models at 224x224 (default: all of %s)' % ', '.join(FULL))
    ap.add_argument('--load-only', nargs='*', metavar='MODEL',
                    help='full-size models: does each load, and its logits against float32 PyTorch')
    ap.add_argument('--lib', help='libmoreau.so to check (default: build/libmoreau.so)')
    ap.add_argument('--only', nargs='+', metavar='NAME',
                    help='write only these fixtures (e.g. vit_tiny bad_ext_slashes), leaving the others as they are')
    a = ap.parse_args()
    global ONLY
    ONLY = set(a.only) if a.only else None
    if a.load_only is not None:
        return main_load(a.load_only or FULL, a.lib)
    if a.full is not None:
        return main_full(a.full or FULL, a.lib)
    main_fixtures()
    return 0


if __name__ == '__main__':
    sys.exit(main())
