// The .d.ts a consumer's editor shows: every function, class and constant the
// package exports carries a TSDoc comment, and so does every member of the option
// objects of the long-running calls (defaults are written in those comments).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

const dist = path.resolve(__dirname, '../../src');
const index = fs.readFileSync(path.join(dist, 'index.d.ts'), 'utf8');

function exportsOf(kind: 'value' | 'type'): { name: string; file: string }[] {
  const out: { name: string; file: string }[] = [];
  for (const m of index.matchAll(/export (type )?\{([^}]*)\} from '([^']*)'/g)) {
    if ((kind === 'type') !== !!m[1]) continue;
    const base = path.join(dist, m[3]!);
    const file = fs.existsSync(base + '.d.ts') ? base + '.d.ts' : path.join(base, 'index.d.ts');
    for (const n of m[2]!.split(',').map((x) => x.trim()).filter(Boolean)) out.push({ name: n, file });
  }
  return out;
}

test('every exported function, class and constant has TSDoc in the .d.ts', () => {
  const missing: string[] = [];
  const values = exportsOf('value');
  assert.ok(values.length > 40, `${values.length} value exports`);
  for (const { name, file } of values) {
    let d = fs.readFileSync(file, 'utf8');
    const re = new RegExp(`(\\*/\\s*)?export declare (?:abstract )?(?:function|class|const) ${name}\\b`);
    let m = re.exec(d);
    if (!m) {
      // re-exported by a folder's index.d.ts: follow `export { name } from './x'` once
      const fw = new RegExp(`export \\{[^}]*\\b${name}\\b[^}]*\\} from '([^']*)'`).exec(d);
      if (fw) { d = fs.readFileSync(path.join(path.dirname(file), fw[1]! + '.d.ts'), 'utf8'); m = re.exec(d); }
    }
    assert.ok(m, `${name} declared in ${file}`);
    if (!m[1]) missing.push(`${name} (${path.relative(dist, file)})`);
  }
  assert.deepEqual(missing, [], `without TSDoc: ${missing.join(', ')}`);
});

test('every option of trainModel, runCampaign, fetchDataset and Engine.evaluate is documented', () => {
  for (const [file, iface] of [['train/run.d.ts', 'TrainRunOptions'], ['campaign/campaign.d.ts', 'CampaignOptions'], ['data/fetch.d.ts', 'FetchOptions'], ['engine/engine.d.ts', 'EvaluateOptions']] as const) {
    const d = fs.readFileSync(path.join(dist, file), 'utf8');
    const body = new RegExp(`export interface ${iface} \\{([^]*?)\\n\\}`).exec(d);
    assert.ok(body, `${iface} in ${file}`);
    const lines = body[1]!.split('\n');
    const undocumented: string[] = [];
    lines.forEach((l, i) => {
      const m = /^ {4}(\w+)\??: /.exec(l);
      if (m && !/\*\/\s*$/.test(lines[i - 1] ?? '')) undocumented.push(m[1]!);
    });
    assert.deepEqual(undocumented, [], `${iface}: undocumented ${undocumented.join(', ')}`);
  }
});
