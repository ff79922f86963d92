// The layer that reads the raw image (DESIGN §1, "Input" and "Derived constants follow the stored
// codes"). The engine feeds raw uint8 pixels x to it; the model means the normalised input
// (x - m_c) / s_c, zero-padded either after normalisation ('normalized', PyTorch's convention: a
// padded tap contributes nothing) or before it ('raw': a padded tap holds raw 0). With integer
// accumulators acc_c = sum over the valid taps of channel c of q * x (the kernel's zero padding):
//
//   y[o,p] = S[o] * ( sum_c acc_c[o,p] / s_c  -  sum_c (m_c / s_c) * Q_c[o,p] ) + B[o]
//
// where Q_c[o,p] sums the codes of channel c over the taps that count: the valid taps at p
// ('normalized') or every tap ('raw'). Q_c = T_c[o] - P_c[o,p] with T_c the sum over all taps and
// P_c the sum over the padded taps at p (zero inside the image). So the mean term is a
// per-channel constant plus a correction on the border. Both are derived from the codes in the
// weight memory being evaluated (a faulty code changes them, as it does in PyTorch), every time
// that layer's codes change.
//
// Version-1 deployed files store S / s in out_scale and B - (S / s) * sum_c m_c T_c(clean codes) in
// out_bias ('raw' padding, one std); their mean term is re-derived the same way: the stored
// constant plus (S / s) * sum_c m_c (T_c(clean) - T_c(memory)), so the clean model is bit for bit
// what it was.
//
// Every constant is float64 (the engine's epilogue is float64: native/kernels/qrequant.h). The
// kernel computes fl(fl(scale * acc) + bias) for the first channel group and adds fl(scale_g * acc_g)
// for each further group in channel order (one group when one std serves all channels, one per
// input channel otherwise); then the border correction is added: fl(y + corr[o,p]). The reference
// engine does the same operations in the same order, so both give the same bits.
import type { DeployedModel } from '../deploy/format';
import type { Plan, Step } from './plan';

export interface InputFold {
  /** One kernel scale row [O] per channel group (one group: all channels at once). */
  groupScale: Float64Array[];
  /** The group scales as one array [groups][O]. */
  gscale: Float64Array;
  /** Bias [O] of the first group (the others add no bias). */
  bias: Float64Array;
  /** Border correction [O][OH*OW] added after the groups are summed; null when zero everywhere. */
  corr: Float64Array | null;
}

export type LayerStep = Extract<Step, { op: 'layer' }>;

/** Whether the model's input normalisation needs one kernel group per input channel. */
export function perChannelStd(m: DeployedModel): boolean {
  const s = m.meta.input.std;
  return Array.isArray(s) && s.length > 1 && s.some((v) => v !== s[0]);
}

const stdOf = (m: DeployedModel, c: number): number => {
  const s = m.meta.input.std;
  return typeof s === 'number' ? s : s[c]!;
};

/** The padding convention of a deployed model (version 1: raw). */
export function inputPadding(m: DeployedModel): 'normalized' | 'raw' {
  return m.meta.version >= 2 ? m.meta.input.padding ?? 'raw' : 'raw';
}

/** Sum over all taps of each (o, c): T[o * C + c]. */
function tapSums(codes: Int8Array, O: number, C: number, kk: number): Float64Array {
  const t = new Float64Array(O * C);
  for (let o = 0; o < O; o++) for (let c = 0; c < C; c++) {
    let s = 0;
    const base = (o * C + c) * kk;
    for (let k = 0; k < kk; k++) s += codes[base + k]!;
    t[o * C + c] = s;
  }
  return t;
}

/**
 * The fold of a layer that reads the input, for the codes `codes` (this layer's, from the weight
 * memory being evaluated) and, for version-1 files, `cleanCodes` (the file's own).
 */
export function inputFold(m: DeployedModel, st: LayerStep, codes: Int8Array, cleanCodes: Int8Array): InputFold {
  const name = st.node.name;
  const S = m.outScale.get(name)!, B = m.outBias.get(name)!;
  const mean = m.meta.input.mean;
  const C = m.meta.input.channels;
  const O = S.length;
  const groups = perChannelStd(m) ? C : 1;
  let kk: number;
  if (st.node.op === 'conv') kk = st.node.kernel * st.node.kernel;
  else {
    if (groups > 1) throw new RangeError(`${name}: a linear layer reading the input needs one std for all channels`);
    kk = st.node.inFeatures / C;
  }
  const T = tapSums(codes, O, C, kk);
  const groupScale: Float64Array[] = [];
  const bias = new Float64Array(O);
  if (m.meta.version < 2) {
    // out_scale = S / s, out_bias = B - (S / s) * sum_c m_c T_c(clean); raw padding, one std.
    groupScale.push(S.slice());
    const Tc = cleanCodes === codes ? T : tapSums(cleanCodes, O, C, kk);
    for (let o = 0; o < O; o++) {
      let d = 0;
      for (let c = 0; c < C; c++) d += mean[c]! * (Tc[o * C + c]! - T[o * C + c]!);
      bias[o] = d === 0 ? B[o]! : B[o]! + S[o]! * d;
    }
    return { groupScale, gscale: flat(groupScale), bias, corr: null };
  }
  for (let g = 0; g < groups; g++) groupScale.push(Float64Array.from(S, (v) => v / stdOf(m, g)));
  for (let o = 0; o < O; o++) {
    let mt = 0;
    for (let c = 0; c < C; c++) mt += (mean[c]! / stdOf(m, c)) * T[o * C + c]!;
    bias[o] = B[o]! - S[o]! * mt;
  }
  let corr: Float64Array | null = null;
  if (inputPadding(m) === 'normalized' && st.node.op === 'conv' && st.node.pad > 0) {
    const k = st.node.kernel, s = st.node.stride, p = st.node.pad;
    const [, H, W] = st.inShape as [number, number, number];
    const [, OH, OW] = st.outShape as [number, number, number];
    corr = new Float64Array(O * OH * OW);
    const ms = Array.from({ length: C }, (_, c) => mean[c]! / stdOf(m, c));
    for (let oh = 0; oh < OH; oh++) {
      const h0 = oh * s - p;
      const rowInside = h0 >= 0 && h0 + k <= H;
      for (let ow = 0; ow < OW; ow++) {
        const w0 = ow * s - p;
        if (rowInside && w0 >= 0 && w0 + k <= W) continue;  // the whole window is inside: no correction
        for (let o = 0; o < O; o++) {
          // the padded taps' codes were counted in T; a valid-taps-only mean term adds them back
          let pad = 0;
          for (let c = 0; c < C; c++) {
            let cs = 0;
            const base = (o * C + c) * k * k;
            for (let a = 0; a < k; a++) {
              const ih = h0 + a;
              const rowOut = ih < 0 || ih >= H;
              for (let b = 0; b < k; b++) {
                const iw = w0 + b;
                if (rowOut || iw < 0 || iw >= W) cs += codes[base + a * k + b]!;
              }
            }
            pad += ms[c]! * cs;
          }
          corr[(o * OH + oh) * OW + ow] = S[o]! * pad;
        }
      }
    }
  }
  return { groupScale, gscale: flat(groupScale), bias, corr };
}

function flat(rows: Float64Array[]): Float64Array {
  const out = new Float64Array(rows.reduce((a, r) => a + r.length, 0));
  let o = 0;
  for (const r of rows) { out.set(r, o); o += r.length; }
  return out;
}

/** The layer steps that read the raw input. */
export function inputLayerSteps(plan: Plan): LayerStep[] {
  return plan.steps.filter((st): st is LayerStep => st.op === 'layer' && plan.layerInputs[st.layer]!.source === 'input');
}
