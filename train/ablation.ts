/**
 * The prefix-length ablation of the paper (Figure 4) and its Table 1 row pair, from one YAML
 * config: train → decode → score for every prefix length and one fine-tuning run. Resumable: a
 * finished step of a run is skipped (scores, outputs, a trained model), an interrupted training
 * resumes from its checkpoint. Each run is a {@linkcode runAblationRun} call, so a launcher can
 * run them in separate processes (`only`) and {@linkcode runAblation} then collects the table.
 *
 * Writes into `out`: one folder per run (`prefix_L<n>/`, `finetune/`), `results.csv`,
 * `results.md` (Table 1 format: BLEU NIST METEOR ROUGE-L CIDEr, trainable and stored parameter
 * share) and `ablation.svg` (BLEU and ROUGE-L against prefix length, fine-tuning dashed).
 *
 * @module
 */
import { atomicWriteText } from "../io/atomic.ts";
import { applyConfig, ConfigError, readConfigFile, type Schema } from "./config.ts";
import {
  checkTrainConfig,
  TRAIN_DEFAULTS,
  TRAIN_SCHEMA,
  type TrainConfig,
  trainE2E,
} from "./e2e.ts";
import { decodeAndScore } from "./pipeline.ts";
import { linePlot } from "./plot.ts";
import { readLog } from "./run.ts";

/** The ablation's own settings (the `train:` mapping holds the base training config). */
export interface AblationSettings {
  /** Prefix lengths to train (paper: 1, 5, 10, 20, 40). */
  prefix_lens: number[];
  /** Also run full fine-tuning. */
  finetune: boolean;
  /** Learning rate of the fine-tuning run (paper: 5e-5). */
  finetune_lr: number;
  /** Split to decode and score. */
  split: "test" | "valid";
  /** Output folder (one sub-folder per run). */
  out: string;
  /**
   * Run only these runs (`prefix_L5`, `finetune`, ...; empty: all), e.g. to train two runs in
   * two processes at once; results files then list just those, until a full invocation.
   */
  only: string[];
}

/** The schema of {@linkcode AblationSettings}. */
export const ABLATION_SCHEMA: Schema<AblationSettings> = {
  prefix_lens: { kind: "integers", min: 1, doc: "prefix lengths to train" },
  finetune: { kind: "boolean", doc: "also run full fine-tuning" },
  finetune_lr: { kind: "number", doc: "learning rate of the fine-tuning run" },
  split: { kind: "string", choices: ["test", "valid"], doc: "split to decode and score" },
  out: { kind: "string", doc: "ablation folder (one sub-folder per run)" },
  only: { kind: "strings", doc: "run only these runs (prefix_L5,finetune,...; empty: all)" },
};

/** Defaults of {@linkcode AblationSettings}: the paper's ablation. */
export const ABLATION_DEFAULTS: AblationSettings = {
  prefix_lens: [1, 5, 10, 20, 40],
  finetune: true,
  finetune_lr: 5e-5,
  split: "test",
  out: "runs/ablation",
  only: [],
};

/** A whole ablation configuration. */
export interface AblationConfig extends AblationSettings {
  /** Base training config for every run. */
  train: TrainConfig;
  /** Per-run training keys over the base (`prefix_L5: {max_minutes: 30}`, `finetune: {...}`). */
  run_overrides: Record<string, Record<string, unknown>>;
}

/** One row of `results.csv`. */
export interface AblationRow {
  /** Run name. */
  run: string;
  /** `prefix` or `fine`. */
  tuner: string;
  /** Prefix length (fine-tuning: empty). */
  prefix_len: number | null;
  /** Trainable parameters. */
  trainable: number;
  /** Values stored after training (the computed prefix, or the whole model). */
  stored: number;
  /** Parameters of GPT-2. */
  model_params: number;
  /** Scores. */
  BLEU: number;
  /** NIST. */
  NIST: number;
  /** METEOR. */
  METEOR: number;
  /** ROUGE-L. */
  ROUGE_L: number;
  /** CIDEr. */
  CIDEr: number;
  /** Optimizer steps run. */
  steps: number;
  /** Median wall time of one training step (seconds; validation and checkpoints excluded). */
  sec_per_step: number;
  /** Seconds per full epoch, estimated as the median step time × steps per epoch. */
  sec_per_epoch: number;
  /** Wall time of beam-search decoding of the split (seconds; NaN where not recorded). */
  gen_seconds: number;
}

/** Steps and median step time from a run's log.jsonl. */
export async function stepStats(dir: string): Promise<{ steps: number; medianSec: number }> {
  const ms: number[] = [];
  for (const r of await readLog(`${dir}/log.jsonl`)) {
    if (typeof r.step === "number" && typeof r.ms === "number") ms.push(r.ms);
  }
  ms.sort((a, b) => a - b);
  return { steps: ms.length, medianSec: ms.length ? ms[ms.length >> 1] / 1000 : NaN };
}

/**
 * Reads an ablation config: ablation keys at the top, `train:` (training keys) and
 * `run_overrides:`; then `flags` (ablation keys, or training keys for the base config).
 */
export async function loadAblationConfig(
  path: string | null,
  flags: Record<string, unknown> = {},
): Promise<AblationConfig> {
  const doc = path ? await readConfigFile(path) : {};
  const where = path ?? "defaults";
  const top: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc)) {
    // `slurm:` holds the Slurm launcher's options (train/sweep.ts reads them).
    if (k === "train" || k === "run_overrides" || k === "slurm") continue;
    if (!Object.hasOwn(ABLATION_SCHEMA, k)) {
      throw new ConfigError(
        `${where}: unknown key '${k}' (known: ${
          [...Object.keys(ABLATION_SCHEMA), "train", "run_overrides", "slurm"].join(", ")
        })`,
      );
    }
    top[k] = v;
  }
  const trainDoc = doc.train ?? {};
  if (typeof trainDoc !== "object" || Array.isArray(trainDoc)) {
    throw new ConfigError(`${where}: 'train' must map training keys to values`);
  }
  let settings = applyConfig(ABLATION_SCHEMA, ABLATION_DEFAULTS, top, where);
  let train = applyConfig(
    TRAIN_SCHEMA,
    TRAIN_DEFAULTS,
    trainDoc as Record<string, unknown>,
    `${where} (train)`,
  );
  const ablationFlags: Record<string, unknown> = {}, trainFlags: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(flags)) {
    if (Object.hasOwn(ABLATION_SCHEMA, k)) ablationFlags[k] = v;
    else trainFlags[k] = v;
  }
  settings = applyConfig(ABLATION_SCHEMA, settings, ablationFlags, "command line");
  train = checkTrainConfig(applyConfig(TRAIN_SCHEMA, train, trainFlags, "command line"), where);
  return {
    ...settings,
    train,
    run_overrides: checkOverrides(doc.run_overrides, train, where),
    only: checkOnly(settings.only, settings.prefix_lens, where),
  };
}

function checkOnly(names: string[], lens: number[], where: string): string[] {
  const known = [...lens.map((L) => `prefix_L${L}`), "finetune"];
  for (const n of names) {
    if (!known.includes(n)) {
      throw new ConfigError(`${where}: 'only': unknown run '${n}' (runs: ${known.join(", ")})`);
    }
  }
  return names;
}

function checkOverrides(
  v: unknown,
  base: TrainConfig,
  where: string,
): Record<string, Record<string, unknown>> {
  if (v === undefined || v === null) return {};
  if (typeof v !== "object" || Array.isArray(v)) {
    throw new ConfigError(`${where}: 'run_overrides' must map run names to keys`);
  }
  const out = v as Record<string, Record<string, unknown>>;
  for (const [run, keys] of Object.entries(out)) {
    if (!/^(prefix_L\d+|finetune)$/.test(run)) {
      throw new ConfigError(
        `${where}: run_overrides: unknown run '${run}' (prefix_L<n> or finetune)`,
      );
    }
    applyConfig(TRAIN_SCHEMA, base, keys ?? {}, `${where} (run_overrides.${run})`);
  }
  return out;
}

/** One run of an ablation: its name and full training config. */
export interface AblationRun {
  /** `prefix_L<n>` or `finetune`. */
  name: string;
  /** Its training config (out: `<ablation out>/<name>`). */
  cfg: TrainConfig;
}

/** The runs of an ablation config, in table order (all of them, `only` not applied). */
export function ablationRuns(cfg: AblationConfig): AblationRun[] {
  const runs: AblationRun[] = cfg.prefix_lens.map((L) => ({
    name: `prefix_L${L}`,
    cfg: { ...cfg.train, tuner: "prefix", prefix_len: L, out: `${cfg.out}/prefix_L${L}` },
  }));
  if (cfg.finetune) {
    runs.push({
      name: "finetune",
      cfg: { ...cfg.train, tuner: "fine", lr: cfg.finetune_lr, out: `${cfg.out}/finetune` },
    });
  }
  for (const run of runs) {
    const o = cfg.run_overrides[run.name];
    if (o) run.cfg = applyConfig(TRAIN_SCHEMA, run.cfg, o, `run_overrides.${run.name}`);
  }
  return runs;
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

/** Whether the ablation run in `dir` is finished: trained (`summary.json`) and scored. */
export async function ablationRunDone(dir: string): Promise<boolean> {
  return (await exists(`${dir}/summary.json`)) && (await exists(`${dir}/scores.json`));
}

/**
 * One run of the ablation, each step skipped when done: training (resumed from its checkpoint
 * if interrupted), decoding and scoring. Returns its table row.
 */
export async function runAblationRun(
  cfg: AblationConfig,
  run: AblationRun,
  log: (s: string) => void = (s) => console.error(s),
): Promise<AblationRow> {
  const dir = run.cfg.out;
  log(`\n=== ${run.name} ===`);
  if (!(await exists(`${dir}/summary.json`))) {
    const r = await trainE2E(run.cfg, { resume: true, log });
    if (r.interrupted) throw new Error(`${run.name}: training was interrupted`);
  } else log(`${run.name}: trained (skipping)`);
  const d = await decodeAndScore(run.cfg, cfg.split, { log, reuse: true });
  const scores = { ...d.scores, METEOR: d.scores.METEOR ?? NaN };
  const genFile = `${dir}/outputs/${cfg.split}.generation.json`;
  const summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
  const L = run.cfg.tuner === "prefix" ? run.cfg.prefix_len : null;
  const stored = L === null ? summary.model_params : 2 * L * (await modelShape(dir)).perToken;
  const st = await stepStats(dir);
  const gen = (await exists(genFile)) ? JSON.parse(await Deno.readTextFile(genFile)) : null;
  log(
    `${run.name}: BLEU ${scores.BLEU.toFixed(4)} NIST ${scores.NIST.toFixed(4)} METEOR ${
      scores.METEOR.toFixed(4)
    } ROUGE-L ${scores.ROUGE_L.toFixed(4)} CIDEr ${scores.CIDEr.toFixed(4)}`,
  );
  return {
    run: run.name,
    tuner: run.cfg.tuner,
    prefix_len: L,
    trainable: summary.trainable_params,
    stored,
    model_params: summary.model_params,
    BLEU: scores.BLEU,
    NIST: scores.NIST,
    METEOR: scores.METEOR,
    ROUGE_L: scores.ROUGE_L,
    CIDEr: scores.CIDEr,
    steps: st.steps,
    sec_per_step: st.medianSec,
    sec_per_epoch: st.medianSec * (summary.steps_per_epoch ?? NaN),
    gen_seconds: gen?.seconds ?? NaN,
  };
}

/** Runs the ablation (the runs in `only`, or all); writes and returns the table rows. */
export async function runAblation(
  cfg: AblationConfig,
  log: (s: string) => void = (s) => console.error(s),
): Promise<AblationRow[]> {
  await Deno.mkdir(cfg.out, { recursive: true });
  let runs = ablationRuns(cfg);
  if (cfg.only.length) runs = runs.filter((r) => cfg.only.includes(r.name));
  const rows: AblationRow[] = [];
  for (const run of runs) rows.push(await runAblationRun(cfg, run, log));
  await writeResults(cfg.out, rows, cfg);
  return rows;
}

/** n_layer·n_embd of the prefix run's model (values per prefix position and key/value). */
async function modelShape(dir: string): Promise<{ perToken: number }> {
  const c = JSON.parse(await Deno.readTextFile(`${dir}/prefix/prefix_config.json`));
  return { perToken: c.n_layer * c.n_embd };
}

function pct(n: number, d: number): string {
  const p = 100 * n / d;
  return p >= 1 ? `${p.toFixed(1)}%` : `${p.toFixed(3)}%`;
}

/** Writes results.csv, results.md and ablation.svg. */
export async function writeResults(
  out: string,
  rows: AblationRow[],
  cfg: AblationConfig,
): Promise<void> {
  const cols: (keyof AblationRow)[] = [
    "run",
    "tuner",
    "prefix_len",
    "trainable",
    "stored",
    "model_params",
    "BLEU",
    "NIST",
    "METEOR",
    "ROUGE_L",
    "CIDEr",
    "steps",
    "sec_per_step",
    "sec_per_epoch",
    "gen_seconds",
  ];
  const csv =
    [cols.join(","), ...rows.map((r) => cols.map((c) => r[c] ?? "").join(","))].join("\n") + "\n";
  await atomicWriteText(`${out}/results.csv`, csv);
  const md = [
    `# E2E ${cfg.split} set — ${cfg.train.model}`,
    "",
    "| Method | Trainable | Stored | BLEU | NIST | METEOR | ROUGE-L | CIDEr | steps | s/step | s/epoch (est.) | decode s |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows.map((r) =>
      `| ${r.tuner === "fine" ? "Fine-tune" : `Prefix (L=${r.prefix_len})`} | ${
        pct(r.trainable, r.model_params)
      } | ${pct(r.stored, r.model_params)} | ` +
      `${(100 * r.BLEU).toFixed(1)} | ${r.NIST.toFixed(2)} | ${(100 * r.METEOR).toFixed(1)} | ${
        (100 * r.ROUGE_L).toFixed(1)
      } | ${r.CIDEr.toFixed(2)} | ${r.steps} | ${r.sec_per_step.toFixed(3)} | ${
        r.sec_per_epoch.toFixed(0)
      } | ${r.gen_seconds.toFixed(0)} |`
    ),
    "",
    "Scores on the official script's scale ×100 (BLEU, METEOR, ROUGE-L), as in the paper's Table 1.",
    "Trainable: share of GPT-2's parameters that are trained; stored: what must be kept per task",
    "(the computed prefix, 2·n_layer·L·n_embd values, or the whole model). s/step: median wall",
    "time of a training step; s/epoch (est.): that × steps per epoch (runs with a time budget may",
    "stop before an epoch ends); decode s: beam-search decoding of the whole split.",
    "",
  ].join("\n");
  await atomicWriteText(`${out}/results.md`, md);
  const pre = rows.filter((r) => r.tuner === "prefix").sort((a, b) =>
    a.prefix_len! - b.prefix_len!
  );
  const ft = rows.find((r) => r.tuner === "fine");
  const xs = pre.map((r) => r.prefix_len!);
  const series = [
    {
      name: "BLEU (prefix)",
      points: pre.map((r) => [r.prefix_len!, 100 * r.BLEU] as [number, number]),
      markers: true,
      color: "#1f77b4",
    },
    {
      name: "ROUGE-L (prefix)",
      points: pre.map((r) => [r.prefix_len!, 100 * r.ROUGE_L] as [number, number]),
      markers: true,
      color: "#d62728",
    },
  ];
  if (ft && xs.length) {
    const [a, b] = [Math.min(...xs), Math.max(...xs)];
    series.push(
      {
        name: "BLEU (fine-tune)",
        points: [[a, 100 * ft.BLEU], [b, 100 * ft.BLEU]],
        markers: false,
        color: "#1f77b4",
        dashed: true,
      } as never,
    );
    series.push(
      {
        name: "ROUGE-L (fine-tune)",
        points: [[a, 100 * ft.ROUGE_L], [b, 100 * ft.ROUGE_L]],
        markers: false,
        color: "#d62728",
        dashed: true,
      } as never,
    );
  }
  const svg = linePlot(series, {
    title: `Prefix length vs. performance (E2E ${cfg.split}, ${cfg.train.model})`,
    xLabel: "prefix length (log scale)",
    yLabel: "score ×100",
    logX: true,
    xTicks: xs,
  });
  await atomicWriteText(`${out}/ablation.svg`, svg);
}
