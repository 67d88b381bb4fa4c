/**
 * Corpus BLEU and NIST exactly as the official E2E NLG script gets them from
 * NIST's `mteval-v13a.pl` (default options: closest-reference brevity penalty,
 * smoothed BLEU, lower-casing, its own tokenisation).
 *
 * What the E2E wrapper adds and we reproduce: every output is one segment of one
 * document; references are laid out as parallel reference sets (`ref_0`,
 * `ref_1`, ...) and an instance with fewer references than the largest has empty
 * segments in the remaining sets. mteval skips an empty reference when it looks
 * for the closest reference length (except in the first set) and when it counts
 * references for NIST's average reference length.
 *
 * @module
 */

import { mtevalTokenize, mtevalWords } from "./mteval_tokenize.ts";
import { checkAligned } from "./formats.ts";

/** mteval-v13a collects n-gram statistics up to this order (BLEU uses 4, NIST 5). */
const MAX_NGRAM = 9;
const BLEU_N = 4;
const NIST_N = 5;

/** BLEU and NIST of one corpus, as mteval-v13a prints them (unrounded). */
export interface BleuNistResult {
  /** BLEU-4 as a fraction in [0, 1]. */
  bleu: number;
  /** NIST-5. */
  nist: number;
}

/** Corpus-level sufficient statistics, indexed by n-gram order (index 0 unused). */
interface CorpusStats {
  refLength: number;
  refCount: number;
  segCount: number;
  match: number[];
  tstCount: number[];
  refWords: number;
  tstInfo: number[];
}

/** Word ids stay below this so that (node, word) packs into one safe integer key. */
const WORD_LIMIT = 2 ** 21;

/**
 * All n-grams seen so far (orders 1..NIST_N) as nodes of a trie with integer ids:
 * node 0 is the empty n-gram, and an n-gram's parent is its (n-1)-word prefix.
 * Integer keys avoid building a string per n-gram.
 */
class NgramTrie {
  private readonly wordIds = new Map<string, number>();
  private readonly children = new Map<number, number>();
  /** Prefix node of each node. */
  readonly parent: number[] = [-1];
  /** Order (number of words) of each node. */
  readonly order: number[] = [0];
  /** Whether a node is the unigram "0" (see {@link ngramInfo}). */
  readonly isZeroWord: boolean[] = [false];

  /** Counts the n-grams of a word sequence by node; with `grow` false, unseen ones are skipped. */
  count(words: string[], grow: boolean): Map<number, number> {
    const ids = words.map((w) => this.wordId(w, grow));
    const counts = new Map<number, number>();
    for (let i = 0; i < ids.length; i++) {
      let node = 0;
      for (let n = 1; n <= NIST_N && i + n - 1 < ids.length; n++) {
        const w = ids[i + n - 1];
        if (w < 0) break;
        const key = node * WORD_LIMIT + w;
        let child = this.children.get(key);
        if (child === undefined) {
          if (!grow) break;
          child = this.parent.length;
          this.children.set(key, child);
          this.parent.push(node);
          this.order.push(n);
          this.isZeroWord.push(n === 1 && words[i] === "0");
        }
        node = child;
        counts.set(node, (counts.get(node) ?? 0) + 1);
      }
    }
    return counts;
  }

  private wordId(w: string, grow: boolean): number {
    let id = this.wordIds.get(w);
    if (id === undefined) {
      if (!grow) return -1;
      id = this.wordIds.size;
      if (id >= WORD_LIMIT) throw new RangeError(`more than ${WORD_LIMIT} distinct words`);
      this.wordIds.set(w, id);
    }
    return id;
  }
}

/**
 * NIST information weights computed from all reference segments, as mteval's
 * `compute_ngram_info`: info(w1..wn) = -log2(count(w1..wn) / count(w1..wn-1)),
 * with the total word count as denominator for unigrams. A Perl quirk is kept:
 * its test of the prefix string is false for the prefix "0", so bigrams that
 * start with the word "0" are also divided by the total word count.
 */
function ngramInfo(
  trie: NgramTrie,
  refCounts: Map<number, number>[],
  totalWords: number,
): number[] {
  const counts = new Array<number>(trie.parent.length).fill(0);
  for (const rc of refCounts) for (const [node, c] of rc) counts[node] += c;
  return counts.map((count, node) => {
    if (node === 0) return 0;
    const p = trie.parent[node];
    const denominator = p === 0 || trie.isZeroWord[p] ? totalWords : counts[p];
    return -Math.log(count / denominator) / Math.log(2);
  });
}

/**
 * mteval's `brevity_penalty_closest` folded over the reference lengths in set
 * order: the closest length wins, ties go to the shorter one, and an empty
 * reference after the first set is skipped.
 */
function closestRefLength(refLengths: number[], tstLength: number): number {
  let current = refLengths[0];
  for (let k = 1; k < refLengths.length; k++) {
    const r = refLengths[k];
    if (r === 0) continue;
    const dNew = Math.abs(tstLength - r);
    const dCur = Math.abs(tstLength - current);
    if (dNew < dCur || (dNew === dCur && current > r)) current = r;
  }
  return current;
}

/** Collects mteval's segment statistics summed over the corpus. */
function corpusStats(outputs: string[], refs: string[][]): CorpusStats {
  checkAligned(outputs, refs);
  const maxRefs = refs.reduce((m, r) => Math.max(m, r.length), 0);
  // pad to parallel reference sets as the E2E wrapper writes them for mteval
  const refWords = refs.map((rs) =>
    Array.from({ length: maxRefs }, (_, k) => mtevalWords(mtevalTokenize(rs[k] ?? "")))
  );
  // n-gram counts of every reference, computed once for the weights and the clipping
  const trie = new NgramTrie();
  const refCounts = refWords.map((ws) => ws.map((w) => trie.count(w, true)));
  const totalRefWords = refWords.reduce((t, ws) => t + ws.reduce((u, w) => u + w.length, 0), 0);
  const info = ngramInfo(trie, refCounts.flat(), totalRefWords);
  const stats: CorpusStats = {
    refLength: 0,
    refCount: 0,
    segCount: outputs.length,
    match: new Array(MAX_NGRAM + 1).fill(0),
    tstCount: new Array(MAX_NGRAM + 1).fill(0),
    refWords: 0,
    tstInfo: new Array(MAX_NGRAM + 1).fill(0),
  };
  for (let i = 0; i < outputs.length; i++) {
    const tst = mtevalWords(mtevalTokenize(outputs[i]));
    for (let n = 1; n <= MAX_NGRAM; n++) stats.tstCount[n] += Math.max(0, tst.length - n + 1);
    const refMax = new Map<number, number>();
    refWords[i].forEach((words, r) => {
      if (words.length > 0) stats.refCount++;
      stats.refWords += words.length;
      for (const [node, c] of refCounts[i][r]) {
        if (c > (refMax.get(node) ?? 0)) refMax.set(node, c);
      }
    });
    stats.refLength += closestRefLength(refWords[i].map((w) => w.length), tst.length);
    // an n-gram no reference has cannot match: the lookup does not add it to the trie
    for (const [node, c] of trie.count(tst, false)) {
      const m = refMax.get(node);
      if (m === undefined) continue;
      const clipped = Math.min(c, m);
      stats.match[trie.order[node]] += clipped;
      stats.tstInfo[trie.order[node]] += info[node] * clipped;
    }
  }
  return stats;
}

/** mteval-v13a's `bleu_score` (with its default smoothing) at corpus level. */
function bleuFromStats(s: CorpusStats): number {
  const tst1 = s.tstCount[1];
  const expLenScore = tst1 > 0 ? Math.exp(Math.min(0, 1 - s.refLength / tst1)) : 0;
  let score = 0;
  let smooth = 1;
  for (let n = 1; n <= BLEU_N; n++) {
    let iscore: number;
    if (s.tstCount[n] === 0) iscore = 0;
    else if (s.match[n] === 0) {
      // no match of this order: 1/(2^k * count) instead of 0
      smooth *= 2;
      iscore = Math.log(1 / (smooth * s.tstCount[n]));
    } else iscore = Math.log(s.match[n] / s.tstCount[n]);
    score += iscore;
  }
  return Math.exp(score / BLEU_N) * expLenScore;
}

/** mteval-v13a's `nist_length_penalty`: 0.5 when the output is 2/3 of the reference length. */
function nistLengthPenalty(ratio: number): number {
  if (ratio >= 1) return 1;
  if (ratio <= 0) return 0;
  const ratioX = 1.5;
  const scoreX = 0.5;
  const beta = -Math.log(scoreX) / Math.log(ratioX) / Math.log(ratioX);
  return Math.exp(-beta * Math.log(ratio) * Math.log(ratio));
}

/**
 * mteval-v13a's `nist_score` at corpus level. Perl divides by zero when no
 * reference has a word; we return 0 there (no information to match).
 */
function nistFromStats(s: CorpusStats): number {
  if (s.refWords === 0 || s.refCount === 0) return 0;
  let score = 0;
  for (let n = 1; n <= NIST_N; n++) score += s.tstInfo[n] / Math.max(s.tstCount[n], 1);
  const avgRefsPerSeg = s.refCount / s.segCount;
  return score * nistLengthPenalty(s.tstCount[1] / (s.refWords / avgRefsPerSeg));
}

/**
 * BLEU-4 and NIST-5 of a corpus, computed once from shared statistics.
 *
 * @param outputs One system output per instance.
 * @param refs The references of each instance (at least one each).
 * @returns Both scores, unrounded (the official script prints 4 decimals).
 */
export function bleuNist(outputs: string[], refs: string[][]): BleuNistResult {
  const stats = corpusStats(outputs, refs);
  return { bleu: bleuFromStats(stats), nist: nistFromStats(stats) };
}

/**
 * Corpus BLEU-4 as mteval-v13a computes it for the E2E script (a fraction).
 *
 * @param outputs One system output per instance.
 * @param refs The references of each instance (at least one each).
 * @returns BLEU in [0, 1].
 */
export function bleu(outputs: string[], refs: string[][]): number {
  return bleuNist(outputs, refs).bleu;
}

/**
 * Corpus NIST-5 as mteval-v13a computes it for the E2E script, with information
 * weights from these references.
 *
 * @param outputs One system output per instance.
 * @param refs The references of each instance (at least one each).
 * @returns NIST (non-negative, unbounded).
 */
export function nist(outputs: string[], refs: string[][]): number {
  return bleuNist(outputs, refs).nist;
}
