#!/usr/bin/python3
"""PyTorch twin of flatenn's LeNet-5 benchmarks (bench/train.ts, bench/campaign.ts).

The same network and quantisation as flatenn (DESIGN.md section 1):
  conv 6@5x5 pad 2 (PyTorch's padding: zeros after normalisation, DESIGN §1), ReLU, maxpool 2,
  conv 16@5x5, ReLU, maxpool 2, fc 120, ReLU, fc 84, ReLU, fc 10;
  weights: signed int4 per tensor, s = max|w| / 7, q = clamp(round_half_even(w / s), -8, 7),
           straight-through gradient;
  activations: uint4 after every ReLU, scale r / 15, r = EMA (decay 0.99) of the batch maximum,
           gradient passes where 0 < x <= r;
  input: (x - 72.93) / 90; SGD momentum 0.9, weight decay 5e-4, batch 128.

Modes (one JSON object on stdout):
  train     images/s of a conventional QAT step and of a SAQ step (DESIGN section 3: two
            forward/backward passes, the second at Q(w) + rho * g / ||g||).
  campaign  trials/s; one trial = a fresh fault map (bit flips at `--rate` of the 4 * weights
            cells, distinct cells drawn uniformly) on the int4 codes, then the fake-quant model
            evaluated on all 10,000 FashionMNIST test images under torch.no_grad.

Debian's python3-torch imports only under /usr/bin/python3.
"""
import argparse
import gzip
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

MEAN, STD = 72.93, 90.0
EMA_DECAY = 0.99
WBITS_MAX, WBITS_MIN = 7, -8  # int4 two's complement
ALEVELS = 15                  # uint4
LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")


def read_idx(path):
    """Gzip IDX file -> numpy uint8 array (images N x 28 x 28 or labels N)."""
    with gzip.open(path, "rb") as f:
        buf = f.read()
    magic = int.from_bytes(buf[0:4], "big")
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(buf[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} bytes of data, found {data.size}")
    return data.reshape(dims)


def load_fashion_mnist(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def weight_scale(w):
    """Per-tensor symmetric scale s = max|w| / 7 (1 for an all-zero tensor)."""
    s = w.detach().abs().max() / WBITS_MAX
    return torch.where(s > 0, s, torch.ones_like(s))


class FakeQuantWeight(torch.autograd.Function):
    """Q(w) = s * clamp(round_half_even(w / s), -8, 7); straight-through gradient."""

    @staticmethod
    def forward(ctx, w):
        s = weight_scale(w)
        return torch.clamp(torch.round(w / s), WBITS_MIN, WBITS_MAX) * s

    @staticmethod
    def backward(ctx, g):
        return g


class ReluFakeQuant(torch.autograd.Function):
    """y = (r/15) * clamp(round_half_even(max(x, 0) / (r/15)), 0, 15); dx = dy where 0 < x <= r."""

    @staticmethod
    def forward(ctx, x, r):
        s = r / ALEVELS
        y = torch.clamp(torch.round(torch.relu(x) / s), 0, ALEVELS) * s
        ctx.save_for_backward((x > 0) & (x <= r))
        return y

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask, None


class QLeNet5(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 5, padding=2)  # pads the normalised input with 0
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(16 * 5 * 5, 120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.fc3 = torch.nn.Linear(84, 10)
        self.register_buffer("act_range", torch.zeros(4))
        self.range_init = [False] * 4
        self.track_ranges = True

    def act(self, x, site):
        if self.training and self.track_ranges:
            m = torch.clamp(x.detach().max(), min=0)
            if not self.range_init[site]:
                self.act_range[site] = m
                self.range_init[site] = True
            else:
                self.act_range[site] = EMA_DECAY * self.act_range[site] + (1 - EMA_DECAY) * m
        r = self.act_range[site]
        if not r > 0:
            r = torch.clamp(x.detach().max(), min=1e-8)
        if not torch.is_grad_enabled():  # inference: the same values, no straight-through mask to keep
            s = r / ALEVELS
            return torch.clamp(torch.round(torch.relu(x) / s), 0, ALEVELS) * s
        return ReluFakeQuant.apply(x, r)

    def forward(self, raw, weights=None):
        """raw: uint8 [N, 1, 28, 28]. weights: name -> the (quantised) weight to use; default Q(w)."""
        if weights is None:
            weights = {n: FakeQuantWeight.apply(getattr(self, n).weight) for n in LAYERS}
        # (x - m) * (1 / s) in float64, then float32: the same values as flatenn's Model.normalize.
        x = ((raw.double() - MEAN) * (1.0 / STD)).float()
        x = F.max_pool2d(self.act(F.conv2d(x, weights["conv1"], self.conv1.bias, padding=2), 0), 2)
        x = F.max_pool2d(self.act(F.conv2d(x, weights["conv2"], self.conv2.bias), 1), 2)
        x = x.flatten(1)
        x = self.act(F.linear(x, weights["fc1"], self.fc1.bias), 2)
        x = self.act(F.linear(x, weights["fc2"], self.fc2.bias), 3)
        return F.linear(x, weights["fc3"], self.fc3.bias)


def make_optimizer(model, lr):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)


def conventional_step(model, opt, x, y):
    opt.zero_grad(set_to_none=False)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


def saq_step(model, opt, x, y, rho):
    """SAQ (Liu et al. 2021, case 3; DESIGN section 3)."""
    opt.zero_grad(set_to_none=False)
    qw = {n: FakeQuantWeight.apply(getattr(model, n).weight) for n in LAYERS}
    loss = F.cross_entropy(model(x, qw), y)
    loss.backward()  # the STE makes w.grad = dL/dQ(w)
    with torch.no_grad():
        grads = [getattr(model, n).weight.grad for n in LAYERS]
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        scale = rho / norm if norm > 0 else 0.0
        eps = {n: scale * g.clone() for n, g in zip(LAYERS, grads)}
    opt.zero_grad(set_to_none=False)
    model.track_ranges = False  # second pass: activation-range EMAs frozen
    try:
        qw2 = {n: FakeQuantWeight.apply(getattr(model, n).weight) + eps[n] for n in LAYERS}
        loss2 = F.cross_entropy(model(x, qw2), y)
        loss2.backward()
    finally:
        model.track_ranges = True
    opt.step()
    return loss.item()


class Batches:
    """Shuffled training batches (a fresh permutation per pass)."""

    def __init__(self, images, labels, batch, seed):
        self.images, self.labels, self.batch = images, labels, batch
        self.gen = torch.Generator().manual_seed(seed)
        self.perm, self.pos = None, len(labels)

    def next(self):
        if self.pos + self.batch > len(self.labels):
            self.perm, self.pos = torch.randperm(len(self.labels), generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return self.images[idx], self.labels[idx]


def timed(fn, warmup, steps):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def stats(samples, per):
    med = statistics.median(samples)
    return {"median_s": med, "min_s": min(samples), "mean_s": statistics.fmean(samples),
            "samples": len(samples), "per_s": per / med}


def bench_train(a, env):
    images, labels = load_fashion_mnist(a.data_dir, "train")
    torch.manual_seed(a.seed)
    batches = Batches(images, labels, a.batch, a.seed)
    out = dict(env, mode="train", batch=a.batch, warmup=a.warmup, steps=a.steps, rho=a.rho)
    for name, step in (("conventional", conventional_step), ("saq", lambda m, o, x, y: saq_step(m, o, x, y, a.rho))):
        model = QLeNet5().train()
        opt = make_optimizer(model, a.lr)

        def one():
            x, y = batches.next()
            step(model, opt, x, y)

        s = stats(timed(one, a.warmup, a.steps), a.batch)
        s["images_per_s"] = s.pop("per_s")
        out[name] = s
    out["saq_over_conventional"] = out["saq"]["median_s"] / out["conventional"]["median_s"]
    return out


def codes_and_scales(model):
    """Int4 codes (int32, flat, model order) and the per-layer scales of the deployed model."""
    codes, scales, sizes = [], [], []
    with torch.no_grad():
        for n in LAYERS:
            w = getattr(model, n).weight
            s = weight_scale(w)
            codes.append(torch.clamp(torch.round(w / s), WBITS_MIN, WBITS_MAX).to(torch.int32).flatten())
            scales.append(s)
            sizes.append(w.numel())
    return torch.cat(codes), scales, sizes


def apply_bitflips(codes, cells, k, gen):
    """Flips k distinct cells (bits) drawn uniformly among 4 * weights; returns faulty signed codes."""
    chosen = torch.randperm(cells, generator=gen)[:k]
    flip = torch.zeros_like(codes)
    flip.index_put_((chosen // 4,), torch.bitwise_left_shift(torch.ones_like(chosen, dtype=torch.int32), (chosen % 4).to(torch.int32)), accumulate=True)
    nib = torch.bitwise_xor(torch.bitwise_and(codes, 15), flip)  # distinct cells: sum of bits == OR
    return torch.bitwise_xor(nib, 8) - 8                        # back to two's complement [-8, 7]


def evaluate(model, weights, images, labels, batch):
    correct = 0
    for b in range(0, len(labels), batch):
        logits = model(images[b:b + batch], weights)
        correct += (logits.argmax(1) == labels[b:b + batch]).sum().item()
    return correct / len(labels)


def bench_campaign(a, env):
    train_images, train_labels = load_fashion_mnist(a.data_dir, "train")
    test_images, test_labels = load_fashion_mnist(a.data_dir, "test")
    torch.manual_seed(a.seed)
    model = QLeNet5().train()
    opt = make_optimizer(model, a.lr)
    batches = Batches(train_images, train_labels, 128, a.seed)
    t0 = time.perf_counter()
    for _ in range(a.train_steps):  # a short training run: sets the activation ranges, gives a real model
        conventional_step(model, opt, *batches.next())
    train_s = time.perf_counter() - t0
    model.eval()
    codes, scales, sizes = codes_and_scales(model)
    cells = 4 * codes.numel()
    k = round(a.rate * cells)
    gen = torch.Generator().manual_seed(a.seed)
    accs = []

    def trial():
        with torch.no_grad():
            faulty = apply_bitflips(codes, cells, k, gen)
            weights, off = {}, 0
            for n, s, c in zip(LAYERS, scales, sizes):
                weights[n] = (faulty[off:off + c].float() * s).view_as(getattr(model, n).weight)
                off += c
            accs.append(evaluate(model, weights, test_images, test_labels, a.eval_batch))

    with torch.no_grad():
        clean = evaluate(model, None, test_images, test_labels, a.eval_batch)
    s = stats(timed(trial, a.warmup, a.trials), 1)
    s["trials_per_s"] = s.pop("per_s")
    return dict(env, mode="campaign", train_steps=a.train_steps, train_seconds=train_s, weights=codes.numel(),
                cells=cells, faulty_cells=k, rate=a.rate, images=len(test_labels), eval_batch=a.eval_batch,
                clean_accuracy=clean, mean_faulty_accuracy=statistics.fmean(accs), warmup=a.warmup,
                trials=a.trials, trial=s)


def build_info():
    """The lines of torch.__config__.show() that matter for CPU speed (capability, BLAS, oneDNN)."""
    keep = {}
    for line in torch.__config__.show().splitlines():
        line = line.strip(" -")
        if line.startswith("CPU capability usage:"):
            keep["cpu_capability"] = line.split(":", 1)[1].strip()
        elif "MKL-DNN" in line:
            keep["onednn"] = line
        for item in line.split(", "):
            if item.startswith("Build settings: "):
                item = item[len("Build settings: "):]
            if item.startswith(("BLAS_INFO=", "USE_MKLDNN=", "USE_OPENMP=")):
                k, v = item.split("=", 1)
                keep[k.lower()] = v
    return keep


def blas_runtime():
    """Which BLAS this process actually runs (the bench picks it with LD_LIBRARY_PATH): the
    libblas.so.3 / libopenblas mapped in, OpenBLAS's core (openblas_get_corename via ctypes, or
    threadpoolctl where installed), a measured 512^3 float32 torch.mm rate (netlib ~5 GFLOP/s,
    OpenBLAS tens), and the CPU-capability environment the peer was given."""
    import ctypes
    info = {}
    libs = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if ("blas" in path or "lapack" in path) and path not in libs:
                    libs.append(path)
    except OSError:
        pass
    info["libs"] = libs
    libblas = [p for p in libs if os.path.basename(p).startswith("libblas.so")]
    if libblas:
        info["libblas"] = os.path.realpath(libblas[0])
    def corename(path):
        try:
            lib = ctypes.CDLL(path)
            fn = lib.openblas_get_corename
        except (OSError, AttributeError):
            return None
        fn.restype = ctypes.c_char_p
        return fn().decode()
    # the core of the library that answers sgemm_ (libblas.so.3); an OpenBLAS mapped only for
    # LAPACK (the netlib build) is noted apart
    core = corename(libblas[0]) if libblas else None
    if core:
        info["openblas_core"] = core
    else:
        info["blas_core"] = "netlib reference (no openblas_get_corename)" if libblas else "unknown"
        for p in libs:
            if "openblas" in p and corename(p):
                info["lapack_only_openblas_core"] = corename(p)
                break
    try:
        import threadpoolctl
        info["threadpoolctl"] = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
                                 for d in threadpoolctl.threadpool_info()]
    except ImportError:
        pass
    a = torch.randn(512, 512)
    b = torch.randn(512, 512)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    info["sgemm_gflops"] = 2 * 512 ** 3 / best / 1e9
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS"):
        if os.environ.get(k):
            info[k.lower()] = os.environ[k]
    return info


def setup_torch(threads):
    """Intra-op threads as asked and one inter-op thread; returns the runtime every result records."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    return {"framework": "pytorch", "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.is_available(),
            "build": build_info(), "blas": blas_runtime()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["train", "campaign"])
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (match flatenn's run)")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--rho", type=float, default=0.1, help="SAQ neighbourhood size")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps/trials first (default 40 train, 3 campaign, as bench/train.ts and bench/campaign.ts)")
    p.add_argument("--steps", type=int, default=40, help="timed training steps per mode")
    p.add_argument("--trials", type=int, default=5, help="timed campaign trials")
    p.add_argument("--train-steps", type=int, default=50, help="campaign: training steps before the trials")
    p.add_argument("--rate", type=float, default=0.01, help="campaign: fraction of cells flipped")
    p.add_argument("--eval-batch", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    if a.threads < 1:
        p.error("--threads must be >= 1")
    if a.warmup is None:
        a.warmup = 40 if a.mode == "train" else 3
    env = setup_torch(a.threads)
    out = bench_train(a, env) if a.mode == "train" else bench_campaign(a, env)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
