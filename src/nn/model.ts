// A trainable quantised model: the graph IR, a flat parameter arena, BatchNorm
// and activation-range state, and the training-mode forward interpreter.
import { nativeFn } from '../native/binding';
import { RngPurpose } from '../util/rng';
import * as ops from '../autograd/ops';
import { alloc } from '../autograd/pool';
import { kernels } from '../autograd/native-ops';
import { Tape, Var } from '../autograd/tape';
import { type Graph, type GraphNode, weightLayers } from './graph';

export interface QuantConfig {
  /** Signed bits of conv/linear weights: 2, 4 or 8; 32 = float (no weight quantisation). */
  weightBits: number;
  /** Unsigned bits of post-ReLU activations; 0 = no activation quantisation. */
  actBits: number;
  perChannel: boolean;
  /** Bits of the first and last weight layers (null: same as weightBits). */
  firstLastBits: number | null;
}

/**
 * Where a convolution's zero padding of the normalised input lives (DESIGN §1): 'normalized' pads the
 * normalised input with 0 (a padded position holds raw m_c, as PyTorch's Normalize then Conv2d(padding)
 * does); 'raw' pads the raw image with 0 (version-1 deployed files, checkpoints made before the change).
 */
export type InputPadding = 'normalized' | 'raw';
export const INPUT_PADDINGS: readonly InputPadding[] = ['normalized', 'raw'];

export interface InputNorm {
  /** Per-channel mean of raw pixels (0..255). */
  mean: number[];
  /** Std of raw pixels (0..255): one for all channels, or one per channel. */
  std: number | number[];
}

/** The std of channel c of a normalisation. */
export function stdOf(norm: InputNorm, c: number): number {
  return typeof norm.std === 'number' ? norm.std : norm.std[c]!;
}

/** Checks a normalisation against a channel count; throws RangeError naming the rule. */
export function checkInputNorm(norm: InputNorm, channels: number, where = 'input normalisation'): void {
  if (!Array.isArray(norm.mean) || norm.mean.length !== channels) throw new RangeError(`${where}: ${Array.isArray(norm.mean) ? norm.mean.length : 'no'} means for ${channels} channels`);
  for (const m of norm.mean) if (typeof m !== 'number' || !Number.isFinite(m)) throw new RangeError(`${where}: mean ${m} is not a finite number`);
  const stds = typeof norm.std === 'number' ? [norm.std] : norm.std;
  if (!Array.isArray(stds) || (typeof norm.std !== 'number' && stds.length !== channels)) throw new RangeError(`${where}: std must be a number or one number per channel (${channels})`);
  for (const v of stds) if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new RangeError(`${where}: std ${v} is not a positive finite number`);
}

export type ParamKind = 'weight' | 'bias' | 'bn_weight' | 'bn_bias';

export interface ParamEntry {
  name: string;
  kind: ParamKind;
  shape: number[];
  offset: number;
  size: number;
  /** Fan-in of the layer (init bound). */
  fanIn: number;
}

/** All trainable parameters in one Float32Array (and one for their gradients). */
export class ParamArena {
  readonly entries: ParamEntry[] = [];
  data = new Float32Array(0);
  grad = new Float32Array(0);
  readonly vars = new Map<string, Var>();
  private total = 0;

  add(name: string, kind: ParamKind, shape: number[], fanIn: number): void {
    const size = shape.reduce((a, b) => a * b, 1);
    this.entries.push({ name, kind, shape, offset: this.total, size, fanIn });
    this.total += size;
  }

  finalize(): void {
    this.data = new Float32Array(this.total);
    this.grad = new Float32Array(this.total);
    for (const e of this.entries) {
      this.vars.set(e.name, Var.param(this.data.subarray(e.offset, e.offset + e.size), this.grad.subarray(e.offset, e.offset + e.size), e.shape, e.name));
    }
  }

  get size(): number { return this.total; }

  v(name: string): Var {
    const v = this.vars.get(name);
    if (!v) throw new Error(`no parameter '${name}'`);
    return v;
  }

  zeroGrad(): void {
    this.grad.fill(0);
    for (const v of this.vars.values()) v.gradState = 'zero';
  }
}

export interface BnBuffers { runningMean: Float32Array; runningVar: Float32Array }

export interface ForwardOptions {
  tape: Tape;
  /** BatchNorm uses batch statistics (true) or running statistics (false). */
  training: boolean;
  /** Update BN running statistics and activation-range EMAs (false in SAQ's second pass and in eval). */
  updateStats: boolean;
  /** SAQ: eps per weight layer name, added to Q(w). */
  perturb?: Map<string, Float32Array>;
  /** Record each ReLU site's output (for the AS penalty and sparsity). */
  keepActs?: boolean;
}

export interface ForwardResult {
  logits: Var;
  /** Post-ReLU (fake-quantised) activations per site, when keepActs. */
  acts: Var[];
  /** Quantised weights per weight layer (Q(w) [+ eps]); grads flow to the latent weights. */
  qweights: Map<string, Var>;
}

export const ACT_EMA_DECAY = 0.99;
export const BN_MOMENTUM = 0.1;
export const BN_EPS = 1e-5;

/** A quantised network built from a graph: latent float weights, batch-norm state, activation ranges; forward/backward on the autograd tape. */
export class Model {
  readonly graph: Graph;
  readonly quant: QuantConfig;
  readonly norm: InputNorm;
  readonly params = new ParamArena();
  readonly bn = new Map<string, BnBuffers>();
  /** EMA of the batch maximum per ReLU site (DESIGN §1). */
  readonly actRange: Float32Array;
  /** 1 once a site's EMA has been started from its first batch. */
  readonly actRangeInit: Uint8Array;
  /** Bits per weight layer, in model order. */
  readonly layerBits = new Map<string, number>();
  readonly padding: InputPadding;
  /**
   * Fixed weight scales per layer name (an imported model's own quantisation parameters, one or one per
   * output channel); layers not listed use DESIGN §1's max|w| / (2^(b-1) - 1).
   */
  readonly weightScales = new Map<string, Float32Array>();
  /** Value of a padded position of the first convolution, per input channel (null: 0, normalised padding). */
  readonly padValues: Float32Array | null;

  constructor(graph: Graph, quant: QuantConfig, norm: InputNorm, padding: InputPadding = 'normalized') {
    this.graph = graph;
    this.quant = quant;
    this.norm = norm;
    this.padding = padding;
    const layers = weightLayers(graph);
    layers.forEach((n, i) => {
      const fl = quant.firstLastBits !== null && (i === 0 || i === layers.length - 1);
      this.layerBits.set(n.name, fl ? quant.firstLastBits! : quant.weightBits);
    });
    for (const n of graph.nodes) {
      if (n.op === 'conv') {
        const fanIn = n.inChannels * n.kernel * n.kernel;
        this.params.add(`${n.name}.weight`, 'weight', [n.outChannels, n.inChannels, n.kernel, n.kernel], fanIn);
        if (n.bias) this.params.add(`${n.name}.bias`, 'bias', [n.outChannels], fanIn);
      } else if (n.op === 'linear') {
        this.params.add(`${n.name}.weight`, 'weight', [n.outFeatures, n.inFeatures], n.inFeatures);
        if (n.bias) this.params.add(`${n.name}.bias`, 'bias', [n.outFeatures], n.inFeatures);
      } else if (n.op === 'bn') {
        this.params.add(`${n.name}.weight`, 'bn_weight', [n.channels], 1);
        this.params.add(`${n.name}.bias`, 'bn_bias', [n.channels], 1);
        this.bn.set(n.name, { runningMean: new Float32Array(n.channels), runningVar: new Float32Array(n.channels).fill(1) });
      }
    }
    this.params.finalize();
    this.actRange = new Float32Array(graph.sites);
    this.actRangeInit = new Uint8Array(graph.sites);
    const input = graph.nodes[0] as Extract<GraphNode, { op: 'input' }>;
    checkInputNorm(norm, input.channels);
    if (!INPUT_PADDINGS.includes(padding)) throw new RangeError(`input padding must be 'normalized' or 'raw', got '${String(padding)}'`);
    // 'normalized': a padded position holds 0 after normalisation (raw m_c), the conv's own zero padding;
    // 'raw': it holds raw 0, i.e. (0 - m_c) / s_c.
    this.padValues = padding === 'raw' ? new Float32Array(norm.mean.map((m, c) => (0 - m) / stdOf(norm, c))) : null;
  }

  /** PyTorch-default init: U(-1/sqrt(fanIn), 1/sqrt(fanIn)) for conv/linear weights and biases; BN gamma 1, beta 0. */
  init(seed: number): void {
    const rng = nativeFn<(seed: number, purpose: number, stream: number, start: number, out: Float64Array) => void>('rngUniform');
    this.params.entries.forEach((e, idx) => {
      const view = this.params.data.subarray(e.offset, e.offset + e.size);
      if (e.kind === 'bn_weight') view.fill(1);
      else if (e.kind === 'bn_bias') view.fill(0);
      else {
        const u = new Float64Array(e.size);
        rng(seed, RngPurpose.Init, idx, 0, u);
        const bound = 1 / Math.sqrt(e.fanIn);
        for (let i = 0; i < e.size; i++) view[i] = (2 * u[i]! - 1) * bound;
      }
    });
    for (const b of this.bn.values()) { b.runningMean.fill(0); b.runningVar.fill(1); }
    this.actRange.fill(0);
    this.actRangeInit.fill(0);
  }

  /** The weight-layer parameter names (conv/linear weights), in model order. */
  weightNames(): string[] {
    return weightLayers(this.graph).map((n) => `${n.name}.weight`);
  }

  get inputShape(): [number, number, number] {
    const n = this.graph.nodes[0] as Extract<GraphNode, { op: 'input' }>;
    return [n.channels, n.height, n.width];
  }

  /** Normalises raw uint8 images [B, C, H, W] into a float input. */
  normalize(raw: Uint8Array, batch: number): Var {
    const [C, H, W] = this.inputShape;
    const hw = H * W;
    const x = alloc(batch * C * hw);  // every element written by the kernel
    const mean = new Float64Array(C), inv = new Float64Array(C);
    for (let c = 0; c < C; c++) { mean[c] = this.norm.mean[c]!; inv[c] = 1 / stdOf(this.norm, c); }
    // x = float((raw - mean_c) * (1 / std_c)) in float64 (native, the bits of the loop it replaced)
    kernels().normalizeU8(raw, x, batch, C, hw, mean, inv);
    return new Var(x, [batch, C, H, W]);
  }

  forward(x: Var, o: ForwardOptions): ForwardResult {
    const t = o.tape;
    const vals: Var[] = [];
    const acts: Var[] = [];
    const qweights = new Map<string, Var>();
    const p = this.params;
    const weight = (name: string): Var => {
      const bits = this.layerBits.get(name)!;
      const w = p.v(`${name}.weight`);
      if (bits >= 32) return w;
      const fixed = this.weightScales.get(name);
      const r = fixed ? ops.fakeQuantWeightFixed(t, w, bits, fixed, o.perturb?.get(name) ?? null)
        : ops.fakeQuantWeight(t, w, bits, this.quant.perChannel, o.perturb?.get(name) ?? null);
      qweights.set(name, r.q);
      return r.q;
    };
    for (const n of this.graph.nodes) {
      let y: Var;
      switch (n.op) {
        case 'input': y = x; break;
        case 'conv': {
          const first = n.input === 0;
          y = ops.conv2d(t, vals[n.input]!, weight(n.name), n.bias ? p.v(`${n.name}.bias`) : null, { stride: n.stride, pad: n.pad, padValues: first ? this.padValues : null });
          break;
        }
        case 'linear': y = ops.linear(t, vals[n.input]!, weight(n.name), n.bias ? p.v(`${n.name}.bias`) : null); break;
        case 'bn': y = ops.batchNorm2d(t, vals[n.input]!, p.v(`${n.name}.weight`), p.v(`${n.name}.bias`), { ...this.bn.get(n.name)!, momentum: BN_MOMENTUM, eps: BN_EPS }, o.training, o.updateStats); break;
        case 'relu': {
          const xin = vals[n.input]!;
          const bits = this.quant.actBits;
          if (bits > 0 && o.updateStats) {
            const m = Math.max(ops.maxOf(xin.data), 0);
            if (!this.actRangeInit[n.site]) { this.actRange[n.site] = m; this.actRangeInit[n.site] = 1; }
            else this.actRange[n.site] = ACT_EMA_DECAY * this.actRange[n.site]! + (1 - ACT_EMA_DECAY) * m;
          }
          let r = this.actRange[n.site]!;
          // never observed (a fresh model): this batch's max; observed as 0 (collapsed): every code is 0
          if (bits > 0 && !this.actRangeInit[n.site]) r = Math.max(ops.maxOf(xin.data), 1e-8);
          y = ops.reluFakeQuant(t, xin, bits, r).y;
          if (o.keepActs) acts[n.site] = y;
          break;
        }
        case 'maxpool': y = ops.maxpool2d(t, vals[n.input]!, n.kernel, n.stride); break;
        case 'flatten': y = ops.flatten(t, vals[n.input]!); break;
        case 'add': y = ops.add(t, vals[n.inputs[0]]!, vals[n.inputs[1]]!); break;
        case 'gap': y = ops.globalAvgPool(t, vals[n.input]!); break;
      }
      vals.push(y);
    }
    return { logits: vals[this.graph.output]!, acts, qweights };
  }
}
