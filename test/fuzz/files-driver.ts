// Fuzz driver (a child process of files.test.ts): structure-aware, seeded
// mutations of valid files — deployed models, training checkpoints, IDX
// datasets, a CIFAR-10 archive and campaign results — each loaded and, when it
// loads, used (evaluated, exported, summarised). Every case must end normally
// or throw a JS Error with a message naming no JS internal; a model that loads
// must evaluate to finite figures, and a checkpoint that exports must give a
// deployed model that loads. argv: fixtures-dir seed cases. Prints outcomes as JSON.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { readDeployed, deployedFromFile } from '../../src/deploy/format';
import { deployModel } from '../../src/deploy/export';
import { Engine } from '../../src/engine/engine';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { evaluate } from '../../src/train/trainer';
import { loadDataset, type ImageDataset } from '../../src/data/dataset';
import { readResults, summaryRows, formatSummary, mergeResults } from '../../src/campaign/results';
import { decodeSafetensors, encodeSafetensors, type Tensor } from '../../src/io/safetensors';
import { newOutcomes, record, rng } from './lib';

const [dir, seedArg, casesArg] = process.argv.slice(2) as [string, string, string];
const seed = Number(seedArg), cases = Number(casesArg);
const R = rng(seed);
const work = path.join(dir, 'cases');
fs.mkdirSync(work, { recursive: true });
const w = (s: string) => fs.writeSync(2, s + '\n');

const JUNK: unknown[] = [null, -1, 0, 1, 2, 3, 1.5, -0.5, 1e308, -1e308, 2 ** 31, 2 ** 32, 2 ** 53, 1e-320, 'x', '', '1', 'NaN', 'Infinity', [], {}, true, false, [1, 2], [0], { op: 'input' }, [null], -(2 ** 31)];

// ---- mutators ----------------------------------------------------------------------------
function mutateBytes(b: Buffer): Buffer {
  const out = Buffer.from(b);
  switch (R.int(5)) {
    case 0: { for (let i = 0, n = 1 + R.int(8); i < n; i++) out[R.int(out.length)] = R.int(256); return out; }
    case 1: return out.subarray(0, R.int(out.length));
    case 2: return Buffer.concat([out, Buffer.alloc(1 + R.int(64), R.int(256))]);
    case 3: { const at = R.int(out.length); out.fill(R.pick([0, 0xff, 0x20]), at, Math.min(out.length, at + 1 + R.int(32))); return out; }
    default: { const at = R.int(Math.min(out.length, 64)); out[at] = out[at]! ^ (1 << R.int(8)); return out; }
  }
}

/** Paths to every value inside a JSON value (objects and arrays). */
function paths(v: unknown, pre: (string | number)[] = [], acc: (string | number)[][] = []): (string | number)[][] {
  if (acc.length > 4000) return acc;
  if (Array.isArray(v)) v.forEach((x, i) => { acc.push([...pre, i]); paths(x, [...pre, i], acc); });
  else if (v && typeof v === 'object') for (const k of Object.keys(v)) { acc.push([...pre, k]); paths((v as Record<string, unknown>)[k], [...pre, k], acc); }
  return acc;
}

function mutateJson(v: unknown): unknown {
  const root = JSON.parse(JSON.stringify(v)) as unknown;
  const all = paths(root);
  if (all.length === 0) return R.pick(JUNK);
  for (let m = 0, n = 1 + R.int(3); m < n; m++) {
    const p = R.pick(all);
    let parent = root as Record<string | number, unknown>;
    for (const k of p.slice(0, -1)) { parent = parent?.[k] as Record<string | number, unknown>; if (parent === null || typeof parent !== 'object') break; }
    if (parent === null || typeof parent !== 'object') continue;
    const key = p[p.length - 1]!;
    const cur = parent[key];
    switch (R.int(6)) {
      case 0: if (Array.isArray(parent)) parent.splice(Number(key), 1); else delete parent[key]; break;
      case 1: parent[key] = typeof cur === 'number' ? R.pick([cur + 1, cur - 1, -cur, cur * 2, cur * 1e6, 0, cur + 0.5]) : R.pick(JUNK); break;
      case 2: if (Array.isArray(cur) && cur.length) cur.push(JSON.parse(JSON.stringify(cur[R.int(cur.length)])) as unknown); else parent[key] = R.pick(JUNK); break;
      case 3: if (Array.isArray(cur) && cur.length > 1) { const i = R.int(cur.length), j = R.int(cur.length); [cur[i], cur[j]] = [cur[j], cur[i]]; } else parent[key] = R.pick(JUNK); break;
      case 4: { const other = R.pick(all); let o: unknown = root; for (const k of other) o = (o as Record<string | number, unknown>)?.[k]; parent[key] = JSON.parse(JSON.stringify(o ?? null)) as unknown; break; }
      default: parent[key] = R.pick(JUNK);
    }
  }
  return root;
}

const SPECIAL = [NaN, Infinity, -Infinity, 0, -0, -1, 1e-45, 1e-40, 3.4e38, 1e-30, 255, 128, 127];
function mutateSafetensors(b: Buffer, src: string): Buffer {
  if (R.chance(0.25)) return mutateBytes(b);
  const f = decodeSafetensors(b, src);
  const tensors: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(f.tensors)) tensors[k] = { ...t, shape: t.shape.slice(), data: t.data.slice() } as Tensor;
  const meta = { ...f.metadata };
  const names = Object.keys(tensors);
  const k = R.int(10);
  if (k < 5 && meta.flatenn) {
    meta.flatenn = R.chance(0.05) ? R.pick(['null', '[]', '{', '"x"', '1']) : JSON.stringify(mutateJson(JSON.parse(meta.flatenn)));
  } else if (k < 8) {
    const t = tensors[R.pick(names)]!;
    for (let i = 0, n = 1 + R.int(4); i < n && t.data.length; i++) (t.data as unknown as number[])[R.int(t.data.length)] = R.pick(SPECIAL);
  } else if (k === 8) {
    delete tensors[R.pick(names)];
  } else {
    const name = R.pick(names), t = tensors[name]!;
    const n = Math.max(0, t.data.length + R.pick([-1, 1, -t.data.length, 3]));
    const C = t.data.constructor as new (n: number) => Tensor['data'];
    tensors[name] = { dtype: t.dtype, shape: [n], data: new C(n) } as Tensor;
  }
  return Buffer.from(encodeSafetensors(tensors, meta));
}

function mutateLines(text: string): string {
  const lines = text.split('\n').filter((l) => l);
  const i = R.int(lines.length);
  switch (R.int(7)) {
    case 0: lines.push(lines[R.int(lines.length)]!); break;
    case 1: lines.splice(i, 1); break;
    case 2: { const j = R.int(lines.length); [lines[i], lines[j]] = [lines[j]!, lines[i]!]; break; }
    case 3: return text.slice(0, R.int(text.length));
    case 4: lines.push(R.pick(['{"type":"trial"}', 'null', '[]', '{}', '{"type":"header"}', 'x']));
    // falls through
    default: { try { lines[i] = JSON.stringify(mutateJson(JSON.parse(lines[i]!))); } catch { lines[i] = 'garbage'; } }
  }
  return lines.join('\n') + '\n';
}

// ---- consumers -----------------------------------------------------------------------------
let skipUse = false;
const bad = (msg: string) => { throw Object.assign(new Error(msg), { fuzzBad: true }); };
let testSet: ImageDataset | null = null;

async function useDeployed(file: string): Promise<void> {
  if (skipUse) return;
  const m = await readDeployed(file);
  const per = m.meta.input.channels * m.meta.input.height * m.meta.input.width;
  const n = 4;
  const images = new Uint8Array(n * per);
  for (let i = 0; i < images.length; i++) images[i] = (i * 37) & 255;
  const labels = Uint8Array.from({ length: n }, (_, i) => i % m.meta.topology.numClasses);
  for (const backend of ['native', 'reference'] as const) {
    const r = new Engine(m, { backend }).evaluateSync({ images, labels, count: n });
    if (!(r.accuracy >= 0 && r.accuracy <= 1) || !(r.sparsity >= 0 && r.sparsity <= 1)) bad(`${file} loaded but evaluates to accuracy ${r.accuracy}, sparsity ${r.sparsity} (${backend})`);
  }
}

async function useCheckpoint(file: string): Promise<void> {
  if (skipUse) return;
  const ck = await loadCheckpoint(file);
  testSet ??= await loadDataset('fashion-mnist', 'test', { dataDir: path.join(dir, 'mnist') });
  const r = evaluate(ck.model, testSet, { end: 4 });
  if (!(r.accuracy >= 0 && r.accuracy <= 1)) bad(`${file} loaded but evaluates to accuracy ${r.accuracy}`);
  let d;
  try { d = deployModel(ck.model, ck.meta.dataset); } catch (e) { if (e instanceof Error && !(e as { fuzzBad?: boolean }).fuzzBad) return; throw e; }
  const enc = encodeSafetensors(d.tensors, { flatenn: JSON.stringify(d.meta) });
  try { deployedFromFile(decodeSafetensors(enc, 'exported'), `${file} (exported)`, ''); } catch (e) { bad(`export of ${file} wrote a model that does not load: ${(e as Error).message}`); }
}

async function useResults(file: string): Promise<void> {
  if (skipUse) return;
  const f = readResults(file);
  const m = mergeResults([{ path: file, file: f }]);
  formatSummary(summaryRows(m.settings, m.records));
}

// ---- cases ---------------------------------------------------------------------------------
const valid = {
  deployed: ['tiny.safetensors', 'lenet-deployed.safetensors'].map((f) => fs.readFileSync(path.join(dir, f))),
  checkpoint: fs.readFileSync(path.join(dir, 'lenet.safetensors')),
  results: fs.readFileSync(path.join(dir, 'results.jsonl'), 'utf8'),
  idxImages: zlib.gunzipSync(fs.readFileSync(path.join(dir, 'mnist', 't10k-images-idx3-ubyte.gz'))),
  idxLabels: zlib.gunzipSync(fs.readFileSync(path.join(dir, 'mnist', 't10k-labels-idx1-ubyte.gz'))),
  cifarTar: fs.readFileSync(path.join(dir, 'cifar.tar')),
};
const KINDS = ['deployed', 'deployed', 'deployed', 'checkpoint', 'checkpoint', 'results', 'results', 'idx', 'cifar'] as const;
// FLATENN_FUZZ_ONLY=<i>: reproduce case i alone (earlier cases are generated but not run; its files are kept).
const only = process.env.FLATENN_FUZZ_ONLY !== undefined ? Number(process.env.FLATENN_FUZZ_ONLY) : -1;
const outcomes = newOutcomes();
const perKind: Record<string, { cases: number; loaded: number }> = {};

async function main(): Promise<void> {
  for (let i = 0; i < cases; i++) {
    const kind = KINDS[i % KINDS.length]!;
    const cdir = path.join(work, `c${i}`);
    fs.mkdirSync(cdir, { recursive: true });
    w(`CASE ${i} ${kind}`);
    skipUse = only >= 0 && i !== only;
    if (only >= 0 && i > only) break;
    perKind[kind] ??= { cases: 0, loaded: 0 };
    perKind[kind].cases++;
    try {
      if (kind === 'deployed') {
        const f = path.join(cdir, 'm.safetensors');
        fs.writeFileSync(f, mutateSafetensors(R.pick(valid.deployed), f));
        await useDeployed(f);
      } else if (kind === 'checkpoint') {
        const f = path.join(cdir, 'c.safetensors');
        fs.writeFileSync(f, mutateSafetensors(valid.checkpoint, f));
        await useCheckpoint(f);
      } else if (kind === 'results') {
        const f = path.join(cdir, 'r.jsonl');
        fs.writeFileSync(f, mutateLines(valid.results));
        await useResults(f);
      } else if (kind === 'idx') {
        const which = R.chance(0.5);
        const img = which ? mutateBytes(valid.idxImages) : valid.idxImages, lab = which ? valid.idxLabels : mutateBytes(valid.idxLabels);
        const gz = R.chance(0.5);
        const put = (name: string, b: Buffer) => fs.writeFileSync(path.join(cdir, name + (gz ? '.gz' : '')), gz ? (R.chance(0.2) ? mutateBytes(zlib.gzipSync(b)) : zlib.gzipSync(b)) : b);
        put('t10k-images-idx3-ubyte', img);
        put('t10k-labels-idx1-ubyte', lab);
        const ds = await loadDataset('fashion-mnist', 'test', { dataDir: cdir });
        if (ds.images.length !== ds.count * 784 || ds.labels.length !== ds.count) bad(`dataset loaded with ${ds.count} images but ${ds.images.length} bytes`);
      } else {
        const t = mutateBytes(valid.cifarTar);
        fs.writeFileSync(path.join(cdir, 'cifar-10-binary.tar.gz'), zlib.gzipSync(t));
        await loadDataset('cifar10', 'test', { dataDir: cdir });
      }
      perKind[kind].loaded++;
      record(outcomes, kind);
    } catch (e) {
      if ((e as { fuzzBad?: boolean }).fuzzBad) outcomes.bad.push(`case ${i} (${kind}): ${(e as Error).message}`), outcomes.cases++;
      else record(outcomes, `case ${i} (${kind})`, e);
    }
    if (i !== only) fs.rmSync(cdir, { recursive: true, force: true });
    else process.stderr.write(`case ${i} kept in ${cdir}\n`);
  }
  process.stdout.write(JSON.stringify({ ...outcomes, perKind }) + '\n');
}

main().catch((e: Error) => { process.stderr.write(`driver failed: ${e.stack}\n`); process.exit(3); });
