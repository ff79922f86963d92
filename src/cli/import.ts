import * as fs from 'node:fs';
import { importTorch } from '../interop/torch-import';
import { ARCHS, type Arch } from '../nn/graph';
import { DATASETS } from '../train/config';
import { choice, flag, int, num, parseNumber, requireStr, str, UsageError, type CommandSpec } from './args';
import { usagePath } from './campaign';

function numbers(s: string, name: string, lo: number, hi: number): number[] {
  const parts = s.split(',').map((x) => x.trim());
  if (parts.some((p) => p === '')) throw new UsageError(`--${name}: empty item in '${s}'`);
  return parts.map((p) => parseNumber(p, name, lo, hi));
}

export const importCommand: CommandSpec = {
  name: 'import',
  summary: 'Turn a PyTorch state_dict (safetensors) into a flatenn checkpoint (then `flatenn export` as usual), keeping its quantisation parameters.',
  usage: 'flatenn import --from torch model.safetensors --arch lenet5|resnet18 --out m.safetensors [--map names.json] [--calibrate N]',
  positionals: true,
  options: {
    from: { type: 'string', arg: '<kind>', description: 'source framework (required): torch', },
    arch: { type: 'string', arg: '<arch>', description: `architecture (required): ${ARCHS.join(', ')}` },
    out: { type: 'string', arg: '<file>', description: 'checkpoint to write (required)' },
    map: { type: 'string', arg: '<json>', description: 'key renames: a JSON object {"their.key or prefix": "flatenn name"}' },
    width: { type: 'string', arg: '<w>', description: 'resnet18 width multiplier (0.25 = quarter width)' },
    dataset: { type: 'string', arg: '<name>', description: `dataset the model was trained on: ${DATASETS.join(', ')} (default by arch)` },
    mean: { type: 'string', arg: '<m,..>', description: 'input mean per channel in raw pixel units 0..255 (default: the dataset\'s; torchvision 0.5 = 127.5)' },
    std: { type: 'string', arg: '<s|s,..>', description: 'input std in raw pixel units: one, or one per channel (e.g. 62.99,61.97,66.56)' },
    padding: { type: 'string', arg: '<p>', description: "first conv's padding: normalized (PyTorch's) or raw", default: 'normalized' },
    calibrate: { type: 'string', arg: '<n>', description: 'set activation ranges (max) from n training images when the file has none' },
    'data-dir': { type: 'string', arg: '<dir>', description: 'dataset folder (for --calibrate)' },
    json: { type: 'boolean', description: 'print the report as JSON' },
  },
  async run(v, files) {
    const from = requireStr(v, 'from');
    if (from !== 'torch') throw new UsageError(`--from: only 'torch' is supported, got '${from}'`);
    if (files.length !== 1) throw new UsageError('give one state_dict file: flatenn import --from torch model.safetensors --arch lenet5 --out m.safetensors');
    const arch = choice<Arch>(v, 'arch', ARCHS);
    if (str(v, 'arch') === undefined) throw new UsageError('--arch is required');
    const out = requireStr(v, 'out');
    usagePath(out, [files[0], str(v, 'map')]);
    let map: Record<string, string> | undefined;
    const mp = str(v, 'map');
    if (mp !== undefined) {
      let raw: unknown;
      try { raw = JSON.parse(fs.readFileSync(mp, 'utf8')); } catch (e) { throw new UsageError(`--map ${mp}: ${(e as Error).message}`); }
      if (!raw || typeof raw !== 'object' || Array.isArray(raw) || Object.values(raw).some((x) => typeof x !== 'string')) throw new UsageError(`--map ${mp}: expected a JSON object of strings`);
      map = raw as Record<string, string>;
    }
    const mean = str(v, 'mean'), std = str(v, 'std');
    if ((mean === undefined) !== (std === undefined)) throw new UsageError('--mean and --std go together');
    const stds = std !== undefined ? numbers(std, 'std', 1e-6, 1e6) : undefined;
    const dataset = str(v, 'dataset') !== undefined ? choice(v, 'dataset', DATASETS) : undefined;
    const calibrate = v.calibrate !== undefined ? int(v, 'calibrate', 1, 1e7) : undefined;
    const dataDir = str(v, 'data-dir');
    const r = await importTorch({
      file: files[0]!, arch, out, ...(map ? { map } : {}), ...(dataset ? { dataset } : {}),
      ...(mean !== undefined ? { norm: { mean: numbers(mean, 'mean', -1e6, 1e6), std: stds!.length === 1 ? stds![0]! : stds! } } : {}),
      padding: choice(v, 'padding', ['normalized', 'raw'] as const), ...(str(v, 'width') !== undefined ? { config: { width: num(v, 'width', 1e-3, 64) } } : {}), ...(calibrate ? { calibrate } : {}), ...(dataDir ? { dataDir } : {}),
    });
    if (flag(v, 'json')) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    else {
      const fromFile = Object.entries(r.weightScales).filter(([, s]) => s === 'file').map(([k]) => k);
      process.stdout.write(`${out}: ${arch} checkpoint from ${files[0]} (sha256 ${r.sha256.slice(0, 16)})\n` +
        `  weight scales: ${fromFile.length ? `from the file for ${fromFile.join(', ')}` : 'none in the file'}; others max|w|/7 (DESIGN §1)\n` +
        `  activation ranges: ${r.actRanges}\n  ${r.ignored.length} quantisation/bookkeeping keys read or ignored\n` +
        `next: flatenn export --model ${out} --out ${out.replace(/\.safetensors$/, '')}.int4.safetensors\n`);
    }
    return 0;
  },
};
