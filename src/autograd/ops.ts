// Differentiable ops. Heavy forward/backward work runs in the addon; light
// elementwise and reduction ops are plain loops here.
import { addGrad, anyRequiresGrad, contributeGrad, gradSink, type Tape, Var } from './tape';
import { kernels } from './native-ops';
import { alloc, allocU8 } from './pool';
import { maxpool2dU8, qconv2d, qgemm, QWeights, QWEIGHTS_MAX_K } from '../native/kernels-qengine';

// Integer forward of quantised layers (DESIGN §1, "Training forward"). A fake-quantised tensor
// holds values fl(s * q) with integer codes q: the activations after reluFakeQuant (one scale s_a,
// codes in [0, 2^b - 1]) and the weights after fakeQuantWeight (a scale per tensor or per output
// channel, signed codes). A conv or linear layer whose input and weights both carry their codes
// computes its output on the int4 engine's kernels instead of in float: the exact integer sum
// acc = sum q_w * q_a, then y = fl32(fl64(fl64(s_w * s_a) * acc) + b) (s_w * s_a is exact in
// float64). This is the exact value of the quantised layer rounded once, where the float path
// rounded every product and partial sum; it is the same for any ISA and thread count. The
// backward pass is unchanged (float, at the same quantised values). SAQ's perturbed weights
// (Q(w) + eps) carry no codes and take the float path.
interface ActCodes { codes: Uint8Array; scale: number }
interface WeightCodes { codes: Int8Array; scales: Float32Array }
const actCodes = new WeakMap<Var, ActCodes>();
const weightCodes = new WeakMap<Var, WeightCodes>();

/** The integer codes behind a fake-quantised activation (tests and the int path), or undefined. */
export function activationCodes(v: Var): Readonly<ActCodes> | undefined { return actCodes.get(v); }

/** float64 epilogue of the integer forward: scale[o] = s_w(o) * s_a, bias[o] = b[o] (or 0). */
function intEpilogue(wc: WeightCodes, sa: number, O: number, b: Var | null): { mode: 'float'; scale: Float64Array; bias: Float64Array } {
  const scale = new Float64Array(O), bias = new Float64Array(O);
  const per = wc.scales.length === 1;
  for (let o = 0; o < O; o++) scale[o] = wc.scales[per ? 0 : o]! * sa;
  if (b) bias.set(b.data);
  return { mode: 'float', scale, bias };
}

function out(t: Tape, shape: number[], ...inputs: (Var | null | undefined)[]): Var {
  let n = 1;
  for (const d of shape) n *= d;
  return new Var(alloc(n), shape, t.recording && anyRequiresGrad(...inputs));
}

function check(cond: boolean, msg: string): void {
  if (!cond) throw new RangeError(msg);
}

export interface Conv2dOptions {
  stride: number;
  pad: number;
  /** Value of a padded position per input channel (null: 0). */
  padValues?: Float32Array | null;
}

/** x [N,C,H,W] * w [O,C,KH,KW] (+ b [O]) -> [N,O,OH,OW]. */
export function conv2d(t: Tape, x: Var, w: Var, b: Var | null, o: Conv2dOptions): Var {
  check(x.shape.length === 4 && w.shape.length === 4, `conv2d expects x [N,C,H,W] and w [O,C,KH,KW], got [${x.shape}] and [${w.shape}]`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const [O, C2, KH, KW] = w.shape as [number, number, number, number];
  check(C === C2, `conv2d: x has ${C} channels but w expects ${C2}`);
  const OH = Math.floor((H + 2 * o.pad - KH) / o.stride) + 1;
  const OW = Math.floor((W + 2 * o.pad - KW) / o.stride) + 1;
  const y = out(t, [N, O, OH, OW], x, w, b);
  const pv = o.padValues ?? null;
  const xc = actCodes.get(x), wc = weightCodes.get(w);
  if (xc && wc && !pv && C * KH * KW <= QWEIGHTS_MAX_K) {
    const qw = QWeights.fromCodes(wc.codes, O, C * KH * KW);
    qconv2d(xc.codes, { B: N, C, H, W }, qw, { kh: KH, kw: KW, stride: o.stride, pad: o.pad }, intEpilogue(wc, xc.scale, O, b), y.data);
  } else {
    kernels().conv2dForward(x.data, w.data, b ? b.data : null, y.data, N, C, H, W, O, KH, KW, o.stride, o.pad, pv);
  }
  if (y.requiresGrad) {
    t.record(() => {
      if (!y.grad) return;
      const sx = gradSink(x), sw = gradSink(w), sb = gradSink(b);
      kernels().conv2dBackward(x.data, w.data, y.grad, sx && sx.buf, sw && sw.buf, sb && sb.buf, N, C, H, W, O, KH, KW, o.stride, o.pad, pv);
      sx?.commit(); sw?.commit(); sb?.commit();
    });
  }
  return y;
}

/** x [B, in] , w [out, in], b [out] -> [B, out]. */
export function linear(t: Tape, x: Var, w: Var, b: Var | null): Var {
  check(x.shape.length === 2 && w.shape.length === 2 && x.shape[1] === w.shape[1], `linear expects x [B,in] and w [out,in], got [${x.shape}] and [${w.shape}]`);
  const B = x.shape[0]!, IN = x.shape[1]!, OUT = w.shape[0]!;
  const y = out(t, [B, OUT], x, w, b);
  const k = kernels();
  const xc = actCodes.get(x), wc = weightCodes.get(w);
  if (xc && wc && IN <= QWEIGHTS_MAX_K) {
    qgemm(xc.codes, B, QWeights.fromCodes(wc.codes, OUT, IN), intEpilogue(wc, xc.scale, OUT, b), { out: y.data });
  } else {
    k.sgemm(false, true, B, OUT, IN, 1, x.data, IN, w.data, IN, 0, y.data, OUT);
    if (b) {
      const yd = y.data, bd = b.data;
      for (let i = 0; i < B; i++) for (let j = 0; j < OUT; j++) yd[i * OUT + j]! += bd[j]!;
    }
  }
  if (y.requiresGrad) {
    t.record(() => {
      if (!y.grad) return;
      const dy = y.grad;
      contributeGrad(x, (dx) => k.sgemm(false, false, B, IN, OUT, 1, dy, OUT, w.data, IN, 0, dx, IN));
      contributeGrad(w, (dw) => k.sgemm(true, false, OUT, IN, B, 1, dy, OUT, x.data, IN, 0, dw, IN));
      if (b) {
        contributeGrad(b, (db) => {
          db.fill(0);
          for (let i = 0; i < B; i++) for (let j = 0; j < OUT; j++) db[j]! += dy[i * OUT + j]!;
        });
      }
    });
  }
  return y;
}

export interface ReluFqResult {
  y: Var;
  /** max(x) over the batch (before the clip): feeds the range EMA. */
  max: number;
}

/**
 * ReLU followed by unsigned `bits`-bit fake quantisation with range r
 * (bits = 0: plain ReLU). Straight-through estimator: the gradient passes
 * where 0 < x <= r and is zero elsewhere (below zero: ReLU; above r: the clip).
 */
export function reluFakeQuant(t: Tape, x: Var, bits: number, range: number): ReluFqResult {
  const y = out(t, [...x.shape], x);
  const mask = allocU8(x.numel);
  const k = kernels();
  const codes = bits >= 1 && bits <= 8 ? allocU8(x.numel) : null;
  // range 0 (a collapsed site, observed but never positive): every code is 0, no gradient passes
  const max = bits > 0 && range === 0 ? (y.data.fill(0), mask.fill(0), codes?.fill(0), maxOf(x.data))
    : k.reluFakeQuant(x.data, y.data, mask, bits, bits === 0 ? 1 : range, codes);
  // the step of the native op: s = fl32(fl32(r) / (2^b - 1)) (0 for a collapsed site)
  if (codes) actCodes.set(y, { codes, scale: Math.fround(Math.fround(range) / (2 ** bits - 1)) });
  if (y.requiresGrad) {
    t.record(() => {
      if (!y.grad) return;
      const dy = y.grad;
      contributeGrad(x, (dx) => k.maskedGrad(dy, mask, dx));
    });
  }
  return { y, max };
}

/** max over a buffer ignoring NaN, -Infinity when there is none (the observer of the activation range; native). */
export function maxOf(a: Float32Array): number {
  return kernels().maxF32(a);
}

export interface FakeQuantWeightResult {
  q: Var;
  scales: Float32Array;
  codes: Int8Array;
}

/**
 * Signed symmetric fake quantisation of a weight tensor (per tensor, or per
 * output channel). Straight-through estimator: d q / d w = 1 (the gradient of
 * the quantised weight passes unchanged to the latent weight). `perturb`
 * (SAQ's eps) is added to the quantised values: the op returns Q(w) + eps.
 */
export function fakeQuantWeight(t: Tape, w: Var, bits: number, perChannel: boolean, perturb?: Float32Array | null): FakeQuantWeightResult {
  const channels = perChannel ? w.shape[0]! : 1;
  const q = out(t, [...w.shape], w);
  const scales = new Float32Array(channels);
  const codes = new Int8Array(w.numel);
  kernels().fakeQuantWeight(w.data, q.data, codes, scales, bits, channels);
  if (!perturb) weightCodes.set(q, { codes, scales });
  if (perturb) kernels().addScaledF32(q.data, perturb, 1);  // q + eps, rounded to float32
  if (q.requiresGrad) {
    t.record(() => {
      if (q.grad) addGrad(w, q.grad);
    });
  }
  return { q, scales, codes };
}

/**
 * Codes of weights at given scales (one, or one per output channel), PyTorch's fake-quant rule:
 * q = clamp(round_half_even(fl(w * fl(1 / s))), -2^(b-1), 2^(b-1) - 1). Used for models imported with
 * their own quantisation parameters (a torch.ao observer's scale is not max|w| / 7).
 */
export function weightCodesFixed(w: Float32Array, scales: Float32Array, bits: number, codes: Int8Array): void {
  const lo = -(2 ** (bits - 1)), hi = 2 ** (bits - 1) - 1;
  const per = w.length / scales.length;
  for (let c = 0; c < scales.length; c++) {
    const inv = Math.fround(1 / scales[c]!);
    for (let i = c * per; i < (c + 1) * per; i++) {
      const v = Math.fround(w[i]! * inv);
      const f = Math.floor(v), d = v - f;
      const r = d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
      codes[i] = r < lo ? lo : r > hi ? hi : r;
    }
  }
}

/** Fake quantisation at fixed scales (weightCodesFixed), straight-through gradient (DESIGN §1). */
export function fakeQuantWeightFixed(t: Tape, w: Var, bits: number, scales: Float32Array, perturb?: Float32Array | null): FakeQuantWeightResult {
  check(w.numel % scales.length === 0, `fakeQuantWeightFixed: ${scales.length} scales for ${w.numel} weights`);
  const q = out(t, [...w.shape], w);
  const codes = new Int8Array(w.numel);
  weightCodesFixed(w.data, scales, bits, codes);
  const per = w.numel / scales.length, qd = q.data;
  for (let i = 0; i < qd.length; i++) qd[i] = Math.fround(codes[i]! * scales[Math.floor(i / per)]!) + (perturb ? perturb[i]! : 0);
  if (!perturb) weightCodes.set(q, { codes, scales: scales.slice() });
  if (q.requiresGrad) {
    t.record(() => {
      if (q.grad) addGrad(w, q.grad);
    });
  }
  return { q, scales: scales.slice(), codes };
}

/** Max pooling, kernel k, stride s, no padding. */
export function maxpool2d(t: Tape, x: Var, k: number, s: number): Var {
  check(x.shape.length === 4, `maxpool2d expects [N,C,H,W], got [${x.shape}]`);
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const OH = Math.floor((H - k) / s) + 1, OW = Math.floor((W - k) / s) + 1;
  const y = out(t, [N, C, OH, OW], x);
  const argmax = new Int32Array(y.numel);
  const kern = kernels();
  kern.maxpool2dForward(x.data, y.data, argmax, N, C, H, W, k, s);
  // the max of values fl(s * q) is fl(s * max q): the codes pool alike
  const xc = actCodes.get(x);
  if (xc) actCodes.set(y, { codes: maxpool2dU8(xc.codes, N * C, H, W, k, s, allocU8(y.numel)), scale: xc.scale });
  if (y.requiresGrad) {
    t.record(() => {
      if (!y.grad) return;
      const dy = y.grad;
      contributeGrad(x, (dx) => kern.maxpool2dBackward(dy, argmax, dx, N, C, H, W, k, s));
    });
  }
  return y;
}

/** Reshape to [N, rest]; the data is shared. */
export function flatten(t: Tape, x: Var): Var {
  const n = x.shape[0]!;
  const y = new Var(x.data, [n, x.numel / n], t.recording && x.requiresGrad);
  const xc = actCodes.get(x);
  if (xc) actCodes.set(y, xc);
  if (y.requiresGrad) t.record(() => { if (y.grad) addGrad(x, y.grad); });
  return y;
}

/** Elementwise a + b (same shape): residual joins. */
export function add(t: Tape, a: Var, b: Var): Var {
  check(a.numel === b.numel, `add: shapes [${a.shape}] and [${b.shape}] differ`);
  const y = out(t, [...a.shape], a, b);
  kernels().addF32(a.data, b.data, y.data);
  if (y.requiresGrad) t.record(() => { if (y.grad) { addGrad(a, y.grad); addGrad(b, y.grad); } });
  return y;
}

/** Global average pool [N,C,H,W] -> [N,C]. */
export function globalAvgPool(t: Tape, x: Var): Var {
  const [N, C, H, W] = x.shape as [number, number, number, number];
  const y = out(t, [N, C], x);
  const hw = H * W, xd = x.data, yd = y.data;
  for (let i = 0; i < N * C; i++) {
    let s = 0;
    for (let j = 0; j < hw; j++) s += xd[i * hw + j]!;
    yd[i] = s / hw;
  }
  if (y.requiresGrad) {
    t.record(() => {
      if (!y.grad) return;
      const dy = y.grad;
      contributeGrad(x, (dx) => {
        for (let i = 0; i < N * C; i++) { const g = dy[i]! / hw; for (let j = 0; j < hw; j++) dx[i * hw + j] = g; }
      });
    });
  }
  return y;
}

export interface BatchNormState {
  runningMean: Float32Array;
  runningVar: Float32Array;
  momentum: number;
  eps: number;
}

/**
 * BatchNorm2d. training: normalise with the batch statistics (biased variance)
 * and, when updateStats, update the running statistics (unbiased variance, as
 * PyTorch). eval: use the running statistics.
 */
export function batchNorm2d(t: Tape, x: Var, gamma: Var, beta: Var, st: BatchNormState, training: boolean, updateStats: boolean): Var {
  const [N, C, H, W] = x.shape as [number, number, number, number];
  check(gamma.numel === C && beta.numel === C, `batchNorm2d: ${C} channels but gamma/beta have ${gamma.numel}/${beta.numel}`);
  const y = out(t, [...x.shape], x, gamma, beta);
  const hw = H * W, m = N * hw;
  const kern = kernels();
  const mean = new Float64Array(C), invStd = new Float64Array(C);
  if (training) {
    // per-channel sums in double (native, one fixed order per channel: bit-identical for any thread count)
    const sum = new Float64Array(C), sumsq = new Float64Array(C);
    kern.bn2dSums(x.data, N, C, hw, sum, sumsq);
    for (let c = 0; c < C; c++) {
      const s = sum[c]!, s2 = sumsq[c]!;
      const mu = s / m;
      const v = Math.max(s2 / m - mu * mu, 0);
      mean[c] = mu;
      invStd[c] = 1 / Math.sqrt(v + st.eps);
      if (updateStats) {
        st.runningMean[c] = (1 - st.momentum) * st.runningMean[c]! + st.momentum * mu;
        st.runningVar[c] = (1 - st.momentum) * st.runningVar[c]! + st.momentum * (m > 1 ? (v * m) / (m - 1) : v);
      }
    }
  } else {
    for (let c = 0; c < C; c++) { mean[c] = st.runningMean[c]!; invStd[c] = 1 / Math.sqrt(st.runningVar[c]! + st.eps); }
  }
  // y = ((x - mean) * invStd) * gamma + beta, in double
  kern.bn2dApply(x.data, y.data, N, C, hw, mean, invStd, gamma.data, beta.data);
  if (y.requiresGrad) {
    t.record(() => {
      if (!y.grad) return;
      const dy = y.grad;
      const sumDy = new Float64Array(C), sumDyXhat = new Float64Array(C);
      kern.bn2dBackwardSums(x.data, dy, N, C, hw, mean, invStd, sumDy, sumDyXhat);
      contributeGrad(gamma, (dg) => { for (let c = 0; c < C; c++) dg[c] = sumDyXhat[c]!; });
      contributeGrad(beta, (dbt) => { for (let c = 0; c < C; c++) dbt[c] = sumDy[c]!; });
      contributeGrad(x, (dx) => kern.bn2dBackwardDx(x.data, dy, dx, N, C, hw, mean, invStd, gamma.data, sumDy, sumDyXhat, training));
    });
  }
  return y;
}

export interface CrossEntropyResult {
  loss: Var;
  /** Number of rows whose arg-max equals the label. */
  correct: number;
  /** Predicted class per row. */
  predictions: Uint8Array;
}

/** Mean softmax cross-entropy of logits [B, K] against integer labels. */
export function crossEntropy(t: Tape, logits: Var, labels: ArrayLike<number>): CrossEntropyResult {
  const [B, K] = logits.shape as [number, number];
  check(labels.length === B, `crossEntropy: ${B} rows but ${labels.length} labels`);
  const loss = out(t, [1], logits);
  const ld = logits.data;
  const probs = new Float64Array(B * K);
  const predictions = new Uint8Array(B);
  let total = 0, correct = 0;
  for (let i = 0; i < B; i++) {
    let mx = -Infinity, arg = 0;
    for (let j = 0; j < K; j++) { const v = ld[i * K + j]!; if (v > mx) { mx = v; arg = j; } }
    let s = 0;
    for (let j = 0; j < K; j++) { const e = Math.exp(ld[i * K + j]! - mx); probs[i * K + j] = e; s += e; }
    const label = labels[i]!;
    check(Number.isInteger(label) && label >= 0 && label < K, `crossEntropy: label ${label} out of range [0, ${K})`);
    total += Math.log(s) - (ld[i * K + label]! - mx);
    for (let j = 0; j < K; j++) probs[i * K + j]! /= s;
    predictions[i] = arg;
    if (arg === label) correct++;
  }
  loss.data[0] = total / B;
  if (loss.requiresGrad) {
    t.record(() => {
      if (!loss.grad) return;
      const g = loss.grad[0]! / B;
      contributeGrad(logits, (dl) => {
        for (let i = 0; i < B; i++) {
          for (let j = 0; j < K; j++) dl[i * K + j] = g * (probs[i * K + j]! - (j === labels[i] ? 1 : 0));
        }
      });
    });
  }
  return { loss, correct, predictions };
}

/**
 * Activation L1 penalty coef * mean_over_batch(||a||_1) for a [B, ...]
 * (sub-gradient sign(a); zero at a = 0).
 */
export function l1Penalty(t: Tape, a: Var, coef: number): Var {
  const B = a.shape[0]!;
  const y = out(t, [1], a);
  const ad = a.data;
  let s = 0;
  for (let i = 0; i < ad.length; i++) s += Math.abs(ad[i]!);
  y.data[0] = (coef * s) / B;
  if (y.requiresGrad) {
    t.record(() => {
      if (!y.grad) return;
      const g = (y.grad[0]! * coef) / B;
      contributeGrad(a, (da) => { for (let i = 0; i < ad.length; i++) da[i] = ad[i]! > 0 ? g : ad[i]! < 0 ? -g : 0; });
    });
  }
  return y;
}

/** Sum of scalar Vars. */
export function sumScalars(t: Tape, terms: Var[]): Var {
  const y = out(t, [1], ...terms);
  let s = 0;
  for (const v of terms) s += v.data[0]!;
  y.data[0] = s;
  if (y.requiresGrad) t.record(() => { if (y.grad) for (const v of terms) addGrad(v, y.grad); });
  return y;
}
