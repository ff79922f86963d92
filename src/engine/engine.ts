// The int4 inference engine: runs a deployed model (with a given, possibly
// faulty, weight memory) over images and reports accuracy, loss and
// activation sparsity.
import type { DeployedModel } from '../deploy/format';
import { buildPlan, type Plan } from './plan';
import { runReference, unpackLayers } from './reference';
import { NativeEngine, nativeEngineAvailable } from './native-engine';

export interface EngineResult {
  accuracy: number;
  loss: number;
  sparsity: number;
  sparsityWeighted: number;
  perLayerSparsity: number[];
  predictions: Uint8Array;
  count: number;
}

/** Softmax cross-entropy and arg-max of a row of logits. */
export function scoreLogits(logits: Float32Array, labels: Uint8Array, n: number, K: number, predictions: Uint8Array, offset = 0): { correct: number; lossSum: number } {
  let correct = 0, lossSum = 0;
  for (let i = 0; i < n; i++) {
    let mx = -Infinity, arg = 0;
    for (let j = 0; j < K; j++) { const v = logits[i * K + j]!; if (v > mx) { mx = v; arg = j; } }
    let s = 0;
    for (let j = 0; j < K; j++) s += Math.exp(logits[i * K + j]! - mx);
    lossSum += Math.log(s) - (logits[i * K + labels[i]!]! - mx);
    predictions[offset + i] = arg;
    if (arg === labels[i]) correct++;
  }
  return { correct, lossSum };
}

export class Engine {
  readonly model: DeployedModel;
  readonly plan: Plan;
  private readonly fast: NativeEngine | null;
  readonly backend: 'native' | 'reference';

  constructor(model: DeployedModel, opts: { backend?: 'native' | 'reference' } = {}) {
    this.model = model;
    this.plan = buildPlan(model.meta.topology);
    const want = opts.backend ?? 'native';
    this.fast = want === 'native' && nativeEngineAvailable() ? new NativeEngine(model, this.plan) : null;
    this.backend = this.fast ? 'native' : 'reference';
  }

  /** Evaluates `n` images (uint8, NCHW) with the given weight memory. */
  evaluate(memory: Uint8Array, images: Uint8Array, labels: Uint8Array, n: number, batch = 1000): EngineResult {
    if (memory.length !== this.model.memory.length) throw new RangeError(`weight memory has ${memory.length} bytes, the model ${this.model.memory.length}`);
    const g = this.model.meta.topology, K = g.numClasses;
    const per = this.model.meta.input.channels * this.model.meta.input.height * this.model.meta.input.width;
    if (images.length < n * per || labels.length < n) throw new RangeError(`expected ${n} images of ${per} bytes with labels`);
    const predictions = new Uint8Array(n);
    const zeros = new Float64Array(g.sites), elems = new Float64Array(g.sites);
    let correct = 0, lossSum = 0;
    if (this.fast) {
      this.fast.setWeights(memory);
      for (let b = 0; b < n; b += batch) {
        const m = Math.min(batch, n - b);
        const r = this.fast.forward(images.subarray(b * per, (b + m) * per), m);
        const s = scoreLogits(r.logits, labels.subarray(b, b + m), m, K, predictions, b);
        correct += s.correct; lossSum += s.lossSum;
        for (let i = 0; i < g.sites; i++) { zeros[i]! += r.siteZeros[i]!; elems[i]! += r.siteElems[i]!; }
      }
    } else {
      const codes = unpackLayers(this.model, memory);
      for (let b = 0; b < n; b += batch) {
        const m = Math.min(batch, n - b);
        const r = runReference(this.model, codes, images.subarray(b * per, (b + m) * per), m, this.plan);
        const s = scoreLogits(r.logits, labels.subarray(b, b + m), m, K, predictions, b);
        correct += s.correct; lossSum += s.lossSum;
        for (let i = 0; i < g.sites; i++) { zeros[i]! += r.siteZeros[i]!; elems[i]! += r.siteElems[i]!; }
      }
    }
    const perLayer = Array.from(zeros, (z, i) => (elems[i]! > 0 ? z / elems[i]! : 0));
    const zs = zeros.reduce((a, b) => a + b, 0), es = elems.reduce((a, b) => a + b, 0);
    return {
      accuracy: correct / n, loss: lossSum / n,
      sparsity: g.sites ? perLayer.reduce((a, b) => a + b, 0) / g.sites : 0,
      sparsityWeighted: es > 0 ? zs / es : 0, perLayerSparsity: perLayer, predictions, count: n,
    };
  }
}
