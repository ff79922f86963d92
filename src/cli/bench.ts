import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../native/binding';
import { flag, str, type CommandSpec } from './args';

/** The benchmarks ship only in a source checkout; an installed package has no `bench` command. */
export function benchAvailable(): boolean {
  return fs.existsSync(path.join(packageRoot, 'dist', 'bench', 'run.js'));
}

export const benchCommand: CommandSpec = {
  name: 'bench',
  summary: "Run the benchmarks of a source checkout (kernels; LeNet-5 training and campaigns, ResNet-18 training and inference, beside PyTorch); writes bench/results/local/latest.json (git-ignored) unless --out.\nKernel speed per ISA and thread count, from any installation: 'flatenn bench kernels'.",
  usage: 'flatenn bench [--quick] [--only gemm,qgemm,train,campaign,resnet18] [--no-torch] [--out file.json]',
  examples: ['flatenn bench --quick --no-torch'],
  options: {
    quick: { type: 'boolean', description: 'a short version' },
    only: { type: 'string', arg: '<list>', description: 'run only these modules' },
    'no-torch': { type: 'boolean', description: 'skip the PyTorch side-by-side runs' },
    out: { type: 'string', arg: '<file>', description: 'results JSON (default bench/results/local/latest.json, git-ignored)' },
  },
  run(v) {
    const runner = path.join(packageRoot, 'dist', 'bench', 'run.js');
    if (!fs.existsSync(runner)) throw new Error(`the benchmarks are not in this installation (${runner} is missing); run them from a source checkout with 'npm run bench'`);
    const args = [runner];
    if (flag(v, 'quick')) args.push('--quick');
    if (flag(v, 'no-torch')) args.push('--no-torch');
    const only = str(v, 'only'); if (only) args.push('--only', only);
    const out = str(v, 'out'); if (out) args.push('--out', out);
    const threads = str(v, 'threads'); if (threads) args.push('--threads', threads);
    const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
    return r.status ?? 1;
  },
};
