// Readable integer reference of the int4 engine (one image at a time, plain
// loops), with the engine's float64 epilogue spec (native/kernels/qrequant.h):
// y = fl(fl(scale * acc) + bias), codes min(rhe(max(fl(y * (1 / s)), 0)), L).
// JavaScript numbers are float64 and never fuse a multiply into an add, so the
// native engine must agree with it exactly on codes and logits; tests use it on
// hand-built models.
import { nativeFn } from '../native/binding';
import type { DeployedModel } from '../deploy/format';
import { buildPlan, type Plan } from './plan';
import { inputFold, inputLayerSteps, type InputFold } from './first-layer';

type UnpackFn = (packed: Uint8Array, bits: number, n: number, out: Int8Array) => void;

/** Round half to even. */
export function rhe(v: number): number {
  const f = Math.floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** The engine's requantisation: min(rhe(max(fl(y * fl(1 / s)), 0)), L) in float64 (NaN -> 0), s = fround(r / L). */
export function requant(y: number, s: number, levels: number): number {
  const t = y * (1 / s);
  const q = rhe(t > 0 ? t : 0);
  return q > levels ? levels : q;
}

/** Signed weight codes of every layer, unpacked from a (possibly faulty) weight memory. */
export function unpackLayers(m: DeployedModel, memory: Uint8Array): Int8Array[] {
  const unpack = nativeFn<UnpackFn>('unpackInt');
  return m.meta.layers.map((l) => {
    const out = new Int8Array(l.count);
    unpack(memory.subarray(l.byteOffset, l.byteOffset + l.byteLength), l.bits, l.count, out);
    return out;
  });
}

export interface ReferenceResult { logits: Float32Array; siteZeros: Float64Array; siteElems: Float64Array }

export function runReference(m: DeployedModel, codes: Int8Array[], images: Uint8Array, n: number, plan: Plan = buildPlan(m.meta.topology)): ReferenceResult {
  const g = m.meta.topology;
  const L = 2 ** m.meta.actBits - 1;
  const scaleOf = (site: number) => Math.fround(m.actRange[site]! / L);
  const K = g.numClasses;
  const per = m.meta.input.channels * m.meta.input.height * m.meta.input.width;
  const logits = new Float32Array(n * K);
  const siteZeros = new Float64Array(g.sites), siteElems = new Float64Array(g.sites);
  // Layers reading the raw input: the normalisation's mean term from these codes (DESIGN §1).
  const folds = new Map<number, InputFold>();
  const fromInput = inputLayerSteps(plan);
  const clean = m.meta.version < 2 && fromInput.length > 0 ? unpackLayers(m, m.memory) : null;
  for (const st of fromInput) folds.set(st.layer, inputFold(m, st, codes[st.layer]!, clean ? clean[st.layer]! : codes[st.layer]!));
  for (let i = 0; i < n; i++) {
    const vals: (Uint8Array | Float64Array | Int32Array)[] = new Array(g.nodes.length);
    vals[0] = images.subarray(i * per, (i + 1) * per);
    const toCodes = (y: Float64Array, site: number): Uint8Array => {
      const s = scaleOf(site), q = new Uint8Array(y.length);
      for (let j = 0; j < y.length; j++) { q[j] = requant(y[j]!, s, L); if (q[j] === 0) siteZeros[site]!++; }
      siteElems[site]! += y.length;
      return q;
    };
    for (const st of plan.steps) {
      switch (st.op) {
        case 'layer': {
          const x = vals[st.input] as Uint8Array | Int32Array;
          const w = codes[st.layer]!, name = st.node.name;
          const sc = m.outScale.get(name)!, bi = m.outBias.get(name)!;
          let y: Float64Array;
          const fold = folds.get(st.layer);
          if (st.node.op === 'conv') {
            const [C, H, W] = st.inShape as [number, number, number];
            const [O, OH, OW] = st.outShape as [number, number, number];
            const k = st.node.kernel, s = st.node.stride, p = st.node.pad;
            y = new Float64Array(O * OH * OW);
            // channel groups: all channels at once, or (input layer, per-channel std) one per channel
            const groups = fold ? fold.groupScale.length : 1;
            const per = C / groups;
            for (let o = 0; o < O; o++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
              let v = 0;
              for (let gi = 0; gi < groups; gi++) {
                let acc = 0;
                for (let c = gi * per; c < (gi + 1) * per; c++) for (let kh = 0; kh < k; kh++) {
                  const ih = oh * s - p + kh;
                  if (ih < 0 || ih >= H) continue;
                  for (let kw = 0; kw < k; kw++) {
                    const iw = ow * s - p + kw;
                    if (iw < 0 || iw >= W) continue; // padding: code 0 (raw pixel 0 for the input; the fold corrects it)
                    acc += w[((o * C + c) * k + kh) * k + kw]! * x[(c * H + ih) * W + iw]!;
                  }
                }
                const scale = fold ? fold.groupScale[gi]![o]! : sc[o]!;
                v = gi === 0 ? scale * acc + (fold ? fold.bias[o]! : bi[o]!) : v + scale * acc;
              }
              if (fold?.corr) v = v + fold.corr[(o * OH + oh) * OW + ow]!;
              y[(o * OH + oh) * OW + ow] = v;
            }
          } else {
            const I = st.node.inFeatures, O = st.node.outFeatures;
            const scale = fold ? fold.groupScale[0]! : sc, bias = fold ? fold.bias : bi;
            y = new Float64Array(O);
            for (let o = 0; o < O; o++) {
              let acc = 0;
              for (let j = 0; j < I; j++) acc += w[o * I + j]! * x[j]!;
              y[o] = scale[o]! * acc + bias[o]!;
            }
          }
          vals[st.out] = st.site === null ? y : toCodes(y, st.site);
          break;
        }
        case 'relu': vals[st.out] = toCodes(vals[st.input] as Float64Array, st.site); break;
        case 'maxpool': {
          const x = vals[st.input] as Uint8Array;
          const [C, H, W] = st.inShape as [number, number, number];
          const [, OH, OW] = st.outShape as [number, number, number];
          const y = new Uint8Array(C * OH * OW);
          for (let c = 0; c < C; c++) for (let a = 0; a < OH; a++) for (let b = 0; b < OW; b++) {
            let mx = 0;
            for (let u = 0; u < st.kernel; u++) for (let v = 0; v < st.kernel; v++) mx = Math.max(mx, x[(c * H + a * st.stride + u) * W + b * st.stride + v]!);
            y[(c * OH + a) * OW + b] = mx;
          }
          vals[st.out] = y;
          break;
        }
        case 'alias': vals[st.out] = vals[st.input]!; break;
        case 'gap': {
          const x = vals[st.input] as Uint8Array;
          const [C, H, W] = st.inShape as [number, number, number];
          const y = new Int32Array(C);
          for (let c = 0; c < C; c++) { let s = 0; for (let j = 0; j < H * W; j++) s += x[c * H * W + j]!; y[c] = s; }
          vals[st.out] = y; // integer sums; 1/(H*W) is folded into the next layer's scale
          break;
        }
        case 'add': {
          const deq = (id: number): Float64Array => {
            const v = vals[id]!;
            if (v instanceof Float64Array) return v;
            const s = scaleOf(plan.siteOf[id]!);
            return Float64Array.from(v as Uint8Array, (q) => q * s);
          };
          const a = deq(st.inputs[0]), b = deq(st.inputs[1]);
          vals[st.out] = a.map((v, j) => v + b[j]!);
          break;
        }
      }
    }
    logits.set(vals[plan.output] as Float64Array, i * K);  // float32 rounding, as the engine stores logits
  }
  return { logits, siteZeros, siteElems };
}
