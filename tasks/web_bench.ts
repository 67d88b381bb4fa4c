/**
 * `deno task web-bench`: decoding speed of the demo page in headless Chromium against Deno on
 * the same machine and backend, and the bundle sizes (see `web/bench.ts`).
 *
 * ```sh
 * deno task web-bench [--backend wasm|webgpu] [--prefix prefix_L5] [--rounds 3] [--out FILE.md]
 * ```
 *
 * @module
 */
import { benchReport, benchWeb } from "../web/bench.ts";
import { EXAMPLE_MRS } from "../web/examples.ts";
import { runCommand, type Schema } from "../train/config.ts";

const ROOT = new URL("../", import.meta.url).pathname;
interface WebBenchFlags {
  backend: string;
  prefix: string;
  model: string;
  prefixes: string;
  rounds: number;
  out: string | null;
}

const SCHEMA: Schema<WebBenchFlags> = {
  backend: { kind: "string", choices: ["wasm", "webgpu"], doc: "backend of the page and of Deno" },
  prefix: {
    kind: "string",
    value: "NAME",
    doc: "prefix (a subfolder of --prefixes) to decode with",
  },
  model: { kind: "string", value: "DIR", doc: "GPT-2 folder" },
  prefixes: { kind: "string", value: "DIR", doc: "folder of prefixes" },
  rounds: { kind: "integer", min: 1, value: "N", doc: "alternating rounds (page, Deno)" },
  out: { kind: "string?", value: "FILE", doc: "also write the report (Markdown) to FILE" },
};

const DEFAULTS: WebBenchFlags = {
  backend: "wasm",
  prefix: "prefix_L5",
  model: `${ROOT}results/mini/pretrain/model`,
  prefixes: `${ROOT}results/mini/ablation`,
  rounds: 3,
  out: null,
};

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  return await runCommand(args, SCHEMA, DEFAULTS, "deno task web-bench [options]", async (v) => {
    const r = await benchWeb({
      rounds: v.rounds,
      backend: v.backend as "wasm" | "webgpu",
      prefix: v.prefix,
      modelDir: v.model,
      prefixesDir: v.prefixes,
      log: (s) => console.error(s),
    });
    const report = benchReport(r, EXAMPLE_MRS.length);
    console.log(report);
    if (v.out) await Deno.writeTextFile(v.out, report + "\n");
    return r.sameOutputs ? 0 : 1;
  });
}

if (import.meta.main) Deno.exit(await main(Deno.args));
