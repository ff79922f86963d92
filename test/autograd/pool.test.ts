// The step buffer pool (src/autograd/pool.ts): its own rules, and the contract the trainer relies
// on, that no op reads a pooled buffer before writing all of it: a forward/backward pass served by
// a pool whose free buffers hold NaN gives the same bits as one on fresh zero-filled arrays.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as ops from '../../src/autograd/ops';
import { alloc, BufferPool, withPool } from '../../src/autograd/pool';
import { Tape } from '../../src/autograd/tape';
import type { Model } from '../../src/nn/model';
import { defaultConfig, type TrainConfig } from '../../src/train/config';
import { createModel } from '../../src/train/trainer';

test('BufferPool: the smallest free buffer that fits, views of the asked length, release after a mark, clear', () => {
  const p = new BufferPool();
  const a = withPool(p, () => alloc(10)), b = withPool(p, () => alloc(4));
  assert.equal(a.length, 10);
  assert.equal(b.length, 4);
  assert.equal(alloc(3).length, 3, 'outside withPool: a fresh array');
  assert.equal(p.bytes, 56);
  p.release();
  // 3 floats: the 4-float buffer (a view of 3), then 9: the 10-float one, then a new one
  const c = p.take(3), d = p.take(9), e = p.take(2);
  assert.equal(c.length, 3);
  assert.equal(c.buffer, b.buffer);
  assert.equal(d.buffer, a.buffer);
  assert.notEqual(e.buffer, a.buffer);
  assert.notEqual(e.buffer, b.buffer);
  const m = p.mark();
  const f = p.take(1);
  p.release(m);  // only f is free again
  assert.equal(p.take(1).buffer, f.buffer);
  p.release();
  p.clear();
  assert.equal(p.bytes, 0);
  // nesting restores the outer pool
  const q = new BufferPool();
  withPool(p, () => { withPool(q, () => alloc(5)); alloc(6); });
  assert.equal(q.bytes, 20);
  assert.equal(p.bytes, 24);
});

function images(n: number, per: number, seed: number): Uint8Array {
  let s = seed;
  return Uint8Array.from({ length: n * per }, () => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s >>> 24; });
}

/** Loss and gradient bits of one training-mode pass (AS penalty, SAQ-style perturbation), statistics frozen. */
function pass(model: Model, raw: Uint8Array, labels: Uint8Array, n: number, perturb: Map<string, Float32Array>) {
  model.params.zeroGrad();
  const x = model.normalize(raw, n);
  const tape = new Tape(true);
  const r = model.forward(x, { tape, training: true, updateStats: false, keepActs: true, perturb });
  const ce = ops.crossEntropy(tape, r.logits, labels);
  const loss = ops.sumScalars(tape, [ce.loss, ...r.acts.map((a) => ops.l1Penalty(tape, a, 1e-3))]);
  tape.backward(loss);
  return { loss: loss.data[0]!, grad: model.params.grad.slice() };
}

for (const [arch, over] of [['lenet5', {}], ['resnet18', { width: 0.125 }]] as [string, Partial<TrainConfig>][]) {
  test(`a pass on pooled buffers full of NaN equals a pass on fresh arrays, bit for bit (${arch})`, () => {
    const cfg = { ...defaultConfig(arch as 'lenet5'), ...over };
    const size = arch === 'lenet5' ? 28 : 32, ch = arch === 'lenet5' ? 1 : 3, n = 6;
    const model = createModel(cfg, ch, size);
    model.init(3);
    const raw = images(n, ch * size * size, 7), labels = Uint8Array.from({ length: n }, (_, i) => (i * 3) % 10);
    // one pass that sets the activation ranges (as a first training step does)
    const t0 = new Tape(true);
    model.forward(model.normalize(raw, n), { tape: t0, training: true, updateStats: true, keepActs: false });
    const perturb = new Map<string, Float32Array>();
    for (const name of model.weightNames()) {
      const w = model.params.v(name).data;
      perturb.set(name.slice(0, -'.weight'.length), Float32Array.from(w, (v, i) => (i % 3 === 0 ? 1e-3 * v : 0)));
    }
    const fresh = pass(model, raw, labels, n, perturb);
    const pool = new BufferPool();
    withPool(pool, () => pass(model, raw, labels, n, perturb));
    pool.release();
    assert.ok(pool.bytes > 0);
    pool.fill(NaN);
    const pooled = withPool(pool, () => pass(model, raw, labels, n, perturb));
    assert.ok(Number.isFinite(fresh.loss));
    assert.equal(pooled.loss, fresh.loss);
    const a = new Uint32Array(fresh.grad.buffer), b = new Uint32Array(pooled.grad.buffer);
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) assert.fail(`gradient ${i}: ${fresh.grad[i]} vs ${pooled.grad[i]}`);
  });
}
