import * as fs from 'node:fs';
import { computeLandscape, writeLandscape } from '../landscape/landscape';
import { choice, flag, int, requireStr, str, UsageError, type CommandSpec } from './args';

export const landscapeCommand: CommandSpec = {
  name: 'landscape',
  summary: 'Loss landscape of training checkpoints (Li et al. filter-normalised directions) and their sharpness.',
  usage: 'flatenn landscape a.safetensors [b.safetensors ...] --dim 1|2 --out landscape.json\n\n' +
    'Examples:\n  flatenn landscape runs/std.safetensors runs/saq.safetensors --dim 1 --out l1.json\n' +
    '  flatenn landscape runs/std.safetensors --dim 2 --points 25 --out l2.json\n\n' +
    'Checkpoints only: a deployed model has no latent weights. Every model of one architecture gets the same\n' +
    'directions (same --seed). Loss: mean cross-entropy of the re-quantised model in eval mode on the first\n' +
    '--images training images. Sharpness = mean over directions of (L(+0.5) + L(-0.5)) / 2 - L(0).',
  positionals: true,
  options: {
    dim: { type: 'string', arg: '<1|2>', description: '1: a curve per direction; 2: a grid over a direction pair', default: '1' },
    out: { type: 'string', arg: '<file>', description: 'landscape JSON to write (required)' },
    directions: { type: 'string', arg: '<n>', description: 'directions (1D) or direction pairs (2D) (default 3 for 1D, 1 for 2D)' },
    points: { type: 'string', arg: '<n>', description: 'points per axis on alpha in [-1, 1] (default 51 for 1D, 25 for 2D)' },
    seed: { type: 'string', arg: '<n>', description: 'direction seed', default: '1' },
    images: { type: 'string', arg: '<n>', description: 'first n training images', default: '5000' },
    'data-dir': { type: 'string', arg: '<dir>', description: 'dataset folder (else FLATENN_DATA, then standard places)' },
    json: { type: 'boolean', description: 'print the result as JSON too' },
    quiet: { type: 'boolean', short: 'q', description: 'no progress output' },
  },
  async run(v, files) {
    if (files.length === 0) throw new UsageError('give at least one checkpoint (.safetensors)');
    const out = requireStr(v, 'out');
    for (const f of files) if (!fs.existsSync(f)) throw new Error(`${f}: no such file`);
    const dim = Number(choice(v, 'dim', ['1', '2'] as const, '1')) as 1 | 2;
    const directions = v.directions !== undefined ? int(v, 'directions', 1, 100) : undefined;
    const points = v.points !== undefined ? int(v, 'points', 3, 1001) : undefined;
    const dataDir = str(v, 'data-dir');
    const l = await computeLandscape(files, {
      dim, seed: int(v, 'seed', 0, Number.MAX_SAFE_INTEGER), images: int(v, 'images', 1, 1e7), quiet: flag(v, 'quiet'),
      ...(directions !== undefined ? { directions } : {}), ...(points !== undefined ? { points } : {}), ...(dataDir ? { dataDir } : {}),
    });
    await writeLandscape(out, l);
    if (flag(v, 'json')) process.stdout.write(JSON.stringify(l) + '\n');
    else {
      for (const m of l.models) process.stdout.write(`${m.label}: loss ${m.loss0.toFixed(4)} at the trained weights, sharpness ${m.sharpness.toFixed(4)} (per direction ${m.sharpnessPerDirection.map((s) => s.toFixed(4)).join(', ')}), ${m.seconds.toFixed(1)} s\n`);
      process.stdout.write(`wrote ${out}\n`);
    }
    return 0;
  },
};
