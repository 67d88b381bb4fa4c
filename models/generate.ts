/**
 * Greedy decoding and beam search with a KV cache, batched over prompts and beams, with the
 * semantics of Hugging Face's `generate` as the Prefix-Tuning paper's code ran it (the
 * transformers 3.x copy in that repository: `_generate_no_beam_search`,
 * `_generate_beam_search`, `BeamHypotheses`). The paper decoded E2E with
 * `num_beams=5, min_length=5, bad_words_ids=[[628], [198]], max_length=100 + prompt length`,
 * eos 50256, length penalty 1, no early stopping: `{ numBeams: 5, minLength: 5,
 * badWordsIds: [[628], [198]], maxNewTokens: 100 }` here.
 *
 * Semantics kept from Hugging Face:
 * - Beam scores are sums of log-softmax values; banned tokens (bad words, EOS before the minimum
 *   length) get −∞ after the log-softmax (no renormalisation). At each step the top 2·numBeams
 *   candidates over all beams are scanned; an EOS candidate ranked below numBeams is dropped,
 *   otherwise it closes a hypothesis scored `sum_logprobs / length^lengthPenalty`, where
 *   `length` counts the prompt and the generated tokens before the EOS (not the prefix, not the
 *   EOS). Unfinished beams at the end are scored with length prompt + maxNewTokens.
 * - A prompt is done when numBeams hypotheses exist and (earlyStopping, or) the best candidate
 *   score divided by the current length^lengthPenalty cannot beat the worst kept one.
 * - `minLength` is Hugging Face's `min_length`: EOS is banned while prompt + generated tokens
 *   < minLength (the prompt counts, the prefix does not). `minNewTokens` counts generated tokens
 *   only. Both may be given.
 * - Bad-word sequences ban their last token when the row's text (prompt + generated) ends with
 *   the rest of the sequence; a single-token sequence is always banned. As in Hugging Face, a
 *   bad word equal to `[eos]` is ignored.
 *
 * Batching never changes results: prompts of different lengths are left-padded with an
 * attention mask and per-row position ids (positions start at the prefix length for the first
 * real token), and each prompt's lengths are its own, so a batch decodes exactly as each
 * prompt alone would. Finished prompts leave the batch (their cache rows are dropped).
 * Differences from Hugging Face: candidates scoring −∞ are never selected (Hugging Face's top-k
 * could pick them only when fewer finite candidates than 2·numBeams exist), and ties are broken
 * towards the lower (beam, token) index.
 *
 * @module
 */
import { noGrad, type Tensor, tidy } from "../autograd/tensor.ts";
import type { Backend } from "../kernels/backend.ts";
import type { KV } from "../nn/attention.ts";
import { CACHE_BLOCK, KVCache } from "../nn/kv_cache.ts";
import type { ForwardOptions, GPT2Output } from "./gpt2.ts";
import { prefixPast, type PrefixSource } from "./prefix.ts";

/** What generation needs from a model (GPT2 satisfies it). */
export interface GenerationModel {
  /** Sizes and the default EOS. */
  readonly config: {
    vocabSize: number;
    nPositions: number;
    nLayer: number;
    eosTokenId?: number | null;
  };
  /** Where the weights live (inputs are created there). */
  readonly backend: Backend;
  /**
   * Logits and (with `useCache`) the new past; a decoding step passes a `cache` (a `KVCache`)
   * instead of a past, which the model writes the new position into (see {@link ForwardOptions}).
   */
  forward(ids: number[][] | Tensor, opts: ForwardOptions): GPT2Output;
}

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** Most tokens generated per prompt (Hugging Face's max_length = prompt length + this). */
  maxNewTokens: number;
  /** Beams per prompt; 1 = greedy (default). */
  numBeams?: number;
  /**
   * Decoding algorithm: by default greedy for one beam, beam search otherwise (as Hugging
   * Face). `"beam"` runs the beam-search code even with one beam.
   */
  strategy?: "greedy" | "beam";
  /** Hugging Face's `min_length`: EOS is banned while prompt + generated < minLength. */
  minLength?: number;
  /** EOS is banned until this many tokens were generated. */
  minNewTokens?: number;
  /** End-of-sequence token (default: the model config's; null = none). */
  eosTokenId?: number | null;
  /** Token used for left padding (never attended; default EOS or 0). */
  padTokenId?: number;
  /** Token sequences that must not be generated (e.g. [[628], [198]]). */
  badWordsIds?: number[][];
  /** Exponent of the length normalisation of finished hypotheses (default 1). */
  lengthPenalty?: number;
  /** Stop a prompt as soon as numBeams hypotheses are finished (default false). */
  earlyStopping?: boolean;
  /**
   * Keys/values prepended at every layer, each [B, n_head, L, head_dim] with B = number of
   * prompts (one prefix per prompt; rows may differ: mixed-task batching). Expanded over beams.
   * Positions of the prompt start at L.
   */
  prefixPast?: KV[];
  /**
   * A prefix steering every prompt, or one per prompt (a mixed-task batch: rows may use different
   * prefixes of the same length). Turned into `prefixPast` on the model's backend and freed after.
   * Give `prefix` or `prefixPast`, not both.
   */
  prefix?: PrefixSource | readonly PrefixSource[];
  /**
   * Called after each step with, per prompt, the tokens of its best live beam (greedy: its
   * tokens so far), to show output as it comes. The final result can differ: a hypothesis that
   * ended earlier may score higher.
   */
  onStep?: (tokens: readonly number[][]) => void;
}

/** One result of {@link generateWithScores}. */
export interface GenerationResult {
  /** Generated tokens, without the prompt and without the EOS. */
  tokens: number[];
  /**
   * Beam search: the hypothesis score, sum of log-probs / length^lengthPenalty. Greedy: the sum
   * of the chosen tokens' log-probs (EOS included when it ended the sequence).
   */
  score: number;
  /** Whether the sequence ended with EOS (rather than running out of tokens). */
  finished: boolean;
}

/** Generated token ids per prompt (prompt and EOS excluded). */
export async function generate(
  model: GenerationModel,
  prompts: number[][],
  opts: GenerateOptions,
): Promise<number[][]> {
  return (await generateWithScores(model, prompts, opts)).map((r) => r.tokens);
}

/** As {@link generate}, with each result's score. */
export async function generateWithScores(
  model: GenerationModel,
  prompts: number[][],
  opts: GenerateOptions,
): Promise<GenerationResult[]> {
  if (opts.prefix !== undefined) {
    if (opts.prefixPast) throw new Error("generate: give prefix or prefixPast, not both");
    if (!Array.isArray(prompts) || prompts.length === 0) throw new Error("generate: no prompts");
    const past = await prefixPast(opts.prefix, prompts.length, model.backend);
    try {
      return await generateWithScores(model, prompts, {
        ...opts,
        prefix: undefined,
        prefixPast: past,
      });
    } finally {
      for (const l of past) disposeKV(l);
    }
  }
  const s = setup(model, prompts, opts);
  const strategy = opts.strategy ?? (s.numBeams === 1 ? "greedy" : "beam");
  if (strategy === "greedy" && s.numBeams !== 1) {
    throw new Error(`generate: greedy decoding takes one beam, got numBeams ${s.numBeams}`);
  }
  return strategy === "greedy" ? await greedy(s) : await beamSearch(s);
}

// ---------------------------------------------------------------------------------------------
// shared machinery

interface Setup {
  model: GenerationModel;
  prompts: number[][];
  numBeams: number;
  maxNew: number;
  eos: number | null;
  pad: number;
  bans: BanRule;
  lengthPenalty: number;
  earlyStopping: boolean;
  prefix: KV[] | undefined;
  onStep: ((tokens: readonly number[][]) => void) | undefined;
  prefixLen: number;
  maxPrompt: number;
  padded: boolean;
  vocab: number;
}

function bad(msg: string): never {
  throw new Error(`generate: ${msg}`);
}

function setup(model: GenerationModel, prompts: number[][], o: GenerateOptions): Setup {
  const V = model.config.vocabSize;
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) {
      throw new Error(`generate: ${name} must be an integer ≥ ${min}, got ${v}`);
    }
    return v;
  };
  if (!Array.isArray(prompts) || prompts.length === 0) throw new Error("generate: no prompts");
  prompts.forEach((p, i) => {
    if (!Array.isArray(p) || p.length === 0) throw new Error(`generate: prompt ${i} is empty`);
    p.forEach((t, j) => {
      if (!Number.isInteger(t) || t < 0 || t >= V) {
        throw new Error(`generate: prompt ${i} token ${j} = ${t} is outside [0, ${V})`);
      }
    });
  });
  const maxNew = int("maxNewTokens", o.maxNewTokens, 1);
  const numBeams = int("numBeams", o.numBeams ?? 1, 1);
  const eos = o.eosTokenId === undefined ? (model.config.eosTokenId ?? null) : o.eosTokenId;
  if (eos !== null) int("eosTokenId", eos, 0);
  const lengthPenalty = o.lengthPenalty ?? 1;
  if (!(lengthPenalty > 0)) {
    throw new Error(`generate: lengthPenalty must be > 0, got ${lengthPenalty}`);
  }
  (o.badWordsIds ?? []).forEach((w, i) => {
    if (!Array.isArray(w) || w.length === 0) {
      throw new Error(`generate: badWordsIds[${i}] is empty`);
    }
    w.forEach((t) => int(`badWordsIds[${i}] token`, t, 0));
  });
  const prefix = o.prefixPast;
  let prefixLen = 0;
  if (prefix) {
    if (prefix.length !== model.config.nLayer) {
      throw new Error(
        `generate: prefixPast has ${prefix.length} layers, the model ${model.config.nLayer}`,
      );
    }
    prefixLen = prefix[0].k.shape[2];
    prefix.forEach((l, i) => {
      for (const t of [l.k, l.v]) {
        if (t.ndim !== 4 || t.shape[0] !== prompts.length || t.shape[2] !== prefixLen) {
          throw new Error(
            `generate: prefixPast[${i}] [${
              t.shape.join(", ")
            }] must be [${prompts.length}, n_head, ${prefixLen}, head_dim]`,
          );
        }
      }
    });
  }
  const maxPrompt = Math.max(...prompts.map((p) => p.length));
  const lastPos = prefixLen + maxPrompt + maxNew - 1;
  if (lastPos > model.config.nPositions) {
    throw new Error(
      `generate: prefix ${prefixLen} + prompt ${maxPrompt} + maxNewTokens ${maxNew} − 1 exceeds n_positions ${model.config.nPositions}`,
    );
  }
  return {
    model,
    prompts,
    numBeams,
    maxNew,
    eos,
    // Pads are never attended; any id the embedding accepts will do.
    pad: o.padTokenId === undefined
      ? (eos !== null && eos < V ? eos : 0)
      : (int("padTokenId", o.padTokenId, 0) < V
        ? o.padTokenId
        : bad(`padTokenId ${o.padTokenId} ≥ vocab ${V}`)),
    bans: banRule({
      eos,
      minLength: int("minLength", o.minLength ?? 0, 0),
      minNewTokens: int("minNewTokens", o.minNewTokens ?? 0, 0),
      badWordsIds: o.badWordsIds,
    }),
    lengthPenalty,
    earlyStopping: o.earlyStopping ?? false,
    prefix,
    onStep: o.onStep,
    prefixLen,
    maxPrompt,
    padded: prompts.some((p) => p.length !== maxPrompt),
    vocab: V,
  };
}

/**
 * The decoder's rows: the KV cache (preallocated after the prompts: a step writes one position
 * in place, a beam reorder moves only the rows that change) plus, per row, its attention-mask
 * row and next position.
 */
class Decoder {
  cache: KVCache | undefined;
  #masks: number[][] = [];
  #positions: number[] = [];
  constructor(readonly s: Setup) {}

  /** Runs the (left-padded) prompts with the prefix; returns last-position logits [B, V]. */
  async start(): Promise<Float32Array> {
    const s = this.s, P = s.maxPrompt, L = s.prefixLen;
    const ids = s.prompts.map((p) => [...new Array(P - p.length).fill(s.pad), ...p]);
    this.#masks = s.prompts.map((p) => [
      ...new Array(L).fill(1),
      ...new Array(P - p.length).fill(0),
      ...new Array(p.length).fill(1),
    ]);
    this.#positions = s.prompts.map((p) => L + p.length);
    const positionIds = s.padded
      ? s.prompts.map((p) =>
        Array.from({ length: P }, (_, i) => L + Math.max(0, i - (P - p.length)))
      )
      : undefined;
    const out = noGrad(() =>
      tidy(() =>
        s.model.forward(ids, {
          past: s.prefix,
          attentionMask: s.padded ? this.#masks : undefined,
          positionIds,
          useCache: true,
          lastTokenOnly: true,
        })
      )
    );
    try {
      this.cache = KVCache.from(out.past!, Math.min(s.maxNew, CACHE_BLOCK));
    } catch (e) {
      out.logits.dispose();
      throw e;
    } finally {
      for (const l of out.past!) disposeKV(l);
    }
    return await readLogits(out.logits);
  }

  /**
   * Keeps the cache rows `src` (in that order; repeats allowed) and feeds one new token per
   * kept row. Returns the new last-position logits [src.length, V].
   */
  async next(src: number[], tokens: number[]): Promise<Float32Array> {
    const cache = this.cache!;
    cache.reorder(src);
    cache.reserve(1);
    this.#masks = src.map((r) => [...this.#masks[r], 1]);
    this.#positions = src.map((r) => this.#positions[r]);
    const positionIds = this.#positions.map((p) => [p]);
    this.#positions = this.#positions.map((p) => p + 1);
    // Written positions as the rows' masks say, the rest of the capacity hidden.
    const cap = cache.capacity;
    const mask = this.#masks.map((m) => [...m, ...new Array(cap - m.length).fill(0)]);
    const out = noGrad(() =>
      tidy(() =>
        this.s.model.forward(tokens.map((t) => [t]), {
          cache,
          attentionMask: mask,
          positionIds,
          lastTokenOnly: true,
        })
      )
    );
    return await readLogits(out.logits);
  }

  /** Frees the cache. */
  dispose(): void {
    this.cache?.dispose();
    this.cache = undefined;
  }
}

async function readLogits(logits: Tensor): Promise<Float32Array> {
  try {
    return (await logits.data()) as Float32Array;
  } finally {
    logits.dispose();
  }
}

function disposeKV(l: KV): void {
  l.k.dispose();
  l.v.dispose();
}

/** The token bans of a decoding, as {@link bannedTokens} applies them. */
export interface BanRule {
  /** End-of-sequence token, banned before the minimum length (null = none). */
  eos: number | null;
  /** Hugging Face's `min_length`: EOS is banned while prompt + generated < minLength. */
  minLength: number;
  /** EOS is banned until this many tokens were generated. */
  minNewTokens: number;
  /** Single-token bad words: always banned. */
  single: number[];
  /** Longer bad words: the last token is banned when the text ends with the rest. */
  sequences: number[][];
}

/**
 * The {@link BanRule} of `badWordsIds` (token sequences never to generate) and the EOS limits.
 * As in Hugging Face, a bad word equal to `[eos]` is ignored (EOS is left to the minimum length).
 */
export function banRule(o: {
  eos: number | null;
  minLength?: number;
  minNewTokens?: number;
  badWordsIds?: readonly number[][];
}): BanRule {
  const single: number[] = [], sequences: number[][] = [];
  for (const w of o.badWordsIds ?? []) {
    if (w.length === 1 && w[0] === o.eos) continue;
    if (w.length === 1) single.push(w[0]);
    else if (w.length > 1) sequences.push([...w]);
  }
  return {
    eos: o.eos,
    minLength: o.minLength ?? 0,
    minNewTokens: o.minNewTokens ?? 0,
    single,
    sequences,
  };
}

/**
 * Tokens a row may not take next: EOS before the minimum length, the single-token bad words, and
 * the last token of every bad-word sequence whose other tokens end the row's text (`history`:
 * prompt then generated tokens, `histLen` of them; `generated` of them generated).
 */
export function bannedTokens(
  rule: BanRule,
  history: (i: number) => number | undefined,
  histLen: number,
  generated: number,
  promptLen: number,
): number[] {
  const out = [...rule.single];
  if (
    rule.eos !== null &&
    (promptLen + generated < rule.minLength || generated < rule.minNewTokens)
  ) out.push(rule.eos);
  for (const w of rule.sequences) {
    const k = w.length - 1;
    if (k > histLen) continue;
    let match = true;
    for (let i = 0; i < k && match; i++) match = history(histLen - k + i) === w[i];
    if (match) out.push(w[k]);
  }
  return out;
}

/**
 * The greedy rule (Hugging Face's: an argmax of the logits after the bans): the token with the
 * highest logit in `logits[offset .. offset + vocab)` among those not `banned`, the lowest id on
 * ties; −1 when every token is banned or −∞ (or NaN).
 */
export function greedyToken(
  logits: ArrayLike<number>,
  offset: number,
  vocab: number,
  banned: readonly number[],
): number {
  let best = -1, top = -Infinity;
  for (let v = 0; v < vocab; v++) {
    const x = logits[offset + v];
    // The ban list is consulted only for a new maximum (a few times per row).
    if (x > top && !banned.includes(v)) {
      top = x;
      best = v;
    }
  }
  return best;
}

/** log Σ exp of one row of logits, in f64 (the log-softmax is each logit minus it). */
function logSumExp(logits: Float32Array, offset: number, vocab: number): number {
  let mx = -Infinity;
  for (let v = 0; v < vocab; v++) if (logits[offset + v] > mx) mx = logits[offset + v];
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp(logits[offset + v] - mx);
  return mx + Math.log(sum);
}

/** Text so far of a row: its prompt then its generated tokens. */
function historyOf(prompt: number[], gen: number[]): (i: number) => number | undefined {
  return (i) => (i < prompt.length ? prompt[i] : gen[i - prompt.length]);
}

// ---------------------------------------------------------------------------------------------
// greedy

async function greedy(s: Setup): Promise<GenerationResult[]> {
  const B = s.prompts.length;
  const results: GenerationResult[] = s.prompts.map(() => ({
    tokens: [],
    score: 0,
    finished: false,
  }));
  const dec = new Decoder(s);
  try {
    let logits = await dec.start();
    let active = Array.from({ length: B }, (_, b) => b); // prompt of each decoder row
    for (let g = 0; g < s.maxNew; g++) {
      const keep: number[] = [], tokens: number[] = [];
      active.forEach((b, row) => {
        const r = results[b], prompt = s.prompts[b];
        const hist = historyOf(prompt, r.tokens);
        const banned = bannedTokens(s.bans, hist, prompt.length + g, g, prompt.length);
        const best = greedyToken(logits, row * s.vocab, s.vocab, banned);
        if (best < 0) { // every token banned: the row ends unfinished
          r.score = -Infinity;
          return;
        }
        r.score += logits[row * s.vocab + best] - logSumExp(logits, row * s.vocab, s.vocab);
        if (best === s.eos) {
          r.finished = true;
          return;
        }
        r.tokens.push(best);
        keep.push(row);
        tokens.push(best);
      });
      active = keep.map((row) => active[row]);
      s.onStep?.(results.map((r) => r.tokens));
      if (active.length === 0 || g === s.maxNew - 1) break;
      logits = await dec.next(keep, tokens);
    }
  } finally {
    dec.dispose();
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// beam search

/** Finished hypotheses of one prompt: Hugging Face's `BeamHypotheses`. */
export class BeamHypotheses {
  /** Kept hypotheses in insertion order: [score, tokens]. */
  readonly beams: [number, number[]][] = [];
  #worst = 1e9;

  /** An empty n-best list. */
  constructor(
    readonly numBeams: number,
    readonly lengthPenalty: number,
    readonly earlyStopping: boolean,
  ) {}

  /** Adds a hypothesis whose length (prompt + generated, no EOS) is `length`. */
  add(tokens: number[], sumLogprobs: number, length: number): void {
    const score = sumLogprobs / length ** this.lengthPenalty;
    if (this.beams.length < this.numBeams || score > this.#worst) {
      this.beams.push([score, tokens]);
      if (this.beams.length > this.numBeams) {
        // Python's sorted((score, idx)): the worst score, earliest index on ties, goes.
        const order = this.beams.map(([sc], i) => [sc, i]).sort((a, b) =>
          a[0] - b[0] || a[1] - b[1]
        );
        this.beams.splice(order[0][1], 1);
        this.#worst = order[1][0];
      } else {
        this.#worst = Math.min(score, this.#worst);
      }
    }
  }

  /** Whether no unfinished beam can do better than the kept hypotheses. */
  isDone(bestSumLogprobs: number, curLen: number): boolean {
    if (this.beams.length < this.numBeams) return false;
    if (this.earlyStopping) return true;
    return this.#worst >= bestSumLogprobs / curLen ** this.lengthPenalty;
  }

  /** The best hypothesis (the latest added among equal scores, as Python's sort + pop). */
  best(): [number, number[]] | undefined {
    let at = -1;
    this.beams.forEach(([sc], i) => {
      if (at < 0 || sc >= this.beams[at][0]) at = i;
    });
    return at < 0 ? undefined : this.beams[at];
  }
}

interface Beam {
  score: number;
  tokens: number[];
}

/** The k best (value, index) pairs, best first; equal values keep the lower index first. */
class TopK {
  vals: number[] = [];
  idx: number[] = [];
  constructor(readonly k: number) {}
  /** Whether k values are kept (the worst kept can then only rise). */
  get full(): boolean {
    return this.vals.length === this.k;
  }
  /** Offers a value; returns whether it was kept. */
  push(v: number, i: number): boolean {
    const n = this.vals.length;
    if (v === -Infinity || (n === this.k && v <= this.vals[n - 1])) return false;
    let lo = 0, hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.vals[mid] >= v) lo = mid + 1;
      else hi = mid;
    }
    this.vals.splice(lo, 0, v);
    this.idx.splice(lo, 0, i);
    if (this.vals.length > this.k) {
      this.vals.pop();
      this.idx.pop();
    }
    return true;
  }
}

/**
 * Pushes the candidates of one beam, `base + log_softmax(logits row)[v]` (the logit minus the
 * row's log-sum-exp `lse`) for every token v not banned, indexed `index0 + v`, in token order: as pushing all of them, without the log-softmax
 * array. A candidate's score grows with its logit, so once a logit x fails to enter the full list
 * (whose worst score only rises), no logit ≤ x can enter: those are skipped with one comparison.
 */
function pushCandidates(
  top: TopK,
  logits: Float32Array,
  offset: number,
  vocab: number,
  lse: number,
  base: number,
  banned: readonly number[],
  index0: number,
): void {
  let skip = -Infinity; // logits ≤ this cannot enter (NaN is never skipped, as before)
  for (let v = 0; v < vocab; v++) {
    const x = logits[offset + v];
    if (x <= skip || banned.includes(v)) continue;
    const score = base + (x - lse);
    if (!top.push(score, index0 + v) && top.full && score !== -Infinity) skip = x;
  }
}

async function beamSearch(s: Setup): Promise<GenerationResult[]> {
  const B = s.prompts.length, nb = s.numBeams, V = s.vocab;
  const hyps = s.prompts.map(() => new BeamHypotheses(nb, s.lengthPenalty, s.earlyStopping));
  // Beam 0 starts at 0, the others at −1e9, so the first step does not pick nb copies of one token.
  const beams: Beam[][] = s.prompts.map(() =>
    Array.from({ length: nb }, (_, j) => ({ score: j === 0 ? 0 : -1e9, tokens: [] }))
  );
  const done = new Array<boolean>(B).fill(false);
  const endedByEos = new WeakSet<number[]>();
  const dec = new Decoder(s);
  try {
    let logits = await dec.start();
    // Decoder row of each (active prompt, beam): at the start every beam reads its prompt's row.
    let active = Array.from({ length: B }, (_, b) => b);
    let rowOf: number[][] = active.map((b) => new Array(nb).fill(b));
    for (let g = 0; g < s.maxNew; g++) {
      const src: number[] = [], tokens: number[] = [];
      const stillActive: number[] = [];
      // Log-sum-exp per decoder row, once (at the first step every beam reads one row).
      const lses = new Map<number, number>();
      const lseOf = (row: number) => {
        let v = lses.get(row);
        if (v === undefined) lses.set(row, v = logSumExp(logits, row * V, V));
        return v;
      };
      active.forEach((b, a) => {
        const prompt = s.prompts[b], curLen = prompt.length + g;
        const top = new TopK(2 * nb);
        beams[b].forEach((beam, j) => {
          const o = rowOf[a][j] * V;
          const banned = bannedTokens(
            s.bans,
            historyOf(prompt, beam.tokens),
            curLen,
            g,
            prompt.length,
          );
          pushCandidates(top, logits, o, V, lseOf(rowOf[a][j]), beam.score, banned, j * V);
        });
        const next: { score: number; token: number; beam: number }[] = [];
        for (let rank = 0; rank < top.vals.length && next.length < nb; rank++) {
          const j = Math.floor(top.idx[rank] / V), v = top.idx[rank] % V;
          if (s.eos !== null && v === s.eos) {
            if (rank >= nb) continue;
            const hyp = beams[b][j].tokens.slice();
            endedByEos.add(hyp);
            hyps[b].add(hyp, top.vals[rank], curLen);
          } else {
            next.push({ score: top.vals[rank], token: v, beam: j });
          }
        }
        // Degenerate case (too few finite candidates): fill with dead beams that never win.
        while (next.length < nb) next.push({ score: -Infinity, token: s.pad, beam: 0 });
        done[b] = top.vals.length === 0 || hyps[b].isDone(top.vals[0], curLen);
        const old = beams[b];
        beams[b] = next.map((n) => ({ score: n.score, tokens: [...old[n.beam].tokens, n.token] }));
        if (done[b]) return;
        stillActive.push(b);
        for (const n of next) {
          src.push(rowOf[a][n.beam]);
          tokens.push(n.token);
        }
      });
      active = stillActive;
      s.onStep?.(beams.map((bs) => bs[0].tokens));
      if (active.length === 0 || g === s.maxNew - 1) break;
      logits = await dec.next(src, tokens);
      rowOf = active.map((_, a) => Array.from({ length: nb }, (_, j) => a * nb + j));
    }
  } finally {
    dec.dispose();
  }
  return s.prompts.map((prompt, b) => {
    if (!done[b]) {
      for (const beam of beams[b]) hyps[b].add(beam.tokens, beam.score, prompt.length + s.maxNew);
    }
    const best = hyps[b].best();
    // No hypothesis at all only when every token was banned from the first step.
    if (!best) return { tokens: [], score: -Infinity, finished: false };
    const [score, tokens] = best;
    return { tokens, score, finished: endedByEos.has(tokens) };
  });
}
