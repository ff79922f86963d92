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

/** Options of {@link Engine.evaluate}. */
export interface EvaluateOptions {
  /** Raw uint8 images, NCHW, `count` of them (default: all of `images`). */
  images: Uint8Array;
  /** One label per image (class index). */
  labels: Uint8Array;
  /** Number of images (default: images.length / image size). */
  count?: number;
  /** The weight memory to evaluate (default: the model's clean memory); e.g. a faulty copy made by a {@link FaultSpace}. */
  memory?: Uint8Array;
  /** Images per engine call (default 1000). */
  batchSize?: number;
  /** Cancels between batches: the promise rejects with the signal's reason (an AbortError). */
  signal?: AbortSignal;
  /** Called after each batch with the images done and the total. */
  onProgress?: (done: number, total: number) => void;
  /** Also return the logits [count][classes] (default false). */
  logits?: boolean;
}

/** Result of {@link Engine.evaluate}: fractions in [0, 1], loss in nats. */
export interface EvaluateResult extends EngineResult {
  /** [count][numClasses] float32 logits, when asked for. */
  logits?: Float32Array;
}

function checkBatchSize(b: unknown): number {
  if (typeof b !== 'number' || !Number.isInteger(b) || b < 1 || b > 1 << 20) throw new RangeError(`batchSize must be an integer in [1, ${1 << 20}], got ${String(b)}`);
  return b;
}

/**
 * The int4 inference engine for a deployed model: `evaluate()` (async, yields between batches, AbortSignal),
 * `evaluateSync()`, `forward()`. Backend 'native' (the addon; default) or 'reference' (plain TypeScript, the spec).
 */
export class Engine {
  readonly model: DeployedModel;
  readonly plan: Plan;
  private readonly fast: NativeEngine | null;
  readonly backend: 'native' | 'reference';

  constructor(model: DeployedModel, opts: { backend?: 'native' | 'reference' } = {}) {
    this.model = model;
    this.plan = buildPlan(model.meta.topology);
    const want = opts.backend ?? 'native';
    if (want !== 'native' && want !== 'reference') throw new RangeError(`backend must be 'native' or 'reference', got '${String(want)}'`);
    this.fast = want === 'native' && nativeEngineAvailable() ? new NativeEngine(model, this.plan) : null;
    this.backend = this.fast ? 'native' : 'reference';
  }

  /** Bytes of one image (channels x height x width). */
  get imageBytes(): number {
    const i = this.model.meta.input;
    return i.channels * i.height * i.width;
  }

  private checkMemory(memory: unknown): Uint8Array {
    if (!(memory instanceof Uint8Array)) throw new TypeError('memory must be a Uint8Array (a weight memory of this model)');
    if (memory.length !== this.model.memory.length) throw new RangeError(`the weight memory has ${memory.length} bytes; this model's has ${this.model.memory.length}`);
    return memory;
  }

  private checkImages(images: unknown, count: number | undefined): number {
    if (!(images instanceof Uint8Array)) throw new TypeError('images must be a Uint8Array of raw pixels (NCHW)');
    const per = this.imageBytes;
    const n = count ?? images.length / per;
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`images holds ${images.length} bytes, not a whole number of ${per}-byte images; give count`);
    if (images.length < n * per) throw new RangeError(`expected ${n} images of ${per} bytes, got ${images.length} bytes`);
    return n;
  }

  /** Logits [n][classes] of the images (all of them) with a weight memory (default: the clean one). */
  forward(images: Uint8Array, memory?: Uint8Array): Float32Array {
    const n = this.checkImages(images, undefined);
    const K = this.model.meta.topology.numClasses;
    const labels = new Uint8Array(n);
    const out = new Float32Array(n * K);
    const it = this.batches(memory === undefined ? this.model.memory : this.checkMemory(memory), images, labels, n, 1000, out);
    while (!it.next().done);
    return out;
  }

  /**
   * Accuracy, loss and activation sparsity of a weight memory on labelled images, on the native int4
   * engine (or the reference one). Yields to the event loop between batches.
   */
  async evaluate(o: EvaluateOptions): Promise<EvaluateResult> {
    const run = this.start(o);
    o.signal?.throwIfAborted();
    for (;;) {
      const r = this.advance(run, o);
      if (r) return r;
      await new Promise<void>((res) => setImmediate(res));
      o.signal?.throwIfAborted();
    }
  }

  /** {@link evaluate} without yielding (for worker threads and benchmarks). */
  evaluateSync(o: EvaluateOptions): EvaluateResult {
    const run = this.start(o);
    o.signal?.throwIfAborted();
    for (;;) {
      const r = this.advance(run, o);
      if (r) return r;
      o.signal?.throwIfAborted();
    }
  }

  /** Runs one batch: the result once every batch is done, else null (after reporting progress). */
  private advance(run: ReturnType<Engine['start']>, o: EvaluateOptions): EvaluateResult | null {
    const r = run.it.next();
    if (r.done) return run.logits ? { ...r.value, logits: run.logits } : r.value;
    o.onProgress?.(r.value, run.n);
    return null;
  }

  private start(o: EvaluateOptions) {
    if (!o || typeof o !== 'object') throw new TypeError('evaluate expects an options object { images, labels, memory?, batchSize?, signal?, onProgress?, logits? }');
    const n = this.checkImages(o.images, o.count);
    if (!(o.labels instanceof Uint8Array)) throw new TypeError('labels must be a Uint8Array (one class index per image)');
    if (o.labels.length < n) throw new RangeError(`expected ${n} labels, got ${o.labels.length}`);
    const K = this.model.meta.topology.numClasses;
    for (let i = 0; i < n; i++) if (o.labels[i]! >= K) throw new RangeError(`label ${o.labels[i]} of image ${i} is not a class of this model (0..${K - 1})`);
    const batch = checkBatchSize(o.batchSize ?? 1000);
    if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
    if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new TypeError('onProgress must be a function');
    const memory = o.memory === undefined ? this.model.memory : this.checkMemory(o.memory);
    const logits = o.logits ? new Float32Array(n * K) : null;
    return { it: this.batches(memory, o.images, o.labels, n, batch, logits), n, logits };
  }

  /** Runs the batches, yielding the images done after each; returns the result. */
  private *batches(memory: Uint8Array, images: Uint8Array, labels: Uint8Array, n: number, batch: number, logitsOut: Float32Array | null): Generator<number, EngineResult> {
    const g = this.model.meta.topology, K = g.numClasses;
    const per = this.imageBytes;
    const predictions = new Uint8Array(n);
    const zeros = new Float64Array(g.sites), elems = new Float64Array(g.sites);
    let correct = 0, lossSum = 0;
    const codes = this.fast ? null : unpackLayers(this.model, memory);
    this.fast?.setWeights(memory);
    for (let b = 0; b < n; b += batch) {
      const m = Math.min(batch, n - b);
      const x = images.subarray(b * per, (b + m) * per);
      const r = this.fast ? this.fast.forward(x, m) : runReference(this.model, codes!, x, m, this.plan);
      const s = scoreLogits(r.logits, labels.subarray(b, b + m), m, K, predictions, b);
      logitsOut?.set(r.logits.subarray(0, m * K), b * K);
      correct += s.correct; lossSum += s.lossSum;
      for (let i = 0; i < g.sites; i++) { zeros[i]! += r.siteZeros[i]!; elems[i]! += r.siteElems[i]!; }
      if (b + m < n) yield b + m;
    }
    const perLayer = Array.from(zeros, (z, i) => (elems[i]! > 0 ? z / elems[i]! : 0));
    const zs = zeros.reduce((a, b) => a + b, 0), es = elems.reduce((a, b) => a + b, 0);
    return {
      accuracy: n > 0 ? correct / n : NaN, loss: n > 0 ? lossSum / n : NaN,
      sparsity: g.sites ? perLayer.reduce((a, b) => a + b, 0) / g.sites : 0,
      sparsityWeighted: es > 0 ? zs / es : 0, perLayerSparsity: perLayer, predictions, count: n,
    };
  }
}
