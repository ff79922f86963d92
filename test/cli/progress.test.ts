// CLI progress off a terminal (Slurm, nohup, CI): a line at a time interval with
// rate and ETA, the rate after a resume counting only new work, and per-epoch
// validation accuracy in the training output.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Progress } from '../../src/util/progress';
import { trainBars } from '../../src/cli/train';
import { trialBar } from '../../src/cli/campaign';
import type { TrialRecord } from '../../src/campaign/results';

function sink() {
  const lines: string[] = [];
  const stream = { isTTY: false, columns: 80, write: (s: string) => { lines.push(...s.split('\n').filter(Boolean)); return true; } } as unknown as NodeJS.WriteStream;
  return { lines, stream };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rateOf = (line: string) => Number(/ ([0-9.]+) \w+\/s /.exec(line)![1]);

test('plain mode: one line per interval (not per update) with rate and ETA, and one final line', async () => {
  const { lines, stream } = sink();
  const p = new Progress({ label: 'trials', total: 1000, unit: 'trial', stream, intervalMs: 60 });
  for (let i = 1; i < 1000; i++) { p.update(i); if (i % 100 === 0) await sleep(25); }
  p.finish('done');
  // ~9 x 25 ms of sleeping at 60 ms per line: a handful of lines, far fewer than 1000 updates
  assert.ok(lines.length >= 3 && lines.length <= 8, `${lines.length} lines:\n${lines.join('\n')}`);
  for (const l of lines) assert.match(l, /^\d\d:\d\d:\d\d +\d+% trials \d+\/1000 [0-9.]+ trial\/s ETA \d\d:\d\d/);
  assert.match(lines.at(-1)!, /100% trials 1000\/1000 .* done$/);
  p.finish('again');
  assert.ok(!lines.at(-1)!.endsWith('again'), 'finish prints once');
});

test('the default interval is 10 s (FLATENN_PROGRESS_INTERVAL overrides it)', () => {
  const { lines, stream } = sink();
  const p = new Progress({ label: 'x', total: 10, stream });
  for (let i = 1; i < 10; i++) p.update(i);
  assert.equal(lines.length, 1, 'only the first update printed within 10 s');
});

test('after a resume the rate counts only the new work', async () => {
  const a = sink(), b = sink();
  const fresh = new Progress({ label: 't', total: 1000, stream: a.stream, intervalMs: 0 });
  const resumed = new Progress({ label: 't', total: 1000, initial: 900, stream: b.stream, intervalMs: 0 });
  await sleep(200);
  fresh.update(950); resumed.update(950);
  const rf = rateOf(a.lines.at(-1)!), rr = rateOf(b.lines.at(-1)!);
  assert.ok(rr < rf / 10, `resumed rate ${rr}/s counts 50 new trials, not 950 (fresh run: ${rf}/s)`);
  // the CLI's campaign bar starts counting at the first trial it sees
  const c = sink();
  const bar = trialBar(false, c.stream);
  const rec = (i: number) => ({ fault: 'bitflip', rate: 0.01, accuracy: 0.5, trial: i }) as unknown as TrialRecord;
  bar(rec(0), 901, 1000);
  await sleep(200);
  bar(rec(1), 1000, 1000);
  assert.ok(rateOf(c.lines.at(-1)!) < 1000, `campaign rate ${rateOf(c.lines.at(-1)!)}/s: 99 trials in ~0.2 s, not 1000`);
});

test('training output off a terminal: each epoch ends with a line holding the validation accuracy', () => {
  const { lines, stream } = sink();
  const draw = trainBars(false, stream);
  for (const epoch of [1, 2]) {
    for (let done = 32; done <= 128; done += 32) draw({ kind: 'batch', epoch, epochs: 2, done, total: 128, loss: 1, accuracy: 0.5, sparsity: 0.25 });
    draw({ kind: 'epoch', epoch, epochs: 2, stats: { epoch, loss: 0.9, accuracy: 0.6, sparsity: 0.3, sparsityWeighted: 0.3, perLayerSparsity: [0.3], images: 128, seconds: 1, imagesPerSecond: 128, val: { accuracy: 0.5 + epoch / 10, loss: 1, sparsity: 0, sparsityWeighted: 0, perLayerSparsity: [], count: 10, predictions: new Uint8Array(10) } } });
  }
  const ends = lines.filter((l) => /val acc/.test(l));
  assert.equal(ends.length, 2);
  assert.match(ends[0]!, /epoch 1\/2 128\/128 .* val acc 60\.00%/);
  assert.match(ends[1]!, /epoch 2\/2 128\/128 .* val acc 70\.00%/);
  const q = sink();
  trainBars(true, q.stream)({ kind: 'batch', epoch: 1, epochs: 1, done: 1, total: 1, loss: 0, accuracy: 0, sparsity: 0 });
  assert.equal(q.lines.length, 0, '--quiet');
});
