// Checkpoint -> deployed model (DESIGN §5): the weight codes exactly as trained
// (same fake-quant kernel), packed into the weight memory; weight scale, input
// scale, input normalisation and BatchNorm folded into per-channel output
// scales and biases.
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { kernels } from '../autograd/native-ops';
import { weightCodesFixed } from '../autograd/ops';
import { nativeFn } from '../native/binding';
import { decodeSafetensors, encodeSafetensors, writeSafetensors, type Tensor } from '../io/safetensors';
import { weightLayers } from '../nn/graph';
import { BN_EPS, type Model } from '../nn/model';
import { loadCheckpoint } from '../train/checkpoint';
import { buildPlan } from '../engine/plan';
import { deployedFromFile, buildLayout, DEPLOYED_FORMAT, DEPLOYED_VERSION, layoutHash, type DeployedMeta } from './format';

type PackFn = (codes: Int8Array, bits: number, out: Uint8Array) => void;

export interface ExportedTensors { tensors: Record<string, Tensor>; meta: DeployedMeta }

/** The deployed tensors and metadata of a trained model. */
export function deployModel(model: Model, dataset: string, source?: DeployedMeta['source']): ExportedTensors {
  const g = model.graph;
  const actBits = model.quant.actBits;
  if (![2, 4, 8].includes(actBits)) throw new RangeError(`export needs quantised activations (actBits 2, 4 or 8); this model has actBits ${actBits}`);
  const layersIR = weightLayers(g);
  const bitsOf = (name: string) => {
    const b = model.layerBits.get(name)!;
    if (![2, 4, 8].includes(b)) throw new RangeError(`export needs quantised weights (2, 4 or 8 bits); layer ${name} has ${b}`);
    return b;
  };
  const layout = buildLayout(layersIR.map((n) => ({
    name: n.name, op: n.op, bits: bitsOf(n.name),
    shape: n.op === 'conv' ? [n.outChannels, n.inChannels, n.kernel, n.kernel] : [n.outFeatures, n.inFeatures],
  })));
  const plan = buildPlan(g);
  const memory = new Uint8Array(layout.memoryBytes);
  const tensors: Record<string, Tensor> = {};
  const levels = 2 ** actBits - 1;
  const actScale = (site: number) => Math.fround(model.actRange[site]! / levels);
  for (let i = 0; i < model.actRange.length; i++) {
    if (!model.actRangeInit[i]) throw new RangeError(`activation range of ReLU site ${i} was never observed (train the model first)`);
    const r = model.actRange[i]!;
    if (r === 0) throw new RangeError(`ReLU site ${i} collapsed (activation range 0: every code is 0); the deployed format needs a positive range, so this model cannot be exported`);
    if (!(r > 0) || !Number.isFinite(r)) throw new RangeError(`activation range of ReLU site ${i} is ${r}, not a positive finite number`);
  }
  const weightScales: number[][] = [];
  layout.layers.forEach((l, li) => {
    const n = layersIR[li]!;
    const w = model.params.v(`${n.name}.weight`).data;
    const O = l.shape[0]!, per = l.count / O;
    const channels = model.quant.perChannel ? O : 1;
    const fixedLen = model.weightScales.get(n.name)?.length;
    const q = new Float32Array(l.count), codes = new Int8Array(l.count);
    let sw = new Float32Array(fixedLen ?? channels);
    const fixed = model.weightScales.get(n.name);
    if (fixed) {
      // imported quantisation parameters (flatenn import): codes at the model's own scales
      weightCodesFixed(w, fixed, l.bits, codes);
      if (fixed.length === 1) sw[0] = fixed[0]!;
      else { sw = fixed.slice(); }
    } else kernels().fakeQuantWeight(w, q, codes, sw, l.bits, channels);
    weightScales.push(Array.from(sw));
    nativeFn<PackFn>('packInt')(codes, l.bits, memory.subarray(l.byteOffset, l.byteOffset + l.byteLength));
    const src = plan.layerInputs[li]!;
    const bias = n.bias ? model.params.v(`${n.name}.bias`).data : null;
    const scale = new Float64Array(O), off = new Float64Array(O);
    for (let o = 0; o < O; o++) {
      const s = sw[sw.length === 1 ? 0 : o]!;
      let b = bias ? bias[o]! : 0;
      if (src.source === 'input') {
        // Version 2: the weight scale alone; the engine divides by the input std(s) and derives the
        // mean term and its border correction from the codes in memory (DESIGN §1).
        scale[o] = s;
      } else {
        scale[o] = (s * actScale(src.site)) / src.divide;
      }
      off[o] = b;
    }
    // Fold a BatchNorm that reads this layer: z = (y - mu) * g / sqrt(var + eps) + beta.
    const bnNode = g.nodes.find((x) => x.op === 'bn' && x.input === n.id);
    if (bnNode && bnNode.op === 'bn') {
      const st = model.bn.get(bnNode.name)!;
      const gamma = model.params.v(`${bnNode.name}.weight`).data, beta = model.params.v(`${bnNode.name}.bias`).data;
      for (let o = 0; o < O; o++) {
        const k = gamma[o]! / Math.sqrt(st.runningVar[o]! + BN_EPS);
        scale[o] = scale[o]! * k;
        off[o] = (off[o]! - st.runningMean[o]!) * k + beta[o]!;
      }
    }
    // float64: the engine's epilogue is float64 (DESIGN §1), so the folded constants keep every bit
    tensors[`${n.name}.out_scale`] = { dtype: 'F64', shape: [O], data: scale };
    tensors[`${n.name}.out_bias`] = { dtype: 'F64', shape: [O], data: off };
  });
  tensors.weight_memory = { dtype: 'U8', shape: [layout.memoryBytes], data: memory };
  tensors['act.range'] = { dtype: 'F32', shape: [model.actRange.length], data: model.actRange.slice() };
  const [channels, height, width] = model.inputShape;
  const meta: DeployedMeta = {
    format: DEPLOYED_FORMAT, version: DEPLOYED_VERSION, arch: g.arch, dataset, numClasses: g.numClasses,
    input: { channels, height, width, mean: model.norm.mean.slice(), std: typeof model.norm.std === 'number' ? model.norm.std : model.norm.std.slice(), padding: model.padding },
    actBits, layers: layout.layers, memoryBytes: layout.memoryBytes, cells: layout.cells,
    layoutHash: layoutHash(layout.layers), topology: g,
    source: { ...(source ?? {}), weightScales },
  };
  return { tensors, meta };
}

/** flatenn export: checkpoint file -> deployed model file. */
export async function exportCheckpoint(checkpointPath: string, outPath: string): Promise<DeployedMeta> {
  const buf = await fsp.readFile(checkpointPath);
  const { meta, model } = await loadCheckpoint(checkpointPath);
  const sha = createHash('sha256').update(buf).digest('hex');
  const d = deployModel(model, meta.dataset, { checkpointSha256: sha, epoch: meta.epoch });
  // Never write a file that eval would refuse: the export is validated exactly as a read file is.
  const metadata = { flatenn: JSON.stringify(d.meta) };
  try {
    deployedFromFile(decodeSafetensors(encodeSafetensors(d.tensors, metadata), outPath), `${checkpointPath} exported`, '');
  } catch (e) {
    throw new Error(`${(e as Error).message}; nothing was written to ${outPath}`);
  }
  await writeSafetensors(outPath, d.tensors, metadata);
  return d.meta;
}
