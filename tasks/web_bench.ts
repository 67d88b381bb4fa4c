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
import { parseArgs } from "node:util";
import { benchReport, benchWeb } from "../web/bench.ts";
import { EXAMPLE_MRS } from "../web/examples.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const USAGE =
  "usage: deno task web-bench [--backend wasm|webgpu] [--prefix NAME] [--rounds 3] [--model DIR] [--prefixes DIR] [--out FILE]";

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args,
      options: {
        backend: { type: "string", default: "wasm" },
        prefix: { type: "string", default: "prefix_L5" },
        model: { type: "string", default: `${ROOT}results/mini/pretrain/model` },
        prefixes: { type: "string", default: `${ROOT}results/mini/ablation` },
        rounds: { type: "string", default: "3" },
        out: { type: "string" },
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
  if (v.backend !== "wasm" && v.backend !== "webgpu") {
    console.error(`error: --backend must be wasm or webgpu, got '${v.backend}'\n${USAGE}`);
    return 2;
  }
  const rounds = Number(v.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) {
    console.error(`error: --rounds must be a positive integer, got '${v.rounds}'\n${USAGE}`);
    return 2;
  }
  try {
    const r = await benchWeb({
      rounds,
      backend: v.backend,
      prefix: v.prefix,
      modelDir: v.model!,
      prefixesDir: v.prefixes!,
      log: (s) => console.error(s),
    });
    const report = benchReport(r, EXAMPLE_MRS.length);
    console.log(report);
    if (v.out) await Deno.writeTextFile(v.out, report + "\n");
    return r.sameOutputs ? 0 : 1;
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
