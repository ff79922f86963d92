import { buildReport } from '../report/report';
import { flag, requireStr, str, UsageError, type CommandSpec } from './args';

export const reportCommand: CommandSpec = {
  name: 'report',
  summary: 'An HTML report (self-contained) with SVG and PNG figures from campaign results, landscapes and a study summary.',
  usage: 'flatenn report <results.jsonl ...> [landscape.json ...] [study.json] --out report/\n\n' +
    'Examples:\n  flatenn report runs/lenet5/campaigns/*.jsonl runs/lenet5/landscape-*.json --out report/\n\n' +
    'Models are named by their file names (e.g. saq-s2.safetensors: model "saq", training seed 2); the gains table\n' +
    'compares the groups standard, as, saq, saq-as, control and control-as when present (as flatenn reproduce names them).',
  positionals: true,
  options: {
    out: { type: 'string', arg: '<dir>', description: 'output folder: index.html, <figure>.svg, <figure>.png (required)' },
    title: { type: 'string', arg: '<text>', description: 'page title', default: 'flatenn study report' },
    quiet: { type: 'boolean', short: 'q', description: 'no progress output' },
  },
  async run(v, files) {
    if (files.length === 0) throw new UsageError('give campaign results (.jsonl) and/or landscape files (.json)');
    const out = requireStr(v, 'out');
    const r = await buildReport(files, { out, title: str(v, 'title')!, quiet: flag(v, 'quiet'), log: (l: string) => process.stderr.write(l + '\n') });
    process.stdout.write(`${r.figures.length} figures\nreport ${r.html}\n`);
    return 0;
  },
};
