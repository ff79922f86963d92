// Complete validation of a deployed model's metadata and tensors (DESIGN §5),
// versions 1 and 2: every field's type and range, the layout against the
// topology (names, order, shapes, bits), the topology's shapes node by node,
// numClasses, and the per-channel tensors (out_scale finite and non-zero — a
// negative scale is valid: BatchNorm with gamma < 0 folds into one —, out_bias
// finite, act.range positive with a normal activation scale). One message names
// the file, the field / tensor / layer / node, and the rule. A model that passes
// is one the engine evaluates.
import type { Graph, GraphNode } from '../nn/graph';
import { buildPlan } from '../engine/plan';
import type { DeployedMeta } from './format';

/** Bounds that keep a valid model's buffers allocatable (per image). */
export const LIMITS = { dim: 4096, channels: 65536, elements: 1 << 26, kernel: 64, classes: 256, nodes: 100000, bytes: 2 ** 31 - 1 } as const;
export const KNOWN_DATASETS = ['fashion-mnist', 'cifar10'];
const OPS = ['input', 'conv', 'linear', 'bn', 'relu', 'maxpool', 'flatten', 'add', 'gap'];
const FLT_MIN = 1.1754943508222875e-38;

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isInt = (x: unknown, lo: number, hi: number): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= lo && x <= hi;
const show = (x: unknown) => (typeof x === 'string' ? `'${x}'` : JSON.stringify(x) ?? String(x));

export class DeployedModelError extends Error {
  override name = 'DeployedModelError';
}

/** Checks the parsed 'flatenn' metadata of a deployed model; throws `${src}: <where>: <rule>`. */
export function checkDeployedMeta(metaIn: unknown, src: string): asserts metaIn is DeployedMeta {
  const fail = (msg: string): never => { throw new DeployedModelError(`${src}: ${msg}`); };
  if (!isObj(metaIn)) fail(`the 'flatenn' metadata is ${metaIn === null ? 'null' : Array.isArray(metaIn) ? 'an array' : `a ${typeof metaIn}`}, not an object`);
  const meta = metaIn as Record<string, unknown>;
  if (typeof meta.arch !== 'string' || meta.arch === '') fail(`arch must be a non-empty string, got ${show(meta.arch)}`);
  if (typeof meta.dataset !== 'string' || !KNOWN_DATASETS.includes(meta.dataset)) fail(`dataset must be one of ${KNOWN_DATASETS.join(', ')}, got ${show(meta.dataset)}`);
  if (!isInt(meta.numClasses, 2, LIMITS.classes)) fail(`numClasses must be an integer in [2, ${LIMITS.classes}], got ${show(meta.numClasses)}`);
  const inp = meta.input;
  if (!isObj(inp)) fail('input must be an object {channels, height, width, mean, std}');
  const input = inp as Record<string, unknown>;
  if (!isInt(input.channels, 1, LIMITS.channels)) fail(`input.channels must be an integer in [1, ${LIMITS.channels}], got ${show(input.channels)}`);
  for (const k of ['height', 'width'] as const) if (!isInt(input[k], 1, LIMITS.dim)) fail(`input.${k} must be an integer in [1, ${LIMITS.dim}], got ${show(input[k])}`);
  if (!Array.isArray(input.mean) || input.mean.length !== input.channels) fail(`input.mean must hold one number per channel (${String(input.channels)}), got ${show(input.mean)}`);
  (input.mean as unknown[]).forEach((v, i) => { if (typeof v !== 'number' || !Number.isFinite(v)) fail(`input.mean[${i}] = ${show(v)} is not a finite number`); });
  if (!isInt(meta.actBits, 2, 8) || ![2, 4, 8].includes(meta.actBits)) fail(`actBits must be 2, 4 or 8, got ${show(meta.actBits)}`);
  // layout
  if (!Array.isArray(meta.layers) || meta.layers.length === 0) fail('layers: the layout lists no layers');
  const names = new Set<string>();
  (meta.layers as unknown[]).forEach((l, i) => {
    if (!isObj(l)) fail(`layers[${i}] is not an object`);
    const L = l as Record<string, unknown>;
    const where = `layer ${typeof L.name === 'string' ? `'${L.name}'` : i}`;
    if (typeof L.name !== 'string' || L.name === '') fail(`layers[${i}].name must be a non-empty string, got ${show(L.name)}`);
    if (names.has(L.name as string)) fail(`${where}: the name is used twice in the layout`);
    names.add(L.name as string);
    if (L.op !== 'conv' && L.op !== 'linear') fail(`${where}: op must be conv or linear, got ${show(L.op)}`);
    const dims = L.op === 'conv' ? 4 : 2;
    if (!Array.isArray(L.shape) || L.shape.length !== dims || !L.shape.every((d) => isInt(d, 1, LIMITS.bytes))) fail(`${where}: shape must be ${dims} positive integers (${L.op === 'conv' ? '[O, C, KH, KW]' : '[O, I]'}), got ${show(L.shape)}`);
    if (!isInt(L.bits, 2, 8) || ![2, 4, 8].includes(L.bits)) fail(`${where}: bits must be 2, 4 or 8, got ${show(L.bits)}`);
    for (const k of ['count', 'byteOffset', 'byteLength', 'cellOffset', 'cells'] as const) if (!isInt(L[k], 0, 2 ** 40)) fail(`${where}: ${k} must be a non-negative integer, got ${show(L[k])}`);
  });
  if (!isInt(meta.memoryBytes, 1, LIMITS.bytes)) fail(`memoryBytes must be an integer in [1, ${LIMITS.bytes}], got ${show(meta.memoryBytes)}`);
  if (!isInt(meta.cells, 1, 2 ** 32)) fail(`cells must be an integer in [1, 2^32] (cell indices are 32-bit), got ${show(meta.cells)}`);
  if (typeof meta.layoutHash !== 'string') fail(`layoutHash must be a string, got ${show(meta.layoutHash)}`);
  // topology
  const g = meta.topology;
  if (!isObj(g)) fail('topology must be an object {nodes, output, numClasses, sites}');
  const G = g as Record<string, unknown>;
  if (!Array.isArray(G.nodes) || G.nodes.length < 2 || G.nodes.length > LIMITS.nodes) fail(`topology.nodes must be an array of 2..${LIMITS.nodes} nodes`);
  const nodes = G.nodes as unknown[];
  if (!isInt(G.sites, 0, nodes.length)) fail(`topology.sites must be an integer in [0, ${nodes.length}], got ${show(G.sites)}`);
  if (!isInt(G.output, 0, nodes.length - 1)) fail(`topology.output must be a node id in [0, ${nodes.length - 1}], got ${show(G.output)}`);
  if (G.numClasses !== meta.numClasses) fail(`topology.numClasses ${show(G.numClasses)} differs from numClasses ${show(meta.numClasses)}`);
  let sites = 0;
  const weightNodes: Extract<GraphNode, { op: 'conv' | 'linear' }>[] = [];
  nodes.forEach((n, i) => {
    if (!isObj(n)) fail(`topology node ${i} is ${n === null ? 'null' : typeof n}, not an object`);
    const N = n as Record<string, unknown>;
    const at = `topology node ${i}${typeof N.op === 'string' ? ` (${N.op})` : ''}`;
    if (typeof N.op !== 'string' || !OPS.includes(N.op)) fail(`${at}: unknown op ${show(N.op)} (expected one of ${OPS.join(', ')})`);
    if (N.id !== i) fail(`${at}: id is ${show(N.id)}, expected ${i}`);
    if ((N.op === 'input') !== (i === 0)) fail(`${at}: the input must be node 0 and only node 0`);
    const earlier = (k: string, v: unknown) => { if (!isInt(v, 0, i - 1)) fail(`${at}: ${k} ${show(v)} is not an earlier node`); };
    const pos = (k: string, hi: number) => { if (!isInt(N[k], 1, hi)) fail(`${at}: ${k} must be an integer in [1, ${hi}], got ${show(N[k])}`); };
    switch (N.op) {
      case 'input':
        for (const k of ['channels', 'height', 'width'] as const) if (N[k] !== input[k]) fail(`${at}: ${k} ${show(N[k])} differs from input.${k} ${show(input[k])}`);
        break;
      case 'conv':
        earlier('input', N.input);
        if (typeof N.name !== 'string') fail(`${at}: name must be a string`);
        pos('inChannels', LIMITS.channels); pos('outChannels', LIMITS.channels); pos('kernel', LIMITS.kernel); pos('stride', LIMITS.kernel);
        if (!isInt(N.pad, 0, LIMITS.kernel) || 2 * (N.pad as number) > (N.kernel as number)) fail(`${at}: pad must be an integer in [0, kernel/2] (kernel ${String(N.kernel)}), got ${show(N.pad)}`);
        if (typeof N.bias !== 'boolean') fail(`${at}: bias must be true or false, got ${show(N.bias)}`);
        weightNodes.push(N as never);
        break;
      case 'linear':
        earlier('input', N.input);
        if (typeof N.name !== 'string') fail(`${at}: name must be a string`);
        pos('inFeatures', LIMITS.elements); pos('outFeatures', LIMITS.elements);
        if (typeof N.bias !== 'boolean') fail(`${at}: bias must be true or false, got ${show(N.bias)}`);
        weightNodes.push(N as never);
        break;
      case 'bn':
        earlier('input', N.input);
        if (typeof N.name !== 'string') fail(`${at}: name must be a string`);
        pos('channels', LIMITS.channels);
        break;
      case 'relu':
        earlier('input', N.input);
        if (N.site !== sites) fail(`${at}: site ${show(N.site)}, expected ${sites} (ReLU sites are numbered in order)`);
        sites++;
        break;
      case 'maxpool':
        earlier('input', N.input);
        pos('kernel', LIMITS.kernel); pos('stride', LIMITS.kernel);
        break;
      case 'add':
        if (!Array.isArray(N.inputs) || N.inputs.length !== 2) fail(`${at}: inputs must be an array of two node ids, got ${show(N.inputs)}`);
        (N.inputs as unknown[]).forEach((v) => earlier('inputs', v));
        break;
      default: // flatten, gap
        earlier('input', N.input);
    }
  });
  if (sites !== G.sites) fail(`topology.sites is ${show(G.sites)} but there are ${sites} relu nodes`);
  // shapes, node by node (the first node whose output is empty or mismatched is named)
  const shapes: number[][] = [];
  (g as unknown as Graph).nodes.forEach((n, i) => {
    const at = `topology node ${i} (${n.op})`;
    const inShape = n.op === 'input' ? [] : n.op === 'add' ? shapes[n.inputs[0]]! : shapes[n.input]!;
    const map = () => { if (inShape.length !== 3) fail(`${at}: needs a [C, H, W] input, got [${inShape.join(', ')}]`); };
    let s: number[];
    switch (n.op) {
      case 'input': s = [n.channels, n.height, n.width]; break;
      case 'conv':
        map();
        if (inShape[0] !== n.inChannels) fail(`${at}: inChannels ${n.inChannels} but its input has ${inShape[0]} channels`);
        s = [n.outChannels, Math.floor((inShape[1]! + 2 * n.pad - n.kernel) / n.stride) + 1, Math.floor((inShape[2]! + 2 * n.pad - n.kernel) / n.stride) + 1];
        break;
      case 'linear':
        if (inShape.length !== 1 || inShape[0] !== n.inFeatures) fail(`${at}: inFeatures ${n.inFeatures} but its input gives [${inShape.join(', ')}] (flatten the map first)`);
        s = [n.outFeatures];
        break;
      case 'maxpool':
        map();
        s = [inShape[0]!, Math.floor((inShape[1]! - n.kernel) / n.stride) + 1, Math.floor((inShape[2]! - n.kernel) / n.stride) + 1];
        break;
      case 'bn':
        if (n.channels !== inShape[0]) fail(`${at}: channels ${n.channels} differs from its input's ${inShape[0]}`);
        s = inShape.slice();
        break;
      case 'relu': s = inShape.slice(); break;
      case 'flatten': s = [inShape.reduce((a, b) => a * b, 1)]; break;
      case 'gap': map(); s = [inShape[0]!]; break;
      case 'add': {
        const b = shapes[n.inputs[1]]!;
        if (inShape.join() !== b.join()) fail(`${at}: adds [${inShape.join(', ')}] and [${b.join(', ')}]`);
        s = inShape.slice();
        break;
      }
    }
    if (s.some((d) => !(d >= 1))) fail(`${at}: output shape [${s.join(', ')}] is empty (kernel or stride too large for its input)`);
    if (s.reduce((a, b) => a * b, 1) > LIMITS.elements) fail(`${at}: output shape [${s.join(', ')}] holds more than ${LIMITS.elements} values per image`);
    shapes.push(s);
  });
  const out = shapes[G.output as number]!;
  if (out.length !== 1 || out[0] !== meta.numClasses) fail(`topology output node ${String(G.output)} gives [${out.join(', ')}] values per image, not numClasses (${String(meta.numClasses)})`);
  // layout against topology
  const layers = meta.layers as { name: string; op: string; shape: number[] }[];
  if (weightNodes.length !== layers.length) fail(`the topology has ${weightNodes.length} conv/linear layers but the layout lists ${layers.length}`);
  weightNodes.forEach((n, i) => {
    const l = layers[i]!;
    if (n.name !== l.name) fail(`layout layer ${i} is '${l.name}' but the topology's layer ${i} is '${n.name}' (layers must be in model order)`);
    if (n.op !== l.op) fail(`layer '${l.name}': op ${l.op} in the layout, ${n.op} in the topology`);
    const want = n.op === 'conv' ? [n.outChannels, n.inChannels, n.kernel, n.kernel] : [n.outFeatures, n.inFeatures];
    if (want.join() !== l.shape.join()) fail(`layer '${l.name}': layout shape [${l.shape.join(', ')}] disagrees with the topology's [${want.join(', ')}]`);
  });
  try { buildPlan(g as unknown as Graph); } catch (e) { fail(`topology: ${(e as Error).message}`); }
}

/** Checks the per-channel tensors (already present with the right dtype and shape). */
export function checkDeployedTensors(meta: DeployedMeta, t: { outScale: Map<string, Float64Array>; outBias: Map<string, Float64Array>; actRange: Float32Array }, src: string): void {
  const fail = (msg: string): never => { throw new DeployedModelError(`${src}: ${msg}`); };
  for (const l of meta.layers) {
    const s = t.outScale.get(l.name)!, b = t.outBias.get(l.name)!;
    for (let o = 0; o < s.length; o++) if (!Number.isFinite(s[o]!) || s[o] === 0) fail(`tensor ${l.name}.out_scale[${o}] = ${s[o]}: an output scale must be finite and non-zero (negative is allowed)`);
    for (let o = 0; o < b.length; o++) if (!Number.isFinite(b[o]!)) fail(`tensor ${l.name}.out_bias[${o}] = ${b[o]}: an output bias must be finite`);
  }
  const L = 2 ** meta.actBits - 1;
  for (let i = 0; i < t.actRange.length; i++) {
    const r = t.actRange[i]!;
    if (!(r > 0) || !Number.isFinite(r)) fail(`tensor act.range[${i}] = ${r}: a ReLU site's range must be a positive finite number`);
    if (!(Math.fround(r / L) >= FLT_MIN)) fail(`tensor act.range[${i}] = ${r}: the activation scale r / ${L} is below the smallest normal float32 (a denormal range)`);
  }
  // bias: false means no bias term, unless a folded BatchNorm (or, in a version-1 file, the input mean term) put one there
  const g = meta.topology;
  for (const n of g.nodes) {
    if ((n.op !== 'conv' && n.op !== 'linear') || n.bias) continue;
    if (g.nodes.some((m) => m.op === 'bn' && m.input === n.id)) continue;
    if (meta.version < 2 && n.input === 0) continue;
    const b = t.outBias.get(n.name)!;
    const k = b.findIndex((v) => v !== 0);
    if (k >= 0) fail(`tensor ${n.name}.out_bias[${k}] = ${b[k]}: layer '${n.name}' has bias: false and no BatchNorm folded into it, so its out_bias must be 0`);
  }
}
