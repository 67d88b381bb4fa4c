/**
 * METEOR 1.5 (Denkowski & Lavie 2014) as the official E2E NLG scoring script runs it:
 * `measure_scores.py` of tuetschek/e2e-metrics tokenises every output and reference with
 * the MS-COCO code (Stanford PTBTokenizer, lower-cased, punctuation dropped), then feeds
 * METEOR 1.5 (`-l en -norm`, stdio mode) one `SCORE ||| ref1 ||| ... ||| hyp` line per
 * output and scores the system from the summed sufficient statistics (`EVAL` line).
 *
 * METEOR: normalise (`-norm`), align hypothesis with each reference (modules exact, stem,
 * synonym, paraphrase with weights 1.0 0.6 0.8 0.6), keep the best-scoring reference per
 * segment; score = Fmean · (1 − γ·frag^β) with Fmean = P·R / (α·P + (1−α)·R), where P and
 * R weight content words by δ and function words by 1−δ (α 0.85, β 0.2, γ 0.6, δ 0.75),
 * and frag = chunks / mean matched words.
 *
 * Resources are looked up in `opts.resourceDir`, else `$LF_METEOR_DIR`, else
 * `$LF_CACHE/meteor`, else `~/.cache/lf/meteor` (`deno task download --data meteor`
 * fills the last two). Without
 * `english.synsets`/`english.exceptions` the synonym module is skipped, without
 * `paraphrase-en.gz` the paraphrase module is skipped; `note` says so. Such a run is
 * exactly METEOR with `-m` listing the remaining modules (and their default weights).
 *
 * @module
 */

import { MeteorAligner, type MeteorModule } from "./meteor_aligner.ts";
import { javaTokens, meteorNormalize } from "./meteor_normalize.ts";
import { cocoTokenizeCorpus } from "./ptb_tokenize.ts";
import {
  fileExists,
  joinPath,
  loadFunctionWords,
  loadParaphraseTable,
  loadSynonyms,
  meteorResourceDir,
  type ParaphraseTable,
  type SynonymDictionary,
} from "./meteor_resources.ts";

export type { MeteorModule } from "./meteor_aligner.ts";

/** METEOR's scoring parameters. */
export interface MeteorParameters {
  /** Weight of recall against precision in Fmean. */
  alpha: number;
  /** Shape of the fragmentation penalty. */
  beta: number;
  /** Maximum fragmentation penalty. */
  gamma: number;
  /** Weight of content words (function words get 1 − δ). */
  delta: number;
}

/** METEOR 1.5's English defaults (task "rank"): α 0.85, β 0.2, γ 0.6, δ 0.75. */
export const METEOR_EN_PARAMETERS: Readonly<MeteorParameters> = Object.freeze({
  alpha: 0.85,
  beta: 0.2,
  gamma: 0.6,
  delta: 0.75,
});

/** METEOR 1.5's English module weights. */
export const METEOR_EN_WEIGHTS: Readonly<Record<MeteorModule, number>> = Object.freeze({
  exact: 1.0,
  stem: 0.6,
  synonym: 0.8,
  paraphrase: 0.6,
});

/** METEOR 1.5's English modules, in order. */
export const METEOR_EN_MODULES: readonly MeteorModule[] = Object.freeze([
  "exact",
  "stem",
  "synonym",
  "paraphrase",
]);

/** Options of {@link meteor} and {@link createMeteorScorer}. */
export interface MeteorOptions {
  /**
   * Directory with METEOR's resource files (default `$LF_METEOR_DIR`, else
   * `$LF_CACHE/meteor`, else `~/.cache/lf/meteor`).
   */
  resourceDir?: string;
  /** Paraphrase table (default `<resourceDir>/paraphrase-en.gz`). */
  paraphraseFile?: string;
  /**
   * Modules to use, in order. Default: exact stem synonym paraphrase, silently narrowed to
   * what the resources allow (see `note`). Listing a module explicitly makes a missing
   * resource an error instead.
   */
  modules?: MeteorModule[];
  /** Module weights by module (defaults {@link METEOR_EN_WEIGHTS}). */
  weights?: Partial<Record<MeteorModule, number>>;
  /** Scoring parameters (defaults {@link METEOR_EN_PARAMETERS}). */
  parameters?: Partial<MeteorParameters>;
  /** Beam width of the aligner's search (METEOR's default 40). */
  beamSize?: number;
  /**
   * "coco" (default): tokenise like the E2E script's COCO code before METEOR (PTB
   * tokenizer over all references, then over all outputs, lower-cased, punctuation
   * dropped; see `ptb_tokenize.ts`). "none": the strings are already what the script
   * feeds METEOR (METEOR's own `-norm` still runs).
   */
  tokenize?: "coco" | "none";
}

/** METEOR sufficient statistics of one segment or a sum of segments (METEOR's `MeteorStats`). */
export interface MeteorStats {
  /** Hypothesis words. */
  testLength: number;
  /** Reference words. */
  referenceLength: number;
  /** Hypothesis function words. */
  testFunctionWords: number;
  /** Reference function words. */
  referenceFunctionWords: number;
  /** Matched hypothesis words, all modules. */
  testTotalMatches: number;
  /** Matched reference words, all modules. */
  referenceTotalMatches: number;
  /** Per module: matched hypothesis content words. */
  testContent: number[];
  /** Per module: matched reference content words. */
  referenceContent: number[];
  /** Per module: matched hypothesis function words. */
  testFunction: number[];
  /** Per module: matched reference function words. */
  referenceFunction: number[];
  /** Chunks of contiguous matches. */
  chunks: number;
  /** Matched hypothesis words, used for the fragmentation. */
  testWordMatches: number;
  /** Matched reference words, used for the fragmentation. */
  referenceWordMatches: number;
}

/** Score and its parts computed from statistics. */
export interface MeteorScoreParts {
  /** Weighted precision. */
  precision: number;
  /** Weighted recall. */
  recall: number;
  /** Harmonic mean weighted by α. */
  fMean: number;
  /** γ · frag^β. */
  fragPenalty: number;
  /** Fmean · (1 − penalty), 0 where undefined (no words), never negative. */
  score: number;
}

/** Result of {@link meteor}. */
export interface MeteorResult {
  /** System-level METEOR from the summed statistics (what the E2E script reports). */
  score: number;
  /** Whether the paraphrase module ran. */
  paraphrase: boolean;
  /** Whether the synonym module ran. */
  synonym: boolean;
  /** Modules used, in order. */
  modules: MeteorModule[];
  /** Weight of each used module (same order). */
  weights: number[];
  /** Parameters used. */
  parameters: MeteorParameters;
  /** How this run relates to official METEOR, e.g. which modules were skipped and why. */
  note: string;
  /** Per-output METEOR (best reference). */
  segmentScores: number[];
  /** Summed statistics. */
  stats: MeteorStats;
  /** Resource directory consulted. */
  resourceDir: string;
}

/** A configured METEOR: resources loaded once, score any number of segments. */
export interface MeteorScorer {
  /** Modules used, in order. */
  readonly modules: readonly MeteorModule[];
  /** Weight of each module (same order). */
  readonly weights: readonly number[];
  /** Scoring parameters. */
  readonly parameters: Readonly<MeteorParameters>;
  /** See {@link MeteorResult.note}. */
  readonly note: string;
  /** Resource directory consulted. */
  readonly resourceDir: string;
  /** How inputs are tokenised before METEOR. */
  readonly tokenize: "coco" | "none";
  /**
   * Statistics and score of one hypothesis against its references: every reference is
   * aligned and the best-scoring one kept (the first one on ties), as METEOR does.
   */
  segment(hypothesis: string, references: readonly string[]): { stats: MeteorStats; score: number };
  /** Score from (possibly summed) statistics. */
  scoreStats(stats: MeteorStats): MeteorScoreParts;
}

/** Empty statistics for `modules` modules. */
export function emptyMeteorStats(modules: number): MeteorStats {
  return {
    testLength: 0,
    referenceLength: 0,
    testFunctionWords: 0,
    referenceFunctionWords: 0,
    testTotalMatches: 0,
    referenceTotalMatches: 0,
    testContent: new Array<number>(modules).fill(0),
    referenceContent: new Array<number>(modules).fill(0),
    testFunction: new Array<number>(modules).fill(0),
    referenceFunction: new Array<number>(modules).fill(0),
    chunks: 0,
    testWordMatches: 0,
    referenceWordMatches: 0,
  };
}

/**
 * METEOR's `computeMetrics`: the score of (summed) statistics.
 *
 * @param s statistics
 * @param weights weight of each module, indexed like the statistics' module arrays
 * @param p scoring parameters
 * @returns precision, recall, Fmean, penalty and score
 */
export function meteorScoreFromStats(
  s: MeteorStats,
  weights: readonly number[],
  p: Readonly<MeteorParameters> = METEOR_EN_PARAMETERS,
): MeteorScoreParts {
  const { alpha, beta, gamma, delta } = p;
  const testWeightedLength = delta * (s.testLength - s.testFunctionWords) +
    (1 - delta) * s.testFunctionWords;
  const refWeightedLength = delta * (s.referenceLength - s.referenceFunctionWords) +
    (1 - delta) * s.referenceFunctionWords;
  // Summation order follows METEOR (content of every module, then function words).
  let testWeighted = 0;
  let refWeighted = 0;
  for (let i = 0; i < weights.length; i++) testWeighted += s.testContent[i] * weights[i] * delta;
  for (let i = 0; i < weights.length; i++) {
    refWeighted += s.referenceContent[i] * weights[i] * delta;
  }
  for (let i = 0; i < weights.length; i++) {
    testWeighted += s.testFunction[i] * weights[i] * (1 - delta);
  }
  for (let i = 0; i < weights.length; i++) {
    refWeighted += s.referenceFunction[i] * weights[i] * (1 - delta);
  }
  const precision = testWeighted / testWeightedLength;
  const recall = refWeighted / refWeightedLength;
  const fMean = 1 / ((1 - alpha) / precision + alpha / recall);
  // A hypothesis equal to its reference (everything matched in one chunk) gets no penalty.
  const frag =
    s.testTotalMatches === s.testLength && s.referenceTotalMatches === s.referenceLength &&
      s.chunks === 1
      ? 0
      : s.chunks / ((s.testWordMatches + s.referenceWordMatches) / 2);
  const fragPenalty = gamma * Math.pow(frag, beta);
  const raw = fMean * (1 - fragPenalty);
  return { precision, recall, fMean, fragPenalty, score: Number.isNaN(raw) ? 0 : Math.max(raw, 0) };
}

/**
 * METEOR's `addStats`: add segment statistics into a running sum. A segment matched
 * perfectly in one chunk adds no chunk (so it does not fragment the system score).
 */
export function addMeteorStats(sum: MeteorStats, s: MeteorStats): void {
  if (s.testContent.length !== sum.testContent.length) {
    throw new Error(
      `addMeteorStats: statistics for ${s.testContent.length} modules added to a sum of ${sum.testContent.length}`,
    );
  }
  sum.testLength += s.testLength;
  sum.referenceLength += s.referenceLength;
  sum.testFunctionWords += s.testFunctionWords;
  sum.referenceFunctionWords += s.referenceFunctionWords;
  sum.testTotalMatches += s.testTotalMatches;
  sum.referenceTotalMatches += s.referenceTotalMatches;
  for (let i = 0; i < s.testContent.length; i++) {
    sum.testContent[i] += s.testContent[i];
    sum.referenceContent[i] += s.referenceContent[i];
    sum.testFunction[i] += s.testFunction[i];
    sum.referenceFunction[i] += s.referenceFunction[i];
  }
  const perfect = s.testTotalMatches === s.testLength &&
    s.referenceTotalMatches === s.referenceLength &&
    s.chunks === 1;
  if (!perfect) sum.chunks += s.chunks;
  sum.testWordMatches += s.testWordMatches;
  sum.referenceWordMatches += s.referenceWordMatches;
}

interface LoadedResources {
  functionWords: Set<string>;
  synonyms: SynonymDictionary | null;
  synonymMissing: string[];
}

// Loaded once per directory / file: WordNet takes a moment, the paraphrase table longer.
const resourceCache = new Map<string, Promise<LoadedResources>>();
const paraphraseCache = new Map<string, Promise<ParaphraseTable>>();

function loadResources(dir: string): Promise<LoadedResources> {
  let p = resourceCache.get(dir);
  if (p === undefined) {
    p = (async () => {
      const [functionWords, syn] = await Promise.all([loadFunctionWords(dir), loadSynonyms(dir)]);
      return { functionWords, synonyms: syn.dict, synonymMissing: syn.missing };
    })();
    resourceCache.set(dir, p);
    p.catch(() => resourceCache.delete(dir));
  }
  return p;
}

function loadParaphrases(path: string): Promise<ParaphraseTable> {
  let p = paraphraseCache.get(path);
  if (p === undefined) {
    p = loadParaphraseTable(path);
    paraphraseCache.set(path, p);
    p.catch(() => paraphraseCache.delete(path));
  }
  return p;
}

const baseName = (p: string): string => p.slice(p.lastIndexOf("/") + 1);

function validateOptions(opts: MeteorOptions): void {
  const known = new Set<string>(METEOR_EN_MODULES);
  for (const m of opts.modules ?? []) {
    if (!known.has(m)) {
      throw new Error(
        `meteor: unknown module "${m}" in opts.modules (known: ${[...known].join(", ")})`,
      );
    }
  }
  if (opts.modules !== undefined && new Set(opts.modules).size !== opts.modules.length) {
    throw new Error(`meteor: opts.modules lists a module twice: ${opts.modules.join(", ")}`);
  }
  for (const [k, v] of Object.entries(opts.weights ?? {})) {
    if (!known.has(k)) throw new Error(`meteor: unknown module "${k}" in opts.weights`);
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new Error(`meteor: opts.weights.${k} must be a finite number, got ${v}`);
    }
  }
  for (const [k, v] of Object.entries(opts.parameters ?? {})) {
    if (!(k in METEOR_EN_PARAMETERS)) {
      throw new Error(`meteor: unknown parameter "${k}" in opts.parameters`);
    }
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new Error(`meteor: opts.parameters.${k} must be a finite number, got ${v}`);
    }
  }
  if (opts.tokenize !== undefined && opts.tokenize !== "coco" && opts.tokenize !== "none") {
    throw new Error(`meteor: opts.tokenize must be "coco" or "none", got "${opts.tokenize}"`);
  }
}

/**
 * Load METEOR's resources and configure a scorer.
 *
 * @param opts see {@link MeteorOptions}
 * @returns a scorer whose `note` says which modules run and why others do not
 */
export async function createMeteorScorer(opts: MeteorOptions = {}): Promise<MeteorScorer> {
  validateOptions(opts);
  const dir = meteorResourceDir(opts.resourceDir);
  const explicit = opts.modules !== undefined;
  const requested = opts.modules ?? [...METEOR_EN_MODULES];
  const res = await loadResources(dir);
  const skipped: string[] = [];
  const modules: MeteorModule[] = [];
  let paraphrases: ParaphraseTable | null = null;
  for (const m of requested) {
    if (m === "synonym" && res.synonyms === null) {
      const files = res.synonymMissing.map(baseName).join(", ");
      if (explicit) {
        throw new Error(`meteor: synonym module needs ${res.synonymMissing.join(", ")}, not found`);
      }
      skipped.push(`METEOR without synonym module: ${files} not found in ${dir}`);
      continue;
    }
    if (m === "paraphrase") {
      const path = opts.paraphraseFile ?? joinPath(dir, "paraphrase-en.gz");
      if (!(await fileExists(path))) {
        if (explicit || opts.paraphraseFile !== undefined) {
          throw new Error(`meteor: paraphrase module needs ${path}, not found`);
        }
        skipped.push(`METEOR without paraphrase module: ${baseName(path)} not found in ${dir}`);
        continue;
      }
      paraphrases = await loadParaphrases(path);
    }
    modules.push(m);
  }
  if (modules.length === 0) {
    throw new Error("meteor: no module left to run (opts.modules is empty)");
  }
  const weights = modules.map((m) => opts.weights?.[m] ?? METEOR_EN_WEIGHTS[m]);
  const parameters: MeteorParameters = { ...METEOR_EN_PARAMETERS, ...opts.parameters };
  const aligner = new MeteorAligner(
    modules,
    { functionWords: res.functionWords, synonyms: res.synonyms, paraphrases },
    opts.beamSize ?? 40,
  );
  const tokenize = opts.tokenize ?? "coco";
  const describe = `METEOR 1.5 -l en -norm, modules ${modules.join(" ")}, weights ${
    weights.join(" ")
  }`;
  const note = [describe, ...skipped].join("; ");

  const segment = (hypothesis: string, references: readonly string[]) => {
    const hyp = javaTokens(meteorNormalize(hypothesis));
    let best: { stats: MeteorStats; score: number } | null = null;
    for (const ref of references) {
      const a = aligner.align(hyp, javaTokens(meteorNormalize(ref)));
      const stats: MeteorStats = {
        testLength: a.testLength,
        referenceLength: a.referenceLength,
        testFunctionWords: a.testFunctionWords,
        referenceFunctionWords: a.referenceFunctionWords,
        testTotalMatches: sum(a.testContent) + sum(a.testFunction),
        referenceTotalMatches: sum(a.referenceContent) + sum(a.referenceFunction),
        testContent: a.testContent,
        referenceContent: a.referenceContent,
        testFunction: a.testFunction,
        referenceFunction: a.referenceFunction,
        chunks: a.chunks,
        testWordMatches: a.testWordMatches,
        referenceWordMatches: a.referenceWordMatches,
      };
      const score = meteorScoreFromStats(stats, weights, parameters).score;
      // METEOR starts from score −1 and keeps a reference only if strictly better.
      if (best === null || score > best.score) best = { stats, score };
    }
    if (best === null) throw new Error("meteor: a segment needs at least one reference");
    return best;
  };

  return {
    modules,
    weights,
    parameters,
    note,
    resourceDir: dir,
    tokenize,
    segment,
    scoreStats: (stats) => meteorScoreFromStats(stats, weights, parameters),
  };
}

function sum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

/** Java's `trim()`: strips every character up to U+0020. */
function javaTrim(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && s.charCodeAt(a) <= 0x20) a++;
  while (b > a && s.charCodeAt(b - 1) <= 0x20) b--;
  return s.slice(a, b);
}

/**
 * What METEOR's stdio mode sees for one segment: the COCO wrapper joins references and
 * hypothesis into `SCORE ||| r1 ||| ... ||| hyp` (after removing "|||" from the
 * hypothesis) and METEOR splits that line on "|||" again.
 */
function stdioSegment(
  hyp: string,
  refs: readonly string[],
  index: number,
): { hyp: string; refs: string[] } {
  const cleanHyp = hyp.replaceAll("|||", "").replaceAll("  ", " ");
  const line = ["SCORE", refs.join(" ||| "), cleanHyp].join(" ||| ");
  const parts = line.split("|||");
  while (parts.length > 0 && parts[parts.length - 1] === "") parts.pop(); // Java's split drops trailing empties
  if (parts.length < 3) throw new Error(`meteor: output ${index} has no reference`);
  return { hyp: javaTrim(parts[parts.length - 1]), refs: parts.slice(1, -1).map(javaTrim) };
}

/**
 * System-level METEOR of `outputs` against `refs`, as the official E2E script computes it.
 *
 * @param outputs one system output per instance
 * @param refs the references of each instance (at least one each)
 * @param opts see {@link MeteorOptions}
 * @returns the score, per-output scores, summed statistics and a note on the modules used
 */
export async function meteor(
  outputs: string[],
  refs: string[][],
  opts: MeteorOptions = {},
): Promise<MeteorResult> {
  if (outputs.length !== refs.length) {
    throw new Error(`meteor: ${outputs.length} outputs but ${refs.length} reference sets`);
  }
  refs.forEach((r, i) => {
    if (r.length === 0) throw new Error(`meteor: reference set ${i} is empty`);
  });
  const scorer = await createMeteorScorer(opts);
  const input = scorer.tokenize === "coco" ? cocoTokenizeCorpus(outputs, refs) : { outputs, refs };
  const total = emptyMeteorStats(scorer.modules.length);
  const segmentScores: number[] = [];
  for (let i = 0; i < outputs.length; i++) {
    const seg = stdioSegment(input.outputs[i], input.refs[i], i);
    const { stats, score } = scorer.segment(seg.hyp, seg.refs);
    segmentScores.push(score);
    addMeteorStats(total, stats);
  }
  return {
    score: scorer.scoreStats(total).score,
    paraphrase: scorer.modules.includes("paraphrase"),
    synonym: scorer.modules.includes("synonym"),
    modules: [...scorer.modules],
    weights: [...scorer.weights],
    parameters: { ...scorer.parameters },
    note: scorer.note,
    segmentScores,
    stats: total,
    resourceDir: scorer.resourceDir,
  };
}
