/**
 * The scheduler: one queue of requests, whatever their prefix, decoded in shared batches by one
 * frozen GPT-2.
 *
 * - Greedy requests are batched continuously. Waiting requests join by running their prompts
 *   together (each after its own prefix's keys and values, padded and masked), then take rows
 *   in the shared decoding step; each step
 *   feeds one token per row, with each row's cache left-padded to the longest and masked, its
 *   own position ids, and its own prefix. A row that ends (EOS, `max_tokens`, a stop string, a
 *   deadline, a client gone) leaves at once and a waiting request takes its place at the next
 *   step.
 * - Beam requests run as whole batches through {@link generate}, grouped with waiting beam
 *   requests of the same settings and prefix length (per-row prefix past), one batch at a time
 *   beside the greedy steps.
 *
 * Batching changes speed, never results: every row computes what it would compute alone. The
 * cache padding is masked (exact), and the decoding rule is {@link generate}'s (tests compare
 * token ids and scores). The one thing a backend may change with the number of rows is how a
 * matrix product accumulates: the WebAssembly matmul uses a row-by-row kernel up to
 * {@link GEMV_MAX_M} rows and a blocked one above, which round differently. So on that backend
 * the greedy step runs its rows in groups of at most that many (what one row alone runs), and
 * beam requests share a batch only when every product stays on the blocked kernel both ways
 * (more beams and longer prompts than that bound); otherwise they run alone.
 *
 * @module
 */
import {
  bannedTokens,
  banRule,
  concat,
  GEMV_MAX_M,
  generate,
  type GPT2,
  type GPT2Tokenizer,
  greedyToken,
  type KV,
  noGrad,
  slice,
  type Tensor,
  tidy,
  zeros,
} from "./lib.ts";
import { ClientError, type PrefixEntry } from "./registry.ts";
import type { ServerMetrics } from "./metrics.ts";

/** Decoding settings of one request. */
export interface DecodeSettings {
  /** Most tokens generated. */
  maxNewTokens: number;
  /** Beams; 1 = greedy. */
  numBeams: number;
  /** Hugging Face's `min_length`: EOS is banned while prompt + generated < minLength. */
  minLength: number;
  /** Token sequences never generated. */
  badWordsIds: number[][];
  /** Strings that end the text (the text is cut before the first one). */
  stop: string[];
}

/** The batch a token was decoded in. */
export interface StepInfo {
  /** Rows decoded in that step (all prefixes). */
  rows: number;
  /** Rows per prefix name (`base` for none). */
  prefixes: Record<string, number>;
}

/** What a finished request gets. */
export interface JobResult {
  /** Generated token ids (EOS excluded). */
  tokens: number[];
  /** Generated text, cut before the first stop string. */
  text: string;
  /** `stop` (EOS or a stop string) or `length` (max_tokens reached). */
  finishReason: "stop" | "length";
  /** Largest number of rows of a step this request was decoded in. */
  maxBatchRows: number;
}

/** A request for {@link Engine.submit}. */
export interface JobRequest {
  /** The prefix (its reference is released when the job ends), or null for the bare model. */
  prefix: PrefixEntry | null;
  /** Prompt token ids (not empty). */
  prompt: number[];
  /** Decoding settings. */
  settings: DecodeSettings;
  /** Absolute deadline (ms, `Date.now()` clock); past it the job fails with 504. */
  deadline: number;
  /** Aborts the job (client gone). */
  signal?: AbortSignal;
  /** Greedy only: called with each new piece of text (stop strings held back until sure). */
  onText?: (delta: string, step: StepInfo) => void;
}

/** Options of {@link Engine}. */
export interface EngineOptions {
  /** Most requests waiting (not yet decoding); more are refused with 429. */
  maxQueue: number;
  /** Most greedy rows decoding at once. */
  maxRows: number;
  /** Most rows per model call in a greedy step (default: what keeps rows exact on the backend). */
  stepRows?: number;
  /** Most prompts per beam batch. */
  maxBeamPrompts: number;
  /** Counters. */
  metrics: ServerMetrics;
}

class Job {
  readonly tokens: number[] = [];
  /** Text already handed to `onText`. */
  sent = "";
  /** Position id of the next token fed. */
  nextPos = 0;
  /** The token chosen but not yet fed. */
  pending = -1;
  maxBatchRows = 0;
  state: "queued" | "running" | "done" = "queued";
  failure: ClientError | null = null;
  readonly promise: Promise<JobResult>;
  resolve!: (r: JobResult) => void;
  reject!: (e: Error) => void;
  readonly #onAbort = () => this.cancel(this);

  constructor(readonly cancel: (job: Job) => void, readonly req: JobRequest) {
    this.promise = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.promise.catch(() => {}); // a rejection nobody awaits (client gone) is not an error
    req.signal?.addEventListener("abort", this.#onAbort);
  }

  get greedy(): boolean {
    return this.req.settings.numBeams === 1;
  }

  get prefixName(): string {
    return this.req.prefix?.name ?? "base";
  }

  /** Frees the prefix reference, once. */
  finish(): void {
    if (this.state === "done") return;
    this.state = "done";
    this.req.prefix?.release();
    this.req.signal?.removeEventListener("abort", this.#onAbort);
  }
}

/**
 * Greedy rows decoded by one model call: their caches side by side, per layer
 * [rows, n_head, width, head_dim], with one mask row each: 1 on the row's own columns (prefix,
 * prompt, fed tokens, in order), 0 on padding.
 */
class Chunk {
  constructor(public rows: Job[], public masks: number[][], public past: KV[]) {}
  get width(): number {
    return this.masks[0].length;
  }
  dispose(): void {
    disposePast(this.past);
  }
}

function disposePast(past: KV[]): void {
  for (const l of past) {
    l.k.dispose();
    l.v.dispose();
  }
}

/** Text of `text` up to the first stop string, and whether one was found. */
function cutAtStop(text: string, stop: string[]): [string, boolean] {
  let at = -1;
  for (const s of stop) {
    const i = text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at < 0 ? [text, false] : [text.slice(0, at), true];
}

/** Length of the longest end of `text` that begins some stop string (held back while streaming). */
function stopPrefixAtEnd(text: string, stop: string[]): number {
  let n = 0;
  for (const s of stop) {
    for (let k = Math.min(s.length - 1, text.length); k > n; k--) {
      if (text.endsWith(s.slice(0, k))) {
        n = k;
        break;
      }
    }
  }
  return n;
}

const macrotask = () => new Promise<void>((r) => setTimeout(r, 0));

/** The scheduler of one served model (see the module documentation). */
export class Engine {
  readonly #greedyQueue: Job[] = [];
  readonly #beamQueue: Job[] = [];
  #chunks: Chunk[] = [];
  #beamRunning: Job[] = [];
  #beamTask: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #stopped = false;
  #closed = false;
  readonly #loop: Promise<void>;
  /** Most rows per model call in a greedy step. */
  readonly stepRows: number;
  readonly #wasm: boolean;
  readonly #H: number;
  readonly #headDim: number;
  readonly #eos: number | null;

  /** Starts the scheduling loop for `model`. */
  constructor(
    readonly model: GPT2,
    readonly tokenizer: GPT2Tokenizer,
    readonly opts: EngineOptions,
  ) {
    const wasm = model.backend.name === "wasm";
    this.stepRows = opts.stepRows ?? (wasm ? GEMV_MAX_M : opts.maxRows);
    this.#wasm = wasm;
    const c = model.config;
    this.#H = c.nHead;
    this.#headDim = c.nEmbd / c.nHead;
    this.#eos = c.eosTokenId ?? tokenizer.eosTokenId;
    this.#loop = this.#run();
  }

  /** Requests waiting to start. */
  get queueDepth(): number {
    return this.#greedyQueue.length + this.#beamQueue.length;
  }

  /** Greedy rows decoding now plus prompts in the running beam batch. */
  get activeRows(): number {
    return this.#greedyRows + this.#beamRunning.length;
  }

  get #greedyRows(): number {
    return this.#chunks.reduce((n, c) => n + c.rows.length, 0);
  }

  /** Fails every greedy row and frees the caches. */
  #failActive(err: ClientError): void {
    for (const c of this.#chunks) {
      for (const j of c.rows) this.#fail(j, err);
      c.dispose();
    }
    this.#chunks = [];
  }

  /** Whether `n` more requests fit in the queue. */
  hasRoom(n: number): boolean {
    return this.queueDepth + n <= this.opts.maxQueue;
  }

  /**
   * Queues a request; resolves with its result or rejects with a {@link ClientError} (504 past
   * its deadline, 499 when aborted, 503 when the engine stops first). Throws 429 when the queue
   * is full, 503 once stopping.
   */
  submit(req: JobRequest): Promise<JobResult> {
    if (this.#stopped) throw new ClientError(503, "the server is shutting down", "unavailable");
    if (!this.hasRoom(1)) {
      throw new ClientError(
        429,
        `the queue is full (${this.opts.maxQueue} requests waiting); retry later`,
        "rate_limit",
      );
    }
    req.prefix?.acquire();
    const job = new Job((j) => this.#cancel(j), req);
    if (req.signal?.aborted) {
      this.#fail(job, new ClientError(499, "client closed the request", "cancelled"));
      return job.promise;
    }
    (job.greedy ? this.#greedyQueue : this.#beamQueue).push(job);
    this.#wake?.();
    return job.promise;
  }

  /** Ends a job because its client went away. */
  #cancel(job: Job): void {
    if (job.state === "done") return;
    this.opts.metrics.cancelled++;
    const err = new ClientError(499, "client closed the request", "cancelled");
    if (job.state === "queued") {
      for (const q of [this.#greedyQueue, this.#beamQueue]) {
        const i = q.indexOf(job);
        if (i >= 0) q.splice(i, 1);
      }
      this.#fail(job, err);
    } else {
      job.failure = err; // a running job leaves at the next step (or after its beam batch)
      this.#wake?.();
    }
  }

  /**
   * Stops taking requests; lets queued and running ones finish for up to `graceMs`, then fails
   * the rest with 503 and ends the loop.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    const t0 = Date.now();
    while (
      (this.queueDepth > 0 || this.activeRows > 0 || this.#beamTask) && Date.now() - t0 < graceMs
    ) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const err = new ClientError(
      503,
      "the server shut down before this request finished",
      "unavailable",
    );
    for (const j of [...this.#greedyQueue, ...this.#beamQueue]) this.#fail(j, err);
    this.#greedyQueue.length = 0;
    this.#beamQueue.length = 0;
    this.#failActive(err);
    this.#closed = true;
    this.#wake?.();
    await this.#loop;
    if (this.#beamTask) await this.#beamTask;
  }

  #fail(job: Job, err: ClientError): void {
    if (job.state === "done") return;
    job.finish();
    job.reject(err);
  }

  #succeed(job: Job, r: Omit<JobResult, "maxBatchRows">): void {
    if (job.state === "done") return;
    job.finish();
    job.resolve({ ...r, maxBatchRows: job.maxBatchRows });
  }

  /** Fails a job that is cancelled or past its deadline; true if it did. */
  #expire(job: Job, now: number): boolean {
    if (job.failure) {
      this.#fail(job, job.failure);
      return true;
    }
    if (now > job.req.deadline) {
      this.#fail(job, new ClientError(504, "the request ran past its deadline", "timeout"));
      return true;
    }
    return false;
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      try {
        const now = Date.now();
        for (const q of [this.#greedyQueue, this.#beamQueue]) {
          for (const j of [...q]) {
            if (this.#expire(j, now)) q.splice(q.indexOf(j), 1);
          }
        }
        if (!this.#beamTask && this.#beamQueue.length > 0) this.#startBeamBatch();
        await this.#admit();
        if (this.#chunks.length > 0) {
          await this.#step();
          await macrotask(); // let the server read requests and write answers between steps
        } else {
          // Idle: wait for a request, the end of the beam batch, or the next deadline sweep.
          await new Promise<void>((resolve) => {
            const done = () => {
              clearTimeout(timer);
              this.#wake = null;
              resolve();
            };
            const timer = setTimeout(done, this.queueDepth > 0 ? 20 : 1000);
            this.#wake = done;
            this.#beamTask?.then(done);
          });
        }
      } catch (e) {
        // A failure of the model on some rows must not end the loop: fail those rows.
        const err = new ClientError(
          500,
          `decoding failed: ${(e as Error).message}`,
          "server_error",
        );
        this.#failActive(err);
      }
    }
  }

  /**
   * Moves waiting greedy requests into the batch. Their prompts run together, each after its
   * own prefix: prefixes and prompts left-padded (masked) to the longest, positions per row.
   * On the WebAssembly backend a prompt of at most {@link GEMV_MAX_M} tokens runs alone (alone
   * its products take the row-by-row kernel; in a batch they would not), and a group has at
   * most `stepRows` prompts.
   */
  async #admit(): Promise<void> {
    const jobs: Job[] = [];
    while (this.#greedyRows + jobs.length < this.opts.maxRows && this.#greedyQueue.length > 0) {
      const job = this.#greedyQueue.shift()!;
      if (this.#expire(job, Date.now())) continue;
      job.state = "running";
      jobs.push(job);
    }
    if (jobs.length === 0) return;
    const short = (j: Job) => this.#wasm && j.req.prompt.length <= GEMV_MAX_M;
    // Like the decoding step, a group takes at most `stepRows` rows (its LM head multiplies one
    // row per prompt).
    const long = jobs.filter((j) => !short(j));
    const groups = jobs.filter(short).map((j) => [j]);
    for (let i = 0; i < long.length; i += this.stepRows) {
      groups.push(long.slice(i, i + this.stepRows));
    }
    for (const group of groups) {
      const { chunk, logits } = await this.#prefill(group);
      const prefixes: Record<string, number> = {};
      for (const j of group) prefixes[j.prefixName] = (prefixes[j.prefixName] ?? 0) + 1;
      const step: StepInfo = { rows: group.length, prefixes };
      this.opts.metrics.step(group.length);
      this.opts.metrics.prefillRows.observe(group.length);
      const keep: number[] = [];
      group.forEach((job, r) => {
        this.opts.metrics.promptTokens += job.req.prompt.length;
        if (this.#advance(job, logits, r * this.model.config.vocabSize, step)) keep.push(r);
      });
      if (this.#compact(chunk, keep)) this.#chunks.push(chunk);
    }
    this.#merge();
  }

  /** Runs the prompts of `group` after their prefixes: their chunk and logits [n, V]. */
  async #prefill(group: Job[]): Promise<{ chunk: Chunk; logits: Float32Array }> {
    const Ls = group.map((j) => j.req.prefix?.shape.prefixLen ?? 0);
    const Ps = group.map((j) => j.req.prompt.length);
    const Lm = Math.max(...Ls), Pm = Math.max(...Ps);
    const H = this.#H, d = this.#headDim, be = this.model.backend;
    const pad = this.#eos ?? 0;
    const out = noGrad(() =>
      tidy(() => {
        if (group.length === 1) {
          // Exactly what decoding this prompt alone runs.
          const r = this.model.forward([group[0].req.prompt], {
            past: group[0].req.prefix?.past,
            useCache: true,
            lastTokenOnly: true,
          });
          return { logits: r.logits, past: r.past! };
        }
        const leftPad = (t: Tensor | null, n: number) =>
          n === 0
            ? t!
            : t
            ? concat([zeros([1, H, n, d], { backend: be }), t], 2)
            : zeros([1, H, n, d], { backend: be });
        const past: KV[] | undefined = Lm === 0 ? undefined : Array.from(
          { length: this.model.config.nLayer },
          (_, l) => ({
            k: concat(group.map((j, r) => leftPad(j.req.prefix?.past[l].k ?? null, Lm - Ls[r])), 0),
            v: concat(group.map((j, r) => leftPad(j.req.prefix?.past[l].v ?? null, Lm - Ls[r])), 0),
          }),
        );
        const r = this.model.forward(
          group.map((j, r) => [...new Array(Pm - Ps[r]).fill(pad), ...j.req.prompt]),
          {
            past,
            attentionMask: group.map((_, r) => [
              ...new Array(Lm - Ls[r]).fill(0),
              ...new Array(Ls[r]).fill(1),
              ...new Array(Pm - Ps[r]).fill(0),
              ...new Array(Ps[r]).fill(1),
            ]),
            positionIds: group.map((_, r) =>
              Array.from({ length: Pm }, (_, i) => Ls[r] + Math.max(0, i - (Pm - Ps[r])))
            ),
            useCache: true,
            lastTokenOnly: true,
          },
        );
        return { logits: r.logits, past: r.past! };
      })
    );
    const masks = group.map((_, r) =>
      group.length === 1 ? new Array(Ls[r] + Ps[r]).fill(1) : [
        ...new Array(Lm - Ls[r]).fill(0),
        ...new Array(Ls[r]).fill(1),
        ...new Array(Pm - Ps[r]).fill(0),
        ...new Array(Ps[r]).fill(1),
      ]
    );
    group.forEach((j, i) => j.nextPos = Ls[i] + Ps[i]);
    const chunk = new Chunk(group, masks, out.past);
    try {
      return { chunk, logits: (await out.logits.data()) as Float32Array };
    } finally {
      out.logits.dispose();
    }
  }

  /**
   * Keeps the rows `keep` of a chunk (in order), dropping the cache columns that are padding in
   * every kept row; frees it and returns false when none is kept.
   */
  #compact(c: Chunk, keep: number[]): boolean {
    if (keep.length === c.rows.length) return true;
    if (keep.length === 0) {
      c.dispose();
      return false;
    }
    const masks = keep.map((i) => c.masks[i]);
    let t = 0;
    while (t < masks[0].length - 1 && masks.every((m) => m[t] === 0)) t++;
    const old = c.past;
    c.past = noGrad(() =>
      tidy(() => {
        const pick = (x: Tensor) => {
          const rows = concat(keep.map((i) => slice(x, 0, i, i + 1)), 0);
          return (t > 0 ? slice(rows, 2, t) : rows).contiguous();
        };
        return old.map((l) => ({ k: pick(l.k), v: pick(l.v) }));
      })
    );
    disposePast(old);
    c.rows = keep.map((i) => c.rows[i]);
    c.masks = masks.map((m) => m.slice(t));
    return true;
  }

  /** Merges the smallest chunks while two fit in one model call. */
  #merge(): void {
    for (;;) {
      const [a, b] = [...this.#chunks].sort((x, y) => x.rows.length - y.rows.length);
      if (!a || !b || a.rows.length + b.rows.length > this.stepRows) return;
      const W = Math.max(a.width, b.width);
      const H = this.#H, d = this.#headDim, be = this.model.backend;
      const past = noGrad(() =>
        tidy(() => {
          const pad = (x: Tensor, w: number) =>
            w === W ? x : concat([zeros([x.shape[0], H, W - w, d], { backend: be }), x], 2);
          return a.past.map((l, i) => ({
            k: concat([pad(l.k, a.width), pad(b.past[i].k, b.width)], 0),
            v: concat([pad(l.v, a.width), pad(b.past[i].v, b.width)], 0),
          }));
        })
      );
      const masks = [...a.masks, ...b.masks].map((m) => [...new Array(W - m.length).fill(0), ...m]);
      a.dispose();
      b.dispose();
      this.#chunks = this.#chunks.filter((c) => c !== a && c !== b);
      this.#chunks.push(new Chunk([...a.rows, ...b.rows], masks, past));
    }
  }

  /**
   * Picks a row's next token from its logits (at `offset`) by {@link generate}'s greedy rule
   * ({@link greedyToken} after {@link bannedTokens}: the highest logit among the tokens not
   * banned, EOS before min_length and bad words, the lowest id on ties). Returns whether the row
   * goes on.
   */
  #advance(job: Job, logits: Float32Array, offset: number, step: StepInfo): boolean {
    if (this.#expire(job, Date.now())) return false;
    const s = job.req.settings, V = this.model.config.vocabSize, prompt = job.req.prompt;
    const g = job.tokens.length;
    const hist = (i: number) => (i < prompt.length ? prompt[i] : job.tokens[i - prompt.length]);
    const rule = banRule({ eos: this.#eos, minLength: s.minLength, badWordsIds: s.badWordsIds });
    const best = greedyToken(
      logits,
      offset,
      V,
      bannedTokens(rule, hist, prompt.length + g, g, prompt.length),
    );
    job.maxBatchRows = Math.max(job.maxBatchRows, step.rows);
    if (best < 0 || best === this.#eos) {
      this.#succeed(job, { tokens: job.tokens, text: this.#flush(job), finishReason: "stop" });
      return false;
    }
    job.tokens.push(best);
    const full = this.tokenizer.decode(job.tokens);
    const [text, stopped] = cutAtStop(full, s.stop);
    if (stopped) {
      this.#emit(job, text, step);
      this.#succeed(job, { tokens: job.tokens, text, finishReason: "stop" });
      return false;
    }
    if (job.tokens.length >= s.maxNewTokens) {
      this.#emit(job, text, step);
      this.#succeed(job, { tokens: job.tokens, text, finishReason: "length" });
      return false;
    }
    // Hold back a partial UTF-8 character and the start of a possible stop string.
    let safe = text.replace(/\uFFFD+$/, "");
    safe = safe.slice(0, safe.length - stopPrefixAtEnd(safe, s.stop));
    this.#emit(job, safe, step);
    job.pending = best;
    return true;
  }

  /** The final text of a job ended by EOS (also sent to a stream). */
  #flush(job: Job): string {
    const [text] = cutAtStop(this.tokenizer.decode(job.tokens), job.req.settings.stop);
    this.#emit(job, text, { rows: job.maxBatchRows, prefixes: {} });
    return text;
  }

  #emit(job: Job, text: string, step: StepInfo): void {
    const onText = job.req.onText;
    if (!onText || text.length <= job.sent.length || !text.startsWith(job.sent)) return;
    const delta = text.slice(job.sent.length);
    job.sent = text;
    onText(delta, step);
  }

  /** One decoding step over every greedy row, one model call per chunk. */
  async #step(): Promise<void> {
    const now = Date.now();
    this.#chunks = this.#chunks.filter((c) =>
      this.#compact(c, c.rows.flatMap((j, i) => (this.#expire(j, now) ? [] : [i])))
    );
    this.#merge();
    const rows = this.#chunks.flatMap((c) => c.rows);
    if (rows.length === 0) return;
    const prefixes: Record<string, number> = {};
    for (const j of rows) prefixes[j.prefixName] = (prefixes[j.prefixName] ?? 0) + 1;
    const step: StepInfo = { rows: rows.length, prefixes };
    this.opts.metrics.step(rows.length, rows.length);
    for (const c of [...this.#chunks]) {
      const logits = await this.#forward(c);
      const keep: number[] = [];
      c.rows.forEach((j, r) => {
        if (this.#advance(j, logits, r * this.model.config.vocabSize, step)) keep.push(r);
      });
      if (!this.#compact(c, keep)) this.#chunks = this.#chunks.filter((x) => x !== c);
    }
    this.#merge();
  }

  /** Feeds each row of a chunk its pending token; extends the cache; returns logits [n, V]. */
  async #forward(c: Chunk): Promise<Float32Array> {
    const padded = c.masks.some((m) => m.includes(0));
    const out = noGrad(() =>
      tidy(() =>
        this.model.forward(c.rows.map((j) => [j.pending]), {
          past: c.past,
          attentionMask: padded ? c.masks.map((m) => [...m, 1]) : undefined,
          positionIds: c.rows.map((j) => [j.nextPos]),
          useCache: true,
          lastTokenOnly: true,
        })
      )
    );
    disposePast(c.past);
    c.past = out.past!;
    c.masks = c.masks.map((m) => [...m, 1]);
    for (const j of c.rows) j.nextPos++;
    try {
      return (await out.logits.data()) as Float32Array;
    } finally {
      out.logits.dispose();
    }
  }

  /** Takes the first waiting beam request and those that may share its batch, and runs them. */
  #startBeamBatch(): void {
    const first = this.#beamQueue[0];
    const key = (j: Job) => {
      const s = j.req.settings;
      return JSON.stringify([
        s.numBeams,
        s.maxNewTokens,
        s.minLength,
        s.badWordsIds,
        j.req.prefix?.shape.prefixLen ?? 0,
        j.req.prefix ? 1 : 0,
      ]);
    };
    // On the WebAssembly backend a batch must keep every product on the blocked kernel.
    const canShare = (j: Job) =>
      !this.#wasm ||
      (j.req.settings.numBeams > GEMV_MAX_M && j.req.prompt.length > GEMV_MAX_M);
    const k = key(first);
    const batch = canShare(first)
      ? this.#beamQueue.filter((j) => canShare(j) && key(j) === k).slice(
        0,
        this.opts.maxBeamPrompts,
      )
      : [first];
    for (const j of batch) {
      this.#beamQueue.splice(this.#beamQueue.indexOf(j), 1);
      j.state = "running";
      j.maxBatchRows = batch.length;
    }
    this.#beamRunning = batch;
    this.#beamTask = this.#runBeamBatch(batch).finally(() => {
      this.#beamRunning = [];
      this.#beamTask = null;
      this.#wake?.();
    });
  }

  async #runBeamBatch(batch: Job[]): Promise<void> {
    await macrotask();
    const s = batch[0].req.settings;
    const withPrefix = batch[0].req.prefix !== null;
    const prefixPast = withPrefix
      ? noGrad(() =>
        tidy(() =>
          batch[0].req.prefix!.past.map((_, l) => ({
            k: concat(batch.map((j) => j.req.prefix!.past[l].k), 0),
            v: concat(batch.map((j) => j.req.prefix!.past[l].v), 0),
          }))
        )
      )
      : undefined;
    try {
      const out = await generate(this.model, batch.map((j) => j.req.prompt), {
        numBeams: s.numBeams,
        maxNewTokens: s.maxNewTokens,
        minLength: s.minLength,
        eosTokenId: this.#eos,
        padTokenId: this.#eos ?? 0,
        badWordsIds: s.badWordsIds,
        prefixPast,
      });
      this.opts.metrics.step(out.reduce((n, t) => n + t.length, 0), batch.length);
      batch.forEach((j, i) => {
        this.opts.metrics.promptTokens += j.req.prompt.length;
        if (this.#expire(j, Date.now())) return;
        const tokens = out[i];
        const [text, stopped] = cutAtStop(this.tokenizer.decode(tokens), j.req.settings.stop);
        this.#succeed(j, {
          tokens,
          text,
          finishReason: stopped || tokens.length < s.maxNewTokens ? "stop" : "length",
        });
      });
    } catch (e) {
      const err = new ClientError(500, `decoding failed: ${(e as Error).message}`, "server_error");
      for (const j of batch) this.#fail(j, err);
    } finally {
      for (const l of prefixPast ?? []) {
        l.k.dispose();
        l.v.dispose();
      }
    }
  }
}
