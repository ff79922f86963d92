// flatenn report on small fixture results written here (not a pipeline run):
// every figure as SVG and PNG, the gains table's paired numbers, and the page
// opened in a real headless browser (Debian's chromium via puppeteer-core):
// every figure rendered with non-empty marks, no console error, a screenshot.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { buildReport } from '../../src/report/report';
import { gainRows, loadInputs, spreadRows } from '../../src/report/data';
import { LANDSCAPE_FORMAT, LANDSCAPE_VERSION, type LandscapeFile } from '../../src/landscape/landscape';
import { RESULTS_FORMAT, RESULTS_VERSION, SEMANTICS, type CampaignSettings, type TrialRecord } from '../../src/campaign/results';
import { claimChecks, claimsMarkdown } from '../../src/report/claims';
import { tmpDir } from '../data/fixtures';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');
const FAULTS = ['bitflip', 'sa0', 'sa1'] as const;
const RATES = [0, 0.01, 0.03, 0.05];

/** Accuracy of a fixture model: clean level minus a slope per rate, plus a per-trial fault-map effect shared by all models (paired). */
function acc(base: number, slope: number, fault: number, rate: number, trial: number, seed: number): number {
  return base - slope * rate * (1 + 0.3 * fault) + 0.004 * Math.sin(7 * trial + 3 * fault + seed) * (rate > 0 ? 1 : 0);
}

function writeCampaign(file: string, label: string, o: { base: number; slope: number; seed: number; unit?: 'bit' | 'weight'; targets?: readonly string[]; rates?: readonly number[]; trials?: number; sparsity?: number }) {
  const targets = [...(o.targets ?? ['all'])], rates = [...(o.rates ?? RATES)], trials = o.trials ?? 6;
  const settings: CampaignSettings = {
    model: `/fixture/deployed/${label}.safetensors`, modelSha256: `sha-${label}`, layoutHash: 'layout-lenet5', arch: 'lenet5', dataset: 'fashion-mnist', split: 'test',
    images: 1000, faults: [...FAULTS], rates, trials, seed: 1, sampling: 'exact', rateUnit: o.unit ?? 'bit', targets, semantics: SEMANTICS,
  };
  const lines: string[] = [JSON.stringify({ type: 'header', format: RESULTS_FORMAT, version: RESULTS_VERSION, settings, shard: { index: 0, count: 1 } })];
  targets.forEach((t, ti) => FAULTS.forEach((f, fi) => rates.forEach((r) => { for (let k = 0; k < trials; k++) {
    const rec: TrialRecord = { type: 'trial', target: t, fault: f, rate: r, trial: k, accuracy: acc(o.base, o.slope * (1 + 0.2 * ti), fi, r, k, o.seed), loss: 0.5, sparsity: (o.sparsity ?? 0.5) + r, sparsityWeighted: 0.5, faultyCells: Math.round(r * 1000), changedCodes: Math.round(r * 500) };
    lines.push(JSON.stringify(rec));
  } })));
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

function writeLandscapeFixture(file: string, dim: 1 | 2, models: { label: string; curvature: number }[]) {
  const n = dim === 1 ? 11 : 5;
  const alphas = Array.from({ length: n }, (_, k) => -1 + (2 * k) / (n - 1));
  const l: LandscapeFile = {
    format: LANDSCAPE_FORMAT, version: LANDSCAPE_VERSION, dim, alphas, directions: dim === 1 ? 2 : 1, seed: 1, images: 500, dataset: 'fashion-mnist', split: 'train', definition: 'fixture',
    models: models.map((m) => ({
      model: `/fixture/${m.label}.safetensors`, label: m.label, arch: 'lenet5', config: {}, loss0: 0.3,
      ...(dim === 1 ? { curves: [0, 1].map((d) => alphas.map((a) => 0.3 + m.curvature * (1 + 0.1 * d) * a * a)) } : { grids: [alphas.map((a) => alphas.map((b) => 0.3 + m.curvature * (a * a + 0.5 * b * b)))] }),
      sharpnessPerDirection: [m.curvature * 0.25], sharpness: m.curvature * 0.25, seconds: 0,
    })),
  };
  fs.writeFileSync(file, JSON.stringify(l));
}

function fixtures(dir: string): string[] {
  const files: string[] = [];
  const models: [string, number, number][] = [['standard', 0.9, 1.0], ['as', 0.89, 1.6], ['saq', 0.9, 0.7], ['saq-as', 0.895, 1.0], ['control', 0.88, 1.1], ['control-as', 0.87, 1.7]];
  for (const seed of [1, 2]) for (const [g, base, slope] of models) {
    const label = `${g}-s${seed}`;
    const f = path.join(dir, `${label}.bit.jsonl`);
    writeCampaign(f, label, { base: base + 0.002 * seed, slope, seed, sparsity: g.includes('as') ? 0.7 : 0.5 });
    files.push(f);
    if (seed === 1) {
      for (const [suffix, extra] of [['weight', { unit: 'weight' as const }], ['by-layer', { targets: ['layer:conv1', 'layer:conv2', 'layer:fc1', 'layer:fc2', 'layer:fc3'], rates: [0.01], trials: 3 }], ['by-bit', { targets: ['bit:0', 'bit:1', 'bit:2', 'bit:3'], rates: [0.01], trials: 3 }]] as const) {
        const ff = path.join(dir, `${label}.${suffix}.jsonl`);
        writeCampaign(ff, label, { base, slope, seed, ...extra });
        files.push(ff);
      }
    }
  }
  const l1 = path.join(dir, 'l1.json'), l2 = path.join(dir, 'l2.json');
  writeLandscapeFixture(l1, 1, models.map(([g, , s]) => ({ label: `${g}-s1`, curvature: 0.1 * s })));
  writeLandscapeFixture(l2, 2, models.slice(0, 2).map(([g, , s]) => ({ label: `${g}-s1`, curvature: 0.1 * s })));
  return [...files, l1, l2];
}

function chromiumPath(): string | null {
  for (const p of [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser']) if (p && fs.existsSync(p)) return p;
  return null;
}

test('report data: paired gains pooled over seeds, spread across seeds beside spread across fault maps', () => {
  const dir = tmpDir('report-data');
  const inp = loadInputs(fixtures(dir));
  assert.equal(inp.campaigns.length, 6 * 2 + 6 * 3);
  const g = gainRows(inp.campaigns).find((r) => r.a === 'saq' && r.b === 'standard' && r.unit === 'bit')!;
  assert.deepEqual(g.seeds, [1, 2]);
  const cell = g.cells.find((c) => c.fault === 'bitflip')!;
  // saq - standard at rate r, bitflip: (1.0 - 0.7) * r exactly (same base, the fault-map term cancels in the pairs)
  for (const r of cell.rates) {
    assert.equal(r.pairs, 12);
    assert.ok(Math.abs(r.diff.mean - 0.3 * r.rate) < 1e-12, `rate ${r.rate}`);
    assert.ok(r.diff.ciHigh - r.diff.ciLow < 1e-9, 'paired: no fault-map noise left');
  }
  assert.equal(cell.min!.rate, 0.01);
  assert.equal(cell.max!.rate, 0.05);
  const sp = spreadRows(inp.campaigns).find((r) => r.group === 'standard' && r.unit === 'bit' && r.fault === 'sa0' && r.rate === 0.05)!;
  assert.equal(sp.seeds, 2);
  // recomputed from the records: sd of the two per-seed means; mean of the two per-seed sds over trials
  const per = [1, 2].map((s) => inp.campaigns.find((c) => c.label === `standard-s${s}` && c.kind === 'all' && c.settings.rateUnit === 'bit')!.records.filter((x) => x.fault === 'sa0' && x.rate === 0.05).map((x) => x.accuracy));
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = (xs: number[]) => Math.sqrt(xs.reduce((a, b) => a + (b - mean(xs)) ** 2, 0) / (xs.length - 1));
  assert.ok(Math.abs(sp.seedSd - sd(per.map(mean))) < 1e-12);
  assert.ok(Math.abs(sp.faultMapSd - (sd(per[0]!) + sd(per[1]!)) / 2) < 1e-12);
  assert.deepEqual(sp.seedMeans, per.map(mean));
  fs.rmSync(dir, { recursive: true });
});

test('report data: the 0% point comes from the clean record (no rate-0 trials in current files)', () => {
  const dir = tmpDir('report-clean');
  const f = path.join(dir, 'standard-s1.bit.jsonl');
  writeCampaign(f, 'standard-s1', { base: 0.9, slope: 1, seed: 1 });
  // drop the rate-0 trials and add the clean record a current campaign writes instead
  const lines = fs.readFileSync(f, 'utf8').trim().split('\n').filter((l) => !/"rate":0,/.test(l));
  lines.splice(1, 0, JSON.stringify({ type: 'clean', target: 'all', accuracy: 0.9123, loss: 0.3, sparsity: 0.61, sparsityWeighted: 0.6, images: 1000 }));
  fs.writeFileSync(f, lines.join('\n') + '\n');
  const c = loadInputs([f]).campaigns[0]!;
  const zero = c.records.filter((r) => r.rate === 0);
  assert.deepEqual(zero.map((r) => r.fault).sort(), [...FAULTS].sort());
  assert.ok(zero.every((r) => r.accuracy === 0.9123 && r.sparsity === 0.61));
  fs.rmSync(dir, { recursive: true });
});

test('report claims: verdicts follow the sign of the paired interval (fixture: AS worse, SAQ better, SAQ-AS below standard)', () => {
  const dir = tmpDir('report-claims');
  const cs = claimChecks(loadInputs(fixtures(dir)));
  const v = (id: string, unit: string) => cs.find((c) => c.id === id && c.unit === unit)?.verdict;
  assert.equal(v('sparsity-rise', ''), 'holds');  // AS 70% vs standard 50% clean sparsity on both seeds
  assert.equal(v('as-sharper', ''), 'holds');  // sharpness 0.04 vs 0.025 (one seed)
  for (const unit of ['bit', 'weight']) {
    assert.equal(v('as-less-tolerant', unit), 'holds', unit);  // -1 pt - 0.6 x 5% at the top rate
    assert.equal(v('saq-standard', unit), 'holds', unit);
    assert.equal(v('saq-as', unit), 'holds', unit);
    assert.equal(v('saq-as-vs-standard', unit), 'opposite', unit);  // 0.895 vs 0.9 clean, equal slopes: -0.5 pt
    assert.equal(v('saq-vs-control', unit), 'holds', unit);
  }
  const md = claimsMarkdown(cs);
  assert.match(md, /\| SAQ-AS is above the conventional standard model at the top fault rate \| bit \| \*\*opposite\*\* \| \*\*bitflip\*\* opposite: -0\.50 pts/);
  fs.rmSync(dir, { recursive: true });
});

test('flatenn report: a self-contained page, SVG and PNG of every figure; chromium renders every figure without console errors', { timeout: 120_000 }, async (t) => {
  const dir = tmpDir('report');
  const files = fixtures(dir);
  const out = path.join(dir, 'report');
  const r = spawnSync(process.execPath, [CLI, 'report', ...files, '--out', out, '-q'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /7 figures\nreport .*index\.html/);
  const ids = ['sparsity', 'landscape-1d', 'landscape-2d', 'accuracy-bit', 'accuracy-weight', 'by-layer', 'by-bit'];
  for (const id of ids) {
    const svg = fs.readFileSync(path.join(out, `${id}.svg`), 'utf8');
    assert.match(svg, /^<svg[^>]*width="\d+"/);
    const png = fs.readFileSync(path.join(out, `${id}.png`));
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], `${id}.png is a PNG`);
    assert.ok(png.readUInt32BE(16) > 100 && png.readUInt32BE(20) > 100, `${id}.png has a size`);
  }
  const html = fs.readFileSync(path.join(out, 'index.html'), 'utf8');
  assert.doesNotMatch(html, /<script|<link|src="http|href="http/, 'self-contained: no scripts or remote resources');
  assert.match(html, /SAQ vs conventional \(standard models\)/);
  assert.match(html, /0\.30 … 1\.50/, 'saq - standard, bitflip: 0.3 pts at 1% ... 1.5 pts at 5%');
  assert.doesNotMatch(html, /NaN/);
  // bad inputs: exit 1 with a message, not a crash
  fs.writeFileSync(path.join(dir, 'junk.json'), '{"format":"nope"}');
  const bad = spawnSync(process.execPath, [CLI, 'report', path.join(dir, 'junk.json'), '--out', out], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /not a flatenn campaign results, landscape or study file/);
  assert.equal(spawnSync(process.execPath, [CLI, 'report', '--out', out], { encoding: 'utf8' }).status, 2);

  const exe = chromiumPath();
  if (!exe) {
    if (process.env.CI === 'true') assert.fail('chromium is not installed (scripts/setup.sh installs it)');
    t.skip('chromium not installed (apt-get install chromium)');
    return;
  }
  const puppeteer = (await import('puppeteer-core')).default;
  const browser = await puppeteer.launch({ executablePath: exe, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('requestfailed', (q) => errors.push(`request failed: ${q.url()}`));
    await page.setViewport({ width: 1280, height: 900 });
    await page.goto('file://' + path.join(out, 'index.html'), { waitUntil: 'load' });
    const figs = await page.$$eval('figure.chart', (els) => els.map((el) => {
      const svg = el.querySelector('svg');
      const box = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
      // data marks: children of Vega's role-mark groups that draw something
      let marks = 0;
      for (const g of Array.from(el.querySelectorAll('g.role-mark'))) {
        for (const c of Array.from(g.children)) {
          const b = (c as SVGGraphicsElement).getBBox?.();
          if (b && (b.width > 0 || b.height > 0)) marks++;
        }
      }
      return { id: el.getAttribute('data-figure'), width: box.width, height: box.height, marks };
    }));
    assert.deepEqual(figs.map((f) => f.id).sort(), [...ids].sort());
    for (const f of figs) {
      assert.ok(f.width > 100 && f.height > 100, `${f.id} has a size on the page (${f.width}x${f.height})`);
      assert.ok(f.marks > 0, `${f.id} has rendered data marks`);
    }
    await page.screenshot({ path: path.join(out, 'screenshot.png'), fullPage: true });
    assert.ok(fs.statSync(path.join(out, 'screenshot.png')).size > 10_000);
    assert.deepEqual(errors, [], 'no console errors');
    t.diagnostic(`screenshot: ${path.join(out, 'screenshot.png')}`);
  } finally {
    await browser.close();
  }
  if (!process.env.FLATENN_KEEP_REPORT) fs.rmSync(dir, { recursive: true });
});
