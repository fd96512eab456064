/**
 * Synthetic long-range task: key–value recall across the whole sequence.
 *
 *   position:  0 ............ promptLength-1 | promptLength .......................... seq-1
 *   tokens:    facts "k=v" among filler,      | queries "k?", each for one of the facts' keys
 *              keys distinct                  |
 *
 * At every query position the target is the value stored with the queried key (trained like a language model:
 * every query position has a label). The value only exists in a fact token at the start, so a query more than a
 * window's length past the prompt cannot be answered by windowed attention: it does no better than chance
 * (1 / numValues). Each fact is one token (key and value together) so one attention hop suffices: the example
 * measures whether attention can *reach* the fact, not whether a model learns an induction circuit.
 */
import {mulberry32} from '../../src/patterns/builders.js';

export interface RecallTask {
  seq: number;
  /** Facts live in positions [0, promptLength). */
  promptLength: number;
  numFacts: number;
  numKeys: number;
  numValues: number;
  numFiller: number;
}

/** Token ids: filler [0, F), fact (k, v) F + k·V + v, query(k) F + K·V + k. */
export function vocabularySize(t: RecallTask): number {
  return t.numFiller + t.numKeys * t.numValues + t.numKeys;
}

export interface Batch {
  /** [batch * seq] token ids, row-major. */
  tokens: Int32Array;
  /** [batch * (seq - promptLength)] value ids in [0, numValues): the answer at each query position. */
  targets: Int32Array;
}

export function checkTask(t: RecallTask): void {
  if (t.numFacts > t.numKeys) throw new Error(`numFacts (${t.numFacts}) must be at most numKeys (${t.numKeys})`);
  if (t.numFacts > t.promptLength) throw new Error('numFacts must fit in the prompt');
  if (t.seq < t.promptLength + 2) throw new Error(`--seq must be at least promptLength + 2 = ${t.promptLength + 2}`);
}

/** A reproducible stream of batches (different seeds give disjoint-in-practice train and test sets). */
export function makeBatches(t: RecallTask, seed: number): (batchSize: number) => Batch {
  checkTask(t);
  const rand = mulberry32(seed);
  const int = (n: number) => Math.floor(rand() * n);
  return (batchSize) => {
    const queries = t.seq - t.promptLength;
    const tokens = new Int32Array(batchSize * t.seq);
    const targets = new Int32Array(batchSize * queries);
    for (let b = 0; b < batchSize; b++) {
      const row = tokens.subarray(b * t.seq, (b + 1) * t.seq);
      for (let i = 0; i < t.promptLength; i++) row[i] = int(t.numFiller);
      const keys = shuffled(t.numKeys, int).slice(0, t.numFacts);
      const positions = shuffled(t.promptLength, int).slice(0, t.numFacts);
      const values = keys.map(() => int(t.numValues));
      keys.forEach((k, f) => row[positions[f]] = t.numFiller + k * t.numValues + values[f]);
      for (let i = 0; i < queries; i++) {
        const asked = int(t.numFacts);
        row[t.promptLength + i] = t.numFiller + t.numKeys * t.numValues + keys[asked];
        targets[b * queries + i] = values[asked];
      }
    }
    return {tokens, targets};
  };
}

function shuffled(n: number, int: (n: number) => number): number[] {
  const a = Array.from({length: n}, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = int(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
