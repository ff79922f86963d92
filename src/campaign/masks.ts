// Replayable fault masks: each trial's faulty cells (DESIGN §2 numbering: layer by layer, code by
// code, bit 0 first) saved to a safetensors file, one uint32 index tensor per fault type x rate x
// trial named `<fault>/<rate>/<trial>` (rate as a fraction, e.g. `bitflip/0.01/3`), with the layout
// in the metadata. `flatenn inject --masks FILE` replays them instead of drawing, so another tool
// (e.g. a PyTorch injector, see the README's Python snippet) can run exactly the same faults.
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { decodeSafetensors, writeSafetensors, type Tensor } from '../io/safetensors';
import type { DeployedMeta } from '../deploy/format';
import { FAULT_TYPES, type FaultType } from './faults';

export const MASKS_FORMAT = 'flatenn.masks';
export const MASKS_VERSION = 1;

/** The 'flatenn' metadata of a masks file. */
export interface MasksMeta {
  format: typeof MASKS_FORMAT;
  version: number;
  /** Layout hash of the weight memory the cells index (DESIGN §2). */
  layoutHash: string;
  /** Each layer's name, weight count, bits and first cell: enough to map a cell to (layer, code, bit). */
  layers: { name: string; count: number; bits: number; cellOffset: number }[];
  cells: number;
  faults: FaultType[];
  rates: number[];
  trials: number;
  /** How the cells were drawn (informational): seed, sampling, rate unit, target. */
  source?: { seed: number; sampling: string; rateUnit: string; target: string };
}

export interface FaultMasks {
  meta: MasksMeta;
  /** sha256 (hex) of the file. */
  sha256: string;
  cells: Map<string, Uint32Array>;
}

/** The key of one trial's cells in a masks file: `<fault>/<rate>/<trial>`. */
export const maskKey = (fault: FaultType, rate: number, trial: number): string => `${fault}/${rate}/${trial}`;

/** Writes masks: `get(fault, rate, trial)` gives each trial's faulty cells. */
export async function writeMasks(path: string, meta: Omit<MasksMeta, 'format' | 'version'>, get: (fault: FaultType, rate: number, trial: number) => Uint32Array): Promise<void> {
  const tensors: Record<string, Tensor> = {};
  for (const f of meta.faults) for (const r of meta.rates) for (let t = 0; t < meta.trials; t++) {
    const c = get(f, r, t);
    tensors[maskKey(f, r, t)] = { dtype: 'U32', shape: [c.length], data: Uint32Array.from(c) };
  }
  const full: MasksMeta = { format: MASKS_FORMAT, version: MASKS_VERSION, ...meta };
  await writeSafetensors(path, tensors, { flatenn: JSON.stringify(full) });
}

/** Reads and checks a masks file against a model's layout. */
export async function readMasks(path: string, model: DeployedMeta): Promise<FaultMasks> {
  let buf: Buffer;
  try { buf = await fsp.readFile(path); } catch (e) { throw new Error(`${path}: cannot read the masks file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`); }
  const file = decodeSafetensors(buf, path);
  const fail = (m: string): never => { throw new Error(`${path}: ${m}`); };
  const raw = file.metadata.flatenn;
  if (raw === undefined) fail("not a flatenn masks file (no 'flatenn' metadata key)");
  let meta: MasksMeta;
  try { meta = JSON.parse(raw!) as MasksMeta; } catch { return fail("the 'flatenn' metadata is not JSON"); }
  if (!meta || meta.format !== MASKS_FORMAT) fail(`format ${JSON.stringify(meta?.format)} is not ${MASKS_FORMAT}`);
  if (meta.version !== MASKS_VERSION) fail(`masks version ${JSON.stringify(meta.version)} is not supported (expected ${MASKS_VERSION})`);
  if (meta.layoutHash !== model.layoutHash) fail(`the masks index a weight memory of layout ${meta.layoutHash}; this model's layout is ${model.layoutHash}`);
  if (!Array.isArray(meta.faults) || meta.faults.length === 0 || meta.faults.some((f) => !(FAULT_TYPES as readonly string[]).includes(f)) || new Set(meta.faults).size !== meta.faults.length) fail(`faults must be distinct fault types (${FAULT_TYPES.join(', ')})`);
  if (!Array.isArray(meta.rates) || meta.rates.length === 0 || meta.rates.some((r) => typeof r !== 'number' || !(r >= 0 && r <= 1)) || new Set(meta.rates).size !== meta.rates.length) fail('rates must be distinct fractions in [0, 1]');
  if (!Number.isInteger(meta.trials) || meta.trials < 1 || meta.trials > 1e7) fail(`trials must be an integer in [1, 1e7], got ${JSON.stringify(meta.trials)}`);
  const cells = new Map<string, Uint32Array>();
  const expected = new Set<string>();
  for (const f of meta.faults) for (const r of meta.rates) for (let t = 0; t < meta.trials; t++) expected.add(maskKey(f, r, t));
  for (const name of Object.keys(file.tensors)) if (!expected.has(name)) fail(`tensor '${name}' is not <fault>/<rate>/<trial> of the listed faults, rates and trials`);
  for (const k of expected) {
    const t = file.tensors[k];
    if (!t) fail(`tensor '${k}' is missing`);
    if (t!.dtype !== 'U32' || t!.shape.length !== 1) fail(`tensor '${k}' must be a 1-D U32 array of cell indices`);
    const d = t!.data as Uint32Array;
    const seen = new Set<number>();
    for (let i = 0; i < d.length; i++) {
      if (d[i]! >= model.cells) fail(`tensor '${k}': cell ${d[i]} is beyond the ${model.cells} cells of the weight memory`);
      if (seen.has(d[i]!)) fail(`tensor '${k}': cell ${d[i]} is listed twice`);
      seen.add(d[i]!);
    }
    cells.set(k, d);
  }
  return { meta, sha256: createHash('sha256').update(buf).digest('hex'), cells };
}
