/**
 * `deno task train`: prefix-tuning (default) or fine-tuning of GPT-2 on E2E, then decoding of the
 * test MRs with the paper's beam search and scoring with the five E2E metrics.
 *
 * ```sh
 * deno task train                                   # the shipped miniature, offline (configs/e2e_prefix_mini.yaml)
 * deno task train --tuner fine                      # miniature fine-tuning (configs/e2e_finetune_mini.yaml)
 * deno task train --config configs/e2e_prefix.yaml  # the paper's run on GPT-2 Medium
 * deno task train --out runs/try --resume           # continue a run with its own config.yaml
 * deno task train --seeds 101,102,103 [--launcher slurm]   # one run per seed, then seeds.md
 * ```
 *
 * Everything happens in the library (`runE2E` of train/pipeline.ts); this file parses flags.
 *
 * @module
 */
import { ConfigError, type ExtraFlag, parseCommandLine, usageText } from "../train/config.ts";
import { loadTrainConfig, runE2E } from "../train/pipeline.ts";
import { TRAIN_SCHEMA } from "../train/e2e.ts";
import { launchSweep, seedSweep, SWEEP_USAGE, SweepError, takeSweepFlags } from "../train/sweep.ts";

const EXTRAS: Record<string, ExtraFlag> = {
  config: {
    type: "string",
    value: "FILE",
    doc: "YAML config (default configs/e2e_prefix_mini.yaml; --tuner fine: e2e_finetune_mini.yaml)",
  },
  resume: { type: "boolean", doc: "continue the run in --out from its checkpoint and config.yaml" },
  overwrite: { type: "boolean", doc: "remove the run in --out and start over" },
  force: { type: "boolean", doc: "with --resume: accept settings that differ from config.yaml" },
  help: { type: "boolean", doc: "show this help" },
};

function configFile(explicit: string | undefined, tuner: unknown): string {
  if (explicit) return explicit;
  const name = tuner === "fine" ? "e2e_finetune_mini.yaml" : "e2e_prefix_mini.yaml";
  return new URL(`../configs/${name}`, import.meta.url).pathname;
}

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    // ---- seed sweep (train/sweep.ts): --seeds 101,102,103 [--launcher local|slurm] [--collect] ----
    const sweep = takeSweepFlags(args);
    if (sweep.flags.given) {
      if (!sweep.flags.seeds) {
        throw new ConfigError("the sweep flags (--launcher, --collect, ...) need --seeds");
      }
      const cl = parseCommandLine(sweep.rest, TRAIN_SCHEMA, EXTRAS);
      const file = configFile(cl.extras.config as string | undefined, cl.keys.tuner);
      const cfg = await loadTrainConfig(file, cl.keys);
      return await launchSweep(seedSweep(cfg.out, sweep.flags.seeds, sweep.rest), sweep.flags);
    }
    // ---- end seed sweep ----
    const cl = parseCommandLine(args, TRAIN_SCHEMA, EXTRAS);
    const file = configFile(cl.extras.config as string | undefined, cl.keys.tuner);
    const resume = !!cl.extras.resume;
    const cfg = await loadTrainConfig(file, cl.keys, { resume });
    if (cl.extras.help) {
      console.log(
        usageText(
          "deno task train [--config FILE] [--resume | --overwrite] [--force] [--KEY VALUE ...]",
          TRAIN_SCHEMA,
          cfg,
          EXTRAS,
          file.slice(file.lastIndexOf("/configs/") + 1),
        ) + "\nseed " + SWEEP_USAGE.replace("sweep:", "sweep: [--seeds 101,102,103]"),
      );
      return 0;
    }
    const r = await runE2E(cfg, {
      resume,
      overwrite: !!cl.extras.overwrite,
      force: !!cl.extras.force,
    });
    if (r.train.interrupted) return r.train.signal === "SIGTERM" ? 143 : 130;
    if (r.report) console.log(r.report);
    return 0;
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return e instanceof ConfigError || e instanceof SweepError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
