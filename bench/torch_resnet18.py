#!/usr/bin/python3
"""PyTorch twin of flatenn's ResNet-18 benchmarks (bench/resnet18.ts).

The CIFAR ResNet-18 flatenn builds (src/nn/graph.ts `resnet18`), layer for layer:
  input: raw uint8 3x32x32, (x - mean_c) / 64 with mean (125.3, 123.0, 113.9), in float64 then float32;
  stem: conv 3x3 stride 1 pad 1 (no bias), BatchNorm, ReLU; no stem pool;
  four stages of two BasicBlocks, channels [64, 128, 256, 512] x width (round half up, at least 1),
  stride 2 in the first block of stages 2-4: conv 3x3 - BN - ReLU - conv 3x3 - BN, plus the shortcut
  (identity, or conv 1x1 with the block's stride + BN where the shape changes), add, ReLU;
  global average pool, fc (with bias). BatchNorm in float32: eps 1e-5, momentum 0.1.
Fake quantisation (mode `train`; the same functions as bench/torch_lenet.py): every conv and the fc
  weight signed int4 per tensor, s = max|w| / 7, straight-through gradient; every ReLU (17 sites, in
  flatenn's order) followed by uint4 activation fake quant at r / 15, r = EMA (decay 0.99) of the batch
  maximum. SGD momentum 0.9, weight decay 5e-4, lr 0.1 (flatenn's resnet18 defaults).

Modes (one JSON object on stdout); the images are random (speed does not depend on the pixels):
  train  images/s of a conventional 4-bit QAT step (forward, cross entropy, backward, SGD step).
  infer  images/s of fp32 inference: the same architecture without fake quantisation, eval mode
         (BatchNorm on running statistics), under torch.no_grad(), one batch per call.
  all    both, in one process (what bench/resnet18.ts runs).

Debian's python3-torch imports only under /usr/bin/python3.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no bench/__pycache__ in the checkout
import torch_lenet as tl  # noqa: E402  (fake quantisation, timing, the BLAS report)

CIFAR_MEAN, CIFAR_STD = (125.3, 123.0, 113.9), 64.0
BASE_WIDTHS = (64, 128, 256, 512)


def scaled_channels(c, width):
    """flatenn's scaledChannels: JavaScript's Math.round(c * width) (halves up), at least 1."""
    return max(1, int(math.floor(c * width + 0.5)))


class BasicBlock(torch.nn.Module):
    def __init__(self, in_c, out_c, stride, site1, site2):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_c, out_c, 3, stride=stride, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(out_c)
        self.conv2 = torch.nn.Conv2d(out_c, out_c, 3, stride=1, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(out_c)
        self.downsample = None
        if stride != 1 or in_c != out_c:
            self.downsample = torch.nn.Sequential(torch.nn.Conv2d(in_c, out_c, 1, stride=stride, bias=False), torch.nn.BatchNorm2d(out_c))
        self.stride = stride
        self.site1, self.site2 = site1, site2


class QResNet18(torch.nn.Module):
    """CIFAR ResNet-18 with flatenn's parameter names (conv1, bn1, layerL.B.conv1, ..., downsample.0/1, fc).

    quant=True: 4-bit fake quant of weights and activations (training twin); quant=False: plain fp32."""

    def __init__(self, width=1.0, num_classes=10, quant=True):
        super().__init__()
        w = [scaled_channels(c, width) for c in BASE_WIDTHS]
        self.widths, self.quant = w, quant
        self.conv1 = torch.nn.Conv2d(3, w[0], 3, stride=1, padding=1, bias=False)  # pads the normalised input with 0
        self.bn1 = torch.nn.BatchNorm2d(w[0])
        site, in_c = 1, w[0]
        for l in range(4):
            blocks = []
            for b in range(2):
                stride = 2 if l > 0 and b == 0 else 1
                blocks.append(BasicBlock(in_c, w[l], stride, site, site + 1))
                site += 2
                in_c = w[l]
            setattr(self, f"layer{l + 1}", torch.nn.Sequential(*blocks))
        self.fc = torch.nn.Linear(in_c, num_classes)
        self.sites = site  # 17: the stem's, then two per block (after bn1, after the add)
        self.register_buffer("act_range", torch.zeros(site))
        self.range_init = [False] * site
        self.track_ranges = True
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN, dtype=torch.float64).view(1, 3, 1, 1), persistent=False)

    # activation-range EMA and uint4 fake quant after a ReLU: bench/torch_lenet.py's, unchanged
    _qact = tl.QLeNet5.act

    def act(self, x, site):
        return self._qact(x, site) if self.quant else F.relu(x)

    def w(self, layer):
        return tl.FakeQuantWeight.apply(layer.weight) if self.quant else layer.weight

    def conv(self, layer, x):
        return F.conv2d(x, self.w(layer), None, layer.stride, layer.padding)

    def block(self, blk, x):
        y = self.act(blk.bn1(self.conv(blk.conv1, x)), blk.site1)
        y = blk.bn2(self.conv(blk.conv2, y))
        sc = x if blk.downsample is None else blk.downsample[1](self.conv(blk.downsample[0], x))
        return self.act(y + sc, blk.site2)

    def forward(self, raw):
        """raw: uint8 [N, 3, 32, 32] -> logits [N, classes]."""
        # (x - m_c) * (1 / s) in float64, then float32: the same values as flatenn's Model.normalize.
        x = ((raw.double() - self.mean) * (1.0 / CIFAR_STD)).float()
        x = self.act(self.bn1(self.conv(self.conv1, x)), 0)
        for l in range(4):
            for blk in getattr(self, f"layer{l + 1}"):
                x = self.block(blk, x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return F.linear(x, self.w(self.fc), self.fc.bias)


def random_pool(batch, pool, seed):
    """`pool` batches of random uint8 images and labels (the speed does not depend on the pixels)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (pool * batch, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (pool * batch,), dtype=torch.int64, generator=g)
    return images, labels


def bench_train(a, images, labels):
    torch.manual_seed(a.seed)
    model = QResNet18(a.width).train()
    opt = tl.make_optimizer(model, a.lr)
    losses, i = [], [0]

    def one():
        b = i[0] % a.pool
        i[0] += 1
        losses.append(tl.conventional_step(model, opt, images[b * a.batch:(b + 1) * a.batch], labels[b * a.batch:(b + 1) * a.batch]))

    s = tl.stats(tl.timed(one, a.warmup, a.steps), a.batch)
    s["images_per_s"] = s.pop("per_s")
    s["first_loss"], s["last_loss"] = losses[0], losses[-1]
    if not all(math.isfinite(v) for v in losses):
        raise RuntimeError(f"training diverged (losses {losses})")
    return s


def bench_infer(a, images):
    torch.manual_seed(a.seed)
    model = QResNet18(a.width, quant=False).eval()
    i = [0]

    def one():
        b = i[0] % a.pool
        i[0] += 1
        with torch.no_grad():
            model(images[b * a.batch:(b + 1) * a.batch])

    s = tl.stats(tl.timed(one, a.infer_warmup, a.batches), a.batch)
    s["images_per_s"] = s.pop("per_s")
    return s


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["train", "infer", "all"])
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (match flatenn's run)")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier ([64,128,256,512] x width)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    p.add_argument("--steps", type=int, default=5, help="timed training steps")
    p.add_argument("--infer-warmup", type=int, default=1, help="untimed inference batches first")
    p.add_argument("--batches", type=int, default=10, help="timed inference batches")
    p.add_argument("--pool", type=int, default=4, help="distinct random batches cycled through")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    for k in ("threads", "batch", "steps", "batches", "pool"):
        if getattr(a, k) < 1:
            p.error(f"--{k} must be >= 1")
    if a.warmup < 0 or a.infer_warmup < 0:
        p.error("--warmup and --infer-warmup must be >= 0")
    if not (0 < a.width <= 8):
        p.error("--width must be in (0, 8]")
    out = {**tl.setup_torch(a.threads), "mode": a.mode, "width": a.width,
           "channels": QResNet18(a.width).widths, "batch": a.batch, "warmup": a.warmup, "steps": a.steps,
           "infer_warmup": a.infer_warmup, "batches": a.batches}
    images, labels = random_pool(a.batch, a.pool, a.seed)
    t0 = time.perf_counter()
    if a.mode in ("train", "all"):
        out["train"] = bench_train(a, images, labels)
    if a.mode in ("infer", "all"):
        out["infer"] = bench_infer(a, images)
    out["seconds"] = time.perf_counter() - t0
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
