/**
 * `deno task serve`: one frozen GPT-2 serving every prefix of a folder over HTTP, with
 * mixed-prefix batches, an OpenAI-shaped completions API and a web page.
 *
 * ```sh
 * deno task serve --model DIR|NAME --prefixes DIR [--port 8080] [--host 127.0.0.1] [--api-key KEY]
 * ```
 *
 * Each subfolder of `--prefixes` that holds a prefix (ours or a peft PREFIX_TUNING adapter, or
 * a training run folder with `prefix/` or `peft/`) is served under the subfolder's name.
 * SIGTERM or Ctrl-C stops accepting requests, lets running ones finish (at most `--grace`
 * seconds) and exits 0.
 *
 * @module
 */
import { GPT2, GPT2Tokenizer } from "../serve/lib.ts";
import { PrefixRegistry } from "../serve/registry.ts";
import { startServer } from "../serve/server.ts";
import { useBackend } from "../kernels/select.ts";
import { ensureModel } from "../hub/mod.ts";
import { ConfigError, runCommand, type Schema, STEP_SCHEMA } from "../train/config.ts";

interface ServeFlags {
  model: string | null;
  prefixes: string | null;
  port: number;
  host: string;
  api_key: string | null;
  max_queue: number;
  max_rows: number;
  step_rows: number;
  max_tokens: number;
  max_body: number;
  timeout: number;
  grace: number;
  backend: string;
}

const SCHEMA: Schema<ServeFlags> = {
  model: {
    kind: "string?",
    value: "DIR|NAME",
    doc: "frozen GPT-2: a Hugging Face folder or a known name (gpt2-medium, ...) (required)",
  },
  prefixes: {
    kind: "string?",
    value: "DIR",
    doc: "folder whose subfolders are prefixes, each served under its folder name (required)",
  },
  port: { kind: "integer", min: 0, max: 65535, value: "N", doc: "port (0: any free port)" },
  host: { kind: "string", value: "ADDR", doc: "address to bind" },
  api_key: {
    kind: "string?",
    value: "KEY",
    doc: "bearer token for POST/DELETE /v1/prefixes (default: env LF_API_KEY)",
  },
  max_queue: { kind: "integer", min: 1, value: "N", doc: "requests waiting before 429" },
  max_rows: { kind: "integer", min: 1, value: "N", doc: "greedy rows decoding at once" },
  step_rows: {
    kind: "integer",
    min: 0,
    value: "N",
    doc: "rows per model call in a greedy step (0: the most that keeps every row's arithmetic " +
      "identical to decoding it alone on the backend)",
  },
  max_tokens: { kind: "integer", min: 1, value: "N", doc: "largest max_tokens accepted" },
  max_body: { kind: "integer", min: 1, value: "BYTES", doc: "largest request body" },
  timeout: {
    kind: "number",
    min: 0.001,
    value: "S",
    doc: "longest a request may take, queue included",
  },
  grace: {
    kind: "number",
    min: 0,
    value: "S",
    doc: "on SIGTERM, how long running requests may finish",
  },
  backend: STEP_SCHEMA.backend,
};

const DEFAULTS: ServeFlags = {
  model: null,
  prefixes: null,
  port: 8080,
  host: "127.0.0.1",
  api_key: null,
  max_queue: 64,
  max_rows: 32,
  step_rows: 0,
  max_tokens: 256,
  max_body: 1 << 20,
  timeout: 120,
  grace: 30,
  backend: "auto",
};

const USAGE = "deno task serve --model DIR|NAME --prefixes DIR [options]";

const log = (s: string) => console.error(s);

/** CLI entry point; resolves with the exit code once the server has stopped. */
export async function main(args: string[]): Promise<number> {
  return await runCommand(args, SCHEMA, DEFAULTS, USAGE, async (v) => {
    if (!v.model) throw new ConfigError("command line: --model is required");
    if (!v.prefixes) throw new ConfigError("command line: --prefixes is required");
    const backend = await useBackend(v.backend, log);
    const modelDir = await ensureModel(v.model);
    const model = (await GPT2.fromPretrained(modelDir, { backend })).eval();
    const tokenizer = await GPT2Tokenizer.fromDir(modelDir).catch((e) => {
      log(`tokenizer: ${(e as Error).message}; using GPT-2's bundled vocabulary`);
      return GPT2Tokenizer.offlineDefault();
    });
    const c = model.config;
    log(
      `model ${v.model}: n_layer ${c.nLayer}, n_head ${c.nHead}, n_embd ${c.nEmbd}, n_positions ${c.nPositions}`,
    );
    const registry = new PrefixRegistry(c, backend);
    const { loaded, skipped } = await registry.addFolder(v.prefixes);
    for (const s of skipped) log(`skipped ${s}`);
    for (const name of loaded) {
      const p = registry.get(name)!;
      log(`prefix ${name}: L=${p.shape.prefixLen}, ${p.format} format, from ${p.source}`);
    }
    const apiKey = v.api_key ?? Deno.env.get("LF_API_KEY") ?? undefined;
    const server = await startServer({
      model,
      tokenizer,
      registry,
      modelName: v.model,
      hostname: v.host,
      port: v.port,
      apiKey: apiKey || undefined,
      maxQueue: v.max_queue,
      maxRows: v.max_rows,
      stepRows: v.step_rows || undefined,
      maxTokensCap: v.max_tokens,
      maxBodyBytes: v.max_body,
      timeoutMs: 1000 * v.timeout,
      log,
    });
    const graceMs = 1000 * v.grace;
    log(
      `serving ${loaded.length} prefix${loaded.length === 1 ? "" : "es"} on ${server.url} ` +
        `(${server.engine.stepRows} rows per model call${
          apiKey ? ", API key required for changes" : ""
        })`,
    );
    const stop = (sig: string) => {
      log(`${sig}: no new requests; finishing running ones (at most ${graceMs / 1000} s)`);
      server.shutdown(graceMs);
    };
    const onTerm = () => stop("SIGTERM"), onInt = () => stop("SIGINT");
    Deno.addSignalListener("SIGTERM", onTerm);
    Deno.addSignalListener("SIGINT", onInt);
    await server.finished;
    Deno.removeSignalListener("SIGTERM", onTerm);
    Deno.removeSignalListener("SIGINT", onInt);
    log("stopped");
    return 0;
  });
}

if (import.meta.main) Deno.exit(await main(Deno.args));
