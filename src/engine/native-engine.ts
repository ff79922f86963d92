// The int4 engine on the native kernels (flatenn/qengine.h): weights repacked
// once per weight memory (after faults), then per batch: convolutions (direct
// kernel or im2col + u8 x s8 GEMM) and GEMMs with fused float64 epilogues (scale,
// bias, folded BN, ReLU + requantise), a max pool that alone consumes a conv's
// codes fused into the conv, pools on uint8 codes, and residual joins that read
// the int32 accumulators of the layers feeding them (their affine in float64,
// so no float32 rounding sits between a layer and its join). Intermediate
// buffers are reused from batch to batch. Where every layer runs on the direct
// AVX-512 VNNI kernel, activations that only feed convolutions, linear layers
// and max pools stay in the blocked layout of flatenn/qengine.h (16 images in
// the vector lanes, [ceil(n/16)][elements][16]), so no layer transposes them.
import { nativeFn } from '../native/binding';
import type { DeployedModel } from '../deploy/format';
import type { Plan, Step } from './plan';
import { inputFold, inputLayerSteps, perChannelStd, inputPadding, type InputFold, type LayerStep } from './first-layer';

type U8 = Uint8Array;
type F32 = Float32Array;
type F64 = Float64Array;
type Mode = 'int32' | 'float' | 'codes';
interface QBindings {
  qweightsBytes(N: number, K: number): number;
  qweightsRepack(packed: U8, bits: number, N: number, K: number, dst: U8): string;
  qgemm(A: U8, M: number, K: number, lda: number, qw: U8, N: number, mode: Mode, out: F32 | U8 | Int32Array, layout: 'mn' | 'nm', scale: F64, bias: F64, actBits: number, actRange: number, inBlocked: boolean, outBlocked: boolean): number;
  qconv2d(x: U8, B: number, C: number, H: number, W: number, qw: U8, O: number, kh: number, kw: number, stride: number, pad: number, mode: Mode, out: F32 | U8 | Int32Array, scale: F64 | null, bias: F64 | null, actBits: number, actRange: number, inBlocked: boolean, outBlocked: boolean, corr?: F64 | null): number;
  qconv2dPool(x: U8, B: number, C: number, H: number, W: number, qw: U8, O: number, kh: number, kw: number, stride: number, pad: number, poolK: number, poolStride: number, out: U8, scale: F64, bias: F64, actBits: number, actRange: number, inBlocked: boolean, outBlocked: boolean, corr?: F64 | null): number;
  maxpool2dU8(x: U8, planes: number, H: number, W: number, k: number, stride: number, y: U8): void;
  maxpool2dU8Blocked(x: U8, B: number, C: number, H: number, W: number, k: number, stride: number, y: U8): void;
  globalSumU8(x: U8, planes: number, HW: number, sums: Int32Array): void;
  requantU8(y: F64, actBits: number, actRange: number, q: U8): number;
  qweightsFromCodes(codes: Int8Array, N: number, K: number, dst: U8): string;
  addRequantU8(a: U8 | Int32Array, sa: number, aScale: F64 | null, aBias: F64 | null, b: U8 | Int32Array, sb: number, bScale: F64 | null, bBias: F64 | null, C: number, P: number, actBits: number, actRange: number, q: U8): number;
  qconvRunsDirect(qw: U8, O: number, C: number, H: number, W: number, k: number, stride: number, pad: number, poolK: number, poolStride: number, mode: Mode, dense: boolean): boolean;
  qgroupsEpilogue(acc: Int32Array, G: number, B: number, O: number, P: number, gscale: F64, bias: F64, corr: F64 | null, mode: 'float' | 'codes', out: F32 | U8, actBits: number, actRange: number): number;
  qlinearI32(A: Int32Array, M: number, K: number, W: Int8Array, N: number, mode: 'float' | 'codes', out: F32 | U8, scale: F64, bias: F64, actBits: number, actRange: number): number;
  unpackInt(packed: U8, bits: number, n: number, out: Int8Array): void;
}

let bindings: QBindings | null | undefined;
function load(): QBindings | null {
  if (bindings !== undefined) return bindings;
  try {
    const names = ['qweightsBytes', 'qweightsRepack', 'qgemm', 'qconv2d', 'qconv2dPool', 'maxpool2dU8', 'maxpool2dU8Blocked', 'globalSumU8', 'requantU8', 'addRequantU8', 'qgroupsEpilogue', 'qlinearI32', 'unpackInt', 'qweightsFromCodes', 'qconvRunsDirect'];
    const b: Record<string, unknown> = {};
    for (const n of names) b[n] = nativeFn(n);
    bindings = b as unknown as QBindings;
  } catch {
    bindings = null;
  }
  return bindings;
}

export function nativeEngineAvailable(): boolean { return load() !== null; }

type Value = U8 | F32 | F64 | Int32Array;
/** A layer's int32 accumulators kept for a residual join, with its epilogue constants. */
interface AccValue { scale: F64; bias: F64; C: number; P: number }

export class NativeEngine {
  private readonly q: QBindings;
  private readonly qw: U8[];
  private readonly codes: (Int8Array | null)[];
  private readonly needsCodes: boolean[];
  private readonly levels: number;
  /** Per step: the index of a maxpool step fused into this conv step (its only consumer), else -1. */
  private readonly poolOf: number[];
  /** Per step: a layer without activation site whose output only residual joins read (it writes int32 accumulators). */
  private readonly joinAcc: boolean[];
  /** Reused intermediate buffers, per step (and kind), for the last batch size. */
  private readonly buffers = new Map<string, U8 | F32 | Int32Array>();
  /** Per value id: kept in the blocked layout (when every layer runs on the direct kernel). */
  private readonly blockable: boolean[];
  /** Whether the last repack put every layer in the AVX-512 VNNI layout (the direct kernel's). */
  private allDirect = false;
  /** Layers that read the raw input (DESIGN §1): their normalisation fold, re-derived when their codes change. */
  private readonly inputSteps: LayerStep[];
  private readonly folds = new Map<number, InputFold>();
  /** The weight bytes each fold was derived from. */
  private readonly foldBytes = new Map<number, Uint8Array>();
  /** Input layers that run unfused: per-channel std (one kernel per input channel) or a border correction. */
  private readonly splitInput = new Set<number>();
  /** Per input layer with a per-channel std: repacked weights of each input channel [O][k*k]. */
  private readonly groupQw = new Map<number, U8[]>();
  private readonly cleanInputCodes = new Map<number, Int8Array>();

  constructor(private readonly m: DeployedModel, private readonly plan: Plan) {
    const q = load();
    if (!q) throw new Error('the native int4 engine kernels are not in this build of the addon');
    this.q = q;
    this.levels = 2 ** m.meta.actBits - 1;
    // A linear layer fed by integer sums (after global pooling) runs qlinearI32 on plain int8 codes.
    this.needsCodes = m.meta.layers.map(() => false);
    for (const st of plan.steps) if (st.op === 'layer' && this.plan.steps.some((s) => s.op === 'gap' && (s.out === st.input || this.aliasOf(st.input) === s.out))) this.needsCodes[st.layer] = true;
    this.qw = m.meta.layers.map((l) => new Uint8Array(q.qweightsBytes(l.shape[0]!, l.count / l.shape[0]!)));
    this.codes = m.meta.layers.map((l, i) => (this.needsCodes[i] ? new Int8Array(l.count) : null));
    this.inputSteps = inputLayerSteps(plan);
    for (const st of this.inputSteps) {
      const normalizedPad = inputPadding(m) === 'normalized' && st.node.op === 'conv' && st.node.pad > 0;
      if (m.meta.version >= 2 && (perChannelStd(m) || normalizedPad)) this.splitInput.add(st.layer);
      if (m.meta.version < 2) {
        const l = m.meta.layers[st.layer]!, c = new Int8Array(l.count);
        q.unpackInt(m.memory.subarray(l.byteOffset, l.byteOffset + l.byteLength), l.bits, l.count, c);
        this.cleanInputCodes.set(st.layer, c);
      }
    }
    this.setWeights(m.memory);
    const steps = plan.steps;
    const readers = (id: number) => steps.filter((t) => (t.op === 'add' ? t.inputs.includes(id) : t.input === id)).length + (plan.output === id ? 1 : 0);
    this.poolOf = steps.map((st, i) => {
      const next = steps[i + 1];
      if (st.op !== 'layer' || st.node.op !== 'conv' || st.site === null || !next || next.op !== 'maxpool' || next.input !== st.out) return -1;
      // one group: the border term rides in the fused kernel (GEMM path or direct); per-channel std runs unfused
      if (this.splitInput.has(st.layer) && perChannelStd(m)) return -1;
      return readers(st.out) === 1 ? i + 1 : -1;
    });
    // read only by residual joins (no alias, ReLU or other step reads it): such a layer writes int32 accumulators
    const onlyJoinsRead = (id: number) => steps.every((t) => t.op === 'add' || t.input !== id);
    this.joinAcc = steps.map((st) => st.op === 'layer' && st.site === null && st.out !== plan.output && readers(st.out) > 0 &&
      onlyJoinsRead(st.out) && !steps.some((t) => t.op === 'gap' && t.out === this.aliasOf(st.input)) && !this.splitInput.has(st.layer));
    this.blockable = this.blockedValues();
  }

  /** Whether layer step `si` runs on the direct kernel (with the weights as last repacked): the only path that reads and writes the blocked layout without converting. */
  private runsDirect(si: number): boolean {
    const st = this.plan.steps[si]!;
    if (st.op !== 'layer' || !this.allDirect) return false;
    const qw = this.qw[st.layer]!, O = this.m.meta.layers[st.layer]!.shape[0]!;
    const mode: Mode = st.site !== null ? 'codes' : this.joinAcc[si] ? 'int32' : 'float';
    if (st.node.op === 'linear') return this.q.qconvRunsDirect(qw, O, st.node.inFeatures, 1, 1, 1, 1, 0, 1, 1, mode, true);
    const [C, H, W] = st.inShape as [number, number, number];
    const pi = this.poolOf[si]!;
    const pool = pi >= 0 ? (this.plan.steps[pi] as Extract<Step, { op: 'maxpool' }>) : null;
    return this.q.qconvRunsDirect(qw, O, C, H, W, st.node.kernel, st.node.stride, st.node.pad, pool?.kernel ?? 1, pool?.stride ?? 1, mode, false);
  }

  /**
   * Values that may live in the blocked layout: produced by a conv / linear layer on codes (or a
   * fused conv + pool) that runs on the direct kernel, or a max pool of a blocked value, read only
   * by such layers and max pools (through flatten aliases), and not the output. (A layer on the
   * GEMM path would convert its blocked input and output around itself: a pass over memory each.)
   */
  private blockedValues(): boolean[] {
    const steps = this.plan.steps, n = this.plan.kinds.length;
    const root = (id: number): number => this.aliasOf(id);
    const blocked = new Array<boolean>(n).fill(false);
    const gapOut = new Set(steps.filter((s) => s.op === 'gap').map((s) => s.out));
    const direct = steps.map((_, i) => this.runsDirect(i));
    steps.forEach((st, i) => {
      if (st.op === 'layer' && direct[i] && !gapOut.has(root(st.input)) && !(this.splitInput.has(st.layer) && perChannelStd(this.m))) blocked[this.poolOf[i]! >= 0 ? (steps[this.poolOf[i]!] as { out: number }).out : st.out] = true;
      if (st.op === 'maxpool') blocked[st.out] = true;
    });
    for (let changed = true; changed;) {
      changed = false;
      steps.forEach((st, i) => {  // an unfused pool writes the layout it reads
        if (st.op === 'maxpool' && this.poolOf[i - 1] !== i && blocked[st.out] && !blocked[root(st.input)]) { blocked[st.out] = false; changed = true; }
      });
      for (let id = 0; id < n; id++) {
        if (!blocked[id]) continue;
        const ok = root(this.plan.output) !== id && steps.every((st, i) => {
          const ins = st.op === 'add' ? st.inputs : st.op === 'alias' ? [] : [st.input];
          if (!ins.some((x) => root(x) === id)) return true;
          if (st.op === 'layer') return direct[i]!;  // conv / linear layers on the direct kernel read it
          return st.op === 'maxpool' && blocked[st.out]!;  // a pool reads the layout it writes
        });
        if (!ok) { blocked[id] = false; changed = true; }
      }
    }
    return blocked;
  }

  /** A reusable buffer of `n` elements for step `si` (contents undefined). */
  private buffer<T extends U8 | F32 | Int32Array>(si: number, kind: 'u8' | 'f32' | 'i32' | 'plane' | 'gacc', n: number): T {
    const key = `${si}:${kind}`;
    let b = this.buffers.get(key);
    if (!b || b.length !== n) {
      b = kind === 'u8' || kind === 'plane' ? new Uint8Array(n) : kind === 'f32' ? new Float32Array(n) : new Int32Array(n);
      this.buffers.set(key, b);
    }
    return b as T;
  }

  private aliasOf(id: number): number {
    const st = this.plan.steps.find((s) => s.op === 'alias' && s.out === id);
    return st && st.op === 'alias' ? this.aliasOf(st.input) : id;
  }

  /** Repacks a (possibly faulty) weight memory for the kernels. */
  setWeights(memory: U8): void {
    this.m.meta.layers.forEach((l, i) => {
      const packed = memory.subarray(l.byteOffset, l.byteOffset + l.byteLength);
      const N = l.shape[0]!, K = l.count / N;
      const isa = this.q.qweightsRepack(packed, l.bits, N, K, this.qw[i]!);
      if (i === 0) this.allDirect = true;
      this.allDirect &&= isa === 'avx512' || isa === 'avx2';  // the direct kernel's layouts (per layer: runsDirect)
      if (this.codes[i]) this.q.unpackInt(packed, l.bits, l.count, this.codes[i]!);
    });
    for (const st of this.inputSteps) this.refold(st, memory);
  }

  /** Re-derives an input layer's normalisation fold from its codes in `memory`, when they changed. */
  private refold(st: LayerStep, memory: U8): void {
    const l = this.m.meta.layers[st.layer]!;
    const bytes = memory.subarray(l.byteOffset, l.byteOffset + l.byteLength);
    const prev = this.foldBytes.get(st.layer);
    if (prev && prev.length === bytes.length && prev.every((v, i) => v === bytes[i])) return;
    const codes = new Int8Array(l.count);
    this.q.unpackInt(bytes, l.bits, l.count, codes);
    const fold = inputFold(this.m, st, codes, this.cleanInputCodes.get(st.layer) ?? codes);
    this.folds.set(st.layer, fold);
    this.foldBytes.set(st.layer, bytes.slice());
    if (fold.groupScale.length > 1 && st.node.op === 'conv') {
      const C = this.m.meta.input.channels, O = l.shape[0]!, kk = st.node.kernel * st.node.kernel;
      const qws = this.groupQw.get(st.layer) ?? Array.from({ length: C }, () => new Uint8Array(this.q.qweightsBytes(O, kk)));
      for (let c = 0; c < C; c++) {
        const part = new Int8Array(O * kk);
        for (let o = 0; o < O; o++) part.set(codes.subarray((o * C + c) * kk, (o * C + c + 1) * kk), o * kk);
        this.q.qweightsFromCodes(part, O, kk, qws[c]!);
      }
      this.groupQw.set(st.layer, qws);
    }
  }

  /**
   * An input layer that cannot run as one fused kernel: an integer convolution per channel group,
   * combined in float64 with the border correction (qgroupsEpilogue), then ReLU + requantise (or
   * float out). Returns the zero codes.
   */
  private runSplitInput(si: number, st: LayerStep, x: U8, n: number, out: F32 | U8, outBlocked: boolean): number {
    const fold = this.folds.get(st.layer)!, q = this.q, node = st.node as Extract<LayerStep['node'], { op: 'conv' }>;
    const [C, H, W] = st.inShape as [number, number, number];
    const [O, OH, OW] = st.outShape as [number, number, number];
    const total = n * O * OH * OW;
    const k = node.kernel;
    const groups = fold.groupScale.length;
    const codes = out instanceof Uint8Array;
    const bits = this.m.meta.actBits, range = codes ? this.m.actRange[st.site!]! : 1;
    if (groups === 1) {  // one kernel: the border term and the requantisation in its epilogue (GEMM path or direct)
      return q.qconv2d(x, n, C, H, W, this.qw[st.layer]!, O, k, k, node.stride, node.pad, codes ? 'codes' : 'float', out, fold.groupScale[0]!, fold.bias,
        bits, range, false, outBlocked, fold.corr);
    }
    // per-channel std: one integer convolution per input channel, combined in channel order
    const qws = this.groupQw.get(st.layer)!, hw = H * W;
    const plane = this.buffer<U8>(si, 'plane', n * hw);
    const acc = this.buffer<Int32Array>(si, 'gacc', groups * total);
    for (let c = 0; c < C; c++) {
      for (let b = 0; b < n; b++) plane.set(x.subarray((b * C + c) * hw, (b * C + c + 1) * hw), b * hw);
      q.qconv2d(plane, n, 1, H, W, qws[c]!, O, k, k, node.stride, node.pad, 'int32', acc.subarray(c * total, (c + 1) * total), null, null, 1, 1, false, false);
    }
    return q.qgroupsEpilogue(acc, groups, n, O, OH * OW, fold.gscale, fold.bias, fold.corr, codes ? 'codes' : 'float', out, bits, range);
  }

  private scaleOfSite(site: number): number { return Math.fround(this.m.actRange[site]! / this.levels); }

  forward(images: U8, n: number): { logits: F32; siteZeros: Float64Array; siteElems: Float64Array } {
    const g = this.m.meta.topology, q = this.q, bits = this.m.meta.actBits;
    // blocked values hold whole blocks of 16 images
    const isB = (id: number) => this.allDirect && this.blockable[this.aliasOf(id)]!;
    const items = (id: number) => (isB(id) ? Math.ceil(n / 16) * 16 : n);
    const vals: Value[] = new Array(g.nodes.length);
    vals[0] = images;
    const siteZeros = new Float64Array(g.sites), siteElems = new Float64Array(g.sites);
    const steps = this.plan.steps;
    const accs = new Map<number, AccValue>();
    const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
    for (let si = 0; si < steps.length; si++) {
      const st: Step = steps[si]!;
      switch (st.op) {
        case 'layer': {
          const l = this.m.meta.layers[st.layer]!, name = st.node.name;
          const fold = this.folds.get(st.layer);
          const scale = fold ? fold.groupScale[0]! : this.m.outScale.get(name)!, bias = fold ? fold.bias : this.m.outBias.get(name)!;
          const mode: Mode = st.site !== null ? 'codes' : this.joinAcc[si] ? 'int32' : 'float';
          const range = st.site === null ? 1 : this.m.actRange[st.site]!;
          const total = n * size(st.outShape);
          const x = vals[st.input]!;
          const pi = this.poolOf[si]!;
          if (pi >= 0 && st.node.op === 'conv') {
            // conv + requantise + max pool in one kernel; zeros count the codes before pooling
            const [C, H, W] = st.inShape as [number, number, number];
            const pool = steps[pi] as Extract<Step, { op: 'maxpool' }>;
            const y = this.buffer<U8>(pi, 'u8', items(pool.out) * size(pool.outShape));
            const zeros = q.qconv2dPool(x as U8, n, C, H, W, this.qw[st.layer]!, l.shape[0]!, st.node.kernel, st.node.kernel, st.node.stride, st.node.pad, pool.kernel, pool.stride, y, scale, bias, bits, range, isB(st.input), isB(pool.out), fold?.corr ?? null);
            siteZeros[st.site!]! += zeros; siteElems[st.site!]! += total;
            vals[pool.out] = y;
            si = pi;
            break;
          }
          // the logits (the plan's output) get a fresh array: the caller keeps them
          const cap = items(st.out) * size(st.outShape);
          const out: F32 | U8 | Int32Array = st.out === this.plan.output ? new Float32Array(total)
            : mode === 'float' ? this.buffer<F32>(si, 'f32', cap) : mode === 'int32' ? this.buffer<Int32Array>(si, 'i32', cap) : this.buffer<U8>(si, 'u8', cap);
          let zeros: number;
          if (this.splitInput.has(st.layer)) {
            zeros = this.runSplitInput(si, st, x as U8, n, out as F32 | U8, isB(st.out));
          } else if (st.node.op === 'conv') {
            const [C, H, W] = st.inShape as [number, number, number];
            zeros = q.qconv2d(x as U8, n, C, H, W, this.qw[st.layer]!, l.shape[0]!, st.node.kernel, st.node.kernel, st.node.stride, st.node.pad, mode, out, scale, bias, bits, range, isB(st.input), isB(st.out));
          } else if (x instanceof Int32Array) {
            zeros = q.qlinearI32(x, n, st.node.inFeatures, this.codes[st.layer]!, st.node.outFeatures, mode as 'float' | 'codes', out as F32 | U8, scale, bias, bits, range);
          } else {
            zeros = q.qgemm(x as U8, n, st.node.inFeatures, st.node.inFeatures, this.qw[st.layer]!, st.node.outFeatures, mode, out, 'mn', scale, bias, bits, range, isB(st.input), isB(st.out));
          }
          if (st.site !== null) { siteZeros[st.site]! += zeros; siteElems[st.site]! += total; }
          vals[st.out] = out;
          if (mode === 'int32') accs.set(st.out, { scale, bias, C: st.outShape[0]!, P: size(st.outShape) / st.outShape[0]! });
          break;
        }
        case 'maxpool': {
          const [C, H, W] = st.inShape as [number, number, number];
          const y = this.buffer<U8>(si, 'u8', items(st.out) * size(st.outShape));
          if (isB(st.input)) q.maxpool2dU8Blocked(vals[st.input] as U8, n, C, H, W, st.kernel, st.stride, y);
          else q.maxpool2dU8(vals[st.input] as U8, n * C, H, W, st.kernel, st.stride, y);
          vals[st.out] = y;
          break;
        }
        case 'alias': vals[st.out] = vals[st.input]!; break;
        case 'gap': {
          const [C, H, W] = st.inShape as [number, number, number];
          const sums = this.buffer<Int32Array>(si, 'i32', n * C);
          q.globalSumU8(vals[st.input] as U8, n * C, H * W, sums);
          vals[st.out] = sums;
          break;
        }
        case 'add': {
          const next = steps[si + 1];
          const C = this.plan.shapes[st.out]![0]!, P = st.size / C;
          // each input: codes (dequantised with its site's scale) or a layer's int32 accumulators with its epilogue
          const input = (id: number): { v: Value; s: number; acc?: AccValue } => {
            const v = vals[id]!, acc = accs.get(id);
            if (acc) return { v, s: 1, acc };
            if (v instanceof Uint8Array) return { v, s: this.scaleOfSite(this.plan.siteOf[id]!) };
            throw new Error(`residual join: input ${id} is neither activation codes nor a layer's accumulators`);
          };
          const [ia, ib] = st.inputs.map(input) as [ReturnType<typeof input>, ReturnType<typeof input>];
          if (next && next.op === 'relu' && next.input === st.out) {
            // add + ReLU + requantise in one pass (float64)
            const qOut = this.buffer<U8>(si, 'u8', n * st.size);
            const z = q.addRequantU8(ia.v as U8 | Int32Array, ia.s, ia.acc?.scale ?? null, ia.acc?.bias ?? null,
              ib.v as U8 | Int32Array, ib.s, ib.acc?.scale ?? null, ib.acc?.bias ?? null, C, P, bits, this.m.actRange[next.site]!, qOut);
            siteZeros[next.site]! += z; siteElems[next.site]! += qOut.length;
            vals[next.out] = qOut;
            si++;
          } else {
            // the join's float64 values for a later ReLU step (the same operations as addRequantU8)
            const deq = (x: ReturnType<typeof input>, j: number): number => {
              if (!x.acc) return (x.v as U8)[j]! * x.s;
              const c = Math.floor(j / P) % C;
              return x.acc.scale[c]! * (x.v as Int32Array)[j]! + x.acc.bias[c]!;
            };
            const y = new Float64Array(n * st.size);
            for (let j = 0; j < y.length; j++) y[j] = deq(ia, j) + deq(ib, j);
            vals[st.out] = y;
          }
          break;
        }
        case 'relu': {
          const v = vals[st.input]!;
          if (!(v instanceof Float64Array)) throw new Error(`ReLU step ${si}: expected the float64 values of a residual join`);
          const qOut = this.buffer<U8>(si, 'u8', v.length);
          const z = q.requantU8(v, bits, this.m.actRange[st.site]!, qOut);
          siteZeros[st.site]! += z; siteElems[st.site]! += qOut.length;
          vals[st.out] = qOut;
          break;
        }
      }
    }
    return { logits: vals[this.plan.output] as F32, siteZeros, siteElems };
  }
}
