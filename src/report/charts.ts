// Vega-Lite specifications of the report's figures (paper Figs. 2-4 and the
// vulnerability heat maps). Okabe-Ito colours (colour-blind safe) for models,
// viridis for heat maps; every axis is labelled with its unit.
import type { LandscapeFile } from '../landscape/landscape';
import { groupName, orderGroups, type HeatCell, type PointRow } from './data';

/** Okabe & Ito (2008), black last. */
export const OKABE_ITO = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];

export interface Figure {
  id: string;
  title: string;
  caption: string;
  spec: Record<string, unknown>;
}

const FONT = 'DejaVu Sans';
const config = {
  font: FONT,
  view: { stroke: '#ccc' },
  axis: { labelFontSize: 11, titleFontSize: 12, labelLimit: 260 },
  legend: { labelFontSize: 11, titleFontSize: 12, labelLimit: 260, titleLimit: 300 },
  header: { labelFontSize: 12, titleFontSize: 12 },
  title: { fontSize: 14 },
};

function base(title: string, data: unknown[]): Record<string, unknown> {
  return { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', title, config, background: 'white', data: { values: data } };
}

function modelColour(groups: string[]) {
  const names = groups.map(groupName);
  return { field: 'model', type: 'nominal', title: 'model', sort: names, scale: { domain: names, range: groups.map((_, i) => OKABE_ITO[i % OKABE_ITO.length]) } };
}

/** Fig. 4: accuracy vs fault rate, one panel per fault type, one line per model with its 95% interval as a band. */
export function accuracyFigure(rows: PointRow[], unit: string): Figure | null {
  const rs = rows.filter((r) => r.unit === unit);
  if (!rs.length) return null;
  const groups = orderGroups(rs.map((r) => r.group));
  const data = rs.map((r) => ({
    model: groupName(r.group), fault: r.fault, rate: 100 * r.rate, acc: 100 * r.acc.mean, lo: Math.max(0, 100 * r.acc.ciLow), hi: Math.min(100, 100 * r.acc.ciHigh), trials: r.acc.n, seeds: r.seeds,
  }));
  const colour = modelColour(groups);
  const x = { field: 'rate', type: 'quantitative', title: `fault rate (% of ${unit === 'bit' ? 'weight-memory bits' : 'weights'})` };
  const spec = {
    ...base(`Accuracy under faults (${unit} unit)`, data),
    facet: { column: { field: 'fault', type: 'nominal', title: 'fault type', sort: ['bitflip', 'sa0', 'sa1'] } },
    spec: {
      width: 230, height: 200,
      layer: [
        { mark: { type: 'errorband', opacity: 0.25 }, encoding: { x, y: { field: 'lo', type: 'quantitative', title: 'test accuracy (%)', scale: { zero: false } }, y2: { field: 'hi' }, color: colour } },
        { mark: { type: 'line', point: true }, encoding: { x, y: { field: 'acc', type: 'quantitative', title: 'test accuracy (%)' }, color: colour, tooltip: [{ field: 'model' }, { field: 'rate' }, { field: 'acc', format: '.2f' }, { field: 'trials' }, { field: 'seeds' }] } },
      ],
    },
  };
  return { id: `accuracy-${unit}`, title: `Accuracy vs fault rate (${unit} unit)`, caption: `Mean test accuracy over all trials (fault maps) of all training seeds; band: 95% t-interval of that mean (clipped to 0-100%). Rate unit: ${unit === 'bit' ? 'fraction of weight-memory bits' : 'fraction of weights, one bit each'}. Cf. paper Fig. 4.`, spec };
}

/** Fig. 2: activation sparsity clean and under the highest fault rate of each type. */
export function sparsityFigure(rows: PointRow[]): Figure | null {
  const rs = rows.filter((r) => r.unit === 'bit');
  if (!rs.length) return null;
  const groups = orderGroups(rs.map((r) => r.group));
  const top = Math.max(...rs.map((r) => r.rate));
  const data: Record<string, unknown>[] = [];
  for (const g of groups) {
    const clean = rs.filter((r) => r.group === g && r.rate === 0);
    if (clean.length) data.push({ model: groupName(g), condition: 'clean', sparsity: 100 * clean.reduce((s, r) => s + r.sparsity.mean, 0) / clean.length });
    for (const r of rs.filter((x) => x.group === g && x.rate === top && top > 0)) data.push({ model: groupName(g), condition: `${r.fault} at ${+(100 * top).toPrecision(4)}%`, sparsity: 100 * r.sparsity.mean });
  }
  const conds = [...new Set(data.map((d) => d.condition as string))];
  const spec = {
    ...base('Activation sparsity, clean and under faults', data),
    width: { step: 18 }, height: 240,
    mark: 'bar',
    encoding: {
      x: { field: 'model', type: 'nominal', title: 'model', sort: groups.map(groupName), axis: { labelAngle: -30, labelLimit: 200 } },
      xOffset: { field: 'condition', sort: conds },
      y: { field: 'sparsity', type: 'quantitative', title: 'activation sparsity (% zeros, layer mean)' },
      color: { field: 'condition', type: 'nominal', title: 'condition', sort: conds, scale: { range: OKABE_ITO } },
      tooltip: [{ field: 'model' }, { field: 'condition' }, { field: 'sparsity', format: '.2f' }],
    },
  };
  return { id: 'sparsity', title: 'Activation sparsity', caption: `Fraction of exact zeros in the quantised post-ReLU activations over the test set, averaged over layers (the paper's definition), mean over trials and seeds: clean (rate 0) and under the highest rate (${+(100 * top).toPrecision(4)}% of bits) of each fault type. Cf. paper Fig. 2.`, spec };
}

/** Fig. 3 (1D): training loss along each direction. */
export function landscape1dFigure(ls: LandscapeFile[]): Figure | null {
  const data: Record<string, unknown>[] = [];
  const groups: string[] = [];
  for (const l of ls) {
    if (l.dim !== 1) continue;
    for (const m of l.models) {
      const g = m.label.replace(/-s\d+$/, '');
      groups.push(g);
      m.curves!.forEach((c, k) => c.forEach((loss, i) => data.push({ model: groupName(g), run: m.label, direction: k + 1, line: `${m.label}/${k + 1}`, alpha: l.alphas[i], loss })));
    }
  }
  if (!data.length) return null;
  const og = orderGroups(groups);
  const spec = {
    ...base('Loss landscape (1D)', data),
    width: 420, height: 280,
    mark: { type: 'line', strokeWidth: 1.5, opacity: 0.85 },
    encoding: {
      x: { field: 'alpha', type: 'quantitative', title: 'alpha (filter-normalised step, × filter norm)' },
      y: { field: 'loss', type: 'quantitative', title: 'training loss (cross-entropy, nats)', scale: { zero: false } },
      color: modelColour(og), detail: { field: 'line' },
      tooltip: [{ field: 'run' }, { field: 'direction' }, { field: 'alpha', format: '.2f' }, { field: 'loss', format: '.4f' }],
    },
  };
  return { id: 'landscape-1d', title: 'Loss landscape, 1D', caption: 'Training loss of the re-quantised model (eval mode) along random filter-normalised Gaussian directions (Li et al. 2018); one line per model, seed and direction; the same directions for every model. Cf. paper Fig. 3.', spec };
}

/** Fig. 3 (2D): the loss over a plane, as filled contour bands, one panel per model. */
export function landscape2dFigure(ls: LandscapeFile[]): Figure | null {
  const data: Record<string, unknown>[] = [];
  const labels: string[] = [];
  let step = 1;
  for (const l of ls) {
    if (l.dim !== 2) continue;
    step = l.alphas[1]! - l.alphas[0]!;
    for (const m of l.models) {
      labels.push(m.label);
      const g = m.grids![0]!;
      g.forEach((row, i) => row.forEach((loss, j) => data.push({ run: m.label, alpha: l.alphas[i], beta: l.alphas[j], a: l.alphas[i]! - step / 2, b: l.alphas[j]! - step / 2, a2: l.alphas[i]! + step / 2, b2: l.alphas[j]! + step / 2, loss })));
    }
  }
  if (!data.length) return null;
  const spec = {
    ...base('Loss landscape (2D)', data),
    facet: { field: 'run', type: 'nominal', title: 'model', sort: labels },
    columns: 3,
    spec: {
      width: 180, height: 180,
      mark: 'rect',
      encoding: {
        x: { field: 'a', type: 'quantitative', title: 'alpha, dir. 1 (× filter norm)', scale: { domain: [-1 - step / 2, 1 + step / 2], nice: false } },
        x2: { field: 'a2' },
        y: { field: 'b', type: 'quantitative', title: 'beta, dir. 2 (× filter norm)', scale: { domain: [-1 - step / 2, 1 + step / 2], nice: false } },
        y2: { field: 'b2' },
        color: { field: 'loss', type: 'quantitative', title: 'training loss (nats)', scale: { type: 'quantize', scheme: 'viridis', nice: true, zero: false } },
        tooltip: [{ field: 'run' }, { field: 'alpha', format: '.2f' }, { field: 'beta', format: '.2f' }, { field: 'loss', format: '.4f' }],
      },
    },
    resolve: { scale: { color: 'shared' } },
  };
  return { id: 'landscape-2d', title: 'Loss landscape, 2D', caption: 'Training loss over the plane spanned by two filter-normalised directions, in quantised colour bands (filled contours); darker is lower. Cf. paper Fig. 3.', spec };
}

/** Per-layer / per-bit vulnerability: accuracy drop when faults are confined to one layer or one bit position. */
export function heatFigure(cells: HeatCell[], kind: 'layer' | 'bit'): Figure | null {
  if (!cells.length) return null;
  const rate = cells[0]!.rate;
  const groups = orderGroups(cells.map((c) => c.group));
  const hasDrop = cells.every((c) => Number.isFinite(c.drop));
  const data = cells.map((c) => ({ model: groupName(c.group), fault: c.fault, target: kind === 'bit' ? `bit ${c.target}` : c.target, value: 100 * (hasDrop ? c.drop : c.acc), acc: 100 * c.acc, trials: c.trials }));
  const targets = [...new Set(data.map((d) => d.target))];
  // white labels on the dark half of viridis, black on the light half
  const vs = data.map((d) => d.value), mid = (Math.min(...vs) + Math.max(...vs)) / 2;
  const darkTest = hasDrop ? `datum.value > ${mid}` : `datum.value < ${mid}`;
  const what = hasDrop ? 'accuracy drop (pts)' : 'test accuracy (%)';
  const spec = {
    ...base(`Vulnerability by ${kind}`, data),
    facet: { column: { field: 'fault', type: 'nominal', title: 'fault type', sort: ['bitflip', 'sa0', 'sa1'] } },
    spec: {
      width: { step: 34 }, height: { step: 26 },
      layer: [
        { mark: 'rect', encoding: { color: { field: 'value', type: 'quantitative', title: what, scale: { scheme: 'viridis', reverse: hasDrop } } } },
        { mark: { type: 'text', fontSize: 9 }, encoding: { text: { field: 'value', type: 'quantitative', format: '.1f' }, color: { condition: { test: darkTest, value: '#fff' }, value: '#000' } } },
      ],
      encoding: {
        x: { field: 'target', type: 'nominal', title: kind === 'bit' ? 'faulty bit (0 = LSB)' : 'faulty layer', sort: targets, axis: { labelAngle: -40 } },
        y: { field: 'model', type: 'nominal', title: 'model', sort: groups.map(groupName) },
        tooltip: [{ field: 'model' }, { field: 'target' }, { field: 'acc', format: '.2f', title: 'accuracy (%)' }, { field: 'trials' }],
      },
    },
  };
  return {
    id: `by-${kind}`, title: `Vulnerability by ${kind}`,
    caption: `Faults at ${+(100 * rate).toPrecision(4)}% of the targeted cells, confined to one ${kind === 'bit' ? 'bit position' : 'layer'} at a time (flatenn inject --by-${kind}); ${hasDrop ? "colour: the model's clean accuracy minus its mean accuracy under these faults, in percentage points (pts)" : 'colour: mean test accuracy'}. The paper has no such figure.`,
    spec,
  };
}
