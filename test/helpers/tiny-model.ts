// A deployed model built by hand from known codes (no training): used to check
// the engine against explicit arithmetic and to run small campaigns.
import { writeSafetensors, type Tensor } from '../../src/io/safetensors';
import { buildLayout, DEPLOYED_FORMAT, layoutHash, type DeployedMeta } from '../../src/deploy/format';
import { GraphBuilder } from '../../src/nn/graph';

export function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
}

/** Packs signed 4-bit codes by the DESIGN §2 rule, written out independently of the addon. */
export function pack4(codes: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(Math.ceil(codes.length / 2));
  for (let i = 0; i < codes.length; i++) out[i >> 1]! |= (codes[i]! & 0xf) << ((i & 1) * 4);
  return out;
}

export interface TinyOptions {
  /** Deployed-format version: 1 (raw padding, one std, out_scale = S / std) or 2. Default 1. */
  version?: 1 | 2;
  padding?: 'normalized' | 'raw';
  /** Input channels (1 or 3). */
  channels?: number;
  mean?: number[];
  std?: number | number[];
}

export interface TinyModel {
  meta: DeployedMeta;
  conv: Int8Array; // [4,C,5,5]
  fc: Int8Array; // [10,196]
  convScale: Float32Array; convBias: Float32Array; fcScale: Float32Array; fcBias: Float32Array;
  range: number;
}

/** input 1x28x28 -> conv 4@5x5 stride 2 pad 2 -> ReLU (4-bit) -> maxpool 2 -> flatten -> fc 196 -> 10. */
export async function writeTinyModel(path: string, seed = 11, opts: TinyOptions = {}): Promise<TinyModel> {
  const r = xorshift(seed);
  const g = new GraphBuilder('tiny');
  const C = opts.channels ?? 1, version = opts.version ?? 1;
  let x = g.input(C, 28, 28);
  x = g.maxpool(g.relu(g.conv(x, 'conv', C, 4, 5, 2, 2, true)), 2, 2); // bias: out_bias holds a bias term
  x = g.linear(g.flatten(x), 'fc', 196, 10, true);
  const graph = g.build(x, 10);
  const conv = Int8Array.from({ length: 100 * C }, () => Math.floor(r() * 15) - 7);
  const fc = Int8Array.from({ length: 1960 }, () => Math.floor(r() * 15) - 7);
  // version 2: out_scale excludes the input std (weight scale x BN factor only)
  const convScale = Float32Array.from({ length: 4 }, () => (0.0005 + r() * 0.0005) * (version === 2 ? 90 / C : 1));
  const convBias = Float32Array.from({ length: 4 }, () => r() - 0.3);
  const fcScale = Float32Array.from({ length: 10 }, () => 0.01 + r() * 0.01);
  const fcBias = Float32Array.from({ length: 10 }, () => r() - 0.5);
  const layout = buildLayout([{ name: 'conv', op: 'conv', shape: [4, C, 5, 5], bits: 4 }, { name: 'fc', op: 'linear', shape: [10, 196], bits: 4 }]);
  const memory = new Uint8Array(layout.memoryBytes);
  memory.set(pack4(conv), layout.layers[0]!.byteOffset);
  memory.set(pack4(fc), layout.layers[1]!.byteOffset);
  const range = 3.0;
  const meta: DeployedMeta = {
    format: DEPLOYED_FORMAT, version, arch: 'tiny', dataset: C === 3 ? 'cifar10' : 'fashion-mnist', numClasses: 10,
    input: {
      channels: C, height: 28, width: 28, mean: opts.mean ?? (C === 3 ? [125.3, 123.0, 113.9] : [72.93]), std: opts.std ?? 90,
      ...(version === 2 ? { padding: opts.padding ?? 'normalized' } : {}),
    },
    actBits: 4, layers: layout.layers,
    memoryBytes: layout.memoryBytes, cells: layout.cells, layoutHash: layoutHash(layout.layers), topology: graph,
  };
  const tensors: Record<string, Tensor> = {
    weight_memory: { dtype: 'U8', shape: [memory.length], data: memory },
    'conv.out_scale': { dtype: 'F32', shape: [4], data: convScale }, 'conv.out_bias': { dtype: 'F32', shape: [4], data: convBias },
    'fc.out_scale': { dtype: 'F32', shape: [10], data: fcScale }, 'fc.out_bias': { dtype: 'F32', shape: [10], data: fcBias },
    'act.range': { dtype: 'F32', shape: [1], data: Float32Array.of(range) },
  };
  await writeSafetensors(path, tensors, { flatenn: JSON.stringify(meta) });
  return { meta, conv, fc, convScale, convBias, fcScale, fcBias, range };
}

function rhe(v: number): number {
  const f = Math.floor(v), d = v - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/** The tiny model's logits for one image, by explicit arithmetic (the engine's float64 epilogue). */
export function tinyLogits(m: TinyModel, img: Uint8Array): Float32Array {
  const s = Math.fround(m.range / 15), inv = 1 / s;
  const act = new Uint8Array(4 * 14 * 14);
  for (let o = 0; o < 4; o++) for (let y = 0; y < 14; y++) for (let x = 0; x < 14; x++) {
    let acc = 0;
    for (let a = 0; a < 5; a++) for (let b = 0; b < 5; b++) {
      const iy = 2 * y - 2 + a, ix = 2 * x - 2 + b;
      if (iy >= 0 && iy < 28 && ix >= 0 && ix < 28) acc += m.conv[o * 25 + a * 5 + b]! * img[iy * 28 + ix]!;
    }
    const t = (m.convScale[o]! * acc + m.convBias[o]!) * inv;
    act[(o * 14 + y) * 14 + x] = Math.min(15, rhe(t > 0 ? t : 0));
  }
  const pooled = new Uint8Array(196);
  for (let o = 0; o < 4; o++) for (let y = 0; y < 7; y++) for (let x = 0; x < 7; x++) {
    pooled[(o * 7 + y) * 7 + x] = Math.max(act[(o * 14 + 2 * y) * 14 + 2 * x]!, act[(o * 14 + 2 * y) * 14 + 2 * x + 1]!, act[(o * 14 + 2 * y + 1) * 14 + 2 * x]!, act[(o * 14 + 2 * y + 1) * 14 + 2 * x + 1]!);
  }
  const out = new Float32Array(10);
  for (let o = 0; o < 10; o++) { let acc = 0; for (let j = 0; j < 196; j++) acc += m.fc[o * 196 + j]! * pooled[j]!; out[o] = m.fcScale[o]! * acc + m.fcBias[o]!; }
  return out;
}
