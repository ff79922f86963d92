#!/usr/bin/python3
"""PyTorch side of the interop tests (test/interop/torch.test.ts): models trained the PyTorch way,
saved as state_dicts in safetensors (numpy only: Debian has no python safetensors), their logits, and
their accuracy under flatenn's saved fault masks applied to their int4 codes.

  lenet-plain OUT_DIR  4-bit LeNet-5, fake quant written out (s = max|w|/7, EMA activation ranges),
                       PyTorch padding (Normalize then Conv2d(padding=2)); keys conv1.weight ... act.range
  lenet-qat   OUT_DIR  torch.ao.quantization QAT LeNet-5 (fused ConvReLU/LinearReLU), weights
                       quant_min=-8 quant_max=7 per-tensor symmetric, activations 0..15
  masks MODEL_DIR KIND MASKS  accuracy per mask (saved by flatenn inject --save-masks), JSON on stdout

Debian's python3-torch imports only under /usr/bin/python3.
"""
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'examples'))
from apply_masks import apply_mask, read_safetensors  # noqa: E402

MEAN, STD = 72.93, 90.0
LAYERS = ('conv1', 'conv2', 'fc1', 'fc2', 'fc3')
torch.set_num_threads(max(1, int(os.environ.get('FLATENN_THREADS', '2'))))


def read_idx(path):
    with gzip.open(path, 'rb') as f:
        buf = f.read()
    ndim = buf[3]
    dims = [int.from_bytes(buf[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion(split):
    d = os.environ.get('FLATENN_DATA_FASHION', '/usr/share/datasets/fashion-mnist')
    p = 'train' if split == 'train' else 't10k'
    x = read_idx(os.path.join(d, f'{p}-images-idx3-ubyte.gz'))
    y = read_idx(os.path.join(d, f'{p}-labels-idx1-ubyte.gz'))
    return torch.from_numpy(x.astype(np.float32)).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def write_st(path, tensors, meta=None):
    dt = {np.float32: 'F32', np.int64: 'I64', np.int32: 'I32', np.uint8: 'U8', np.float64: 'F64'}
    header, blobs, off = {'__metadata__': meta or {}}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        code = dt[a.dtype.type]
        b = a.tobytes()
        header[k] = {'dtype': code, 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b' ' * ((-len(h)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def rhe(x):
    return torch.round(x)  # torch.round is round-half-to-even


class FQW(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        s = w.abs().max() / 7
        return torch.clamp(rhe(w / s), -8, 7) * s

    @staticmethod
    def backward(ctx, g):
        return g


class PlainLeNet(nn.Module):
    """flatenn's recipe written in PyTorch, with PyTorch's padding."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)
        self.fixed = False  # True: weights already hold s * codes (faulty trials)
        self.register_buffer('act_range', torch.zeros(4))
        self.register_buffer('act_init', torch.zeros(4))

    def act(self, x, i):
        if self.training:
            m = x.detach().clamp(min=0).max()
            if self.act_init[i] == 0:
                self.act_range[i] = m
                self.act_init[i] = 1
            else:
                self.act_range[i] = 0.99 * self.act_range[i] + 0.01 * m
        r = self.act_range[i]
        s = (r / 15).float()
        y = torch.clamp(rhe(torch.clamp(x, min=0) / s), 0, 15) * s
        mask = ((x >= 0) & (x <= r)).float()
        return x * mask + (y - x * mask).detach()

    def q(self, w):
        return w if self.fixed else FQW.apply(w)

    def forward(self, x):
        x = (x - MEAN) / STD
        x = F.max_pool2d(self.act(F.conv2d(x, self.q(self.conv1.weight), self.conv1.bias, padding=2), 0), 2)
        x = F.max_pool2d(self.act(F.conv2d(x, self.q(self.conv2.weight), self.conv2.bias), 1), 2)
        x = x.flatten(1)
        x = self.act(F.linear(x, self.q(self.fc1.weight), self.fc1.bias), 2)
        x = self.act(F.linear(x, self.q(self.fc2.weight), self.fc2.bias), 3)
        return F.linear(x, self.q(self.fc3.weight), self.fc3.bias)


class QatLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(1, 6, 5, padding=2), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(6, 16, 5), nn.ReLU()
        self.fc1, self.relu3 = nn.Linear(400, 120), nn.ReLU()
        self.fc2, self.relu4 = nn.Linear(120, 84), nn.ReLU()
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = (x - MEAN) / STD
        x = F.max_pool2d(self.relu1(self.conv1(x)), 2)
        x = F.max_pool2d(self.relu2(self.conv2(x)), 2)
        x = self.relu3(self.fc1(x.flatten(1)))
        return self.fc3(self.relu4(self.fc2(x)))


def qat_lenet():
    import torch.ao.quantization as Q
    m = QatLeNet()
    m = Q.fuse_modules_qat(m, [['conv1', 'relu1'], ['conv2', 'relu2'], ['fc1', 'relu3'], ['fc2', 'relu4']]) \
        if hasattr(Q, 'fuse_modules_qat') else Q.fuse_modules(m, [['conv1', 'relu1'], ['conv2', 'relu2'], ['fc1', 'relu3'], ['fc2', 'relu4']])
    wfq = Q.FakeQuantize.with_args(observer=Q.MovingAverageMinMaxObserver, quant_min=-8, quant_max=7, dtype=torch.qint8,
                                   qscheme=torch.per_tensor_symmetric, reduce_range=False)
    afq = Q.FakeQuantize.with_args(observer=Q.MovingAverageMinMaxObserver, quant_min=0, quant_max=15, dtype=torch.quint8,
                                   qscheme=torch.per_tensor_affine, reduce_range=False)
    m.qconfig = Q.QConfig(activation=afq, weight=wfq)
    m.fc3.qconfig = Q.QConfig(activation=nn.Identity, weight=wfq)  # float logits
    m.train()
    Q.prepare_qat(m, inplace=True)
    return m


def train(m, steps, seed=1):
    torch.manual_seed(seed)
    x, y = fashion('train')
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    m.train()
    for i in range(steps):
        idx = torch.randint(0, 55000, (128,), generator=g)
        loss = F.cross_entropy(m(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()


def logits_of(m, x):
    with torch.no_grad():
        return torch.cat([m(x[i:i + 1000]) for i in range(0, len(x), 1000)])


def main():
    mode = sys.argv[1]
    if mode in ('lenet-plain', 'lenet-qat'):
        out = sys.argv[2]
        steps = int(os.environ.get('TWIN_STEPS', '300'))
        if mode == 'lenet-plain':
            torch.manual_seed(1)
            m = PlainLeNet()
            train(m, steps)
            sd = {k: v.detach().numpy().astype(np.float32) for k, v in m.state_dict().items() if k not in ('act_range', 'act_init')}
            sd['act.range'] = m.act_range.numpy().astype(np.float32)
        else:
            import torch.ao.quantization as Q
            torch.manual_seed(1)
            m = qat_lenet()
            train(m, steps)
            m.apply(Q.disable_observer)
            sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
        write_st(os.path.join(out, 'torch.safetensors'), sd)
        xt, yt = fashion('test')
        lg = logits_of(m, xt).numpy().astype(np.float32)
        write_st(os.path.join(out, 'logits.safetensors'), {'logits': lg})
        print(json.dumps({'accuracy': float((lg.argmax(1) == yt.numpy()).mean())}))
    elif mode == 'masks':
        out, kind, masks_path = sys.argv[2], sys.argv[3], sys.argv[4]
        t, _ = read_safetensors(os.path.join(out, 'torch.safetensors'))
        t = {k: torch.from_numpy(v.copy()) for k, v in t.items()}
        if kind == 'lenet-plain':
            m = PlainLeNet()
            m.act_range.copy_(t.pop('act.range'))
            m.act_init.fill_(1)
            m.load_state_dict(t, strict=False)
        else:
            import torch.ao.quantization as Q
            m = qat_lenet()
            m.load_state_dict(t)
            m.apply(Q.disable_observer)
        m.eval()
        xt, yt = fashion('test')
        masks, mmeta = read_safetensors(masks_path)
        layers = json.loads(mmeta['flatenn'])['layers']
        # the model's int4 codes and scales, exactly as its forward quantises them
        mods = {n: getattr(m, n) for n in LAYERS}
        codes, scales = {}, {}
        for n, mod in mods.items():
            w = mod.weight.detach()
            if hasattr(mod, 'weight_fake_quant'):
                s = mod.weight_fake_quant.scale.detach().float()
                codes[n] = torch.clamp(torch.round(w * (1.0 / s)), -8, 7)
                mod.weight_fake_quant.disable_fake_quant()
            else:
                s = w.abs().max() / 7
                codes[n] = torch.clamp(rhe(w / s), -8, 7)
            scales[n] = s
        clean = {n: mod.weight.detach().clone() for n, mod in mods.items()}
        if isinstance(m, PlainLeNet):
            m.fixed = True  # weights are set to s * codes below
        res = {}
        for key in masks:
            faulty = apply_mask({n: codes[n].numpy() for n in LAYERS}, layers, masks[key], key.split('/')[0])
            with torch.no_grad():
                for n, mod in mods.items():
                    mod.weight.copy_(torch.from_numpy(faulty[n]).float() * scales[n])
            lg = logits_of(m, xt)
            res[key] = float((lg.argmax(1) == yt).float().mean())
        with torch.no_grad():
            for n, mod in mods.items():
                mod.weight.copy_(clean[n])
        print(json.dumps(res))


if __name__ == '__main__':
    main()
