/**
 * `deno task ablation`: the prefix-length ablation of the paper (Figure 4) and its Table 1 row
 * pair (train/ablation.ts does the work; this file parses flags).
 *
 * ```sh
 * deno task ablation [--config configs/ablation.yaml] [--out runs/ablation] [--prefix-lens 1,5,10]
 *                    [--no-finetune] [--only prefix_L5,finetune] [--KEY VALUE ...]   # any training key
 * deno task ablation --launcher slurm [--partition gpu --gres gpu:1 ...]   # one Slurm array task per run
 * deno task ablation --collect                                            # tables once every run is done
 * ```
 *
 * @module
 */
import {
  ConfigError,
  type ExtraFlag,
  type KeySpec,
  parseCommandLine,
  type Schema,
  usageText,
} from "../train/config.ts";
import { ABLATION_SCHEMA, loadAblationConfig, runAblation } from "../train/ablation.ts";
import { TRAIN_SCHEMA } from "../train/e2e.ts";
import {
  ablationSweep,
  launchSweep,
  SWEEP_USAGE,
  SweepError,
  takeSweepFlags,
} from "../train/sweep.ts";

const EXTRAS: Record<string, ExtraFlag> = {
  config: { type: "string", value: "FILE", doc: "YAML config (default configs/ablation.yaml)" },
  help: { type: "boolean", doc: "show this help" },
};

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    // ---- sweep launcher (train/sweep.ts): --launcher local|slurm, --collect, --dry-run, ... ----
    const sweep = takeSweepFlags(args);
    args = sweep.rest;
    // ---- end sweep launcher ----
    // Ablation keys first: `--out` names the ablation folder, not one run's.
    const schema: Record<string, KeySpec> = { ...ABLATION_SCHEMA };
    for (const [k, spec] of Object.entries(TRAIN_SCHEMA)) {
      // Each run sets its tuner and prefix length; decoding and scoring always run.
      if (!(k in schema) && !["tuner", "prefix_len", "eval"].includes(k)) schema[k] = spec;
    }
    const cl = parseCommandLine(args, schema, EXTRAS);
    const file = (cl.extras.config as string | undefined) ??
      new URL("../configs/ablation.yaml", import.meta.url).pathname;
    const cfg = await loadAblationConfig(file, cl.keys);
    if (cl.extras.help) {
      console.log(
        usageText(
          "deno task ablation [--config FILE] [--KEY VALUE ...]",
          schema as Schema<Record<string, unknown>>,
          { ...cfg.train, ...cfg },
          EXTRAS,
          file.slice(file.lastIndexOf("/configs/") + 1),
        ) + "\n" + SWEEP_USAGE,
      );
      return 0;
    }
    // ---- sweep launcher: Slurm array job and the collect step ----
    if (sweep.flags.launcher === "slurm" || sweep.flags.collect) {
      if (sweep.flags.seeds) throw new ConfigError("--seeds is a flag of deno task train");
      const collect = async () => void await runAblation(cfg);
      return await launchSweep(
        await ablationSweep(cfg, { args, configFile: file, collect }),
        sweep.flags,
      );
    }
    // ---- end sweep launcher ----
    const rows = await runAblation(cfg);
    console.log(await Deno.readTextFile(`${cfg.out}/results.md`));
    return rows.length ? 0 : 1;
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return e instanceof ConfigError || e instanceof SweepError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
