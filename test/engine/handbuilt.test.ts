// The deployed format written by hand from known codes; the engine's outputs
// checked against explicit arithmetic.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { readDeployed } from '../../src/deploy/format';
import { Engine } from '../../src/engine/engine';
import { runReference, unpackLayers } from '../../src/engine/reference';
import { writeTinyModel, tinyLogits, xorshift } from '../helpers/tiny-model';
import { tmpDir } from '../data/fixtures';

test('a hand-built deployed model: engine logits equal explicit integer arithmetic', async () => {
  const dir = tmpDir('tiny');
  const file = path.join(dir, 'tiny.safetensors');
  const tm = await writeTinyModel(file);
  const m = await readDeployed(file);
  assert.equal(m.meta.layers[0]!.byteLength, 50);
  const r = xorshift(3);
  const n = 7;
  const images = Uint8Array.from({ length: n * 784 }, () => Math.floor(r() * 256));
  const codes = unpackLayers(m, m.memory);
  assert.deepEqual(Array.from(codes[0]!), Array.from(tm.conv));
  const ref = runReference(m, codes, images, n);
  for (let i = 0; i < n; i++) {
    const want = tinyLogits(tm, images.subarray(i * 784, (i + 1) * 784));
    assert.deepEqual(Array.from(ref.logits.subarray(i * 10, i * 10 + 10)), Array.from(want), `image ${i}`);
  }
  for (const backend of ['reference', 'native'] as const) {
    const e = new Engine(m, { backend });
    const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
    const res = e.evaluateSync({ memory: m.memory, images: images, labels: labels, count: n });
    let correct = 0;
    for (let i = 0; i < n; i++) {
      const want = tinyLogits(tm, images.subarray(i * 784, (i + 1) * 784));
      const arg = want.indexOf(Math.max(...want));
      assert.equal(res.predictions[i], arg, `${e.backend}: image ${i}`);
      if (arg === labels[i]) correct++;
    }
    assert.equal(res.accuracy, correct / n);
    assert.ok(res.sparsity >= 0 && res.sparsity <= 1);
  }
  fs.rmSync(dir, { recursive: true });
});

test('deployed-model validation: corrupt or inconsistent files are refused with a clear error', async () => {
  const dir = tmpDir('tiny-bad');
  const file = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(file);
  const good = fs.readFileSync(file);
  // truncated
  fs.writeFileSync(path.join(dir, 'trunc.safetensors'), good.subarray(0, good.length - 10));
  await assert.rejects(readDeployed(path.join(dir, 'trunc.safetensors')), /trunc\.safetensors/);
  // layout hash tampered
  const hdrLen = Number(good.readBigUInt64LE(0));
  const hdr = JSON.parse(good.subarray(8, 8 + hdrLen).toString('utf8')) as { __metadata__: { flatenn: string } };
  const meta = JSON.parse(hdr.__metadata__.flatenn) as { layoutHash: string };
  const tamper = (f: (m: Record<string, unknown>) => void, name: string) => {
    const mm = JSON.parse(hdr.__metadata__.flatenn) as Record<string, unknown>;
    f(mm);
    const h2 = { ...hdr, __metadata__: { flatenn: JSON.stringify(mm) } };
    let js = JSON.stringify(h2);
    while ((8 + Buffer.byteLength(js)) % 8) js += ' ';
    const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(Buffer.byteLength(js)));
    const p = path.join(dir, name);
    fs.writeFileSync(p, Buffer.concat([b, Buffer.from(js), good.subarray(8 + hdrLen)]));
    return p;
  };
  void meta;
  await assert.rejects(readDeployed(tamper((m) => { m.layoutHash = '0000'; }, 'hash.safetensors')), /layoutHash/);
  await assert.rejects(readDeployed(tamper((m) => { m.format = 'other'; }, 'fmt.safetensors')), /not a deployed model/);
  await assert.rejects(readDeployed(path.join(dir, 'missing.safetensors')), /cannot read/);
  fs.rmSync(dir, { recursive: true });
});
