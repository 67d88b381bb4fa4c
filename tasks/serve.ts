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
import { parseArgs } from "node:util";
import { GPT2, GPT2Tokenizer } from "../serve/lib.ts";
import { PrefixRegistry } from "../serve/registry.ts";
import { startServer } from "../serve/server.ts";
import { useBackend } from "../kernels/select.ts";
import { ensureModel } from "../hub/mod.ts";

const USAGE = `usage: deno task serve --model DIR|NAME --prefixes DIR [options]

  --model DIR|NAME     frozen GPT-2: a Hugging Face folder or a known name (gpt2-medium, ...)
  --prefixes DIR       folder whose subfolders are prefixes, each served under its folder name
  --port N             port (default 8080; 0 = any free port)
  --host ADDR          address to bind (default 127.0.0.1, this machine only)
  --api-key KEY        bearer token for POST/DELETE /v1/prefixes (default: env LF_API_KEY)
  --max-queue N        requests waiting before 429 (default 64)
  --max-rows N         greedy rows decoding at once (default 32)
  --step-rows N        rows per model call in a greedy step (default: the most that keeps
                       every row's arithmetic identical to decoding it alone on the backend)
  --max-tokens N       largest max_tokens accepted (default 256)
  --max-body BYTES     largest request body (default 1048576)
  --timeout S          longest a request may take, queue included (default 120)
  --grace S            on SIGTERM, how long running requests may finish (default 30)
  --backend NAME       auto|cpu|wasm|webgpu (default auto)
  --help               this text`;

class UsageError extends Error {}

/** CLI entry point; resolves with the exit code once the server has stopped. */
export async function main(args: string[]): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        model: { type: "string" },
        prefixes: { type: "string" },
        port: { type: "string", default: "8080" },
        host: { type: "string", default: "127.0.0.1" },
        "api-key": { type: "string" },
        "max-queue": { type: "string", default: "64" },
        "max-rows": { type: "string", default: "32" },
        "step-rows": { type: "string" },
        "max-tokens": { type: "string", default: "256" },
        "max-body": { type: "string", default: String(1 << 20) },
        timeout: { type: "string", default: "120" },
        grace: { type: "string", default: "30" },
        backend: { type: "string", default: "auto" },
        help: { type: "boolean" },
      },
    }).values;
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  const log = (s: string) => console.error(s);
  try {
    const num = (name: string, s: string | undefined, min: number): number | undefined => {
      if (s === undefined) return undefined;
      const n = Number(s);
      if (
        !Number.isFinite(n) || n < min ||
        (name !== "timeout" && name !== "grace" && !Number.isInteger(n))
      ) {
        throw new UsageError(`--${name} must be a number ≥ ${min}, got '${s}'`);
      }
      return n;
    };
    if (!v.model) throw new UsageError("--model is required");
    if (!v.prefixes) throw new UsageError("--prefixes is required");
    const port = num("port", v.port, 0)!;
    if (port > 65535) throw new UsageError(`--port must be ≤ 65535, got ${port}`);
    const backend = await useBackend(v.backend!, log);
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
    const apiKey = v["api-key"] ?? Deno.env.get("LF_API_KEY") ?? undefined;
    const server = await startServer({
      model,
      tokenizer,
      registry,
      modelName: v.model,
      hostname: v.host,
      port,
      apiKey: apiKey || undefined,
      maxQueue: num("max-queue", v["max-queue"], 1),
      maxRows: num("max-rows", v["max-rows"], 1),
      stepRows: num("step-rows", v["step-rows"], 1),
      maxTokensCap: num("max-tokens", v["max-tokens"], 1),
      maxBodyBytes: num("max-body", v["max-body"], 1),
      timeoutMs: 1000 * num("timeout", v.timeout, 0.001)!,
      log,
    });
    const graceMs = 1000 * num("grace", v.grace, 0)!;
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
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    if (e instanceof UsageError) console.error(USAGE);
    return e instanceof UsageError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
