// Fuzz: seeded structure-aware mutations of valid deployed models, checkpoints,
// datasets (IDX, CIFAR-10 archive) and campaign results, loaded and used by the
// library in a heap-capped child process; plus random command lines for every
// CLI command. Pass: every case ends normally or with a JS Error / exit 1 or 2
// and a message; never a signal, a hang (> 60 s) or a JS-internal error text.
// FLATENN_FUZZ_CASES=<n> runs a longer campaign; FLATENN_FUZZ_SEED=<s> another seed.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { buildFixtures } from './fixtures';
import { fuzzCases, fuzzSeed, INTERNAL, rng, runDriver } from './lib';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');
let fixtures = '';

test('mutated model files, checkpoints, datasets and results: errors with messages, never a crash', { timeout: 600_000 }, async () => {
  fixtures = await buildFixtures();
  const cases = fuzzCases(270);
  const r = runDriver('files-driver', [fixtures, String(fuzzSeed()), String(cases)], Math.max(90_000, cases * 600), 768);
  process.stdout.write(`# file fuzz: ${r.cases} cases ${JSON.stringify(r.perKind)}: ${r.ok} loaded and used, ${JSON.stringify(r.errors)} refused, ${r.bad.length} bad\n`);
  assert.deepEqual(r.bad, []);
  assert.equal(r.cases, cases);
});

test('random command lines: exit 0, 1 or 2 with a message, never a crash or a JS internal', { timeout: 600_000 }, async () => {
  if (!fixtures) fixtures = await buildFixtures();
  const R = rng(fuzzSeed() + 1);
  const mnist = path.join(fixtures, 'mnist');
  const FILES = [path.join(fixtures, 'tiny.safetensors'), path.join(fixtures, 'lenet.safetensors'), path.join(fixtures, 'lenet-deployed.safetensors'), path.join(fixtures, 'results.jsonl'), mnist, '/dev/null', '/nonexistent/x', ''];
  const VALUES = ['0', '1', '2', '-1', '1.5', 'NaN', 'Infinity', '1e400', '1e-400', '99999999999999999999', 'x', '', '0,1%', '5%,5%', 'bitflip,sa0', 'sa0,,sa1', '0/2', '3/2', 'layers=conv', 'bits=0+9', 'scalar', 'avx512', 'lenet5', 'resnet18', 'cifar10', 'test', 'val', 'exact', 'bernoulli', 'weight'];
  // values each option accepts (most lines should get past parsing)
  const GOOD: Record<string, string[]> = {
    '--split': ['test', 'val', 'train'], '--limit': ['4', '8'], '--faults': ['bitflip', 'sa0,sa1'], '--rates': ['0,1%', '0.05'], '--trials': ['1', '2'], '--seed': ['1', '7'],
    '--sampling': ['exact', 'bernoulli'], '--rate-unit': ['bit', 'weight'], '--fault-targets': ['layers=conv', 'bits=0', 'layers=conv1;bits=0+1'], '--shard': ['0/2', '1/2'],
    '--arch': ['lenet5'], '--dataset': ['fashion-mnist'], '--epochs': ['1'], '--batch-size': ['32'], '--lr': ['0.01'], '--schedule': ['cosine', 'step', 'constant'],
    '--act-l1': ['1e-5'], '--saq-rho': ['0.1'], '--weight-bits': ['2', '4', '8'], '--act-bits': ['2', '4', '8', '0'], '--val-size': ['16'], '--limit-train': ['64'],
    '--threads': ['1', '2'], '--isa': ['scalar', 'avx2'], '--from': ['torch'], '--mean': ['0.5'], '--std': ['0.25'], '--calibrate': ['4'],
  };
  // train and inject get small budgets (fixture data, few trials) so a valid random line ends quickly
  const COMMANDS: Record<string, string[]> = {
    train: ['--arch', '--dataset', '--epochs', '--batch-size', '--lr', '--schedule', '--act-l1', '--saq-rho', '--weight-bits', '--act-bits', '--val-size', '--limit-train', '--resume', '--force', '--out', '--seed'],
    eval: ['--model', '--split', '--limit', '--compare-int4', '--json'],
    export: ['--model', '--out', '--json'],
    inject: ['--model', '--faults', '--rates', '--trials', '--seed', '--sampling', '--rate-unit', '--fault-targets', '--by-layer', '--by-bit', '--shard', '--limit', '--out', '--json'],
    summary: ['--baseline', '--json'],
    'data info': ['--json'],
    import: ['--from', '--arch', '--out', '--map', '--mean', '--std', '--dataset', '--calibrate', '--json'],
    info: ['--json'],
  };
  const outDir = path.join(fixtures, 'cli-out');
  fs.mkdirSync(outDir, { recursive: true });
  const cases = Math.max(1, Math.round(fuzzCases(270) / 9));
  const codes: Record<string, number> = {};
  for (let i = 0; i < cases; i++) {
    const cmd = R.pick(Object.keys(COMMANDS));
    const argv = [...cmd.split(' ')];
    // half the lines start from a valid command and change a little; the rest are random
    const sane = R.chance(0.5);
    if (sane) {
      const fresh = (ext: string) => path.join(outDir, `o${i}${ext}`);
      const base: Record<string, string[]> = {
        train: ['--out', fresh('.safetensors')], eval: ['--model', R.pick(FILES.slice(0, 3))], export: ['--model', FILES[1]!, '--out', fresh('.safetensors')],
        inject: ['--model', R.pick([FILES[0]!, FILES[2]!]), '--out', fresh('.jsonl')], summary: [FILES[3]!], 'data info': [], info: [], import: ['--from', 'torch', FILES[1]!, '--arch', 'lenet5', '--out', fresh('.safetensors')],
      };
      argv.push(...base[cmd]!);
    }
    for (let j = 0, n = R.int(sane ? 3 : 6); j < n; j++) {
      const opt = R.pick([...COMMANDS[cmd]!, '--threads', '--isa', ...(sane ? [] : ['--bogus', '-q'])]);
      argv.push(opt);
      if (sane || R.chance(0.85)) {
        if (['--model', '--baseline', '--out'].includes(opt)) argv.push(opt === '--out' && R.chance(0.7) ? path.join(outDir, `o${i}${R.pick(['.safetensors', '.jsonl', ''])}`) : R.pick(FILES));
        else if (GOOD[opt] && R.chance(sane ? 0.9 : 0.6)) argv.push(R.pick(GOOD[opt]!));
        else argv.push(R.pick(VALUES));
      }
    }
    if ((cmd === 'summary' || cmd === 'import') && R.chance(0.8)) argv.push(R.pick(FILES));
    if (cmd === 'train') argv.push('--epochs', '1', '--limit-train', '64', '--val-size', '16');
    if (cmd === 'inject') argv.push('--trials', R.pick(['1', '2']), '--limit', '4');
    if (cmd !== 'info' && cmd !== 'summary') argv.push('--data-dir', mnist);
    const r = spawnSync(process.execPath, ['--max-old-space-size=768', CLI, ...argv], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, FLATENN_DATA: mnist, FLATENN_PROGRESS: 'plain' } });
    const line = `flatenn ${argv.join(' ')}`;
    assert.ok(!(r.error && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT'), `hang: ${line}`);
    assert.equal(r.signal, null, `${line}: killed by ${String(r.signal)}\n${r.stderr}`);
    assert.ok(r.status === 0 || r.status === 1 || r.status === 2, `${line}: exit ${String(r.status)}\n${r.stderr}`);
    if (r.status !== 0) assert.ok(r.stderr.trim().length > 0, `${line}: exit ${String(r.status)} without a message`);
    assert.doesNotMatch(r.stderr, INTERNAL, line);
    assert.doesNotMatch(r.stderr, /^\s+at /m, `${line}: stack trace\n${r.stderr}`);
    codes[String(r.status)] = (codes[String(r.status)] ?? 0) + 1;
  }
  process.stdout.write(`# CLI fuzz: ${cases} command lines, exit codes ${JSON.stringify(codes)}\n`);
  fs.rmSync(fixtures, { recursive: true, force: true });
});
