/**
 * `deno task ablation`: the prefix-length ablation of the paper (Figure 4) and its Table 1 row
 * pair, from one YAML config: train → generate → eval for every prefix length and one
 * fine-tuning run. Resumable: a finished step of a run is skipped (scores, outputs, a trained
 * model), an interrupted training resumes from its checkpoint.
 *
 * ```sh
 * deno task ablation [--config configs/ablation.yaml] [--out runs/ablation] [--prefix-lens 1,5,10]
 *                    [--no-finetune] [--KEY VALUE ...]   # any train key overrides the base config
 * ```
 *
 * Writes into `out`: one folder per run (`prefix_L<n>/`, `finetune/`), `results.csv`,
 * `results.md` (Table 1 format: BLEU NIST METEOR ROUGE-L CIDEr, trainable and stored parameter
 * share) and `ablation.svg` (BLEU and ROUGE-L against prefix length, fine-tuning as dashed lines).
 *
 * @module
 */
import { parse as parseYaml } from "yaml";
import { parseArgs } from "node:util";
import { groupByMR, readE2E } from "../data/e2e.ts";
import { scoreAll } from "../data/metrics/mod.ts";
import { useBackend } from "../kernels/select.ts";
import { atomicWriteText } from "../models/prefix.ts";
import {
  applyConfig,
  CONFIG_SCHEMA,
  ConfigError,
  DEFAULT_CONFIG,
  flagName,
  type TrainConfig,
} from "./config.ts";
import { downloadData } from "./download.ts";
import {
  GENERATE_DEFAULTS,
  generateForMRs,
  loadCheckpoint,
  writeOutputsAndRefs,
} from "./generate.ts";
import { linePlot } from "./svg_plot.ts";
import { train } from "./train.ts";
import { ablationSweep, launchSweep, SWEEP_USAGE, takeSweepFlags } from "../train/sweep.ts";

/** The ablation's own settings (besides the base training config). */
export interface AblationConfig {
  /** Prefix lengths to train (paper: 1, 5, 10, 20, 40). */
  prefix_lens: number[];
  /** Also run full fine-tuning. */
  finetune: boolean;
  /** Learning rate of the fine-tuning run (paper: 5e-5). */
  finetune_lr: number;
  /** Split to decode and score. */
  split: "test" | "valid";
  /** Output folder. */
  out: string;
  /** MRs per generation batch. */
  gen_batch_size: number;
  /** Decode only the first N MRs (0: all). */
  gen_limit: number;
  /** METEOR resource folder (default: the METEOR cache). */
  meteor_dir: string | null;
  /** Base training config for every run. */
  train: TrainConfig;
  /** Per-run training keys over the base (`prefix_L5: {max_minutes: 30}`, `finetune: {...}`). */
  run_overrides: Record<string, Record<string, unknown>>;
  /**
   * Run only these runs (`prefix_L5`, `finetune`, ...; empty: all), e.g. to train two runs in
   * two processes at once; results files then list just those, until a full invocation.
   */
  only: string[];
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
  for (const line of (await Deno.readTextFile(`${dir}/log.jsonl`)).split("\n")) {
    if (!line.trim()) continue;
    const r = JSON.parse(line);
    if (typeof r.step === "number" && typeof r.ms === "number") ms.push(r.ms);
  }
  ms.sort((a, b) => a - b);
  return { steps: ms.length, medianSec: ms.length ? ms[ms.length >> 1] / 1000 : NaN };
}

const ABLATION_KEYS = new Set([
  "run_overrides",
  "only",
  "prefix_lens",
  "finetune",
  "finetune_lr",
  "split",
  "out",
  "gen_batch_size",
  "gen_limit",
  "meteor_dir",
  "train",
  "slurm", // read by the Slurm launcher (train/sweep.ts)
]);

/** Reads an ablation YAML config (keys above; `train:` holds training keys). */
export async function loadAblationConfig(
  path: string | null,
  overrides: Record<string, unknown> = {},
): Promise<AblationConfig> {
  let doc: Record<string, unknown> = {};
  if (path) {
    const text = await Deno.readTextFile(path).catch((e) => {
      throw new ConfigError(`${path}: cannot read (${e.message})`);
    });
    const parsed = parseYaml(text);
    if (parsed && (typeof parsed !== "object" || Array.isArray(parsed))) {
      throw new ConfigError(`${path}: expected a mapping`);
    }
    doc = (parsed ?? {}) as Record<string, unknown>;
  }
  const where = path ?? "defaults";
  for (const k of Object.keys(doc)) {
    if (!ABLATION_KEYS.has(k)) {
      throw new ConfigError(
        `${where}: unknown key '${k}' (known: ${[...ABLATION_KEYS].join(", ")})`,
      );
    }
  }
  const trainDoc = (doc.train ?? {}) as Record<string, unknown>;
  let trainCfg = applyConfig(DEFAULT_CONFIG, trainDoc, `${where} (train)`);
  const trainOverrides: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(overrides)) {
    if (Object.hasOwn(CONFIG_SCHEMA, k)) trainOverrides[k] = v;
  }
  trainCfg = applyConfig(trainCfg, trainOverrides, "command line");
  const get = <T>(k: string, d: T): T => (overrides[k] ?? doc[k] ?? d) as T;
  let lens = get<unknown>("prefix_lens", [1, 5, 10, 20, 40]);
  if (typeof lens === "string") lens = lens.split(",").map((s) => Number(s.trim()));
  if (
    !Array.isArray(lens) || lens.length === 0 || !lens.every((n) => Number.isInteger(n) && n >= 1)
  ) {
    throw new ConfigError(
      `${where}: 'prefix_lens' must be a list of positive integers, got ${JSON.stringify(lens)}`,
    );
  }
  const split = get("split", "test");
  if (split !== "test" && split !== "valid") {
    throw new ConfigError(`${where}: 'split' must be test or valid, got ${JSON.stringify(split)}`);
  }
  const num = (k: string, d: number) => {
    const v = Number(get(k, d));
    if (!Number.isFinite(v) || v < 0) {
      throw new ConfigError(`${where}: '${k}' must be a non-negative number`);
    }
    return v;
  };
  return {
    prefix_lens: lens as number[],
    finetune: [true, "true"].includes(get<unknown>("finetune", true) as boolean | string),
    finetune_lr: num("finetune_lr", 5e-5),
    split,
    out: String(get("out", "runs/ablation")),
    gen_batch_size: num("gen_batch_size", GENERATE_DEFAULTS.batchSize),
    gen_limit: num("gen_limit", 0),
    meteor_dir: (get("meteor_dir", null) as string | null) ?? null,
    train: trainCfg,
    run_overrides: checkOverrides(doc.run_overrides, trainCfg, where),
    only: checkOnly(get<unknown>("only", []), lens as number[], where),
  };
}

function checkOnly(v: unknown, lens: number[], where: string): string[] {
  const names = typeof v === "string" ? v.split(",").map((s) => s.trim()).filter(Boolean) : v;
  if (!Array.isArray(names) || !names.every((n) => typeof n === "string")) {
    throw new ConfigError(`${where}: 'only' must be a list of run names`);
  }
  const known = [...lens.map((L) => `prefix_L${L}`), "finetune"];
  for (const n of names) {
    if (!known.includes(n)) {
      throw new ConfigError(`${where}: 'only': unknown run '${n}' (runs: ${known.join(", ")})`);
    }
  }
  return names as string[];
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
    applyConfig(base, keys ?? {}, `${where} (run_overrides.${run})`);
  }
  return out;
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

/** Runs the whole ablation; returns the table rows. */
export async function runAblation(
  cfg: AblationConfig,
  log: (s: string) => void = (s) => console.error(s),
): Promise<AblationRow[]> {
  await Deno.mkdir(cfg.out, { recursive: true });
  const backend = await useBackend(cfg.train.backend, log);
  const dataDir = cfg.train.data ?? (await downloadData("e2e"));
  let groups = groupByMR(await readE2E(`${dataDir}/${cfg.split}.txt`));
  if (cfg.gen_limit > 0) groups = groups.slice(0, cfg.gen_limit);
  const runs: { name: string; cfg: TrainConfig }[] = cfg.prefix_lens.map((L) => ({
    name: `prefix_L${L}`,
    cfg: {
      ...cfg.train,
      tuner: "prefix",
      prefix_len: L,
      out: `${cfg.out}/prefix_L${L}`,
      data: dataDir,
    },
  }));
  if (cfg.finetune) {
    runs.push({
      name: "finetune",
      cfg: {
        ...cfg.train,
        tuner: "fine",
        lr: cfg.finetune_lr,
        out: `${cfg.out}/finetune`,
        data: dataDir,
      },
    });
  }
  for (const run of runs) {
    const o = cfg.run_overrides[run.name];
    if (o) run.cfg = applyConfig(run.cfg, o, `run_overrides.${run.name}`);
  }
  if (cfg.only.length) {
    runs.splice(
      0,
      runs.length,
      ...runs.filter((r) => cfg.only.includes(r.name)),
    );
  }
  const rows: AblationRow[] = [];
  for (const run of runs) {
    const dir = run.cfg.out;
    log(`\n=== ${run.name} ===`);
    if (!(await exists(`${dir}/summary.json`))) {
      const resume = await exists(`${dir}/checkpoint/state.json`);
      const r = await train(run.cfg, { resume, log });
      if (r.interrupted) throw new Error(`${run.name}: training was interrupted`);
    } else log(`${run.name}: trained (skipping)`);
    const outFile = `${dir}/outputs/${cfg.split}.txt`;
    const genFile = `${dir}/outputs/${cfg.split}.generation.json`;
    if (!(await exists(outFile))) {
      const tg = performance.now();
      const ck = await loadCheckpoint(dir, backend);
      const outputs = await generateForMRs(
        ck,
        groups,
        {
          ...GENERATE_DEFAULTS,
          beams: run.cfg.num_beams,
          maxNewTokens: run.cfg.max_new_tokens,
          minLength: run.cfg.min_length,
          batchSize: cfg.gen_batch_size,
        },
        backend,
        (d, t) => log(`  generated ${d}/${t}`),
      );
      ck.model.dispose();
      await writeOutputsAndRefs(outFile, outputs, groups);
      await atomicWriteText(
        genFile,
        JSON.stringify({
          mrs: groups.length,
          beams: run.cfg.num_beams,
          batch_size: cfg.gen_batch_size,
          backend: backend.name,
          seconds: (performance.now() - tg) / 1000,
        }) + "\n",
      );
    } else log(`${run.name}: outputs exist (skipping generation)`);
    const scoresFile = `${dir}/scores.json`;
    let scores: Record<string, number>;
    if (await exists(scoresFile)) scores = JSON.parse(await Deno.readTextFile(scoresFile));
    else {
      const outputs = (await Deno.readTextFile(outFile)).split("\n").slice(0, groups.length);
      const s = await scoreAll(outputs, groups.map((g) => g.refs), {
        meteorDir: cfg.meteor_dir ?? undefined,
      });
      scores = {
        BLEU: s.BLEU,
        NIST: s.NIST,
        METEOR: s.METEOR ?? NaN,
        ROUGE_L: s.ROUGE_L,
        CIDEr: s.CIDEr,
      };
      await atomicWriteText(scoresFile, JSON.stringify(scores, null, 2) + "\n");
    }
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
    const L = run.cfg.tuner === "prefix" ? run.cfg.prefix_len : null;
    const stored = L === null ? summary.model_params : 2 * L * (await modelShape(dir)).perToken;
    const st = await stepStats(dir);
    const gen = (await exists(genFile)) ? JSON.parse(await Deno.readTextFile(genFile)) : null;
    rows.push({
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
    });
    log(
      `${run.name}: BLEU ${scores.BLEU.toFixed(4)} NIST ${scores.NIST.toFixed(4)} METEOR ${
        scores.METEOR.toFixed(4)
      } ROUGE-L ${scores.ROUGE_L.toFixed(4)} CIDEr ${scores.CIDEr.toFixed(4)}`,
    );
  }
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

const USAGE =
  `usage: deno task ablation [--config FILE.yaml] [--out DIR] [--prefix-lens 1,5,10,20,40] [--no-finetune]
       [--only RUN,...] [--split test|valid] [--gen-limit N] [--meteor-dir DIR] [--KEY VALUE for any training key]
${SWEEP_USAGE}`;

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const options: Record<string, { type: "string" | "boolean" }> = {
    config: { type: "string" },
    "no-finetune": { type: "boolean" },
    "prefix-lens": { type: "string" },
    only: { type: "string" },
    split: { type: "string" },
    "gen-limit": { type: "string" },
    "gen-batch-size": { type: "string" },
    "meteor-dir": { type: "string" },
    "finetune-lr": { type: "string" },
    help: { type: "boolean" },
  };
  for (const k of Object.keys(CONFIG_SCHEMA)) options[flagName(k)] ??= { type: "string" };
  try {
    // ---- sweep launcher (train/sweep.ts): --launcher local|slurm, --collect, --dry-run, ... ----
    const sweep = takeSweepFlags(args);
    args = sweep.rest;
    // ---- end sweep launcher ----
    const { values } = parseArgs({ args, options, strict: true });
    const v = values as Record<string, string | boolean | undefined>;
    if (v.help) {
      console.log(USAGE);
      return 0;
    }
    const overrides: Record<string, unknown> = {};
    for (const k of Object.keys(CONFIG_SCHEMA)) {
      if (v[flagName(k)] !== undefined) overrides[k] = v[flagName(k)];
    }
    if (v["prefix-lens"]) overrides.prefix_lens = v["prefix-lens"];
    if (v["no-finetune"]) overrides.finetune = false;
    if (v.only) overrides.only = v.only;
    for (const k of ["split", "gen-limit", "gen-batch-size", "meteor-dir", "finetune-lr"]) {
      if (v[k] !== undefined) overrides[k.replaceAll("-", "_")] = v[k];
    }
    const file = (v.config as string | undefined) ??
      new URL("../configs/ablation.yaml", import.meta.url).pathname;
    const cfg = await loadAblationConfig(file, overrides);
    // `--out` names the ablation folder; per-run folders go inside it.
    if (overrides.out) cfg.out = String(overrides.out);
    // ---- sweep launcher: Slurm array job and the collect step ----
    if (sweep.flags.launcher === "slurm" || sweep.flags.collect) {
      if (sweep.flags.seeds) throw new Error("--seeds is a flag of deno task train");
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
    return e instanceof ConfigError || (e as Error).name === "TypeError" ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
