/**
 * `deno task pretrain`: pretrains the miniature GPT-2 on the E2E training references (see
 * train/pretrain.ts for what and why).
 *
 * ```sh
 * deno task pretrain [--config configs/mini_pretrain.yaml] [--resume | --overwrite] [--KEY VALUE ...]
 * ```
 *
 * @module
 */
import { ConfigError, type ExtraFlag, parseCommandLine, usageText } from "../train/config.ts";
import { loadPretrainConfig, pretrain, PRETRAIN_SCHEMA } from "../train/pretrain.ts";

const EXTRAS: Record<string, ExtraFlag> = {
  config: {
    type: "string",
    value: "FILE",
    doc: "YAML config (default configs/mini_pretrain.yaml)",
  },
  resume: { type: "boolean", doc: "continue the run in --out (a finished run is kept as it is)" },
  overwrite: { type: "boolean", doc: "remove the run in --out and start over" },
  force: { type: "boolean", doc: "with --resume: accept settings that differ from config.yaml" },
  help: { type: "boolean", doc: "show this help" },
};

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    const cl = parseCommandLine(args, PRETRAIN_SCHEMA, EXTRAS);
    const file = (cl.extras.config as string | undefined) ??
      new URL("../configs/mini_pretrain.yaml", import.meta.url).pathname;
    const resume = !!cl.extras.resume;
    const cfg = await loadPretrainConfig(file, cl.keys, { resume });
    if (cl.extras.help) {
      console.log(usageText(
        "deno task pretrain [--config FILE] [--resume | --overwrite] [--force] [--KEY VALUE ...]",
        PRETRAIN_SCHEMA,
        cfg,
        EXTRAS,
        file.slice(file.lastIndexOf("/configs/") + 1),
      ));
      return 0;
    }
    const r = await pretrain(cfg, {
      resume,
      overwrite: !!cl.extras.overwrite,
      force: !!cl.extras.force,
    });
    return r.interrupted ? (r.signal === "SIGTERM" ? 143 : 130) : 0;
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return e instanceof ConfigError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
