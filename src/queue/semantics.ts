// The `semantics` version a results header records (DESIGN §1): a worker runs a campaign only if its
// engine computes the same semantics as the campaign's header says.
import { SEMANTICS, type ResultsHeader } from '../campaign/results';

/** What this build's engine computes. */
export const SUPPORTED_SEMANTICS = SEMANTICS;

/** A header's semantics version (headers written before the field existed mean version 1). */
export function headerSemantics(h: ResultsHeader): number {
  return h.settings.semantics ?? 1;
}
