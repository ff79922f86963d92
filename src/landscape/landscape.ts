// Loss landscapes (DESIGN §4, Li et al. 2018): random Gaussian directions over
// the latent weights, normalised per output filter to that filter's norm (bias
// and BatchNorm directions zero), drawn from the counter RNG so that every model
// of one architecture gets the same raw directions; the deployed (re-quantised)
// model's training loss in eval mode on a fixed subset, along 1D lines or over a
// 2D grid; sharpness = mean over directions of (L(+0.5) + L(-0.5)) / 2 - L(0).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadDataset } from '../data/dataset';
import { readSafetensors } from '../io/safetensors';
import { writeFileAtomic } from '../io/atomic';
import type { Model } from '../nn/model';
import { checkpointMeta, CHECKPOINT_FORMAT, loadModelTensors } from '../train/checkpoint';
import { validateConfig } from '../train/config';
import { createModel, evalBatchSize, evaluate, type ImageSet } from '../train/trainer';
import { normals, RngPurpose } from '../util/rng';
import { Progress } from '../util/progress';

export const LANDSCAPE_FORMAT = 'flatenn.landscape';
export const LANDSCAPE_VERSION = 1;

export interface LandscapeOptions {
  /** 1: lines along each direction; 2: a grid over one pair of directions. */
  dim: 1 | 2;
  /** Directions (1D) or direction pairs (2D); default 3 for 1D, 1 for 2D. */
  directions?: number;
  /** Points per axis on alpha in [-1, 1]; default 51 (1D), 25 (2D). */
  points?: number;
  /** Names of the models (default: their file names without .safetensors). */
  labels?: string[];
  /** Direction seed (default 1). */
  seed?: number;
  /** Training images evaluated: the first n (default 5000). */
  images?: number;
  /** Images per evaluation batch (default: as `eval`, at most 500; the loss does not depend on it beyond float rounding). */
  batchSize?: number;
  dataDir?: string;
  quiet?: boolean;
}

export interface LandscapeModel {
  /** The checkpoint file. */
  model: string;
  /** A short name: the file name without .safetensors. */
  label: string;
  arch: string;
  config: Record<string, unknown>;
  /** Loss at the trained weights (alpha = 0). */
  loss0: number;
  /** 1D: per direction, the losses at `alphas`. */
  curves?: number[][];
  /** 2D: per direction pair, losses [i][j] at (alphas[i], alphas[j]). */
  grids?: number[][][];
  /** Per direction (1D) or per grid axis (2D): (L(+0.5) + L(-0.5)) / 2 - L(0). */
  sharpnessPerDirection: number[];
  sharpness: number;
  seconds: number;
}

export interface LandscapeFile {
  format: typeof LANDSCAPE_FORMAT;
  version: number;
  dim: 1 | 2;
  alphas: number[];
  directions: number;
  seed: number;
  images: number;
  dataset: string;
  split: 'train';
  /** What was measured, spelled out for readers of the file. */
  definition: string;
  models: LandscapeModel[];
}

/** A flat direction over the model's parameter arena (zero on biases and BatchNorm). */
export type Direction = Float32Array;

/**
 * Raw Gaussian direction `index` (before normalisation): N(0, 1) per conv/linear
 * weight, drawn from (seed, Direction purpose, stream = index * 4096 + parameter entry);
 * zero elsewhere. It depends only on the seed, the index and the architecture.
 */
export function rawDirection(model: Model, seed: number, index: number): Direction {
  const p = model.params;
  const d = new Float32Array(p.size);
  p.entries.forEach((e, ei) => {
    if (e.kind !== 'weight') return;
    const g = normals(seed, RngPurpose.Direction, index * 4096 + ei, e.size);
    for (let i = 0; i < e.size; i++) d[e.offset + i] = g[i]!;
  });
  return d;
}

/** Li et al. filter normalisation in place: each output filter of d gets the norm of the same filter of the weights. */
export function filterNormalize(model: Model, d: Direction): Direction {
  const p = model.params;
  for (const e of p.entries) {
    if (e.kind !== 'weight') { d.fill(0, e.offset, e.offset + e.size); continue; }
    const filters = e.shape[0]!, per = e.size / filters;
    for (let f = 0; f < filters; f++) {
      const o = e.offset + f * per;
      let wn = 0, dn = 0;
      for (let i = 0; i < per; i++) { wn += p.data[o + i]! ** 2; dn += d[o + i]! ** 2; }
      const k = dn > 0 ? Math.sqrt(wn) / Math.sqrt(dn) : 0;
      for (let i = 0; i < per; i++) d[o + i] = d[o + i]! * k;
    }
  }
  return d;
}

/** The filter-normalised direction `index` for this model. */
export function landscapeDirection(model: Model, seed: number, index: number): Direction {
  return filterNormalize(model, rawDirection(model, seed, index));
}

/** Alphas evenly spaced on [-1, 1]. */
export function alphaGrid(points: number): number[] {
  if (!Number.isInteger(points) || points < 3) throw new RangeError(`points must be an integer >= 3, got ${points}`);
  return Array.from({ length: points }, (_, k) => -1 + (2 * k) / (points - 1));
}

/** Mean cross-entropy of the model in eval mode (weights re-quantised by the forward) at w0 + a * d1 + b * d2. */
function lossAt(model: Model, w0: Float32Array, set: ImageSet, n: number, bs: number, a: number, d1: Direction, b = 0, d2?: Direction): number {
  const w = model.params.data;
  for (let i = 0; i < w.length; i++) w[i] = w0[i]! + a * d1[i]! + (d2 ? b * d2[i]! : 0);
  const r = evaluate(model, set, { start: 0, end: n, batchSize: bs });
  w.set(w0);
  return r.loss;
}

export interface LoadedForLandscape { model: Model; meta: ReturnType<typeof checkpointMeta> }

/** Reads a training checkpoint; a deployed model (no latent weights) is refused. */
export async function loadLandscapeModel(file: string): Promise<LoadedForLandscape> {
  const st = await readSafetensors(file);
  const raw = st.metadata.flatenn;
  let fmt: string | undefined;
  try { fmt = raw ? (JSON.parse(raw) as { format?: string }).format : undefined; } catch { fmt = undefined; }
  if (fmt === 'flatenn.deployed') throw new Error(`${file} is a deployed model: it has no latent weights (only int4 codes), and the loss landscape needs them; give the training checkpoint it was exported from`);
  if (fmt !== CHECKPOINT_FORMAT) throw new Error(`${file}: not a flatenn training checkpoint`);
  const meta = checkpointMeta(st, file);
  const cfg = validateConfig(meta.config);
  const model = createModel(cfg, meta.input.channels, meta.input.height, meta.numClasses);
  loadModelTensors(model, st, file);
  return { model, meta };
}

/** Landscapes of one or more checkpoints (same dataset); the same raw directions for every model of one architecture. */
export async function computeLandscape(files: string[], o: LandscapeOptions): Promise<LandscapeFile> {
  if (files.length === 0) throw new RangeError('give at least one checkpoint');
  if (o.dim !== 1 && o.dim !== 2) throw new RangeError(`dim must be 1 or 2, got ${String(o.dim)}`);
  const dirs = o.directions ?? (o.dim === 1 ? 3 : 1);
  const points = o.points ?? (o.dim === 1 ? 51 : 25);
  const seed = o.seed ?? 1, want = o.images ?? 5000;
  if (!Number.isInteger(dirs) || dirs < 1 || dirs > 100) throw new RangeError(`directions must be an integer in [1, 100], got ${dirs}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${seed}`);
  if (!Number.isInteger(want) || want < 1) throw new RangeError(`images must be an integer >= 1, got ${want}`);
  const alphas = alphaGrid(points);
  if (o.labels && o.labels.length !== files.length) throw new RangeError(`${o.labels.length} labels for ${files.length} models`);
  const loaded: { file: string; l: LoadedForLandscape }[] = [];
  for (const f of files) loaded.push({ file: f, l: await loadLandscapeModel(f) });
  // the evaluation batch: eval's (at most 500; fewer for a wide ResNet-18, so memory stays bounded)
  const bs = o.batchSize ?? Math.min(...loaded.map((x) => evalBatchSize(x.l.model.graph)));
  const dataset = loaded[0]!.l.meta.dataset;
  for (const x of loaded) if (x.l.meta.dataset !== dataset) throw new Error(`${x.file} was trained on ${x.l.meta.dataset}, ${loaded[0]!.file} on ${dataset}: give models of one dataset`);
  const set = await loadDataset(dataset as 'fashion-mnist', 'train', o.dataDir ? { dataDir: o.dataDir } : {});
  const n = Math.min(want, set.count);
  const evalsPerModel = 1 + (o.dim === 1 ? dirs * (points + 2) : dirs * (points * points + 4));
  const models: LandscapeModel[] = [];
  for (const { file, l } of loaded) {
    const t0 = Date.now();
    const model = l.model;
    const w0 = model.params.data.slice();
    const label = o.labels?.[models.length] ?? path.basename(file).replace(/\.safetensors$/, '');
    const bar = new Progress({ label: `landscape ${label}`, total: evalsPerModel, unit: 'eval', quiet: !!o.quiet });
    let done = 0;
    const tick = () => bar.update(++done);
    const zero = new Float32Array(w0.length);
    const loss0 = lossAt(model, w0, set, n, bs, 0, zero); tick();
    const sharp: number[] = [];
    const half = (d: Direction) => {
      const lp = lossAt(model, w0, set, n, bs, 0.5, d); tick();
      const lm = lossAt(model, w0, set, n, bs, -0.5, d); tick();
      return (lp + lm) / 2 - loss0;
    };
    const rec: LandscapeModel = { model: path.resolve(file), label, arch: l.meta.arch, config: l.meta.config as unknown as Record<string, unknown>, loss0, sharpnessPerDirection: sharp, sharpness: NaN, seconds: 0 };
    if (o.dim === 1) {
      rec.curves = [];
      for (let k = 0; k < dirs; k++) {
        const d = landscapeDirection(model, seed, k);
        const c: number[] = [];
        for (const a of alphas) { c.push(a === 0 ? loss0 : lossAt(model, w0, set, n, bs, a, d)); tick(); }
        rec.curves.push(c);
        sharp.push(half(d));
      }
    } else {
      rec.grids = [];
      for (let k = 0; k < dirs; k++) {
        const d1 = landscapeDirection(model, seed, 2 * k), d2 = landscapeDirection(model, seed, 2 * k + 1);
        const g: number[][] = [];
        for (const a of alphas) {
          const row: number[] = [];
          for (const b of alphas) { row.push(a === 0 && b === 0 ? loss0 : lossAt(model, w0, set, n, bs, a, d1, b, d2)); tick(); }
          g.push(row);
        }
        rec.grids.push(g);
        sharp.push(half(d1), half(d2));
      }
    }
    rec.sharpness = sharp.reduce((s, x) => s + x, 0) / sharp.length;
    rec.seconds = (Date.now() - t0) / 1000;
    bar.finish(`sharpness ${rec.sharpness.toFixed(4)}`);
    models.push(rec);
  }
  return {
    format: LANDSCAPE_FORMAT, version: LANDSCAPE_VERSION, dim: o.dim, alphas, directions: dirs, seed, images: n, dataset, split: 'train',
    definition: 'training loss (mean cross-entropy) of the re-quantised model in eval mode on the first `images` training images, at latent weights w + alpha*d (1D) or w + alpha*d1 + beta*d2 (2D); d: Gaussian, filter-normalised (Li et al. 2018), zero on biases and BatchNorm; sharpness = mean over directions of (L(+0.5) + L(-0.5)) / 2 - L(0)',
    models,
  };
}

/** Writes a loss-landscape file atomically (JSON). */
export async function writeLandscape(out: string, l: LandscapeFile): Promise<void> {
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  await writeFileAtomic(out, Buffer.from(JSON.stringify(l, null, 1) + '\n'));
}

/** Reads and checks a loss-landscape file written by writeLandscape. */
export function readLandscape(file: string): LandscapeFile {
  let j: LandscapeFile;
  try { j = JSON.parse(fs.readFileSync(file, 'utf8')) as LandscapeFile; } catch (e) { throw new Error(`${file}: cannot read a landscape (${(e as Error).message})`); }
  if (j.format !== LANDSCAPE_FORMAT) throw new Error(`${file}: not a flatenn landscape file`);
  if (j.version !== LANDSCAPE_VERSION) throw new Error(`${file}: landscape version ${j.version} is not supported`);
  return j;
}
