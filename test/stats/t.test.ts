import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { summarize, tCdf, tQuantile } from '../../src/stats/t';

test('t quantiles match published table values', () => {
  // two-sided 95% critical values
  const table: [number, number][] = [[1, 12.7062047], [2, 4.30265273], [4, 2.77644511], [9, 2.26215716], [29, 2.04522964], [99, 1.98421695], [1000, 1.96233908]];
  for (const [df, v] of table) assert.ok(Math.abs(tQuantile(0.975, df) - v) < 1e-6, `df=${df}: ${tQuantile(0.975, df)} vs ${v}`);
  assert.ok(Math.abs(tCdf(0, 5) - 0.5) < 1e-12);
  assert.ok(Math.abs(tQuantile(0.025, 7) + tQuantile(0.975, 7)) < 1e-9);
});

test('summary: mean, sample std, t-interval, min, max', () => {
  const s = summarize([1, 2, 3, 4, 5]);
  assert.equal(s.mean, 3);
  assert.ok(Math.abs(s.std - Math.sqrt(2.5)) < 1e-12);
  const half = 2.7764451052 * Math.sqrt(2.5) / Math.sqrt(5);
  assert.ok(Math.abs(s.ciHigh - (3 + half)) < 1e-6 && Math.abs(s.ciLow - (3 - half)) < 1e-6);
  assert.equal(s.min, 1); assert.equal(s.max, 5);
  const one = summarize([0.7]);
  assert.equal(one.std, 0); assert.equal(one.ciLow, 0.7);
  assert.equal(summarize([]).n, 0);
});
