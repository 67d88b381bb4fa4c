/**
 * METEOR 1.5's aligner (`edu.cmu.meteor.aligner.Aligner`): every module proposes word (or
 * phrase) matches between hypothesis and reference, unambiguous ones are fixed, and a
 * left-to-right beam search over the reference picks the rest.
 *
 * The search reproduces METEOR exactly, quirks included, because they decide which
 * alignment wins and hence the score:
 * - paths are ranked by weighted match count (weights 1 for exact, 0.5 for the other
 *   modules), then fewer chunks, then smaller distance; the weighted counts are Java
 *   `int`s, so `count += len * 0.5` truncates and a one-word non-exact match adds nothing;
 * - when a path branches on several candidate matches, the distance of each branch is
 *   added to the parent path (and so to later siblings and the "skip" branch), not to the
 *   branch;
 * - identical sentences are aligned with the first module only.
 *
 * @module
 */

import { snowballEnglishStem } from "./snowball_english.ts";
import type { ParaphraseTable, SynonymDictionary } from "./meteor_resources.ts";

/** METEOR's matching modules, in the order METEOR's English defaults apply them. */
export type MeteorModule = "exact" | "stem" | "synonym" | "paraphrase";

/** One match: reference words [start, start+length) with hypothesis words [matchStart, matchStart+matchLength). */
export interface Match {
  /** Index of the module (stage) that made it. */
  module: number;
  /** First reference word. */
  start: number;
  /** Reference words covered. */
  length: number;
  /** First hypothesis word. */
  matchStart: number;
  /** Hypothesis words covered. */
  matchLength: number;
}

/** What the aligner needs besides the module list. */
export interface AlignerResources {
  /** Lower-case function words. */
  functionWords: ReadonlySet<string>;
  /** Needed when the module list has "synonym". */
  synonyms?: SynonymDictionary | null;
  /** Needed when the module list has "paraphrase". */
  paraphrases?: ParaphraseTable | null;
}

/** Per-module match counts and chunking of the chosen alignment. */
export interface AlignmentCounts {
  /** Hypothesis words. */
  testLength: number;
  /** Reference words. */
  referenceLength: number;
  /** Hypothesis function words. */
  testFunctionWords: number;
  /** Reference function words. */
  referenceFunctionWords: number;
  /** Per module: matched hypothesis content words. */
  testContent: number[];
  /** Per module: matched reference content words. */
  referenceContent: number[];
  /** Per module: matched hypothesis function words. */
  testFunction: number[];
  /** Per module: matched reference function words. */
  referenceFunction: number[];
  /** Contiguous matched chunks. */
  chunks: number;
  /** Matched hypothesis words, all modules. */
  testWordMatches: number;
  /** Matched reference words, all modules. */
  referenceWordMatches: number;
  /** The chosen matches, indexed by reference start (null where none starts). */
  matches: (Match | null)[];
}

/** Candidate matches per reference position plus how many candidates cover each word. */
class Stage {
  readonly matches: Match[][];
  readonly coverage1: Int32Array;
  readonly coverage2: Int32Array;

  constructor(n1: number, n2: number) {
    this.matches = Array.from({ length: n2 }, () => []);
    this.coverage1 = new Int32Array(n1);
    this.coverage2 = new Int32Array(n2);
  }

  add(m: Match): void {
    this.matches[m.start].push(m);
    for (let k = 0; k < m.matchLength; k++) this.coverage1[m.matchStart + k]++;
    for (let k = 0; k < m.length; k++) this.coverage2[m.start + k]++;
  }
}

/**
 * Java's `String.hashCode`. METEOR compares words (and stems) by these hash keys rather
 * than by string, so two words with colliding hashes count as equal; we do the same.
 */
export function javaHash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(h, 31) + s.charCodeAt(i)) | 0;
  return h;
}

const one = (module: number, j: number, i: number): Match => ({
  module,
  start: j,
  length: 1,
  matchStart: i,
  matchLength: 1,
});

function exactMatch(stage: number, w1: Int32Array, w2: Int32Array, s: Stage): void {
  for (let j = 0; j < w2.length; j++) {
    for (let i = 0; i < w1.length; i++) if (w1[i] === w2[j]) s.add(one(stage, j, i));
  }
}

function stemMatch(
  stage: number,
  t1: string[],
  t2: string[],
  w1: Int32Array,
  w2: Int32Array,
  s: Stage,
  stems: StemCache,
): void {
  const s1 = t1.map((w) => javaHash(stems.stem(w)));
  const s2 = t2.map((w) => javaHash(stems.stem(w)));
  for (let j = 0; j < w2.length; j++) {
    for (let i = 0; i < w1.length; i++) {
      if (s1[i] === s2[j] && w1[i] !== w2[j]) s.add(one(stage, j, i));
    }
  }
}

function synonymMatch(
  stage: number,
  t1: string[],
  t2: string[],
  w1: Int32Array,
  w2: Int32Array,
  s: Stage,
  dict: SynonymDictionary,
): void {
  const syn1 = t1.map((w) => dict.allSynsets(w));
  const syn2 = t2.map((w) => dict.allSynsets(w));
  for (let j = 0; j < w2.length; j++) {
    for (let i = 0; i < w1.length; i++) {
      if (w1[i] === w2[j]) continue;
      let shared = false;
      for (const id of syn1[i]) {
        if (syn2[j].has(id)) {
          shared = true;
          break;
        }
      }
      if (shared) s.add(one(stage, j, i));
    }
  }
}

/** Does `line` hold the phrase `words` starting at `at`? */
function phraseAt(line: Int32Array, at: number, words: Int32Array): boolean {
  for (let k = 0; k < words.length; k++) {
    if (at + k === line.length || line[at + k] !== words[k]) return false;
  }
  return true;
}

function paraphraseMatch(
  stage: number,
  w1: string[],
  w2: string[],
  s: Stage,
  table: ParaphraseTable,
): void {
  const line1 = Int32Array.from(w1, (w) => table.translate(w));
  const line2 = Int32Array.from(w2, (w) => table.translate(w));
  // Table phrases found in the reference, paraphrased somewhere in the hypothesis.
  for (let j = 0; j < line2.length; j++) {
    const paths = table.pathsFrom(line2, j);
    for (let p = 0; p < paths.length; p += 2) {
      const words = table.paraphrase(paths[p + 1]);
      for (let i = 0; i < line1.length; i++) {
        if (phraseAt(line1, i, words)) {
          s.add({
            module: stage,
            start: j,
            length: paths[p],
            matchStart: i,
            matchLength: words.length,
          });
        }
      }
    }
  }
  // Table phrases found in the hypothesis, paraphrased somewhere in the reference.
  for (let i = 0; i < line1.length; i++) {
    const paths = table.pathsFrom(line1, i);
    for (let p = 0; p < paths.length; p += 2) {
      const words = table.paraphrase(paths[p + 1]);
      for (let j = 0; j < line2.length; j++) {
        if (phraseAt(line2, j, words)) {
          s.add({
            module: stage,
            start: j,
            length: words.length,
            matchStart: i,
            matchLength: paths[p],
          });
        }
      }
    }
  }
}

/** Memoised Snowball stems (the same words recur across thousands of segments). */
class StemCache {
  readonly #cache = new Map<string, string>();
  stem(word: string): string {
    let s = this.#cache.get(word);
    if (s === undefined) {
      s = snowballEnglishStem(word);
      this.#cache.set(word, s);
    }
    return s;
  }
}

/** A search path of the beam search (METEOR's `PartialAlignment`). */
class Path {
  constructor(
    public matches: (Match | null)[],
    // Plain arrays: V8 copies small ones much faster than typed arrays.
    public used1: number[],
    public used2: number[],
    public matches1 = 0,
    public matches2 = 0,
    public chunks = 0,
    public idx = 0,
    public lastMatchEnd = -1,
    public distance = 0,
  ) {}

  copy(): Path {
    return new Path(
      this.matches.slice(),
      this.used1.slice(),
      this.used2.slice(),
      this.matches1,
      this.matches2,
      this.chunks,
      this.idx,
      this.lastMatchEnd,
      this.distance,
    );
  }

  isUsed(m: Match): boolean {
    for (let k = 0; k < m.length; k++) if (this.used2[m.start + k]) return true;
    for (let k = 0; k < m.matchLength; k++) if (this.used1[m.matchStart + k]) return true;
    return false;
  }

  setUsed(m: Match): void {
    for (let k = 0; k < m.length; k++) this.used2[m.start + k] = 1;
    for (let k = 0; k < m.matchLength; k++) this.used1[m.matchStart + k] = 1;
  }

  /** Take match m: METEOR's per-path bookkeeping, Java int truncation included. */
  take(m: Match, searchWeights: readonly number[]): void {
    const w = searchWeights[m.module];
    this.matches1 = Math.trunc(this.matches1 + m.matchLength * w);
    this.matches2 = Math.trunc(this.matches2 + m.length * w);
    if (this.lastMatchEnd !== -1 && m.matchStart !== this.lastMatchEnd) this.chunks++;
    this.idx = m.start + m.length;
    this.lastMatchEnd = m.matchStart + m.matchLength;
  }
}

/** METEOR's `PARTIAL_COMPARE_TOTAL`: more weighted matches, then fewer chunks, then less distance. */
function comparePaths(x: Path, y: Path): number {
  const matchDiff = y.matches1 + y.matches2 - (x.matches1 + x.matches2);
  if (matchDiff !== 0) return matchDiff > 0 ? 1 : -1;
  if (x.chunks !== y.chunks) return x.chunks - y.chunks;
  return x.distance - y.distance;
}

function resolve(s: Stage, start: Path, beamSize: number, searchWeights: readonly number[]): Path {
  const n2 = s.matches.length;
  let paths: Path[];
  let nextPaths: Path[] = [start];
  for (let current = 0; current <= n2; current++) {
    paths = nextPaths;
    nextPaths = [];
    paths.sort(comparePaths); // stable, like Java's Collections.sort
    for (let rank = 0; rank < beamSize && rank < paths.length; rank++) {
      const path = paths[rank];
      if (current === n2) {
        if (path.lastMatchEnd !== -1) path.chunks++;
        nextPaths.push(path);
        continue;
      }
      if (path.used2[current]) {
        if (current < path.idx) {
          nextPaths.push(path);
        } else {
          const m = path.matches[path.idx];
          if (m !== null) {
            path.take(m, searchWeights);
            path.distance += Math.abs(m.start - m.matchStart);
            nextPaths.push(path);
          }
        }
        continue;
      }
      for (const m of s.matches[current]) {
        if (path.isUsed(m)) continue;
        const next = path.copy();
        next.setUsed(m);
        next.matches[current] = m;
        next.take(m, searchWeights);
        // METEOR adds the branch's distance to the parent path (see module docs).
        path.distance += Math.abs(m.start - m.matchStart);
        nextPaths.push(next);
      }
      if (path.lastMatchEnd !== -1) {
        path.chunks++;
        path.lastMatchEnd = -1;
      }
      path.idx++;
      nextPaths.push(path);
    }
    if (nextPaths.length === 0) nextPaths.push(paths[0]); // METEOR's "unexpected conditions" fallback
  }
  nextPaths.sort(comparePaths);
  return nextPaths[0];
}

/** Aligns token lists with a fixed module list and resources. */
export class MeteorAligner {
  readonly #modules: readonly MeteorModule[];
  readonly #res: AlignerResources;
  readonly #beamSize: number;
  readonly #searchWeights: number[];
  readonly #stems = new StemCache();

  /**
   * @param modules matching modules in order (stage i is modules[i])
   * @param resources function words, and the dictionaries the modules need
   * @param beamSize beam width of the search (METEOR's default is 40)
   */
  constructor(modules: readonly MeteorModule[], resources: AlignerResources, beamSize = 40) {
    for (const m of modules) {
      if (m === "synonym" && !resources.synonyms) {
        throw new Error("MeteorAligner: synonym module needs a synonym dictionary");
      }
      if (m === "paraphrase" && !resources.paraphrases) {
        throw new Error("MeteorAligner: paraphrase module needs a paraphrase table");
      }
    }
    if (!Number.isInteger(beamSize) || beamSize < 1) {
      throw new Error(`MeteorAligner: beamSize must be a positive integer, got ${beamSize}`);
    }
    this.#modules = modules;
    this.#res = resources;
    this.#beamSize = beamSize;
    // METEOR ranks search paths with these weights whatever the scoring weights are.
    this.#searchWeights = modules.map((m) => (m === "exact" ? 1.0 : 0.5));
  }

  /**
   * Align hypothesis words (line 1) with reference words (line 2), both normalised.
   *
   * @param test hypothesis tokens
   * @param reference reference tokens
   * @returns per-module counts of the best alignment
   */
  align(test: string[], reference: string[]): AlignmentCounts {
    const n1 = test.length;
    const n2 = reference.length;
    const s = new Stage(n1, n2);
    const k1 = Int32Array.from(test, javaHash);
    const k2 = Int32Array.from(reference, javaHash);
    const identical = n1 === n2 && k1.every((h, i) => h === k2[i]);
    const modsUsed = identical ? 1 : this.#modules.length;
    for (let stage = 0; stage < modsUsed; stage++) {
      const mod = this.#modules[stage];
      if (mod === "exact") exactMatch(stage, k1, k2, s);
      else if (mod === "stem") stemMatch(stage, test, reference, k1, k2, s, this.#stems);
      else if (mod === "synonym") {
        synonymMatch(stage, test, reference, k1, k2, s, this.#res.synonyms!);
      } else paraphraseMatch(stage, test, reference, s, this.#res.paraphrases!);
    }

    // A reference position with a single candidate that overlaps nothing else is fixed.
    const initial = new Path(
      new Array<Match | null>(n2).fill(null),
      new Array<number>(n1).fill(0),
      new Array<number>(n2).fill(0),
    );
    for (let i = 0; i < n2; i++) {
      if (s.matches[i].length !== 1) continue;
      const m = s.matches[i][0];
      let overlap = false;
      for (let k = 0; k < m.length; k++) if (s.coverage2[i + k] !== 1) overlap = true;
      for (let k = 0; k < m.matchLength; k++) {
        if (s.coverage1[m.matchStart + k] !== 1) overlap = true;
      }
      if (!overlap) {
        initial.matches[i] = m;
        initial.setUsed(m);
      }
    }
    const best = resolve(s, initial, this.#beamSize, this.#searchWeights);
    return this.#count(test, reference, best.matches);
  }

  #count(test: string[], reference: string[], matches: (Match | null)[]): AlignmentCounts {
    const fw = this.#res.functionWords;
    const isFn1 = test.map((w) => fw.has(w.toLowerCase()));
    const isFn2 = reference.map((w) => fw.has(w.toLowerCase()));
    const k = this.#modules.length;
    const c = {
      testContent: new Array<number>(k).fill(0),
      referenceContent: new Array<number>(k).fill(0),
      testFunction: new Array<number>(k).fill(0),
      referenceFunction: new Array<number>(k).fill(0),
    };
    for (const m of matches) {
      if (m === null) continue;
      for (let j = 0; j < m.matchLength; j++) {
        if (isFn1[m.matchStart + j]) c.testFunction[m.module]++;
        else c.testContent[m.module]++;
      }
      for (let j = 0; j < m.length; j++) {
        if (isFn2[m.start + j]) c.referenceFunction[m.module]++;
        else c.referenceContent[m.module]++;
      }
    }
    // Chunks as METEOR's getCountAndChunks counts them over the final alignment.
    let testWordMatches = 0;
    let referenceWordMatches = 0;
    let chunks = 0;
    let lastMatchEnd = -1;
    for (let idx = 0; idx < matches.length;) {
      const m = matches[idx];
      if (m === null) {
        if (lastMatchEnd !== -1) {
          chunks++;
          lastMatchEnd = -1;
        }
        idx++;
      } else {
        testWordMatches += m.matchLength;
        referenceWordMatches += m.length;
        if (lastMatchEnd !== -1 && m.matchStart !== lastMatchEnd) chunks++;
        idx = m.start + m.length;
        lastMatchEnd = m.matchStart + m.matchLength;
      }
    }
    if (lastMatchEnd !== -1) chunks++;
    return {
      testLength: test.length,
      referenceLength: reference.length,
      testFunctionWords: isFn1.filter(Boolean).length,
      referenceFunctionWords: isFn2.filter(Boolean).length,
      ...c,
      chunks,
      testWordMatches,
      referenceWordMatches,
      matches,
    };
  }
}
