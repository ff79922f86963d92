import * as fs from 'node:fs';
import * as path from 'node:path';
import { baseBudget, checkBudget, defaultSeeds, FULL_BUDGET, reproduce, type Budget, type ReproduceArch } from '../reproduce/pipeline';
import { flag, int, str, UsageError, type CommandSpec } from './args';

export const reproduceCommand: CommandSpec = {
  name: 'reproduce',
  summary: "The paper's study end to end: training grids and models over seeds, campaigns, landscapes, the HTML report (resumable).",
  usage: 'flatenn reproduce lenet5|resnet18 [--out runs/<arch>] [--seeds N] [--quick] [--saq-warmup E]\n\n' +
    'Examples:\n  flatenn reproduce lenet5 --quick            # every stage on a small budget (made to finish within 10 minutes on 2 cores)\n' +
    '  flatenn reproduce lenet5 --out runs/lenet5  # the full study (about an hour on 2 cores); re-run the same command to resume\n' +
    '  flatenn reproduce resnet18 --quick          # 1/8-width ResNet-18 on 2,000 CIFAR-10 images, every stage (within 15 minutes on 2 cores)\n' +
    '  flatenn reproduce resnet18                  # the paper-scale study (days on 2 cores; README: how to spread it)\n\n' +
    'Trains the four paper models (standard, AS, SAQ, SAQ-AS; SAQ with half the epochs) and two equal-schedule\n' +
    'controls per seed (lambda and rho grids on seed 1, chosen on the validation split; a rho that collapses on\n' +
    'any seed is ineligible), exports them, runs bitflip/sa0/sa1 campaigns at 0-5% with the same fault maps for\n' +
    'every model (bit unit every seed; weight unit, --by-layer and --by-bit on seed 1), computes loss landscapes,\n' +
    'and writes <out>/report/index.html. lenet5: FashionMNIST, rates 0-5%, 3 seeds. resnet18: CIFAR-10, rates\n' +
    '0.5-3%, 1 seed, grids on a quarter-width model (this project\'s choices; the paper gives none). Every stage\n' +
    'is skipped when already done with the same settings.',
  positionals: true,
  options: {
    out: { type: 'string', arg: '<dir>', description: 'output folder (default runs/<arch>, or runs/<arch>-quick with --quick)' },
    seeds: { type: 'string', arg: '<n>', description: 'training seeds per model (lenet5: default 3, 2 with --quick; resnet18: 1)' },
    quick: { type: 'boolean', description: 'every stage on a small budget (a smoke run, not the study\'s numbers)' },
    'saq-warmup': { type: 'string', arg: '<E>', description: 'SAQ: ramp rho from 0 over the first E epochs (0 = off, the paper\'s recipe); recorded' },
    budget: { type: 'string', arg: '<file.json>', description: `advanced: override budget fields (${Object.keys(FULL_BUDGET).join(', ')})` },
    'data-dir': { type: 'string', arg: '<dir>', description: 'dataset folder (else FLATENN_DATA, then standard places)' },
    queue: { type: 'string', arg: '<redis-url>', description: 'run the campaign stages on `flatenn worker`s through Redis (redis://host:6379/0); the same results files' },
    json: { type: 'boolean', description: 'print the result as JSON' },
    quiet: { type: 'boolean', short: 'q', description: 'only stage lines, no progress bars' },
  },
  async run(v, pos) {
    if (pos.length !== 1) throw new UsageError('give the architecture: flatenn reproduce lenet5|resnet18');
    if (pos[0] !== 'lenet5' && pos[0] !== 'resnet18') throw new UsageError(`unknown architecture '${pos[0]}' (expected lenet5 or resnet18)`);
    const arch: ReproduceArch = pos[0];
    const quick = flag(v, 'quick');
    const seeds = int(v, 'seeds', 1, 100, defaultSeeds(arch, quick));
    const out = str(v, 'out') ?? path.join('runs', quick ? `${arch}-quick` : arch);
    const budget: Partial<Budget> = {};
    const bf = str(v, 'budget');
    if (bf !== undefined) {
      let j: Record<string, unknown>;
      try { j = JSON.parse(fs.readFileSync(bf, 'utf8')) as Record<string, unknown>; } catch (e) { throw new UsageError(`--budget: cannot read ${bf} (${(e as Error).message})`); }
      for (const k of Object.keys(j)) if (!(k in FULL_BUDGET)) throw new UsageError(`--budget: unknown field '${k}' (known: ${Object.keys(FULL_BUDGET).join(', ')})`);
      Object.assign(budget, j);
    }
    if (v['saq-warmup'] !== undefined) budget.saqWarmup = int(v, 'saq-warmup', 0, 10000);
    const dataDir = str(v, 'data-dir');
    const queue = str(v, 'queue');
    if (queue !== undefined && !/^rediss?:\/\/[^\s]+$/.test(queue)) throw new UsageError(`--queue must be a redis:// URL, got '${queue}'`);
    try {
      checkBudget({ ...baseBudget(arch, quick), ...budget }, arch);
    } catch (e) { throw new UsageError(`--budget: ${(e as Error).message}`); }
    const r = await reproduce({ arch, out, seeds, quick, budget, quiet: flag(v, 'quiet'), log: (s: string) => process.stderr.write(`[reproduce] ${s}\n`), ...(dataDir ? { dataDir } : {}), ...(queue ? { queue } : {}) });
    if (flag(v, 'json')) process.stdout.write(JSON.stringify({ report: r.report, seconds: r.seconds, stagesRun: r.stagesRun.length, stagesSkipped: r.stagesSkipped.length, lambda: r.study.lambda, rho: r.study.rho }, null, 2) + '\n');
    else process.stdout.write(`${r.stagesRun.length} stages run, ${r.stagesSkipped.length} already done, ${r.seconds.toFixed(0)} s\nλ = ${r.study.lambda.chosen ?? 'none'}, ρ = ${r.study.rho.chosen ?? 'none'}${r.study.rho.ineligible.length ? ` (ineligible: ${r.study.rho.ineligible.map((x) => x.value).join(', ')})` : ''}\nreport ${r.report}\n`);
    return 0;
  },
};
