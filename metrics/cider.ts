/**
 * CIDEr as the official E2E NLG script computes it: pycocoevalcap's `Cider`
 * class (n = 1..4, sigma = 6). Despite its name that class already has the
 * CIDEr-D changes: the hypothesis tf-idf weights are clipped by the reference
 * weights, a Gaussian length penalty multiplies each n-gram similarity, and the
 * mean over n-gram orders and references is scaled by 10. Document frequencies
 * come from the references of the evaluated corpus itself.
 *
 * Quirks kept on purpose: the "length" in the penalty is the number of bigrams
 * (pycocoevalcap counts `term_freq` where its 0-based order index is 1), and
 * words are what Python's `str.split()` gives (any Unicode whitespace).
 *
 * @module
 */

import { cocoTokenizeCorpus } from "./ptb_tokenize.ts";
import { checkAligned } from "./formats.ts";

/** Options of the CIDEr scorer (pycocoevalcap defaults). */
export interface CiderOptions {
  /** Largest n-gram order (default 4). */
  n?: number;
  /** Standard deviation of the Gaussian length penalty (default 6). */
  sigma?: number;
}

/** Python's `str.split()` separators (str.isspace), control characters included on purpose. */
// deno-lint-ignore no-control-regex
const PY_WHITESPACE = new RegExp(
  "[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]+",
);

function pySplit(s: string): string[] {
  return s.split(PY_WHITESPACE).filter((w) => w !== "");
}

/** n-gram counts of orders 1..n in insertion order (keys: words joined by U+0001). */
function precook(s: string, n: number): Map<string, { order: number; count: number }> {
  const words = pySplit(s);
  const counts = new Map<string, { order: number; count: number }>();
  // order by order, left to right: the insertion order of pycocoevalcap's dict
  for (let k = 1; k <= n; k++) {
    for (let i = 0; i + k <= words.length; i++) {
      let key = words[i];
      for (let j = i + 1; j < i + k; j++) key += "\u0001" + words[j];
      const e = counts.get(key);
      if (e) e.count++;
      else counts.set(key, { order: k, count: 1 });
    }
  }
  return counts;
}

interface TfIdf {
  vec: Map<string, number>[];
  norm: number[];
  length: number;
}

/**
 * Per-instance CIDEr scores over already tokenised captions (see
 * {@link cocoTokenizeCorpus}).
 *
 * @param outputs Tokenised outputs, one per instance.
 * @param refs Tokenised references per instance (at least one each).
 * @param opts See {@link CiderOptions}.
 * @returns One score per instance (the corpus score is their mean).
 */
export function ciderScoresTokenized(
  outputs: string[],
  refs: string[][],
  opts: CiderOptions = {},
): number[] {
  checkAligned(outputs, refs);
  const n = opts.n ?? 4;
  const sigma = opts.sigma ?? 6;
  const crefs = refs.map((rs) => rs.map((r) => precook(r, n)));
  const ctest = outputs.map((o) => precook(o, n));
  // document frequency: in how many instances' reference sets an n-gram occurs
  const df = new Map<string, number>();
  for (const rs of crefs) {
    const seen = new Set<string>();
    for (const r of rs) for (const k of r.keys()) seen.add(k);
    for (const k of seen) df.set(k, (df.get(k) ?? 0) + 1);
  }
  const refLen = Math.log(crefs.length);

  const counts2vec = (cnts: Map<string, { order: number; count: number }>): TfIdf => {
    const vec = Array.from({ length: n }, () => new Map<string, number>());
    const norm = new Array<number>(n).fill(0);
    let length = 0;
    for (const [key, { order, count }] of cnts) {
      const idf = Math.log(Math.max(1, df.get(key) ?? 0));
      const v = count * (refLen - idf);
      vec[order - 1].set(key, v);
      norm[order - 1] += v * v;
      if (order === 2) length += count; // pycocoevalcap's `if n == 1` on its 0-based order
    }
    return { vec, norm: norm.map(Math.sqrt), length };
  };

  const sim = (hyp: TfIdf, ref: TfIdf): number[] => {
    const delta = hyp.length - ref.length;
    const val = new Array<number>(n).fill(0);
    for (let k = 0; k < n; k++) {
      for (const [key, vh] of hyp.vec[k]) {
        const vr = ref.vec[k].get(key) ?? 0;
        val[k] += Math.min(vh, vr) * vr; // clipping
      }
      if (hyp.norm[k] !== 0 && ref.norm[k] !== 0) val[k] /= hyp.norm[k] * ref.norm[k];
      val[k] *= Math.pow(Math.E, -(delta * delta) / (2 * sigma * sigma));
    }
    return val;
  };

  const scores: number[] = [];
  for (let i = 0; i < ctest.length; i++) {
    const hyp = counts2vec(ctest[i]);
    const total = new Array<number>(n).fill(0);
    for (const r of crefs[i]) {
      const s = sim(hyp, counts2vec(r));
      for (let k = 0; k < n; k++) total[k] += s[k];
    }
    const mean = total.reduce((a, b) => a + b, 0) / n;
    scores.push((mean / crefs[i].length) * 10);
  }
  return scores;
}

/**
 * Corpus CIDEr over already tokenised captions.
 *
 * @param outputs Tokenised outputs, one per instance.
 * @param refs Tokenised references per instance.
 * @param opts See {@link CiderOptions}.
 * @returns The mean of the per-instance scores.
 */
export function ciderTokenized(
  outputs: string[],
  refs: string[][],
  opts: CiderOptions = {},
): number {
  const scores = ciderScoresTokenized(outputs, refs, opts);
  return scores.reduce((a, b) => a + b, 0) / scores.length;
}

/**
 * Corpus CIDEr as the official E2E script reports it (PTB tokenisation,
 * lower-casing and punctuation removal first).
 *
 * @param outputs One system output per instance.
 * @param refs The references of each instance (at least one each).
 * @param opts See {@link CiderOptions}.
 * @returns CIDEr, at most 10.
 */
export function cider(outputs: string[], refs: string[][], opts: CiderOptions = {}): number {
  checkAligned(outputs, refs);
  const tok = cocoTokenizeCorpus(outputs, refs);
  return ciderTokenized(tok.outputs, tok.refs, opts);
}
