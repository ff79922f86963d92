// Fuzz: every native binding called with random arguments in a child process
// (heap-capped). Pass: each call returns or throws a JS Error with a message;
// the process is never killed by a signal, never hangs, never shows a JS internal.
// FLATENN_FUZZ_CASES=<n> runs a longer campaign; FLATENN_FUZZ_SEED=<s> another seed.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { fuzzCases, fuzzSeed, runDriver } from './lib';

test('native bindings: random arguments never crash the process', { timeout: 600_000 }, () => {
  const cases = fuzzCases(3000);
  const r = runDriver('native-driver', [String(fuzzSeed()), String(cases)], Math.max(60_000, cases * 20));
  process.stdout.write(`# native fuzz: ${r.cases} calls over ${String(r.functions)} functions: ${r.ok} returned, ${JSON.stringify(r.errors)} thrown, ${r.bad.length} bad\n`);
  assert.deepEqual(r.bad, []);
  assert.ok(r.cases >= cases);
});
