/**
 * `deno task repro-mini`: the whole miniature reproduction with one command, resumable
 * (train/repro_mini.ts does the work; this file parses flags).
 *
 * ```sh
 * deno task repro-mini [--results results/mini] [--data DIR] [--pretrain-config FILE] [--ablation-config FILE]
 * ```
 *
 * @module
 */
import { ConfigError, type ExtraFlag, parseCommandLine, usageText } from "../train/config.ts";
import { reproMini } from "../train/repro_mini.ts";

const EXTRAS: Record<string, ExtraFlag> = {
  results: { type: "string", value: "DIR", doc: "results folder (default results/mini)" },
  data: {
    type: "string",
    value: "DIR",
    doc: "E2E data folder for every step (default: each config's)",
  },
  "pretrain-config": {
    type: "string",
    value: "FILE",
    doc: "pretraining config (default configs/mini_pretrain.yaml)",
  },
  "ablation-config": {
    type: "string",
    value: "FILE",
    doc: "ablation config (default configs/mini_ablation.yaml)",
  },
  help: { type: "boolean", doc: "show this help" },
};

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    const { extras } = parseCommandLine(args, {}, EXTRAS);
    if (extras.help) {
      console.log(usageText("deno task repro-mini [flags]", {}, {}, EXTRAS).trimEnd());
      return 0;
    }
    const config = (name: string) => new URL(`../configs/${name}`, import.meta.url).pathname;
    const report = await reproMini({
      results: (extras.results as string | undefined) ?? "results/mini",
      data: extras.data as string | undefined,
      pretrainConfig: (extras["pretrain-config"] as string | undefined) ??
        config("mini_pretrain.yaml"),
      ablationConfig: (extras["ablation-config"] as string | undefined) ??
        config("mini_ablation.yaml"),
    });
    console.log(report);
    return 0;
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return e instanceof ConfigError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
