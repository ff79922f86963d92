// The deployed model (DESIGN §5): everything the int4 engine needs and nothing
// else. A safetensors file with:
//   weight_memory        U8  [bytes]  every conv/linear weight code, model order, each layer
//                                     row-major and starting at a byte boundary, b-bit two's
//                                     complement packed 8/b per byte, lowest bits first
//   <layer>.out_scale    F64 [out]    y = out_scale * acc + out_bias, acc = sum(code_w * code_in)
//   <layer>.out_bias     F64 [out]    (weight scale, input scale, folded BN and input normalisation;
//                                     F32 is read too, exactly, as older files and other writers have it)
//   act.range            F32 [sites]  range r of each ReLU site: codes clamp(rhe(max(y,0)/(r/L)), 0, L), L = 2^actBits - 1
// and the JSON metadata key 'flatenn' (DeployedMeta below) with the layout and topology.
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { decodeSafetensors, readSafetensors, tensorOf, type SafetensorsFile } from '../io/safetensors';
import type { Graph, GraphNode } from '../nn/graph';
import { checkDeployedMeta, checkDeployedTensors } from './validate';

export const DEPLOYED_FORMAT = 'flatenn.deployed';
export const DEPLOYED_VERSION = 2;
/** Versions this build reads: 1 (raw-0 padding, one std, mean term folded into out_bias) and 2 (DESIGN §1). */
export const DEPLOYED_VERSIONS_READ = [1, 2];

export interface LayerLayout {
  name: string;
  op: 'conv' | 'linear';
  /** Weight shape: conv [O, C, KH, KW], linear [O, I]. */
  shape: number[];
  bits: number;
  /** Number of weights. */
  count: number;
  /** Offset and length of this layer's packed codes in weight_memory. */
  byteOffset: number;
  byteLength: number;
  /** First cell (bit) index of this layer in the DESIGN §2 numbering. */
  cellOffset: number;
  cells: number;
}

export interface DeployedMeta {
  format: typeof DEPLOYED_FORMAT;
  version: number;
  arch: string;
  dataset: string;
  numClasses: number;
  /**
   * Raw uint8 pixels are normalised as (x - mean[c]) / std (std: one number, or one per channel; pixel
   * units 0..255). padding (version 2): where the first layer's zero padding lives, 'normalized' (a padded
   * tap adds nothing, PyTorch's Normalize + Conv2d(padding)) or 'raw' (a padded tap holds raw 0).
   * Version 1 has no padding field and means 'raw' with one std.
   */
  input: { channels: number; height: number; width: number; mean: number[]; std: number | number[]; padding?: 'normalized' | 'raw' };
  actBits: number;
  layers: LayerLayout[];
  memoryBytes: number;
  cells: number;
  /** sha256 (hex, 16 chars) of the layout (each layer's name, weight count and width). */
  layoutHash: string;
  topology: Graph;
  /** Provenance: the checkpoint's sha256 and epoch, when exported from one. */
  source?: { checkpointSha256?: string; epoch?: number; weightScales?: number[][] };
}

export interface DeployedModel {
  meta: DeployedMeta;
  memory: Uint8Array;
  /** Per layer, float64 (F64 in files written by this build; F32 files are read exactly, widened). */
  outScale: Map<string, Float64Array>;
  outBias: Map<string, Float64Array>;
  actRange: Float32Array;
  /** sha256 (hex) of the deployed file's tensors and metadata. */
  hash: string;
}

export function layoutHash(layers: readonly { name: string; count: number; bits: number }[]): string {
  const s = JSON.stringify(layers.map((l) => [l.name, l.count, l.bits]));
  return createHash('sha256').update(s).digest('hex').slice(0, 16);
}

/** Builds the layout of a weight memory from the layers' shapes and widths. */
export function buildLayout(layers: { name: string; op: 'conv' | 'linear'; shape: number[]; bits: number }[]): { layers: LayerLayout[]; memoryBytes: number; cells: number } {
  let byte = 0, cell = 0;
  const out: LayerLayout[] = [];
  for (const l of layers) {
    const count = l.shape.reduce((a, b) => a * b, 1);
    const byteLength = Math.ceil((count * l.bits) / 8);
    out.push({ ...l, count, byteOffset: byte, byteLength, cellOffset: cell, cells: count * l.bits });
    byte += byteLength;
    cell += count * l.bits;
  }
  return { layers: out, memoryBytes: byte, cells: cell };
}

function fail(src: string, msg: string): never {
  throw new Error(`${src}: ${msg}`);
}

/** Validates and unpacks a deployed model file (already decoded). */
export function deployedFromFile(file: SafetensorsFile, src: string, hash: string): DeployedModel {
  const raw = file.metadata.flatenn;
  if (raw === undefined) fail(src, "not a flatenn file (no 'flatenn' metadata key)");
  let meta: DeployedMeta;
  try { meta = JSON.parse(raw) as DeployedMeta; } catch (e) { fail(src, `the 'flatenn' metadata is not valid JSON (${(e as Error).message})`); }
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) fail(src, `the 'flatenn' metadata is ${meta === null ? 'null' : Array.isArray(meta) ? 'an array' : `a ${typeof meta}`}, not an object`);
  if (meta.format !== DEPLOYED_FORMAT) fail(src, `format '${String(meta.format)}' is not a deployed model (expected ${DEPLOYED_FORMAT})`);
  if (!DEPLOYED_VERSIONS_READ.includes(meta.version)) fail(src, `deployed-model version ${JSON.stringify(meta.version)} is not supported (this build reads versions ${DEPLOYED_VERSIONS_READ.join(' and ')})`);
  checkInput(meta, src);
  checkDeployedMeta(meta, src);
  if (!Array.isArray(meta.layers) || meta.layers.length === 0) fail(src, 'the layout lists no layers');
  if (![2, 4, 8].includes(meta.actBits)) fail(src, `actBits ${meta.actBits} is not 2, 4 or 8`);
  const wrap = <T>(f: () => T): T => { try { return f(); } catch (e) { return fail(src, (e as Error).message); } };
  const memory = wrap(() => tensorOf(file, 'weight_memory', 'U8', [meta.memoryBytes])).data;
  const expect = buildLayout(meta.layers.map((l) => ({ name: l.name, op: l.op, shape: l.shape, bits: l.bits })));
  if (expect.memoryBytes !== meta.memoryBytes) fail(src, `memoryBytes ${meta.memoryBytes} disagrees with the layers, which pack into ${expect.memoryBytes} bytes`);
  if (expect.cells !== meta.cells) fail(src, `cells ${meta.cells} disagrees with the layers, which hold ${expect.cells} cells`);
  expect.layers.forEach((l, i) => {
    const m = meta.layers[i]!;
    if (![2, 4, 8].includes(m.bits)) fail(src, `layer ${m.name}: bits ${m.bits} is not 2, 4 or 8`);
      for (const k of ['count', 'byteOffset', 'byteLength', 'cellOffset', 'cells'] as const) if (m[k] !== l[k]) fail(src, `layer ${m.name}: ${k} ${m[k]} does not follow the layout rule (expected ${l[k]})`);
  });
  if (layoutHash(meta.layers) !== meta.layoutHash) fail(src, 'layoutHash does not match the layers');
  const outScale = new Map<string, Float64Array>(), outBias = new Map<string, Float64Array>();
  // F64 (written by export) or F32 (older files, other writers): either is read exactly as float64
  const f64Of = (name: string, O: number): Float64Array => wrap(() => {
    const t = file.tensors[name];
    if (t !== undefined && t.dtype === 'F32') return Float64Array.from(tensorOf(file, name, 'F32', [O]).data);
    return tensorOf(file, name, 'F64', [O]).data;
  });
  for (const l of meta.layers) {
    const O = l.shape[0]!;
    outScale.set(l.name, f64Of(`${l.name}.out_scale`, O));
    outBias.set(l.name, f64Of(`${l.name}.out_bias`, O));
  }
  const g = meta.topology;
  if (!g || !Array.isArray(g.nodes) || g.nodes[0]?.op !== 'input') fail(src, 'topology must be a graph whose first node is the input');
  checkTopology(g, meta, src);
  const actRange = wrap(() => tensorOf(file, 'act.range', 'F32', [g.sites])).data;
  checkDeployedTensors(meta, { outScale, outBias, actRange }, src);
  return { meta, memory, outScale, outBias, actRange, hash };
}

function checkInput(meta: DeployedMeta, src: string): void {
  const inp = meta.input;
  if (!inp || typeof inp !== 'object') fail(src, 'input: missing');
  for (const k of ['channels', 'height', 'width'] as const) if (!Number.isInteger(inp[k]) || inp[k] < 1) fail(src, `input.${k} must be a positive integer, got ${JSON.stringify(inp[k])}`);
  if (!Array.isArray(inp.mean) || inp.mean.length !== inp.channels) fail(src, `input.mean must hold one number per channel (${inp.channels})`);
  for (const v of inp.mean) if (typeof v !== 'number' || !Number.isFinite(v)) fail(src, `input.mean: ${JSON.stringify(v)} is not a finite number`);
  const stds = typeof inp.std === 'number' ? [inp.std] : inp.std;
  if (meta.version < 2 && typeof inp.std !== 'number') fail(src, 'input.std must be one number in a version-1 file (per-channel std needs version 2)');
  if (!Array.isArray(stds) || (typeof inp.std !== 'number' && stds.length !== inp.channels)) fail(src, `input.std must be a number or one number per channel (${inp.channels})`);
  for (const v of stds) if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) fail(src, `input.std: ${JSON.stringify(v)} is not a positive finite number`);
  if (meta.version < 2) {
    if (inp.padding !== undefined) fail(src, 'input.padding is a version-2 field (a version-1 file means raw padding)');
  } else if (inp.padding !== 'normalized' && inp.padding !== 'raw') {
    fail(src, `input.padding must be "normalized" or "raw", got ${JSON.stringify(inp.padding)}`);
  }
}

function checkTopology(g: Graph, meta: DeployedMeta, src: string): void {
  const names = new Set(meta.layers.map((l) => l.name));
  let sites = 0;
  const seenLayers: string[] = [];
  g.nodes.forEach((n: GraphNode, i) => {
    if (n.id !== i) fail(src, `topology node ${i} has id ${n.id}`);
    const inputs = n.op === 'add' ? n.inputs : n.op === 'input' ? [] : [n.input];
    for (const j of inputs) if (!Number.isInteger(j) || j < 0 || j >= i) fail(src, `topology node ${i} (${n.op}) reads node ${j}, which is not an earlier node`);
    if (n.op === 'conv' || n.op === 'linear') {
      if (!names.has(n.name)) fail(src, `topology layer '${n.name}' is not in the layout`);
      seenLayers.push(n.name);
    }
    if (n.op === 'relu') { if (n.site !== sites) fail(src, `relu sites must be numbered in order (node ${i})`); sites++; }
  });
  if (sites !== g.sites) fail(src, `topology says ${g.sites} sites but has ${sites} relu nodes`);
  if (seenLayers.join() !== meta.layers.map((l) => l.name).join()) fail(src, 'layout layers are not the topology layers in model order');
  if (!Number.isInteger(g.output) || g.output < 0 || g.output >= g.nodes.length) fail(src, 'topology output is not a node');
}

/** Reads and checks a deployed int4 model (`flatenn export` output); `hash` is the file's sha256. */
export async function readDeployed(path: string): Promise<DeployedModel> {
  let buf: Buffer;
  try { buf = await fsp.readFile(path); } catch (e) { throw new Error(`${path}: cannot read the model file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`); }
  const hash = createHash('sha256').update(buf).digest('hex');
  return deployedFromFile(decodeSafetensors(buf, path), path, hash);
}
export { readSafetensors };
