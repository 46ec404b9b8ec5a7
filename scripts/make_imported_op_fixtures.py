#!/usr/bin/python3
"""PyTorch references for tests/ops_imported_spec.lua, written to
tests/fixtures/imported_ops.lua.

    /usr/bin/python3 scripts/make_imported_op_fixtures.py > tests/fixtures/imported_ops.lua

Needs Debian's python3-torch (1.13). Each case is one op of the engine on a
small batch: the inputs are drawn from torch.Generator seeds, rounded to
float32 (what the engine reads) and stored; the outputs are PyTorch's
functional op at float64 on those inputs. A case lists the engine op, its
mr_op_attrs fields, the per-sample input shape(s), parameters if any, and the
expected output (row-major, batch first).
"""
import math

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def draw(shape, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float32) * scale).to(torch.float64)


def lua_num(v):
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return 'math.huge' if v > 0 else '-math.huge'
    return repr(float(v))


def lua_list(t):
    return '{ ' + ', '.join(lua_num(v) for v in t.flatten().tolist()) + ' }'


def lua_value(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, (int, float)):
        return lua_num(v)
    if isinstance(v, (list, tuple)):
        return '{ ' + ', '.join(lua_value(u) for u in v) + ' }'
    if isinstance(v, dict):
        return '{ ' + ', '.join('["%s"] = %s' % (k, lua_value(u)) for k, u in sorted(v.items())) + ' }'
    raise TypeError(v)


CASES = []


def case(name, op, attrs, xs, y, params=None):
    CASES.append(dict(name=name, op=op, attrs=attrs, xs=xs, y=y, params=params or []))


def activations():
    x = draw((2, 3, 5), 1, 4.0)
    case('clip 0..6 (ReLU6)', 'clip', {'min': 0, 'max': 6}, [x], F.relu6(x))
    case('clip -0.5..0.75', 'clip', {'min': -0.5, 'max': 0.75}, [x], torch.clamp(x, -0.5, 0.75))
    case('hardsigmoid (PyTorch)', 'hardsigmoid', {}, [x], F.hardsigmoid(x))
    case('hardsigmoid alpha 0.2 beta 0.5 (ONNX default)', 'hardsigmoid', {'alpha': 0.2, 'beta': 0.5},
         [x], torch.clamp(0.2 * x + 0.5, 0, 1))
    case('hardswish', 'hardswish', {}, [x], F.hardswish(x))
    case('gelu erf', 'gelu', {}, [x], F.gelu(x))
    case('gelu tanh', 'gelu', {'approximate': 1}, [x], F.gelu(x, approximate='tanh'))
    case('erf', 'erf', {}, [x], torch.erf(x))


def pooling():
    # ceil mode: PyTorch's rule, the last window starts inside the input or its left padding
    x = draw((2, 2, 7, 6), 2)
    for k, s, p in ((3, 2, 0), (3, 2, 1), (2, 2, 0), (3, 3, 1)):
        attrs = {'kernel': k, 'stride': s, 'padding': p, 'ceil_mode': True}
        case('maxpool2d ceil k%d s%d p%d' % (k, s, p), 'maxpool2d', attrs, [x],
             F.max_pool2d(x, k, s, p, ceil_mode=True))
        for cip in (True, False):
            a = dict(attrs, count_include_pad=cip)
            case('avgpool2d ceil k%d s%d p%d cip %s' % (k, s, p, cip), 'avgpool2d', a, [x],
                 F.avg_pool2d(x, k, s, p, ceil_mode=True, count_include_pad=cip))


def layout():
    x = draw((2, 3, 4, 5), 3)
    case('reshape 3x4x5 to 6x10', 'reshape', {'shape': [6, -1]}, [x], x.reshape(2, 6, 10))
    case('transpose 2,0,1', 'transpose', {'perm': [2, 0, 1]}, [x], x.permute(0, 3, 1, 2))
    case('transpose 0,2,1', 'transpose', {'perm': [0, 2, 1]}, [x], x.permute(0, 1, 3, 2))
    c = draw((1, 3, 2, 5), 4)
    case('concat axis 1 with a constant', 'concat', {'axis': 1}, [x, c],
         torch.cat([x, c.expand(2, 3, 2, 5)], dim=2))
    case('slice axis 2 1::2', 'slice', {'axis': 2, 'start': 1, 'step': 2}, [x], x[:, :, :, 1::2])
    case('slice axis 0 -2:', 'slice', {'axis': 0, 'start': -2}, [x], x[:, -2:])
    case('gather axis 1 index 0 (class token)', 'gather', {'axis': 1, 'index': 0}, [x], x[:, :, 0])
    case('pad zeros', 'pad', {'pads': [1, 0, 2, 0, 3, 1]}, [x], F.pad(x, (2, 1, 0, 3, 1, 0)))
    case('pad reflect', 'pad', {'pads': [0, 2, 3, 0, 1, 4], 'pad_mode': 1}, [x],
         F.pad(x, (3, 4, 2, 1)[:4], mode='reflect'))


def normalization():
    x = draw((2, 3, 4, 6), 5, 2.0)
    w, b = draw((6,), 6), draw((6,), 7)
    case('layernorm eps 1e-6 (ViT, ConvNeXt)', 'layernorm', {'eps': 1e-6}, [x],
         F.layer_norm(x, (6,), w, b, 1e-6), params=[('ln.weight', w), ('ln.bias', b)])
    case('layernorm without parameters', 'layernorm', {}, [x], F.layer_norm(x, (6,), eps=1e-5))
    case('reduce_mean axes 1,2 keepdims', 'reduce_mean', {'axes': 6, 'keepdims': 1}, [x],
         x.mean(dim=(2, 3), keepdim=True))
    case('reduce_mean axis 0', 'reduce_mean', {'axes': 1}, [x], x.mean(dim=1))
    case('reduce_mean all', 'reduce_mean', {}, [x], x.mean(dim=(1, 2, 3)).reshape(2, 1))
    case('softmax axis -1', 'softmax', {'axis': -1}, [x], F.softmax(x, dim=-1))
    case('softmax axis 1', 'softmax', {'axis': 1}, [x], F.softmax(x, dim=2))
    case('log_softmax axis 2', 'log_softmax', {'axis': 2}, [x], F.log_softmax(x, dim=3))


activations()
pooling()
layout()
normalization()

print('-- PyTorch %s references for tests/ops_imported_spec.lua' % torch.__version__)
print('-- written by scripts/make_imported_op_fixtures.py: do not edit')
print('return {')
for c in CASES:
    print('  {')
    print('    name = "%s",' % c['name'])
    print('    op = "%s",' % c['op'])
    print('    attrs = %s,' % lua_value(c['attrs']))
    print('    inputs = {')
    for x in c['xs']:
        print('      { shape = %s, data = %s },' % (lua_value(list(x.shape)), lua_list(x)))
    print('    },')
    print('    params = {')
    for nm, p in c['params']:
        print('      { name = "%s", shape = %s, data = %s },' % (nm, lua_value(list(p.shape)), lua_list(p)))
    print('    },')
    print('    y = { shape = %s, data = %s },' % (lua_value(list(c['y'].shape)), lua_list(c['y'])))
    print('  },')
print('}')
