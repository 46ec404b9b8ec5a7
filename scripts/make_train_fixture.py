#!/usr/bin/python3
"""Writes tests/fixtures/train_step.safetensors: one training step of a tiny
network in PyTorch, for tests/train_spec.lua to reproduce in moreau.

Run by developers (not CI), with Debian's python3-torch:

    /usr/bin/python3 scripts/make_train_fixture.py

The network, an nn.Sequential so that its state_dict names are the ones
moreau.nn.Sequential gives:

    0 Conv2d(1, 3, 3, padding=1)  1 BatchNorm2d(3)  2 Softplus(beta=2)
    3 Flatten()                   4 Linear(75, 4)

on a batch x (8, 1, 5, 5) with labels in 0..3. In training mode (batchnorm
batch statistics and running-stat updates) it computes the mean cross-entropy,
its parameter gradients and ONE step of
torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
(the recipe's optimizer; with Nesterov the momentum shows in the first step).
Everything is computed in float64 and stored as float32.

Entries (all F32):
    <name>             weights and buffers before the step (state_dict names,
                       num_batches_tracked left out)
    after.<name>       the same after the step (running statistics updated)
    grad.<name>        the gradient of each weight
    __x (8,1,5,5)      the batch;  __labels (8) class ids as floats
    __loss (1)         the loss before the step
The file is written by hand (8-byte little-endian header length, JSON header,
raw little-endian data), so the script needs nothing beyond torch.
"""
import json
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fixtures',
                   'train_step.safetensors')
LR, MOMENTUM, WD = 0.1, 0.9, 5e-4


def build():
    torch.manual_seed(1234)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1),
        torch.nn.BatchNorm2d(3),
        torch.nn.Softplus(beta=2),
        torch.nn.Flatten(),
        torch.nn.Linear(75, 4),
    ).double()
    with torch.no_grad():
        # Non-trivial affine and running statistics, so that every term shows.
        net[1].weight.copy_(torch.tensor([1.2, 0.7, -0.9], dtype=torch.float64))
        net[1].bias.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
        net[1].running_mean.copy_(torch.tensor([0.05, -0.1, 0.2], dtype=torch.float64))
        net[1].running_var.copy_(torch.tensor([0.9, 1.1, 1.3], dtype=torch.float64))
        # Round every parameter to float32 so that moreau starts from the same values.
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.float().double())
    return net


def save(path, tensors, metadata):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        arr = tensors[name].detach().to(torch.float32).contiguous()
        raw = arr.numpy().astype('<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(arr.shape),
                        'data_offsets': [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header['__metadata__'] = metadata
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def main():
    net = build()
    g = torch.Generator().manual_seed(99)
    x = torch.randn(8, 1, 5, 5, generator=g, dtype=torch.float64).float().double()
    labels = torch.tensor([0, 3, 1, 2, 2, 0, 3, 1])

    before = {k: v.clone() for k, v in net.state_dict().items() if v.is_floating_point()}
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True,
                          weight_decay=WD)
    net.train()
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(x), labels)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    opt.step()
    after = {k: v.clone() for k, v in net.state_dict().items() if v.is_floating_point()}

    tensors = dict(before)
    tensors.update({'after.' + k: v for k, v in after.items()})
    tensors.update({'grad.' + k: v for k, v in grads.items()})
    tensors['__x'] = x
    tensors['__labels'] = labels.double()
    tensors['__loss'] = loss.detach().reshape(1)
    save(OUT, tensors, {
        'made_by': 'scripts/make_train_fixture.py',
        'torch': torch.__version__,
        'optimizer': 'SGD lr=%g momentum=%g nesterov=True weight_decay=%g' % (LR, MOMENTUM, WD),
        'net': 'Conv2d(1,3,3,p=1) BatchNorm2d(3) Softplus(beta=2) Flatten Linear(75,4), float64',
    })
    print('wrote %s: loss %.8f' % (os.path.normpath(OUT), loss.item()))


if __name__ == '__main__':
    main()
