// flatenn report: one self-contained HTML page (figures inline as SVG, tables,
// no external resources) plus an SVG and a PNG file of every figure.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../io/atomic';
import { accuracyFigure, heatFigure, landscape1dFigure, landscape2dFigure, sparsityFigure, type Figure } from './charts';
import { gainRows, groupName, heatCells, loadInputs, orderGroups, pointRows, rateTxt, spreadRows, type ReportInputs } from './data';
import { renderSvg, svgToPng } from './render';
import { claimChecks, claimsMarkdown, gainsMarkdown, modelsMarkdown, type ClaimCheck } from './claims';

export interface ReportOptions {
  /** Output folder (created). */
  out: string;
  title?: string;
  /** PNG scale factor (default 2). */
  pngScale?: number;
  quiet?: boolean;
  /** Where progress lines go (default: nowhere; the CLI passes stderr). */
  log?: (line: string) => void;
}

export interface ReportResult {
  html: string;
  figures: { id: string; title: string; svg: string; png: string }[];
  tables: string[];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const pct = (x: number, d = 2) => (Number.isFinite(x) ? (100 * x).toFixed(d) : 'n/a');

function table(head: string[], rows: string[][], cls = ''): string {
  return `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
}

export function figuresOf(inp: ReportInputs): Figure[] {
  const pts = pointRows(inp.campaigns);
  const ls = inp.landscapes.map((l) => l.data);
  return [
    sparsityFigure(pts), landscape1dFigure(ls), landscape2dFigure(ls), accuracyFigure(pts, 'bit'), accuracyFigure(pts, 'weight'),
    heatFigure(heatCells(inp.campaigns, 'layer'), 'layer'), heatFigure(heatCells(inp.campaigns, 'bit'), 'bit'),
  ].filter((f): f is Figure => f !== null);
}

function gainsSection(inp: ReportInputs): string {
  const rows = gainRows(inp.campaigns);
  if (!rows.length) return '<p>No pair of the paper\'s models is present in the results, so there is no table of gains.</p>';
  const parts: string[] = [];
  for (const unit of ['bit', 'weight']) {
    const rs = rows.filter((r) => r.unit === unit);
    if (!rs.length) continue;
    const faults = [...new Set(rs.flatMap((r) => r.cells.map((c) => c.fault)))];
    const cell = (r: typeof rs[number], f: string) => {
      const c = r.cells.find((x) => x.fault === f);
      if (!c || !c.min || !c.max) return 'n/a';
      const one = (e: { rate: number; diff: { mean: number; ciLow: number; ciHigh: number } }) => `${pct(e.diff.mean)} [${pct(e.diff.ciLow)}, ${pct(e.diff.ciHigh)}] at ${rateTxt(e.rate)}`;
      return `${pct(c.min.diff.mean)} … ${pct(c.max.diff.mean)}  (min ${one(c.min)}; max ${one(c.max)})`;
    };
    parts.push(`<h3>Rate unit: ${unit}</h3>` + table(['comparison (A − B)', 'seeds', ...faults.map((f) => `${f}: gain min … max over rates (pts), 95% paired interval`)], rs.map((r) => [r.title, r.seeds.join(', '), ...faults.map((f) => cell(r, f))]), 'gains'));
  }
  return parts.join('\n') + '<p class="note">Gain = accuracy of A minus accuracy of B in percentage points, paired trial by trial (the same fault maps, seed by seed) and pooled over the training seeds both have; min and max of the mean gain over the non-zero rates, each with its 95% t-interval.</p>';
}

function claimsSection(cs: ClaimCheck[]): string {
  if (!cs.length) return '';
  const rows = cs.map((c) => [c.claim, c.unit || '—', c.verdict, c.parts.map((p) => `${p.fault ? `${p.fault} ${p.verdict}: ` : ''}${p.text}`).join(' | ')]);
  return '<h2 id="claims">The paper\'s claims</h2>' + table(['claim', 'rate unit', 'verdict', 'evidence (95% intervals)'], rows, 'claims') +
    '<p class="note">holds: the 95% interval lies on the claimed side of 0; opposite: on the other side; inconclusive: it spans 0; mixed: the fault types disagree. Fault-rate claims use the paired gain at the top rate; sparsity and sharpness compare the models seed by seed (interval over seeds). Also in claims.md beside this page.</p>';
}

function spreadSection(inp: ReportInputs): string {
  const rows = spreadRows(inp.campaigns).filter((r) => r.rate > 0 && r.unit === 'bit');
  if (!rows.length) return '';
  const top = Math.max(...rows.map((r) => r.rate));
  const sel = rows.filter((r) => r.rate === top || r.rate === Math.min(...rows.map((x) => x.rate)));
  const groups = orderGroups(sel.map((r) => r.group));
  sel.sort((a, b) => a.unit.localeCompare(b.unit) || groups.indexOf(a.group) - groups.indexOf(b.group) || a.fault.localeCompare(b.fault) || a.rate - b.rate);
  return '<h2 id="spread">Spread across training seeds vs across fault maps</h2>' +
    table(['model', 'unit', 'fault', 'rate', 'seeds', 'per-seed mean accuracy (%)', 'sd across seeds (pts)', 'sd across fault maps (pts, mean over seeds)', 'trials per seed'],
      sel.map((r) => [groupName(r.group), r.unit, r.fault, rateTxt(r.rate), String(r.seeds), r.seedMeans.map((m) => pct(m)).join(', '), r.seeds > 1 ? pct(r.seedSd) : 'n/a (1 seed)', pct(r.faultMapSd), String(r.trialsPerSeed)])) +
    '<p class="note">sd across seeds: standard deviation of the per-seed mean accuracies (training variability); sd across fault maps: standard deviation over the trials of one seed (fault-map variability), averaged over seeds.</p>';
}

function landscapeSection(inp: ReportInputs): string {
  const rows: string[][] = [];
  for (const l of inp.landscapes) for (const m of l.data.models) rows.push([m.label, `${l.data.dim}D`, m.loss0.toFixed(4), m.sharpness.toFixed(4), m.sharpnessPerDirection.map((s) => s.toFixed(4)).join(', '), String(l.data.images)]);
  if (!rows.length) return '';
  return '<h2 id="sharpness">Sharpness</h2>' + table(['model', 'landscape', 'loss at the trained weights', 'sharpness', 'per direction', 'training images'], rows) +
    '<p class="note">Sharpness = mean over directions of (L(+0.5) + L(−0.5)) / 2 − L(0): the rise of the training loss at half a filter norm (DESIGN §4).</p>';
}

function studySection(inp: ReportInputs): string {
  const s = inp.study;
  if (!s) return '';
  const runs = s.runs.map((r) => [r.name, groupName(r.group), r.role, String(r.seed), String(r.epochs), String(r.width ?? 1), String(r.actL1), String(r.saqRho), String(r.saqWarmup), r.valAccuracy === null ? 'n/a' : pct(r.valAccuracy), r.testAccuracy === null ? 'n/a' : pct(r.testAccuracy), r.testSparsity === null ? 'n/a' : pct(r.testSparsity), (r.collapsed ? 'COLLAPSED: ' : r.collapse.length ? 'flagged earlier, not at the end: ' : '') + r.collapse.join(' | ')]);
  const inel = (x: { ineligible: { value: number; why: string }[] }) => (x.ineligible.length ? x.ineligible.map((i) => `${i.value} (${i.why})`).join('; ') : 'none');
  return `<h2 id="study">Training runs</h2>
<p>${esc(s.arch)}${s.dataset ? ` on ${esc(s.dataset)}${s.dataset === 'CIFAR-10-JPEG' ? ' (a lossy JPEG-derived stand-in for CIFAR-10: accuracies are not comparable with published CIFAR-10 figures)' : ''}` : ''}, ${s.seeds} seed(s)${s.quick ? ', <strong>--quick budget</strong> (a smoke run: its numbers are not the study\'s)' : ''}.
λ = ${s.lambda.chosen ?? 'none'} from grid {${s.lambda.grid.join(', ')}}, rule: ${esc(s.lambda.rule)}; ineligible: ${esc(inel(s.lambda))}.
ρ = ${s.rho.chosen ?? 'none'} from grid {${s.rho.grid.join(', ')}}, rule: ${esc(s.rho.rule)}; ineligible: ${esc(inel(s.rho))}.</p>` +
    table(['run', 'model', 'role', 'seed', 'epochs', 'width', 'λ', 'ρ', 'ρ warm-up (epochs)', 'val acc %', 'test acc %', 'test sparsity %', 'collapse'], runs);
}

const CSS = `body{font-family:"DejaVu Sans",Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
figure{margin:1.5em 0;padding:0.5em;border:1px solid #ddd;overflow-x:auto}figcaption{font-size:0.9em;color:#444;margin-top:0.4em}
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.note{font-size:0.85em;color:#555}nav a{margin-right:1em}`;

/** Builds the report from the given files into `o.out`: index.html, <figure>.svg, <figure>.png. */
export async function buildReport(files: string[], o: ReportOptions): Promise<ReportResult> {
  const inp = loadInputs(files);
  if (!inp.campaigns.length && !inp.landscapes.length && !inp.study) throw new Error('nothing to report: give campaign results (.jsonl), landscape files (.json) and/or a study file');
  if (fs.existsSync(o.out) && !fs.statSync(o.out).isDirectory()) throw new Error(`--out ${o.out} exists and is not a folder`);
  fs.mkdirSync(o.out, { recursive: true });
  const figs = figuresOf(inp);
  const out: ReportResult['figures'] = [];
  const blocks: string[] = [];
  for (const f of figs) {
    if (!o.quiet) o.log?.(`report: rendering ${f.id}`);
    const svg = await renderSvg(f.spec);
    const svgPath = path.join(o.out, `${f.id}.svg`), pngPath = path.join(o.out, `${f.id}.png`);
    await writeFileAtomic(svgPath, Buffer.from(svg));
    await writeFileAtomic(pngPath, svgToPng(svg, o.pngScale ?? 2));
    out.push({ id: f.id, title: f.title, svg: svgPath, png: pngPath });
    blocks.push(`<figure class="chart" id="fig-${f.id}" data-figure="${esc(f.id)}">${svg.replace(/^<\?xml[^>]*>/, '')}<figcaption><strong>${esc(f.title)}.</strong> ${esc(f.caption)} Files: <a href="${esc(f.id)}.svg">SVG</a>, <a href="${esc(f.id)}.png">PNG</a>.</figcaption></figure>`);
  }
  const title = o.title ?? 'flatenn study report';
  const claims = claimChecks(inp);
  await writeFileAtomic(path.join(o.out, 'claims.md'), Buffer.from(claimsMarkdown(claims)));
  await writeFileAtomic(path.join(o.out, 'gains.md'), Buffer.from(gainsMarkdown(gainRows(inp.campaigns))));
  if (inp.study) await writeFileAtomic(path.join(o.out, 'models.md'), Buffer.from(modelsMarkdown(inp)));
  const sources = [...inp.campaigns.flatMap((c) => c.files), ...inp.landscapes.map((l) => l.file)];
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${CSS}</style></head>
<body><h1>${esc(title)}</h1>
<nav><a href="#figures">Figures</a><a href="#gains">Gains</a><a href="#claims">Claims</a><a href="#spread">Spread</a><a href="#sharpness">Sharpness</a><a href="#study">Runs</a></nav>
<p class="note">${inp.campaigns.length} campaign(s), ${inp.landscapes.length} landscape file(s). Accuracy and sparsity in % of the test set; gains in percentage points.
Models: standard and AS (activation-sparse) trained conventionally; SAQ and SAQ-AS with SAQ (half the epochs); control and control-AS: conventional, with SAQ's shorter schedule (the equal-schedule controls).</p>
${studySection(inp)}
<h2 id="figures">Figures</h2>
${blocks.join('\n')}
<h2 id="gains">Gains</h2>
${gainsSection(inp)}
${claimsSection(claims)}
${spreadSection(inp)}
${landscapeSection(inp)}
<h2>Sources</h2><ul class="note">${sources.map((s) => `<li>${esc(s)}</li>`).join('')}</ul>
</body></html>
`;
  const htmlPath = path.join(o.out, 'index.html');
  await writeFileAtomic(htmlPath, Buffer.from(html));
  return { html: htmlPath, figures: out, tables: ['gains', 'claims', 'spread', 'sharpness'] };
}

export { loadInputs };
