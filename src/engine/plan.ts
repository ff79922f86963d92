// Execution plan of a deployed model on the integer engine: which nodes fuse
// (conv/linear + folded BN + ReLU/requantise), and what kind of value each
// step produces (uint8 codes or float32).
import { consumers, inferShapes, type Graph, type GraphNode } from '../nn/graph';

export type ValueKind = 'codes' | 'float';

export type Step =
  | { op: 'layer'; layer: number; node: Extract<GraphNode, { op: 'conv' | 'linear' }>; input: number; out: number; inShape: number[]; outShape: number[]; site: number | null }
  | { op: 'maxpool'; input: number; out: number; kernel: number; stride: number; inShape: number[]; outShape: number[] }
  | { op: 'alias'; input: number; out: number }
  | { op: 'gap'; input: number; out: number; inShape: number[] }
  | { op: 'add'; inputs: [number, number]; out: number; size: number }
  | { op: 'relu'; input: number; out: number; site: number; size: number };

export interface Plan {
  steps: Step[];
  kinds: (ValueKind | undefined)[];
  shapes: number[][];
  /** Per weight layer: where its input comes from, for folding scales at export. */
  layerInputs: { layer: string; source: 'input' | 'site'; site: number; divide: number }[];
  /** For code values: the ReLU site whose scale they carry (-1: raw input pixels). */
  siteOf: (number | undefined)[];
  output: number;
}

export function buildPlan(g: Graph): Plan {
  const shapes = inferShapes(g);
  const cons = consumers(g);
  const kinds: (ValueKind | undefined)[] = new Array(g.nodes.length);
  const steps: Step[] = [];
  const skip = new Set<number>();
  const layerInputs: Plan['layerInputs'] = [];
  let layerIdx = 0;
  const fail = (n: GraphNode, msg: string): never => { throw new RangeError(`deployed topology node ${n.id} (${n.op}): ${msg}`); };
  // Where a value comes from when read as integer codes: a ReLU site, maybe through pools/flatten/gap.
  const traceSource = (id: number): { source: 'input' | 'site'; site: number; divide: number } => {
    const n = g.nodes[id]!;
    switch (n.op) {
      case 'input': return { source: 'input', site: -1, divide: 1 };
      case 'relu': return { source: 'site', site: n.site, divide: 1 };
      case 'maxpool': case 'flatten': return traceSource(n.input);
      case 'gap': { const s = shapes[n.input]!; const r = traceSource(n.input); return { ...r, divide: r.divide * s[1]! * s[2]! }; }
      default: return fail(n, 'a conv/linear layer must read integer codes (the input, a ReLU output, or pools of them)');
    }
  };
  for (const n of g.nodes) {
    if (skip.has(n.id)) continue;
    switch (n.op) {
      case 'input': kinds[n.id] = 'codes'; break;
      case 'conv': case 'linear': {
        if (kinds[n.input] !== 'codes') fail(n, 'input is not integer codes');
        let last = n.id;
        const c1 = cons[last]!;
        if (c1.length === 1 && g.nodes[c1[0]!]!.op === 'bn') { last = c1[0]!; skip.add(last); }
        let site: number | null = null;
        const c2 = cons[last]!;
        if (c2.length === 1 && g.nodes[c2[0]!]!.op === 'relu') {
          const r = g.nodes[c2[0]!] as Extract<GraphNode, { op: 'relu' }>;
          site = r.site; last = r.id; skip.add(last);
        }
        steps.push({ op: 'layer', layer: layerIdx++, node: n, input: n.input, out: last, inShape: shapes[n.input]!, outShape: shapes[n.id]!, site });
        kinds[last] = site === null ? 'float' : 'codes';
        layerInputs.push({ layer: n.name, ...traceSource(n.input) });
        break;
      }
      case 'bn': fail(n, 'BatchNorm must directly follow a conv layer (it is folded into it)'); break;
      case 'relu':
        if (kinds[n.input] !== 'float') fail(n, 'ReLU input is not a float value');
        steps.push({ op: 'relu', input: n.input, out: n.id, site: n.site, size: shapes[n.id]!.reduce((a, b) => a * b, 1) });
        kinds[n.id] = 'codes';
        break;
      case 'maxpool':
        if (kinds[n.input] !== 'codes') fail(n, 'max pooling runs on integer codes');
        steps.push({ op: 'maxpool', input: n.input, out: n.id, kernel: n.kernel, stride: n.stride, inShape: shapes[n.input]!, outShape: shapes[n.id]! });
        kinds[n.id] = 'codes';
        break;
      case 'flatten':
        steps.push({ op: 'alias', input: n.input, out: n.id });
        kinds[n.id] = kinds[n.input];
        break;
      case 'gap':
        if (kinds[n.input] !== 'codes') fail(n, 'global average pooling runs on integer codes');
        steps.push({ op: 'gap', input: n.input, out: n.id, inShape: shapes[n.input]! });
        kinds[n.id] = 'codes';
        break;
      case 'add':
        steps.push({ op: 'add', inputs: n.inputs, out: n.id, size: shapes[n.id]!.reduce((a, b) => a * b, 1) });
        kinds[n.id] = 'float';
        break;
    }
  }
  const siteOf: (number | undefined)[] = new Array(g.nodes.length);
  for (const st of steps) {
    if (st.op === 'layer' && st.site !== null) siteOf[st.out] = st.site;
    else if (st.op === 'relu') siteOf[st.out] = st.site;
    else if (st.op === 'maxpool' || st.op === 'alias') siteOf[st.out] = siteOf[st.input];
  }
  siteOf[0] = -1;
  if (kinds[g.output] !== 'float') throw new RangeError('deployed topology: the output must be a float value (logits of the last layer)');
  return { steps, kinds, shapes, layerInputs, siteOf, output: g.output };
}
