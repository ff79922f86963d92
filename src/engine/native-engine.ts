// Placeholder until the native int4 kernels are bound: reports unavailable so
// the Engine uses the reference backend.
import type { DeployedModel } from '../deploy/format';
import type { Plan } from './plan';

export function nativeEngineAvailable(): boolean { return false; }

export class NativeEngine {
  constructor(_m: DeployedModel, _p: Plan) { throw new Error('native int4 engine not built'); }
  setWeights(_memory: Uint8Array): void {}
  forward(_images: Uint8Array, _n: number): { logits: Float32Array; siteZeros: Float64Array; siteElems: Float64Array } { throw new Error('unavailable'); }
}
