// Collapse detection (DESIGN §3), every training mode: a non-finite loss or
// gradient stops the run (TrainingDivergedError, with the epoch and step and a
// hint); after each epoch, a run at chance accuracy with its loss near
// ln(classes), or a layer whose activations are all zero, is flagged.

export const DIVERGED_HINT = 'lower --lr; with SAQ a smaller --saq-rho or --saq-warmup E (ramps rho over the first E epochs); with AS a smaller --act-l1';

/** Thrown when training meets a non-finite loss or gradient (DESIGN §3 collapse detection); the message says what to change. */
export class TrainingDivergedError extends Error {
  override name = 'TrainingDivergedError';
  constructor(readonly what: 'loss' | 'gradient' | 'weights' | 'value', readonly epoch: number, readonly step: number, readonly batch: number, detail = '') {
    super(`non-finite ${what} at epoch ${epoch}, step ${step} (batch ${batch} of the epoch)${detail ? ` (${detail})` : ''}: training diverged and was stopped. Hint: ${DIVERGED_HINT}`);
  }
}

/** A flagged epoch: why the run looks collapsed. */
export interface CollapseFlag {
  epoch: number;
  /** 'chance' (accuracy at chance, loss near ln(classes)) and/or 'dead-layer'. */
  kinds: ('chance' | 'dead-layer')[];
  /** ReLU sites (0-based) whose activations were all zero. */
  deadLayers: number[];
  /** Which data the figures come from. */
  on: 'validation' | 'training';
  accuracy: number;
  loss: number;
  message: string;
}

/** Accuracy below this multiple of chance (1 / classes) counts as chance. */
export const CHANCE_FACTOR = 1.5;
/** |loss - ln(classes)| within this fraction of ln(classes) counts as "near". */
export const LOSS_TOLERANCE = 0.1;

/** Flags an epoch whose accuracy/loss look like chance or whose activations are all zero (DESIGN §3); null when healthy. */
export function detectCollapse(s: { epoch: number; accuracy: number; loss: number; perLayerSparsity: readonly number[]; numClasses: number; on: 'validation' | 'training' }): CollapseFlag | null {
  const lnC = Math.log(s.numClasses);
  const kinds: CollapseFlag['kinds'] = [];
  if (s.accuracy < CHANCE_FACTOR / s.numClasses && Math.abs(s.loss - lnC) <= LOSS_TOLERANCE * lnC) kinds.push('chance');
  const dead = s.perLayerSparsity.flatMap((z, i) => (z >= 1 ? [i] : []));
  if (dead.length) kinds.push('dead-layer');
  if (!kinds.length) return null;
  const parts: string[] = [];
  if (kinds.includes('chance')) parts.push(`${s.on} accuracy ${(100 * s.accuracy).toFixed(2)}% is at chance (${(100 / s.numClasses).toFixed(1)}%) with loss ${s.loss.toFixed(4)} near ln(${s.numClasses}) = ${lnC.toFixed(4)}`);
  if (dead.length) parts.push(`every activation of ReLU layer${dead.length > 1 ? 's' : ''} ${dead.map((d) => d + 1).join(', ')} is zero (${s.on})`);
  return { epoch: s.epoch, kinds, deadLayers: dead, on: s.on, accuracy: s.accuracy, loss: s.loss, message: `collapse flagged at epoch ${s.epoch}: ${parts.join('; ')}. Hint: ${DIVERGED_HINT}` };
}
