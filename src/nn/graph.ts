// Network topology as a small graph IR, shared by the training interpreter
// (src/nn/model.ts) and the int4 inference engine. Nodes are listed in
// execution order; `input` fields refer to earlier node ids.

export type GraphNode =
  | { op: 'input'; id: number; channels: number; height: number; width: number }
  | { op: 'conv'; id: number; input: number; name: string; inChannels: number; outChannels: number; kernel: number; stride: number; pad: number; bias: boolean }
  | { op: 'linear'; id: number; input: number; name: string; inFeatures: number; outFeatures: number; bias: boolean }
  | { op: 'bn'; id: number; input: number; name: string; channels: number }
  | { op: 'relu'; id: number; input: number; site: number }
  | { op: 'maxpool'; id: number; input: number; kernel: number; stride: number }
  | { op: 'flatten'; id: number; input: number }
  | { op: 'add'; id: number; inputs: [number, number] }
  | { op: 'gap'; id: number; input: number };

export interface Graph {
  arch: string;
  nodes: GraphNode[];
  output: number;
  numClasses: number;
  /** Number of ReLU (activation-quantisation) sites. */
  sites: number;
}

type NodeInit = GraphNode extends infer N ? (N extends GraphNode ? Omit<N, 'id'> : never) : never;

export class GraphBuilder {
  private nodes: GraphNode[] = [];
  private sites = 0;
  constructor(private readonly arch: string) {}

  private push(n: NodeInit): number {
    const id = this.nodes.length;
    this.nodes.push({ ...n, id } as GraphNode);
    return id;
  }
  input(channels: number, height: number, width: number): number { return this.push({ op: 'input', channels, height, width }); }
  conv(input: number, name: string, inChannels: number, outChannels: number, kernel: number, stride: number, pad: number, bias: boolean): number {
    return this.push({ op: 'conv', input, name, inChannels, outChannels, kernel, stride, pad, bias });
  }
  linear(input: number, name: string, inFeatures: number, outFeatures: number, bias = true): number {
    return this.push({ op: 'linear', input, name, inFeatures, outFeatures, bias });
  }
  bn(input: number, name: string, channels: number): number { return this.push({ op: 'bn', input, name, channels }); }
  relu(input: number): number { return this.push({ op: 'relu', input, site: this.sites++ }); }
  maxpool(input: number, kernel: number, stride: number): number { return this.push({ op: 'maxpool', input, kernel, stride }); }
  flatten(input: number): number { return this.push({ op: 'flatten', input }); }
  add(a: number, b: number): number { return this.push({ op: 'add', inputs: [a, b] }); }
  gap(input: number): number { return this.push({ op: 'gap', input }); }
  build(output: number, numClasses: number): Graph {
    return { arch: this.arch, nodes: this.nodes, output, numClasses, sites: this.sites };
  }
}

/** LeNet-5 for 28x28 inputs: conv 6@5x5 pad 2, ReLU, pool, conv 16@5x5, ReLU, pool, fc 120, ReLU, fc 84, ReLU, fc 10. */
export function lenet5(inChannels = 1, size = 28, numClasses = 10): Graph {
  const g = new GraphBuilder('lenet5');
  let x = g.input(inChannels, size, size);
  x = g.maxpool(g.relu(g.conv(x, 'conv1', inChannels, 6, 5, 1, 2, true)), 2, 2);
  x = g.maxpool(g.relu(g.conv(x, 'conv2', 6, 16, 5, 1, 0, true)), 2, 2);
  const s = Math.floor((Math.floor(size / 2) - 4) / 2);
  x = g.flatten(x);
  x = g.relu(g.linear(x, 'fc1', 16 * s * s, 120));
  x = g.relu(g.linear(x, 'fc2', 120, 84));
  x = g.linear(x, 'fc3', 84, numClasses);
  return g.build(x, numClasses);
}

/** Largest width multiplier accepted (--width). */
export const MAX_WIDTH = 8;

/** Channels of a layer scaled by a width multiplier: round(c * width), at least 1. */
export function scaledChannels(c: number, width: number): number {
  return Math.max(1, Math.round(c * width));
}

/** Checks a width multiplier: finite, in (0, MAX_WIDTH]. */
export function checkWidth(width: number): number {
  if (typeof width !== 'number' || !Number.isFinite(width) || width <= 0 || width > MAX_WIDTH) {
    throw new RangeError(`width must be a number in (0, ${MAX_WIDTH}], got ${String(width)}`);
  }
  return width;
}

/**
 * ResNet-18 for 32x32 CIFAR inputs (3x3 stem, no stem pool; BasicBlocks [2,2,2,2], 1x1 projection
 * shortcuts, GAP, fc). `width` scales every layer's channels: [64,128,256,512] x width (0.25 gives
 * [16,32,64,128]; the topology stays the same).
 */
export function resnet18(inChannels = 3, numClasses = 10, width = 1): Graph {
  checkWidth(width);
  const g = new GraphBuilder('resnet18');
  let x = g.input(inChannels, 32, 32);
  const widths = [64, 128, 256, 512].map((c) => scaledChannels(c, width));
  x = g.relu(g.bn(g.conv(x, 'conv1', inChannels, widths[0]!, 3, 1, 1, false), 'bn1', widths[0]!));
  let inC = widths[0]!;
  for (let l = 0; l < 4; l++) {
    for (let b = 0; b < 2; b++) {
      const outC = widths[l]!;
      const stride = l > 0 && b === 0 ? 2 : 1;
      const p = `layer${l + 1}.${b}`;
      let y = g.relu(g.bn(g.conv(x, `${p}.conv1`, inC, outC, 3, stride, 1, false), `${p}.bn1`, outC));
      y = g.bn(g.conv(y, `${p}.conv2`, outC, outC, 3, 1, 1, false), `${p}.bn2`, outC);
      let sc = x;
      if (stride !== 1 || inC !== outC) sc = g.bn(g.conv(x, `${p}.downsample.0`, inC, outC, 1, stride, 0, false), `${p}.downsample.1`, outC);
      x = g.relu(g.add(y, sc));
      inC = outC;
    }
  }
  x = g.linear(g.flatten(g.gap(x)), 'fc', inC, numClasses);
  return g.build(x, numClasses);
}

/** The architectures flatenn builds: 'lenet5' (FashionMNIST, 1x28x28) and 'resnet18' (CIFAR-10, 3x32x32). */
export const ARCHS = ['lenet5', 'resnet18'] as const;
/** One of {@link ARCHS}. */
export type Arch = (typeof ARCHS)[number];

/** The layer graph of `arch` for inputs of `inChannels` x `size` x `size` and `numClasses` outputs; `width` scales resnet18's channels (default 1). */
export function buildGraph(arch: Arch, inChannels: number, size: number, numClasses: number, width = 1): Graph {
  switch (arch) {
    case 'lenet5':
      if (width !== 1) throw new RangeError(`width applies to resnet18 only (lenet5 has the paper's fixed widths), got ${width}`);
      return lenet5(inChannels, size, numClasses);
    case 'resnet18':
      if (size !== 32) throw new RangeError(`resnet18 expects 32x32 inputs, got ${size}x${size}`);
      return resnet18(inChannels, numClasses, width);
    default: throw new RangeError(`unknown architecture '${String(arch)}' (expected one of ${ARCHS.join(', ')})`);
  }
}

/** The conv/linear layers in model order: the layers whose weights form the weight memory. */
export function weightLayers(g: Graph): Extract<GraphNode, { op: 'conv' | 'linear' }>[] {
  return g.nodes.filter((n): n is Extract<GraphNode, { op: 'conv' | 'linear' }> => n.op === 'conv' || n.op === 'linear');
}

/** Per-sample output shape of every node ([C, H, W] for maps, [F] for vectors). */
export function inferShapes(g: Graph): number[][] {
  const shapes: number[][] = [];
  const fail = (n: GraphNode, msg: string): never => { throw new RangeError(`graph node ${n.id} (${n.op}): ${msg}`); };
  for (const n of g.nodes) {
    switch (n.op) {
      case 'input': shapes.push([n.channels, n.height, n.width]); break;
      case 'conv': {
        const s = shapes[n.input]!;
        if (s.length !== 3 || s[0] !== n.inChannels) fail(n, `expects [${n.inChannels}, H, W] input, got [${s}]`);
        const oh = Math.floor((s[1]! + 2 * n.pad - n.kernel) / n.stride) + 1, ow = Math.floor((s[2]! + 2 * n.pad - n.kernel) / n.stride) + 1;
        if (oh < 1 || ow < 1) fail(n, 'output would be empty');
        shapes.push([n.outChannels, oh, ow]);
        break;
      }
      case 'linear': {
        const s = shapes[n.input]!;
        if (s.length !== 1 || s[0] !== n.inFeatures) fail(n, `expects [${n.inFeatures}] input, got [${s}]`);
        shapes.push([n.outFeatures]);
        break;
      }
      case 'bn': case 'relu': shapes.push(shapes[n.input]!.slice()); break;
      case 'maxpool': {
        const s = shapes[n.input]!;
        shapes.push([s[0]!, Math.floor((s[1]! - n.kernel) / n.stride) + 1, Math.floor((s[2]! - n.kernel) / n.stride) + 1]);
        break;
      }
      case 'flatten': shapes.push([shapes[n.input]!.reduce((a, b) => a * b, 1)]); break;
      case 'add': {
        const a = shapes[n.inputs[0]]!, b = shapes[n.inputs[1]]!;
        if (a.join() !== b.join()) fail(n, `adds [${a}] and [${b}]`);
        shapes.push(a.slice());
        break;
      }
      case 'gap': shapes.push([shapes[n.input]![0]!]); break;
    }
  }
  return shapes;
}

/** Ids of the nodes that read each node. */
export function consumers(g: Graph): number[][] {
  const c: number[][] = g.nodes.map(() => []);
  for (const n of g.nodes) {
    if (n.op === 'add') { c[n.inputs[0]]!.push(n.id); c[n.inputs[1]]!.push(n.id); }
    else if (n.op !== 'input') c[n.input]!.push(n.id);
  }
  return c;
}
