// CPU time of one campaign trial (fault map + 10,000 test images on the int4 engine), min of N,
// for comparing two builds interleaved (DESIGN §1's semantics change: the input layer's mean term is
// re-derived from the codes in memory, and normalised padding adds a border correction).
//   node dist/bench/trial-cost.js --dist <checkout>/dist --model M.int4.safetensors [--trials 10] [--rate 0.01]
// Prints JSON { cpuMsMin, cpuMsMedian, wallMsMin, trials }. Run with FLATENN_THREADS=1 for per-core figures.
import * as path from 'node:path';
import { parseArgs } from 'node:util';

interface Lib {
  readDeployed(p: string): Promise<{ memory: Uint8Array; meta: unknown }>;
  loadDataset(name: string, split: string): Promise<{ images: Uint8Array; labels: Uint8Array; count: number }>;
  Engine: new (m: unknown) => {
    evaluateSync?: (o: { memory: Uint8Array; images: Uint8Array; labels: Uint8Array; count: number }) => { accuracy: number };
    evaluate: (...a: unknown[]) => { accuracy: number };
  };
  FaultSpace: new (meta: unknown, t: { layers: null; bits: null }, u: 'bit') => {
    count(p: number): number;
    order(seed: number, trial: number, k: number): Uint32Array;
    apply(clean: Uint8Array, cells: Uint32Array, type: 'bitflip', dst: Uint8Array, mask: Uint8Array): void;
  };
}

async function main(): Promise<void> {
  const usage = 'usage: node dist/bench/trial-cost.js --dist <checkout>/dist --model M.int4.safetensors [--trials N] [--rate p]\n' +
    'CPU time of one campaign trial (fault map + 10,000 test images), min of N, for comparing two builds interleaved.';
  const { values } = parseArgs({ options: { dist: { type: 'string' }, model: { type: 'string' }, trials: { type: 'string', default: '10' }, rate: { type: 'string', default: '0.01' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) { console.log(usage); return; }
  if (!values.dist || !values.model) throw new Error(usage);
  const lib = require(path.resolve(values.dist, 'src/index.js')) as Lib;
  const m = await lib.readDeployed(values.model);
  const ds = await lib.loadDataset('fashion-mnist', 'test');
  const engine = new lib.Engine(m);
  const space = new lib.FaultSpace(m.meta, { layers: null, bits: null }, 'bit');
  const faulty = new Uint8Array(m.memory.length), mask = new Uint8Array(m.memory.length);
  const n = Number(values.trials), rate = Number(values.rate);
  const cpu: number[] = [], wall: number[] = [];
  for (let t = 0; t <= n; t++) {
    const c0 = process.cpuUsage(), w0 = process.hrtime.bigint();
    space.apply(m.memory, space.order(1, t, space.count(rate)), 'bitflip', faulty, mask);
    if (engine.evaluateSync) engine.evaluateSync({ memory: faulty, images: ds.images, labels: ds.labels, count: ds.count });
    else engine.evaluate(faulty, ds.images, ds.labels, ds.count);
    const c = process.cpuUsage(c0);
    if (t === 0) continue;  // warm-up
    cpu.push((c.user + c.system) / 1000);
    wall.push(Number(process.hrtime.bigint() - w0) / 1e6);
  }
  cpu.sort((a, b) => a - b);
  process.stdout.write(JSON.stringify({ cpuMsMin: cpu[0], cpuMsMedian: cpu[cpu.length >> 1], wallMsMin: Math.min(...wall), trials: n }) + '\n');
}

main().catch((e: Error) => { process.stderr.write(`trial-cost: ${e.message}\n`); process.exit(1); });
