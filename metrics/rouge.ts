/**
 * ROUGE-L as pycocoevalcap's `Rouge` scorer computes it in the official E2E NLG
 * script: per instance, the longest common subsequence against each reference,
 * the maximum precision and the maximum recall over the references (taken
 * separately), their F-measure with beta = 1.2, averaged over instances.
 *
 * @module
 */

import { cocoTokenizeCorpus } from "./ptb_tokenize.ts";
import { checkAligned } from "./formats.ts";

/** pycocoevalcap's ROUGE-L beta ("updated based on discussion with Hovey"). */
export const ROUGE_L_BETA = 1.2;

/** Length of the longest common subsequence of two token arrays. */
export function lcsLength(a: string[], b: string[]): number {
  const [long, short] = a.length >= b.length ? [a, b] : [b, a];
  // one DP row over the shorter sequence
  let prev = new Array<number>(short.length + 1).fill(0);
  let cur = new Array<number>(short.length + 1).fill(0);
  for (let i = 1; i <= long.length; i++) {
    for (let j = 1; j <= short.length; j++) {
      cur[j] = long[i - 1] === short[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[short.length];
}

/**
 * ROUGE-L of one candidate against its references, both already tokenised as
 * {@link cocoTokenizeCorpus} does. Like pycocoevalcap, tokens are what `split(" ")`
 * gives, so an empty string is one empty token.
 *
 * @param candidate The tokenised output.
 * @param refs The tokenised references (at least one).
 * @returns The F-measure (0 when the best precision or recall is 0).
 */
export function rougeLSentence(candidate: string, refs: string[]): number {
  if (refs.length === 0) throw new RangeError("rougeLSentence: no references");
  const c = candidate.split(" ");
  let precMax = 0;
  let recMax = 0;
  for (const ref of refs) {
    const r = ref.split(" ");
    const lcs = lcsLength(r, c);
    precMax = Math.max(precMax, lcs / c.length);
    recMax = Math.max(recMax, lcs / r.length);
  }
  if (precMax === 0 || recMax === 0) return 0;
  const b2 = ROUGE_L_BETA ** 2;
  return ((1 + b2) * precMax * recMax) / (recMax + b2 * precMax);
}

/**
 * Corpus ROUGE-L over already tokenised captions (see {@link cocoTokenizeCorpus}).
 *
 * @param outputs Tokenised outputs, one per instance.
 * @param refs Tokenised references per instance.
 * @returns The mean of the per-instance scores.
 */
export function rougeLTokenized(outputs: string[], refs: string[][]): number {
  checkAligned(outputs, refs);
  let sum = 0;
  for (let i = 0; i < outputs.length; i++) sum += rougeLSentence(outputs[i], refs[i]);
  return sum / outputs.length;
}

/**
 * Corpus ROUGE-L as the official E2E script reports it (PTB tokenisation,
 * lower-casing and punctuation removal first).
 *
 * @param outputs One system output per instance.
 * @param refs The references of each instance (at least one each).
 * @returns ROUGE-L in [0, 1].
 */
export function rougeL(outputs: string[], refs: string[][]): number {
  checkAligned(outputs, refs);
  const tok = cocoTokenizeCorpus(outputs, refs);
  return rougeLTokenized(tok.outputs, tok.refs);
}
