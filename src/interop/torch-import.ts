// flatenn import --from torch: a PyTorch state_dict (safetensors) -> a flatenn checkpoint, which
// `flatenn export` turns into a deployed model as usual. Names follow PyTorch: `conv1.weight`,
// `fc1.bias` (LeNet-5), torchvision's ResNet names (`layer1.0.conv1.weight`, `bn1.running_mean`,
// `layer2.0.downsample.0.weight`, `fc.weight`); `map` renames others. Quantisation parameters the file
// carries are kept: weight scales of torch.ao fake-quant modules (`<layer>.weight_fake_quant.scale`,
// symmetric: zero point 0) or flatenn's `<layer>.weight_scale`, travel in the checkpoint and export uses
// them instead of max|w|/7; activation ranges come from the fake quant after each ReLU
// (`<layer>.activation_post_process.scale` of a fused Conv/Linear+ReLU, range = scale x (2^bits - 1)) or
// flatenn's `act.range`; otherwise `calibrate` training images set them (max). The checkpoint records
// where each came from.
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { decodeSafetensors, writeSafetensors, type SafetensorsFile, type Tensor } from '../io/safetensors';
import { defaultConfig, validateConfig, type DatasetName, type TrainConfig } from '../train/config';
import { createModel } from '../train/trainer';
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, modelTensors, type CheckpointMeta } from '../train/checkpoint';
import { loadDataset } from '../data/dataset';
import { Tape } from '../autograd/tape';
import type { Model, InputNorm, InputPadding } from '../nn/model';
import { ARCHS, type Arch, type GraphNode } from '../nn/graph';

export interface ImportOptions {
  /** The PyTorch state_dict, saved as safetensors. */
  file: string;
  arch: Arch;
  out: string;
  /** Key renames: an exact key, or a module prefix (`features.0` -> `conv1`). */
  map?: Record<string, string>;
  /** Dataset the model was trained on (default: the architecture's). */
  dataset?: DatasetName;
  /** Input normalisation in raw pixel units (default: the dataset's, DESIGN §1). */
  norm?: InputNorm;
  /** Padding of the first convolution (default 'normalized': PyTorch's). */
  padding?: InputPadding;
  /** Calibrate activation ranges (max) on this many training images when the file has none. */
  calibrate?: number;
  dataDir?: string;
  weightBits?: number;
  actBits?: number;
  /** Extra fields for the architecture (ResNet-18 width multiplier, where the build supports it). */
  config?: Partial<TrainConfig>;
}

export interface ImportReport {
  out: string;
  sha256: string;
  weightScales: Record<string, 'file' | 'design'>;
  actRanges: string;
  ignored: string[];
}

/** Keys that carry quantisation state or bookkeeping, not parameters. */
function bookkeeping(k: string): boolean {
  return k.endsWith('num_batches_tracked') || k.includes('fake_quant') || k.includes('activation_post_process') || /(^|\.)(quant|dequant)\./.test(k);
}

function renamer(map: Record<string, string> | undefined): (k: string) => string {
  if (!map) return (k) => k;
  const prefixes = Object.keys(map).sort((a, b) => b.length - a.length);
  return (k) => {
    if (map[k] !== undefined) return map[k]!;
    for (const p of prefixes) if (k.startsWith(p + '.')) return map[p] + k.slice(p.length);
    return k;
  };
}

function toF32(t: Tensor, name: string): Float32Array {
  if (t.dtype === 'F32') return t.data;
  if (t.dtype === 'F64' || t.dtype === 'F16' as string) return Float32Array.from(t.data as Float64Array);
  throw new Error(`${name}: dtype ${t.dtype}, expected a float tensor`);
}

/** The activation range r with fl(r / L) == s exactly (so the engine's requant scale is the file's). */
function rangeForScale(s: number, L: number): number {
  let r = Math.fround(s * L);
  for (let i = 0; i < 64 && Math.fround(r / L) !== s; i++) {
    const q = Math.fround(r / L);
    const buf = new Float32Array([r]), u = new Uint32Array(buf.buffer);
    u[0]! += q < s ? 1 : -1;
    r = buf[0]!;
  }
  if (Math.fround(r / L) !== s) throw new Error(`no float32 range gives the activation scale ${s} exactly`);
  return r;
}

/** The conv/linear layer whose output a ReLU site quantises (through a BatchNorm), or null (e.g. after a residual add). */
function layerOfSite(nodes: GraphNode[], site: number): string | null {
  const relu = nodes.find((n) => n.op === 'relu' && n.site === site) as Extract<GraphNode, { op: 'relu' }>;
  let n = nodes[relu.input]!;
  if (n.op === 'bn') n = nodes[n.input]!;
  return n.op === 'conv' || n.op === 'linear' ? n.name : null;
}

/** Converts a PyTorch state_dict (.safetensors) of a flatenn architecture into a flatenn checkpoint (`flatenn import --from torch`); the report names what was mapped, calibrated or missing. */
export async function importTorch(o: ImportOptions): Promise<ImportReport> {
  if (!(ARCHS as readonly string[]).includes(o.arch)) throw new RangeError(`arch must be one of ${ARCHS.join(', ')}, got '${String(o.arch)}'`);
  if (o.calibrate !== undefined && (!Number.isInteger(o.calibrate) || o.calibrate < 1)) throw new RangeError(`calibrate must be an integer >= 1, got ${o.calibrate}`);
  let buf: Buffer;
  try { buf = await fsp.readFile(o.file); } catch (e) { throw new Error(`${o.file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`); }
  const src: SafetensorsFile = decodeSafetensors(buf, o.file);
  const sha256 = createHash('sha256').update(buf).digest('hex');
  const rename = renamer(o.map);
  const tensors = new Map<string, Tensor>();
  for (const [k, t] of Object.entries(src.tensors)) {
    const nk = rename(k);
    if (tensors.has(nk)) throw new Error(`${o.file}: two keys map to '${nk}'`);
    tensors.set(nk, t);
  }
  const d = defaultConfig(o.arch);
  const cfg: TrainConfig = validateConfig({
    ...d, ...(o.config ?? {}), dataset: o.dataset ?? d.dataset, padding: o.padding ?? 'normalized', inputNorm: o.norm ?? null,
    weightBits: o.weightBits ?? d.weightBits, actBits: o.actBits ?? d.actBits, epochs: 1,
  });
  const [channels, size] = cfg.dataset === 'cifar10' ? [3, 32] : [1, 28];
  const model: Model = createModel(cfg, channels, size, 10);
  // every parameter / buffer the model has, with its shape
  const want = new Map<string, number[]>();
  for (const e of model.params.entries) want.set(e.name, e.shape);
  for (const [name, b] of model.bn) { want.set(`${name}.running_mean`, [b.runningMean.length]); want.set(`${name}.running_var`, [b.runningVar.length]); }
  const layerNames = model.weightNames().map((n) => n.slice(0, -'.weight'.length));
  const flatennQuant = new Set([...layerNames.map((n) => `${n}.weight_scale`), 'act.range', 'act.range_initialized']);
  const missing: string[] = [], misshaped: string[] = [], extra: string[] = [], ignored: string[] = [];
  for (const [k, shape] of want) {
    const t = tensors.get(k);
    if (!t) missing.push(k);
    else if (t.shape.join() !== shape.join()) misshaped.push(`${k} [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  for (const k of tensors.keys()) {
    if (want.has(k) || flatennQuant.has(k)) continue;
    if (bookkeeping(k)) ignored.push(k);
    else extra.push(k);
  }
  if (missing.length || misshaped.length || extra.length) {
    const parts = [
      missing.length ? `missing keys: ${missing.join(', ')}` : '',
      misshaped.length ? `wrong shapes: ${misshaped.join('; ')}` : '',
      extra.length ? `unexpected keys: ${extra.join(', ')}` : '',
    ].filter(Boolean);
    throw new Error(`${o.file} is not a ${o.arch} state_dict as flatenn names it (${parts.join('; ')}); rename keys with --map names.json ({"their.prefix": "our.prefix"})`);
  }
  for (const e of model.params.entries) model.params.data.set(toF32(tensors.get(e.name)!, e.name), e.offset);
  for (const [name, b] of model.bn) {
    b.runningMean.set(toF32(tensors.get(`${name}.running_mean`)!, name));
    b.runningVar.set(toF32(tensors.get(`${name}.running_var`)!, name));
  }
  // weight scales
  const weightScales: Record<string, 'file' | 'design'> = {};
  for (const n of layerNames) {
    const O = model.params.v(`${n}.weight`).shape[0]!;
    const direct = tensors.get(`${n}.weight_scale`), fq = tensors.get(`${n}.weight_fake_quant.scale`);
    const t = direct ?? fq;
    if (!t) { weightScales[n] = 'design'; continue; }
    const s = toF32(t, `${n} weight scale`);
    if (s.length !== 1 && s.length !== O) throw new Error(`${o.file}: ${n}'s weight scale has ${s.length} values; expected 1 or ${O}`);
    for (const v of s) if (!(v > 0) || !Number.isFinite(v)) throw new Error(`${o.file}: ${n}'s weight scale holds ${v}, not a positive finite number`);
    if (!direct) {
      const zp = tensors.get(`${n}.weight_fake_quant.zero_point`);
      if (zp && Array.from(zp.data as ArrayLike<number | bigint>).some((v) => Number(v) !== 0)) throw new Error(`${o.file}: ${n}.weight_fake_quant.zero_point is not 0: flatenn's weight codes are symmetric (DESIGN §1)`);
    }
    model.weightScales.set(n, Float32Array.from(s));
    weightScales[n] = 'file';
  }
  // activation ranges
  const L = 2 ** cfg.actBits - 1;
  let actRanges: string;
  const g = model.graph;
  const ar = tensors.get('act.range');
  if (ar) {
    const r = toF32(ar, 'act.range');
    if (r.length !== g.sites) throw new Error(`${o.file}: act.range has ${r.length} values for ${g.sites} ReLU sites`);
    for (const v of r) if (!(v >= 0) || !Number.isFinite(v)) throw new Error(`${o.file}: act.range holds ${v}, not a finite range >= 0`);
    model.actRange.set(r);
    actRanges = 'file (act.range)';
  } else {
    const keys = Array.from({ length: g.sites }, (_, s) => { const l = layerOfSite(g.nodes, s); return l ? `${l}.activation_post_process.scale` : null; });
    if (keys.every((k) => k !== null && tensors.has(k))) {
      keys.forEach((k, s) => {
        const sc = toF32(tensors.get(k!)!, k!);
        const zp = tensors.get(k!.replace(/scale$/, 'zero_point'));
        if (sc.length !== 1) throw new Error(`${o.file}: ${k} must be per tensor (one value)`);
        if (zp && Number((zp.data as ArrayLike<number | bigint>)[0]) !== 0) throw new Error(`${o.file}: ${k!.replace(/scale$/, 'zero_point')} is not 0: a ReLU output's codes start at 0`);
        model.actRange[s] = rangeForScale(sc[0]!, L);
      });
      actRanges = 'file (activation_post_process.scale x levels)';
    } else if (o.calibrate !== undefined) {
      await calibrate(model, cfg, o.calibrate, o.dataDir);
      actRanges = `calibrated: max over the first ${o.calibrate} training images`;
    } else {
      throw new Error(`${o.file} carries no activation ranges (act.range, or <layer>.activation_post_process.scale after each ReLU): give --calibrate N to set them from N training images`);
    }
  }
  model.actRangeInit.fill(1);
  const out = modelTensors(model);
  for (const e of model.params.entries) out[`optimizer.momentum.${e.name}`] = { dtype: 'F32', shape: e.shape, data: new Float32Array(e.size) };
  const meta: CheckpointMeta & { imported: unknown } = {
    format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, arch: cfg.arch, dataset: cfg.dataset,
    input: { channels, height: size, width: size }, numClasses: 10, config: cfg, epoch: 0, step: 0, momentumStarted: false,
    // the training images per epoch a `train --resume` from this checkpoint will see (the official split sizes)
    trainImages: (cfg.dataset === 'cifar10' ? 50000 : 60000) - cfg.valSize, history: [],
    imported: { from: 'torch', file: o.file, sha256, weightScales, actRanges, ignoredKeys: ignored.length },
  };
  await writeSafetensors(o.out, out, { flatenn: JSON.stringify(meta) });
  return { out: o.out, sha256, weightScales, actRanges, ignored };
}

/** Activation ranges = the maximum of each ReLU output over the first n training images (float activations). */
async function calibrate(model: Model, cfg: TrainConfig, n: number, dataDir: string | undefined): Promise<void> {
  const ds = await loadDataset(cfg.dataset, 'train', dataDir ? { dataDir } : {});
  if (n > ds.count) throw new RangeError(`calibrate: ${n} images asked, the training set has ${ds.count}`);
  const bits = model.quant.actBits;
  model.quant.actBits = 0;
  const per = ds.channels * ds.height * ds.width;
  const mx = new Float64Array(model.graph.sites);
  try {
    for (let b = 0; b < n; b += 256) {
      const m = Math.min(256, n - b);
      const x = model.normalize(ds.images.subarray(b * per, (b + m) * per), m);
      const r = model.forward(x, { tape: new Tape(false), training: false, updateStats: false, keepActs: true });
      r.acts.forEach((a, s) => { let v = mx[s]!; for (const y of a.data) if (y > v) v = y; mx[s] = v; });
    }
  } finally {
    model.quant.actBits = bits;
  }
  model.actRange.set(mx);
}
