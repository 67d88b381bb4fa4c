/**
 * The HTTP server of `deno task serve`: one frozen GPT-2, many prefixes, OpenAI-shaped
 * completions, on `Deno.serve`.
 *
 * | Endpoint | |
 * |---|---|
 * | `POST /v1/completions` | OpenAI completions: `model` (prefix name or `base`), `prompt` (string or list), `max_tokens`, `num_beams`, `min_length`, `stop`, `stream` |
 * | `POST /v1/e2e` | an E2E meaning representation as fields → the text, with the paper's prompt and decoding |
 * | `GET /v1/models` | the prefixes, with size and shape |
 * | `POST /v1/prefixes`, `DELETE /v1/prefixes/NAME` | add (`{"name", "path"}`) or remove a prefix (bearer token if one is set) |
 * | `GET /health`, `GET /metrics` | liveness; Prometheus text |
 * | `GET /` | the web page |
 *
 * Every error is JSON, `{"error": {"message", "type", "code"}}`, with its status: 400 bad
 * input, 401 missing token, 404 unknown prefix or path, 405 wrong method, 409 name taken, 413
 * body too large, 429 queue full (with `Retry-After`), 503 shutting down, 504 past the
 * deadline. Nothing a client sends ends the server.
 *
 * @module
 */
import { type DecodeSettings, Engine, type JobResult, type StepInfo } from "./engine.ts";
import { ServerMetrics } from "./metrics.ts";
import { ClientError, type PrefixEntry, PrefixRegistry } from "./registry.ts";
import { E2E_DECODING, e2ePrompt } from "./e2e.ts";
import { loadPage } from "./page.ts";
import { type GPT2, type GPT2Tokenizer, ISOLATION_HEADERS } from "./lib.ts";

/** Options of {@link startServer}. */
export interface ServeOptions {
  /** The frozen model (eval mode). */
  model: GPT2;
  /** Its tokenizer. */
  tokenizer: GPT2Tokenizer;
  /** Prefixes already loaded (more can be added over HTTP). */
  registry: PrefixRegistry;
  /** Name of the model shown by the API (e.g. its folder). */
  modelName: string;
  /** Address to bind (default 127.0.0.1). */
  hostname?: string;
  /** Port (default 8080; 0 = any free one). */
  port?: number;
  /** Bearer token required by the endpoints that change the prefixes (none: open). */
  apiKey?: string;
  /** Largest request body in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** Largest `max_tokens` (default 256; n_positions also bounds it). */
  maxTokensCap?: number;
  /** Largest `num_beams` (default 8). */
  maxBeams?: number;
  /** Most prompts in one completions request (default 16). */
  maxPrompts?: number;
  /** Most requests waiting before 429 (default 64). */
  maxQueue?: number;
  /** Most greedy rows decoding at once (default 32). */
  maxRows?: number;
  /** Rows per model call in a greedy step (default: what keeps batching exact on the backend). */
  stepRows?: number;
  /** Most prompts per beam batch (default 8). */
  maxBeamPrompts?: number;
  /** Longest a request may take, queue included, in ms (default 120 000). */
  timeoutMs?: number;
  /** Log lines (default: stderr). */
  log?: (line: string) => void;
}

/** A running server. */
export interface RunningServer {
  /** `http://host:port`. */
  url: string;
  /** The bound port. */
  port: number;
  /** The scheduler. */
  engine: Engine;
  /** The counters. */
  metrics: ServerMetrics;
  /** The prefixes. */
  registry: PrefixRegistry;
  /**
   * Stops accepting requests (new ones get 503), lets running work finish for up to `graceMs`
   * (default 30 000), then closes the listener.
   */
  shutdown(graceMs?: number): Promise<void>;
  /** Resolves when the server has closed. */
  finished: Promise<void>;
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body) + "\n", {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function errorResponse(e: unknown): Response {
  const err = e instanceof ClientError
    ? e
    : new ClientError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, "server_error");
  const headers: Record<string, string> = {};
  if (err.status === 429) headers["retry-after"] = "1";
  if (err.status === 401) headers["www-authenticate"] = 'Bearer realm="lf"';
  return json(err.status, {
    error: { message: err.message, type: err.code, code: err.status },
  }, headers);
}

/** Reads a JSON object body of at most `limit` bytes (413 above, 400 if not a JSON object). */
async function readJson(req: Request, limit: number): Promise<Record<string, unknown>> {
  const tooLarge = () => new ClientError(413, `request body exceeds ${limit} bytes`, "too_large");
  const declared = Number(req.headers.get("content-length") ?? "NaN");
  if (declared > limit) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (req.body) {
    const reader = req.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > limit) {
        await reader.cancel().catch(() => {});
        throw tooLarge();
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    bytes.set(c, o);
    o += c.length;
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new ClientError(400, `malformed JSON body: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ClientError(400, "the body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

/** Field readers that answer 400 naming the field. */
function intField(b: Record<string, unknown>, key: string, dflt: number, min: number, max: number) {
  const v = b[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new ClientError(
      400,
      `"${key}" must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

function boolField(b: Record<string, unknown>, key: string): boolean {
  const v = b[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw new ClientError(400, `"${key}" must be true or false`);
  return v;
}

function stopField(b: Record<string, unknown>): string[] {
  const v = b.stop;
  if (v === undefined || v === null) return [];
  const list = typeof v === "string" ? [v] : v;
  if (
    !Array.isArray(list) || list.length > 4 ||
    !list.every((s) => typeof s === "string" && s.length > 0)
  ) {
    throw new ClientError(400, `"stop" must be a non-empty string or a list of up to 4 of them`);
  }
  return list as string[];
}

function sse(data: unknown): Uint8Array {
  return new TextEncoder().encode(
    `data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`,
  );
}

function safeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a), y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/**
 * Refuses OpenAI fields whose meaning this server does not implement (rather than ignoring them
 * and answering something else): sampling, several choices per prompt, log-probabilities, echo.
 */
function rejectUnsupported(b: Record<string, unknown>): void {
  const bad: string[] = [];
  if (b.n !== undefined && b.n !== null && b.n !== 1) {
    bad.push(`"n" ${JSON.stringify(b.n)} (only 1)`);
  }
  if (b.best_of !== undefined && b.best_of !== null && b.best_of !== 1) {
    bad.push(`"best_of" (use "num_beams")`);
  }
  if (typeof b.temperature === "number" && b.temperature !== 0 && b.temperature !== 1) {
    bad.push(`"temperature" ${b.temperature} (no sampling: greedy or beam search)`);
  }
  if (typeof b.top_p === "number" && b.top_p !== 1) bad.push(`"top_p" ${b.top_p} (no sampling)`);
  if (b.logprobs !== undefined && b.logprobs !== null && b.logprobs !== 0) bad.push(`"logprobs"`);
  if (b.echo === true) bad.push(`"echo"`);
  if (bad.length > 0) throw new ClientError(400, `not supported: ${bad.join(", ")}`);
}

/** The final status of a streamed answer, by request (known when the stream ends). */
const streamStatus = new WeakMap<Request, Promise<number>>();

/** One generation to run for a request: its prompt tokens and how its text is finished. */
interface Work {
  prompt: number[];
  /** Turns the result into the text returned. */
  finish: (r: JobResult) => string;
}

/** Starts the server; resolves once it listens. */
export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const log = o.log ?? ((s: string) => console.error(s));
  const page = await loadPage();
  const metrics = new ServerMetrics();
  const cfg = o.model.config;
  const maxBody = o.maxBodyBytes ?? 1 << 20;
  const maxTokensCap = o.maxTokensCap ?? 256;
  const maxBeams = o.maxBeams ?? 8;
  const maxPrompts = o.maxPrompts ?? 16;
  const timeoutMs = o.timeoutMs ?? 120_000;
  const registry = o.registry;
  const engine = new Engine(o.model, o.tokenizer, {
    maxQueue: o.maxQueue ?? 64,
    maxRows: o.maxRows ?? 32,
    stepRows: o.stepRows,
    maxBeamPrompts: o.maxBeamPrompts ?? 8,
    metrics,
  });
  let draining = false;
  const started = Date.now();
  let counter = 0;
  const newId = (kind: string) => `${kind}-${started.toString(36)}${(++counter).toString(36)}`;

  const requireKey = (req: Request) => {
    if (!o.apiKey) return;
    const h = req.headers.get("authorization") ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(h);
    if (!m || !safeEqual(m[1].trim(), o.apiKey)) {
      throw new ClientError(
        401,
        "this endpoint needs 'Authorization: Bearer <api key>'",
        "unauthorized",
      );
    }
  };

  const prefixOf = (model: unknown): PrefixEntry | null => {
    if (typeof model !== "string" || model === "") {
      throw new ClientError(400, `"model" must be a prefix name or "base"`);
    }
    if (model === "base") return null;
    const p = registry.get(model);
    if (!p) {
      throw new ClientError(
        404,
        `unknown model "${model}"; GET /v1/models lists them (${
          ["base", ...registry.names()].join(", ")
        })`,
        "model_not_found",
      );
    }
    return p;
  };

  const checkLength = (prefix: PrefixEntry | null, prompt: number[], maxNew: number, i: number) => {
    if (prompt.length === 0) throw new ClientError(400, `prompt ${i} is empty`);
    const L = prefix?.shape.prefixLen ?? 0;
    if (L + prompt.length + maxNew - 1 > cfg.nPositions) {
      throw new ClientError(
        400,
        `prompt ${i}: prefix ${L} + prompt ${prompt.length} tokens + max_tokens ${maxNew} − 1 exceeds the model's n_positions ${cfg.nPositions}`,
      );
    }
  };

  const modelInfo = (p: PrefixEntry | null) =>
    p
      ? {
        id: p.name,
        object: "model",
        owned_by: "lf",
        prefix_length: p.shape.prefixLen,
        n_layer: p.shape.nLayer,
        n_head: p.shape.nHead,
        n_embd: p.shape.nEmbd,
        bytes: p.bytes,
        format: p.format,
      }
      : {
        id: "base",
        object: "model",
        owned_by: "lf",
        prefix_length: 0,
        n_layer: cfg.nLayer,
        n_head: cfg.nHead,
        n_embd: cfg.nEmbd,
        n_positions: cfg.nPositions,
        bytes: 0,
        base_model: o.modelName,
      };

  /**
   * Runs `work` (one job per prompt) and answers: JSON with `choices`, or server-sent events.
   * `shape` builds the non-streamed body from the texts and results.
   */
  const runJobs = async (
    req: Request,
    b: Record<string, unknown>,
    prefix: PrefixEntry | null,
    work: Work[],
    settings: DecodeSettings,
    stream: boolean,
    object: string,
    extra: (w: Work, r: JobResult, text: string) => Record<string, unknown>,
  ): Promise<Response> => {
    const timeout = b.timeout === undefined ? timeoutMs : Math.min(
      timeoutMs,
      1000 * Number(b.timeout),
    );
    if (!(timeout > 0)) {
      throw new ClientError(400, `"timeout" must be a positive number of seconds`);
    }
    if (!engine.hasRoom(work.length)) {
      throw new ClientError(
        429,
        `the queue is full (${engine.opts.maxQueue} requests waiting); retry later`,
        "rate_limit",
      );
    }
    const id = newId(object === "e2e" ? "e2e" : "cmpl");
    const created = Math.floor(Date.now() / 1000);
    const model = prefix?.name ?? "base";
    // The client going away aborts the jobs. (Deno also aborts `req.signal` once an answer was
    // delivered; the listener is gone by then.)
    const abort = new AbortController();
    const onGone = () => abort.abort();
    req.signal.addEventListener("abort", onGone);
    const settled = () => req.signal.removeEventListener("abort", onGone);
    const deadline = Date.now() + timeout;
    const usage = (results: JobResult[]) => {
      const p = work.reduce((s, w) => s + w.prompt.length, 0);
      const c = results.reduce((s, r) => s + r.tokens.length, 0);
      return { prompt_tokens: p, completion_tokens: c, total_tokens: p + c };
    };
    if (!stream) {
      let results: JobResult[];
      try {
        results = await Promise.all(
          work.map((w) =>
            engine.submit({ prefix, prompt: w.prompt, settings, deadline, signal: abort.signal })
          ),
        );
      } catch (e) {
        abort.abort(); // the other prompts of this request are not needed any more
        throw e;
      } finally {
        settled();
      }
      return json(200, {
        id,
        object,
        created,
        model,
        choices: results.map((r, i) => {
          const text = work[i].finish(r);
          return {
            text,
            index: i,
            logprobs: null,
            finish_reason: r.finishReason,
            token_ids: r.tokens,
            ...extra(work[i], r, text),
          };
        }),
        usage: usage(results),
        lf: { batch_rows: Math.max(...results.map((r) => r.maxBatchRows)) },
      });
    }
    // Streaming: one event per new piece of text per prompt, one with each finish reason, a
    // last one with the usage, then [DONE].
    let ctrl!: ReadableStreamDefaultController<Uint8Array>;
    let open = true;
    const send = (data: unknown) => {
      if (!open) return;
      try {
        ctrl.enqueue(sse(data));
      } catch {
        open = false;
      }
    };
    const chunk = (i: number, text: string, finish: string | null, more = {}) => ({
      id,
      object,
      created,
      model,
      choices: [{ text, index: i, logprobs: null, finish_reason: finish, ...more }],
    });
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        ctrl = c;
      },
      cancel() {
        open = false;
        abort.abort(); // the client went away
      },
    });
    const results: JobResult[] = [];
    const done = Promise.all(work.map(async (w, i) => {
      const r = await engine.submit({
        prefix,
        prompt: w.prompt,
        settings,
        deadline,
        signal: abort.signal,
        onText: (delta: string, step: StepInfo) =>
          send({ ...chunk(i, delta, null), lf_batch: step }),
      });
      results[i] = r;
      const text = w.finish(r);
      send(chunk(i, "", r.finishReason, { token_ids: r.tokens, ...extra(w, r, text) }));
    }));
    streamStatus.set(
      req,
      done.then(
        () => {
          send({ id, object, created, model, choices: [], usage: usage(results) });
          send("[DONE]");
          return 200;
        },
        (e) => {
          abort.abort();
          const err = e instanceof ClientError
            ? e
            : new ClientError(500, String(e), "server_error");
          send({ error: { message: err.message, type: err.code, code: err.status } });
          send("[DONE]");
          return err.status;
        },
      ).finally(() => {
        settled();
        if (open) {
          open = false;
          try {
            ctrl.close();
          } catch { /* already closed */ }
        }
      }),
    );
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
      },
    });
  };

  const completions = async (req: Request): Promise<Response> => {
    const b = await readJson(req, maxBody);
    const prefix = prefixOf(b.model);
    const p = b.prompt;
    const prompts = typeof p === "string" ? [p] : p;
    if (
      !Array.isArray(prompts) || prompts.length === 0 || prompts.length > maxPrompts ||
      !prompts.every((s) => typeof s === "string")
    ) {
      throw new ClientError(
        400,
        `"prompt" must be a string or a list of 1 to ${maxPrompts} strings`,
      );
    }
    const settings: DecodeSettings = {
      maxNewTokens: intField(b, "max_tokens", 16, 1, maxTokensCap),
      numBeams: intField(b, "num_beams", 1, 1, maxBeams),
      minLength: intField(b, "min_length", 0, 0, cfg.nPositions),
      badWordsIds: [],
      stop: stopField(b),
    };
    const stream = boolField(b, "stream");
    if (stream && settings.numBeams > 1) {
      throw new ClientError(400, `"stream" needs greedy decoding ("num_beams": 1)`);
    }
    rejectUnsupported(b);
    const work = (prompts as string[]).map((text, i): Work => {
      const ids = o.tokenizer.encode(text);
      checkLength(prefix, ids, settings.maxNewTokens, i);
      return { prompt: ids, finish: (r) => r.text };
    });
    return await runJobs(req, b, prefix, work, settings, stream, "text_completion", () => ({}));
  };

  const e2e = async (req: Request): Promise<Response> => {
    const b = await readJson(req, maxBody);
    const prefix = prefixOf(b.model);
    let mr: string;
    try {
      mr = e2ePrompt(b);
    } catch (e) {
      throw new ClientError(400, (e as Error).message);
    }
    const settings: DecodeSettings = {
      maxNewTokens: intField(b, "max_tokens", E2E_DECODING.maxNewTokens, 1, maxTokensCap),
      numBeams: intField(b, "num_beams", E2E_DECODING.numBeams, 1, maxBeams),
      minLength: intField(b, "min_length", E2E_DECODING.minLength, 0, cfg.nPositions),
      badWordsIds: E2E_DECODING.badWordsIds.filter((w) => w.every((t) => t < cfg.vocabSize))
        .map((w) => [...w]),
      stop: [],
    };
    const stream = boolField(b, "stream");
    if (stream && settings.numBeams > 1) {
      throw new ClientError(400, `"stream" needs greedy decoding ("num_beams": 1)`);
    }
    let ids: number[];
    try {
      ids = E2E_DECODING.encode(o.tokenizer, mr);
    } catch (e) {
      throw new ClientError(400, (e as Error).message);
    }
    checkLength(prefix, ids, settings.maxNewTokens, 0);
    const work: Work[] = [{
      prompt: ids,
      finish: (r) => E2E_DECODING.decode(o.tokenizer, r.tokens),
    }];
    return await runJobs(req, b, prefix, work, settings, stream, "e2e", (_w, _r, text) => ({
      mr,
      output: text,
    }));
  };

  const route = async (req: Request, path: string): Promise<Response> => {
    const method = req.method;
    const only = (m: string) => {
      if (method !== m) {
        throw new ClientError(405, `${path} takes ${m}, not ${method}`, "method_not_allowed");
      }
    };
    if (path === "/health") {
      only("GET");
      return json(draining ? 503 : 200, {
        status: draining ? "draining" : "ok",
        model: o.modelName,
        prefixes: registry.names().length,
        queue_depth: engine.queueDepth,
        active_rows: engine.activeRows,
      });
    }
    if (path === "/metrics") {
      only("GET");
      return new Response(
        metrics.render({
          lf_queue_depth: ["Requests waiting to start.", engine.queueDepth],
          lf_active_rows: ["Rows decoding now.", engine.activeRows],
          lf_prefixes: ["Prefixes loaded.", registry.names().length],
          lf_backend_live_buffers: [
            "Tensor buffers alive on the backend.",
            o.model.backend.liveCount(),
          ],
        }),
        { headers: { "content-type": "text/plain; version=0.0.4" } },
      );
    }
    if (path === "/" || path === "/index.html") {
      only("GET");
      return new Response(page.html, {
        headers: { "content-type": "text/html; charset=utf-8", ...ISOLATION_HEADERS },
      });
    }
    if (path === "/app.js") {
      only("GET");
      return new Response(page.js, {
        headers: { "content-type": "text/javascript; charset=utf-8", ...ISOLATION_HEADERS },
      });
    }
    if (path === "/v1/models") {
      only("GET");
      return json(200, {
        object: "list",
        data: [modelInfo(null), ...registry.entries().map(modelInfo)],
      });
    }
    if (draining && method !== "GET") {
      throw new ClientError(503, "the server is shutting down", "unavailable");
    }
    if (path === "/v1/completions") {
      only("POST");
      return await completions(req);
    }
    if (path === "/v1/e2e") {
      only("POST");
      return await e2e(req);
    }
    if (path === "/v1/prefixes") {
      only("POST");
      requireKey(req);
      const b = await readJson(req, maxBody);
      const name = PrefixRegistry.checkName(b.name);
      if (typeof b.path !== "string" || b.path === "") {
        throw new ClientError(400, `"path" must be the folder of the prefix on the server`);
      }
      const entry = await registry.add(name, b.path);
      log(`prefix "${name}" added from ${entry.source}`);
      return json(201, modelInfo(entry));
    }
    const del = /^\/v1\/prefixes\/([^/]+)$/.exec(path);
    if (del) {
      only("DELETE");
      requireKey(req);
      const name = decodeURIComponent(del[1]);
      registry.remove(name);
      log(`prefix "${name}" removed`);
      return json(200, { id: name, object: "model", deleted: true });
    }
    throw new ClientError(404, `no endpoint ${method} ${path}`, "not_found");
  };

  const handler = async (req: Request): Promise<Response> => {
    const t0 = performance.now();
    const path = new URL(req.url).pathname;
    const endpoint = /^\/v1\/prefixes\//.test(path) ? "/v1/prefixes/NAME" : path;
    const known = [
      "/",
      "/index.html",
      "/app.js",
      "/health",
      "/metrics",
      "/v1/models",
      "/v1/completions",
      "/v1/e2e",
      "/v1/prefixes",
      "/v1/prefixes/NAME",
    ];
    const label = known.includes(endpoint) ? endpoint : "other";
    let res: Response;
    try {
      res = await route(req, path);
    } catch (e) {
      if (!(e instanceof ClientError)) log(`error on ${req.method} ${path}: ${(e as Error).stack}`);
      res = errorResponse(e);
    }
    const seconds = () => (performance.now() - t0) / 1000;
    const streamed = streamStatus.get(req);
    if (streamed) streamed.then((status) => metrics.request(label, status, seconds()));
    else metrics.request(label, res.status, seconds());
    return res;
  };

  const { promise: listening, resolve: onListen } = Promise.withResolvers<
    { hostname: string; port: number }
  >();
  const server = Deno.serve({
    hostname: o.hostname ?? "127.0.0.1",
    port: o.port ?? 8080,
    onListen: (addr) => onListen(addr as { hostname: string; port: number }),
    onError: (e) => {
      log(`error: ${(e as Error).stack ?? e}`);
      return errorResponse(e);
    },
  }, handler);
  const addr = await listening;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let shutting: Promise<void> | null = null;
  return {
    url: `http://${host}:${addr.port}`,
    port: addr.port,
    engine,
    metrics,
    registry,
    finished: server.finished,
    shutdown(graceMs = 30_000) {
      shutting ??= (async () => {
        draining = true;
        await engine.stop(graceMs);
        // Answers still being written (streams) get the rest of the grace period.
        await Promise.race([server.shutdown(), new Promise((r) => setTimeout(r, graceMs))]);
        registry.dispose();
      })();
      return shutting;
    },
  };
}
