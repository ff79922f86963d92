import type { SafetensorsFile } from '../io/safetensors';
import type { Values } from './args';

/** Evaluation of deployed (int4 engine) models; replaced when the engine lands. */
export async function deployedEvalHook(path: string, file: SafetensorsFile, _split: string, _v: Values): Promise<number> {
  const fmt = file.metadata.flatenn ? 'an unknown flatenn format' : 'not a flatenn file (no flatenn metadata)';
  throw new Error(`${path}: ${fmt}; expected a flatenn checkpoint`);
}
