// The LeNet-5 / FashionMNIST training study of issue 3 (and the paper): standard,
// activation-sparse (lambda chosen on the validation split), SAQ (rho chosen on
// the validation split, half the epochs) for the standard and the AS model, and
// the conventional control with SAQ's shorter schedule, over several seeds.
// Resumable: finished runs are skipped, interrupted ones resumed.
//
//   node dist/bench/lenet-study.js --out runs/study [--jobs 2] [--seeds 1,2,3] [--epochs 20]
//       [--lambdas 1e-5,3e-5,1e-4] [--rhos 0.05,0.1,0.2,0.5] [--limit-train N]
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

interface Job { name: string; args: string[] }
interface RunResult {
  name: string;
  checkpoint: string;
  config: { epochs: number; actL1: number[]; saqRho: number; seed: number };
  history: { epoch: number; valAccuracy?: number; valSparsity?: number }[];
  test: { accuracy: number; loss: number; sparsity: number; sparsityWeighted: number };
  seconds: number;
}

const CLI = path.resolve(__dirname, '../src/cli/main.js');

function runJob(dir: string, j: Job, threads: number): Promise<RunResult> {
  const resultFile = path.join(dir, `${j.name}.json`);
  if (fs.existsSync(resultFile)) return Promise.resolve(JSON.parse(fs.readFileSync(resultFile, 'utf8')) as RunResult);
  const ckpt = path.join(dir, `${j.name}.safetensors`);
  const resume = fs.existsSync(ckpt);
  const args = [CLI, 'train', ...(resume ? ['--resume'] : j.args), '--out', ckpt, '--json', '--quiet', '--threads', String(threads)];
  const t0 = Date.now();
  process.stderr.write(`[study] start ${j.name}${resume ? ' (resume)' : ''}: flatenn ${args.slice(1).join(' ')}\n`);
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${j.name} failed with exit code ${code}`));
      const r = JSON.parse(out) as RunResult;
      r.name = j.name;
      r.seconds = (Date.now() - t0) / 1000;
      fs.writeFileSync(resultFile, JSON.stringify(r, null, 2));
      process.stderr.write(`[study] done ${j.name}: test acc ${(100 * r.test.accuracy).toFixed(2)}% sparsity ${(100 * r.test.sparsity).toFixed(2)}% in ${r.seconds.toFixed(0)} s\n`);
      resolve(r);
    });
  });
}

async function pool(dir: string, jobs: Job[], parallel: number, threads: number): Promise<Map<string, RunResult>> {
  const res = new Map<string, RunResult>();
  let next = 0;
  const worker = async () => { while (next < jobs.length) { const j = jobs[next++]!; res.set(j.name, await runJob(dir, j, threads)); } };
  await Promise.all(Array.from({ length: Math.min(parallel, jobs.length) }, worker));
  return res;
}

const last = (r: RunResult) => r.history[r.history.length - 1]!;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => { const m = mean(xs); return xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0; };

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    out: { type: 'string', default: 'runs/study' }, jobs: { type: 'string', default: '2' }, seeds: { type: 'string', default: '1,2,3' },
    epochs: { type: 'string', default: '20' }, lambdas: { type: 'string', default: '1e-5,3e-5,1e-4' }, rhos: { type: 'string', default: '0.05,0.1,0.2,0.5' },
    'limit-train': { type: 'string' }, help: { type: 'boolean' },
  } });
  if (values.help) { process.stdout.write('usage: node dist/bench/lenet-study.js [--out runs/study] [--jobs 2] [--seeds 1,2,3] [--epochs 20] [--lambdas ..] [--rhos ..] [--limit-train N]\n'); return; }
  const dir = path.resolve(values.out!);
  fs.mkdirSync(dir, { recursive: true });
  const par = Number(values.jobs), threads = Math.max(1, Math.floor(os.cpus().length / par));
  const seeds = values.seeds!.split(',').map(Number), E = Number(values.epochs), half = Math.max(1, Math.round(E / 2));
  const lambdas = values.lambdas!.split(',').map(Number), rhos = values.rhos!.split(',').map(Number);
  const lim = values['limit-train'] ? ['--limit-train', values['limit-train']] : [];
  const job = (name: string, epochs: number, seed: number, l1: number, rho: number): Job => ({ name, args: ['--epochs', String(epochs), '--seed', String(seed), '--act-l1', String(l1), '--saq-rho', String(rho), ...lim] });
  const s1 = seeds[0]!;
  // Phase 1: everything that needs no selection.
  const p1: Job[] = [
    ...seeds.map((s) => job(`std-s${s}`, E, s, 0, 0)),
    ...lambdas.map((l) => job(`as-l${l}-s${s1}`, E, s1, l, 0)),
    ...rhos.map((r) => job(`saq-r${r}-s${s1}`, half, s1, 0, r)),
    ...seeds.map((s) => job(`control-s${s}`, half, s, 0, 0)),
  ];
  const r1 = await pool(dir, p1, par, threads);
  const stdVal = mean(seeds.map((s) => last(r1.get(`std-s${s}`)!).valAccuracy!));
  const stdValSp = mean(seeds.map((s) => last(r1.get(`std-s${s}`)!).valSparsity!));
  // lambda: the highest validation sparsity among those >= 4 points sparser than standard and within 1.5 points of its validation accuracy.
  const lamRows = lambdas.map((l) => { const h = last(r1.get(`as-l${l}-s${s1}`)!); return { l, acc: h.valAccuracy!, sp: h.valSparsity! }; });
  const okL = lamRows.filter((x) => x.sp >= stdValSp + 0.04 && x.acc >= stdVal - 0.015);
  const lam = (okL.length ? okL : lamRows).reduce((a, b) => (b.sp > a.sp ? b : a)).l;
  // rho: the best clean validation accuracy (DESIGN §3 --rho-select clean).
  const rhoRows = rhos.map((r) => ({ r, acc: last(r1.get(`saq-r${r}-s${s1}`)!).valAccuracy! }));
  const rho = rhoRows.reduce((a, b) => (b.acc > a.acc ? b : a)).r;
  process.stderr.write(`[study] lambda = ${lam} (${okL.length ? 'meets the rule' : 'NO lambda met the rule; most sparse taken'}), rho = ${rho}\n`);
  // Phase 2: the chosen settings over every seed.
  const p2: Job[] = [
    ...seeds.filter((s) => s !== s1).map((s) => job(`as-l${lam}-s${s}`, E, s, lam, 0)),
    ...seeds.filter((s) => s !== s1).map((s) => job(`saq-r${rho}-s${s}`, half, s, 0, rho)),
    ...seeds.map((s) => job(`saqas-l${lam}-r${rho}-s${s}`, half, s, lam, rho)),
  ];
  const r2 = await pool(dir, p2, par, threads);
  const all = new Map([...r1, ...r2]);
  const group = (label: string, names: string[], epochs: number) => {
    const rs = names.map((n) => all.get(n)!);
    const acc = rs.map((r) => r.test.accuracy), sp = rs.map((r) => r.test.sparsity), spw = rs.map((r) => r.test.sparsityWeighted), sec = rs.map((r) => r.seconds);
    return { label, epochs, seeds: rs.length, accMean: mean(acc), accStd: sd(acc), sparsity: mean(sp), sparsityWeighted: mean(spw), seconds: mean(sec), runs: names };
  };
  const table = [
    group('standard', seeds.map((s) => `std-s${s}`), E),
    group(`activation-sparse (λ=${lam})`, seeds.map((s) => `as-l${lam}-s${s}`), E),
    group(`SAQ (ρ=${rho})`, seeds.map((s) => `saq-r${rho}-s${s}`), half),
    group(`SAQ + AS (λ=${lam}, ρ=${rho})`, seeds.map((s) => `saqas-l${lam}-r${rho}-s${s}`), half),
    group('control (conventional, SAQ schedule)', seeds.map((s) => `control-s${s}`), half),
  ];
  const summary = { date: new Date().toISOString(), machine: `${os.cpus()[0]?.model} x${os.cpus().length}`, lambda: lam, rho, lambdaGrid: lamRows, rhoGrid: rhoRows, standardVal: { accuracy: stdVal, sparsity: stdValSp }, table };
  fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(summary, null, 2));
  const pct = (x: number) => (100 * x).toFixed(2);
  const lines = ['| model | epochs | seeds | test accuracy % (mean ± std) | act. sparsity % (layer mean) | element-weighted % | wall time per run (s) |', '|---|---|---|---|---|---|---|'];
  for (const g of table) lines.push(`| ${g.label} | ${g.epochs} | ${g.seeds} | ${pct(g.accMean)} ± ${pct(g.accStd)} | ${pct(g.sparsity)} | ${pct(g.sparsityWeighted)} | ${g.seconds.toFixed(0)} |`);
  lines.push('', `λ grid (seed ${s1}, validation): ${lamRows.map((x) => `λ=${x.l}: acc ${pct(x.acc)}%, sparsity ${pct(x.sp)}%`).join('; ')}; standard: acc ${pct(stdVal)}%, sparsity ${pct(stdValSp)}%`);
  lines.push(`ρ grid (seed ${s1}, SAQ, validation accuracy): ${rhoRows.map((x) => `ρ=${x.r}: ${pct(x.acc)}%`).join('; ')}`);
  fs.writeFileSync(path.join(dir, 'summary.md'), lines.join('\n') + '\n');
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((e: Error) => { process.stderr.write(`lenet-study: ${e.message}\n`); process.exitCode = 1; });
