/**
 * The E2E NLG Challenge metrics as the official scoring script computes them:
 * BLEU and NIST (mteval-v13a), METEOR, ROUGE-L and CIDEr (pycocoevalcap after
 * the PTB tokenizer), plus readers for the official file formats.
 *
 * @example
 * ```ts
 * import { readEvalData, scoreAll } from "./metrics/mod.ts";
 * const data = await readEvalData("refs.txt", "outputs.txt");
 * const s = await scoreAll(data.outputs, data.refs, { meteor: false });
 * console.log(s.BLEU, s.NIST, s.ROUGE_L, s.CIDEr);
 * ```
 *
 * @module
 */

import { bleuNist } from "./bleu_nist.ts";
import { ciderTokenized } from "./cider.ts";
import { checkAligned } from "./formats.ts";
import { meteor, type MeteorResult } from "./meteor.ts";
import { cocoTokenizeCorpus } from "./ptb_tokenize.ts";
import { rougeLTokenized } from "./rouge.ts";

export { bleu, bleuNist, type BleuNistResult, nist } from "./bleu_nist.ts";
export { cider, type CiderOptions, ciderScoresTokenized, ciderTokenized } from "./cider.ts";
export {
  checkAligned,
  type CsvColumns,
  decodeUtf8,
  type EvalData,
  EvalInputError,
  isCsvName,
  loadEvalData,
  type NamedText,
  parseCsvColumns,
  parseOutputLines,
  parseReferenceBlocks,
  readEvalData,
} from "./formats.ts";
export { meteor, type MeteorOptions, type MeteorResult } from "./meteor.ts";
export { mtevalTokenize, mtevalWords } from "./mteval_tokenize.ts";
export {
  COCO_PUNCTUATIONS,
  cocoTokenize,
  cocoTokenizeCaptions,
  cocoTokenizeCorpus,
  ptbTokenize,
  ptbTokenizeLines,
} from "./ptb_tokenize.ts";
export { lcsLength, ROUGE_L_BETA, rougeL, rougeLSentence, rougeLTokenized } from "./rouge.ts";

/** Options of {@link scoreAll}. */
export interface ScoreAllOptions {
  /** Compute METEOR (default true); false leaves `METEOR` null. */
  meteor?: boolean;
  /** METEOR's resource directory (see the METEOR module for the default). */
  meteorDir?: string;
}

/** The five official E2E scores. */
export interface E2EScores {
  /** BLEU-4 as a fraction (mteval-v13a). */
  BLEU: number;
  /** NIST-5 (mteval-v13a). */
  NIST: number;
  /** System-level METEOR, or null when not computed. */
  METEOR: number | null;
  /** ROUGE-L (pycocoevalcap, beta 1.2). */
  ROUGE_L: number;
  /** CIDEr (pycocoevalcap `Cider`). */
  CIDEr: number;
  /** METEOR's details (modules used, note on missing resources), or null when not computed. */
  meteorInfo: { paraphrase: boolean; note: string } | null;
}

/**
 * All five E2E metrics of a corpus. The PTB tokenisation is done once and shared
 * by ROUGE-L, CIDEr and METEOR, as in the official script.
 *
 * @param outputs One system output per instance.
 * @param refs The references of each instance (at least one each).
 * @param opts See {@link ScoreAllOptions}.
 * @returns The unrounded scores (the official script prints 4 decimals).
 */
export async function scoreAll(
  outputs: string[],
  refs: string[][],
  opts: ScoreAllOptions = {},
): Promise<E2EScores> {
  checkAligned(outputs, refs);
  const { bleu, nist } = bleuNist(outputs, refs);
  const tok = cocoTokenizeCorpus(outputs, refs);
  let met: MeteorResult | null = null;
  if (opts.meteor ?? true) {
    // METEOR gets the captions already tokenised the official way (corpus context included)
    met = await meteor(tok.outputs, tok.refs, { resourceDir: opts.meteorDir, tokenize: "none" });
  }
  return {
    BLEU: bleu,
    NIST: nist,
    METEOR: met === null ? null : met.score,
    ROUGE_L: rougeLTokenized(tok.outputs, tok.refs),
    CIDEr: ciderTokenized(tok.outputs, tok.refs),
    meteorInfo: met === null ? null : { paraphrase: met.paraphrase, note: met.note },
  };
}
