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

/**
 * Validates the inputs of Engine.evaluate (whatever its public signature):
 * typed arrays of the right kind and size, an image count and a batch size
 * that are integers >= 1 (a batch of 0 would never advance). Throws
 * TypeError / RangeError naming the argument; returns the batch size to use.
 */
export function checkEvaluateInput(model: DeployedModel, a: { memory: unknown; images: unknown; labels: unknown; count: unknown; batchSize?: unknown }): { count: number; batch: number } {
  const kind = (x: unknown) => (x === null ? 'null' : ArrayBuffer.isView(x) ? x.constructor.name : typeof x);
  if (!(a.memory instanceof Uint8Array)) throw new TypeError(`memory must be a Uint8Array (the weight memory), got ${kind(a.memory)}`);
  if (!(a.images instanceof Uint8Array)) throw new TypeError(`images must be a Uint8Array (uint8 NCHW), got ${kind(a.images)}`);
  if (!(a.labels instanceof Uint8Array)) throw new TypeError(`labels must be a Uint8Array, got ${kind(a.labels)}`);
  if (a.memory.length !== model.memory.length) throw new RangeError(`weight memory has ${a.memory.length} bytes, the model ${model.memory.length}`);
  const n = a.count;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new RangeError(`the image count must be an integer >= 1, got ${typeof n === 'number' ? n : kind(n)}`);
  const batch = a.batchSize ?? 1000;
  if (typeof batch !== 'number' || !Number.isInteger(batch) || batch < 1 || batch > 2 ** 31 - 1) {
    throw new RangeError(`batch size must be an integer in [1, ${2 ** 31 - 1}], got ${typeof batch === 'number' ? batch : kind(batch)}`);
  }
  const per = model.meta.input.channels * model.meta.input.height * model.meta.input.width;
  if (a.images.length < n * per) throw new RangeError(`images holds ${a.images.length} bytes, fewer than ${n} images of ${per} bytes`);
  if (a.labels.length < n) throw new RangeError(`labels holds ${a.labels.length} labels, fewer than the ${n} images`);
  const K = model.meta.topology.numClasses;
  for (let i = 0; i < n; i++) if (a.labels[i]! >= K) throw new RangeError(`labels[${i}] = ${a.labels[i]} is not a class of this ${K}-class model`);
  return { count: n, batch: Math.min(batch, n) };
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
  evaluate(memory: Uint8Array, images: Uint8Array, labels: Uint8Array, n: number, batchSize = 1000): EngineResult {
    const { batch } = checkEvaluateInput(this.model, { memory, images, labels, count: n, batchSize });
    const g = this.model.meta.topology, K = g.numClasses;
    const per = this.model.meta.input.channels * this.model.meta.input.height * this.model.meta.input.width;
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
