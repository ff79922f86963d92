// The `semantics` version a results header records (DESIGN §1): a worker runs a campaign only if its
// engine computes the same semantics as the campaign's header says.
import type { ResultsHeader } from '../campaign/results';

/** What this build's engine computes. */
export const SUPPORTED_SEMANTICS = 1;

/** A header's semantics version (headers written before the field existed mean version 1). */
export function headerSemantics(h: ResultsHeader): number {
  const s = (h as { semantics?: unknown }).semantics;
  return typeof s === 'number' ? s : 1;
}
