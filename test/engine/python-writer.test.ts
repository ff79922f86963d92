// The README's numpy-only writer of the deployed format (examples/write_deployed.py): its file loads,
// passes every check, holds the codes it was given and runs on both engines with the same results.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { readDeployed } from '../../src/deploy/format';
import { Engine } from '../../src/engine/engine';
import { unpackLayers } from '../../src/engine/reference';
import { tmpDir } from '../data/fixtures';
import { xorshift } from '../helpers/tiny-model';

const ROOT = path.resolve(__dirname, '../../..');

test('examples/write_deployed.py (shown in the README) writes a valid version-2 deployed model', async (t) => {
  const py = '/usr/bin/python3';
  if (spawnSync(py, ['-c', 'import numpy'], { encoding: 'utf8' }).status !== 0) {
    if (process.env.CI === 'true') assert.fail('python3 with numpy is needed (scripts/setup.sh installs python3-numpy)');
    t.skip('python3 numpy missing');
    return;
  }
  const script = fs.readFileSync(path.join(ROOT, 'examples/write_deployed.py'), 'utf8');
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const fn = script.slice(script.indexOf('def write_deployed'), script.indexOf("\n\n\nif __name__"));
  assert.ok(fn.length > 500 && readme.includes(fn), 'README shows write_deployed of examples/write_deployed.py verbatim');
  const dir = tmpDir('pywriter');
  const file = path.join(dir, 'py.safetensors');
  const r = spawnSync(py, [path.join(ROOT, 'examples/write_deployed.py'), file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const want = JSON.parse(r.stdout) as { conv: number[]; fc: number[] };
  const m = await readDeployed(file);
  assert.equal(m.meta.version, 2);
  assert.equal(m.meta.input.padding, 'normalized');
  const codes = unpackLayers(m, m.memory);
  assert.deepEqual(Array.from(codes[0]!), want.conv);
  assert.deepEqual(Array.from(codes[1]!), want.fc);
  const n = 8, rnd = xorshift(5);
  const images = Uint8Array.from({ length: n * 784 }, () => Math.floor(rnd() * 256));
  const labels = Uint8Array.from({ length: n }, (_, i) => i);
  const a = new Engine(m, { backend: 'native' }).evaluateSync({ images, labels });
  const b = new Engine(m, { backend: 'reference' }).evaluateSync({ images, labels });
  assert.equal(a.loss, b.loss);
  assert.ok(Number.isFinite(a.loss));
  fs.rmSync(dir, { recursive: true });
});
