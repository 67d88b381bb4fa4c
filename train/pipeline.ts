/**
 * The whole E2E job of the paper in one call: train (prefix-tuning or fine-tuning), decode the
 * test MRs with the paper's beam search, score the outputs with the five E2E metrics, and
 * report the result as a row of the paper's Table 1. The same path serves the shipped miniature
 * (`configs/e2e_prefix_mini.yaml`) and GPT-2 Medium (`configs/e2e_prefix.yaml`).
 *
 * Files added to the run folder: `outputs/test.txt` (one output per MR),
 * `outputs/test.refs.txt` (references, the official scorer's format), `scores.json`,
 * `result.md`.
 *
 * @module
 */
import { useBackend } from "../kernels/select.ts";
import { groupByMR, readE2ESplit } from "../data/e2e.ts";
import { scoreAll } from "../metrics/mod.ts";
import { atomicWriteText } from "../io/atomic.ts";
import {
  E2E_DECODING,
  generateForMRs,
  loadCheckpoint,
  writeOutputsAndRefs,
} from "../models/checkpoint.ts";
import { applyConfig, readConfigFile } from "./config.ts";
import { formatDuration } from "./loop.ts";
import {
  checkTrainConfig,
  resolveE2EData,
  TRAIN_DEFAULTS,
  TRAIN_SCHEMA,
  type TrainConfig,
  trainE2E,
  type TrainOptions,
  type TrainResult,
} from "./e2e.ts";

/** The paper's Table 1 rows for GPT-2 Medium on E2E (Li & Liang 2021). */
export const PAPER_E2E_MEDIUM = {
  fine: { BLEU: 68.2, NIST: 8.62, METEOR: 46.2, ROUGE_L: 71.0, CIDEr: 2.47 },
  prefix: { BLEU: 69.7, NIST: 8.81, METEOR: 46.1, ROUGE_L: 71.4, CIDEr: 2.49 },
};

/** The five scores (METEOR null when not computed). */
export interface E2EResultScores {
  /** BLEU (0–1). */
  BLEU: number;
  /** NIST. */
  NIST: number;
  /** METEOR (0–1) or null. */
  METEOR: number | null;
  /** ROUGE-L (0–1). */
  ROUGE_L: number;
  /** CIDEr. */
  CIDEr: number;
}

/** What {@linkcode runE2E} did. */
export interface E2ERunResult {
  /** The training part. */
  train: TrainResult;
  /** Scores on the test MRs (null when `eval` is off or training was interrupted). */
  scores: E2EResultScores | null;
  /** Note on METEOR (skipped modules or why it was not computed). */
  meteorNote: string;
  /** Number of test MRs decoded. */
  mrs: number;
  /** The report (a Table 1 row and the files), also in `result.md`. */
  report: string;
  /** Seconds spent decoding and scoring. */
  decodeSeconds: number;
  /** Seconds spent scoring. */
  scoreSeconds: number;
}

/**
 * The configuration of a command line: the config `file` over the defaults (on `resume`, the
 * run folder's own `config.yaml` instead, so the run continues as it began), then `flags`.
 */
export async function loadTrainConfig(
  file: string,
  flags: Record<string, unknown>,
  opts: { resume?: boolean } = {},
): Promise<TrainConfig> {
  let base = applyConfig(TRAIN_SCHEMA, TRAIN_DEFAULTS, await readConfigFile(file), file);
  const out = typeof flags.out === "string" ? flags.out : base.out;
  const own = `${out}/config.yaml`;
  if (opts.resume && await Deno.stat(own).then(() => true, () => false)) {
    base = applyConfig(TRAIN_SCHEMA, TRAIN_DEFAULTS, await readConfigFile(own), own);
  }
  return checkTrainConfig(applyConfig(TRAIN_SCHEMA, base, flags, "command line"), "config");
}

const f1 = (x: number | null) => (x === null ? "–" : (100 * x).toFixed(1));

/** A Markdown row of the paper's Table 1 (scores ×100 for BLEU, METEOR, ROUGE-L). */
export function tableRow(name: string, s: E2EResultScores): string {
  return `| ${name} | ${f1(s.BLEU)} | ${s.NIST.toFixed(2)} | ${f1(s.METEOR)} | ${f1(s.ROUGE_L)} | ${
    s.CIDEr.toFixed(2)
  } |`;
}

/** What {@linkcode decodeAndScore} did. */
export interface DecodeScoreResult {
  /** The five scores. */
  scores: E2EResultScores;
  /** Note on METEOR (skipped modules, or why it was not computed). */
  meteorNote: string;
  /** MRs decoded. */
  mrs: number;
  /** Seconds of decoding (NaN when the outputs were reused). */
  decodeSeconds: number;
  /** Seconds of scoring. */
  scoreSeconds: number;
  /** The data folder. */
  dataDir: string;
}

/**
 * Decodes the MRs of `split` with the trained prefix or model in `cfg.out` (the paper's beam
 * search with `cfg`'s settings) and scores the outputs. Writes `outputs/<split>.txt`,
 * `outputs/<split>.refs.txt`, `outputs/<split>.generation.json` and `scores.json`. With `reuse`,
 * outputs and scores already there are kept.
 */
export async function decodeAndScore(
  cfg: TrainConfig,
  split: "test" | "valid",
  opts: { log?: (s: string) => void; reuse?: boolean } = {},
): Promise<DecodeScoreResult> {
  const log = opts.log ?? ((s: string) => console.error(s));
  const dataDir = await resolveE2EData(cfg.data);
  let groups = groupByMR(await readE2ESplit(dataDir, split));
  if (cfg.gen_limit > 0) groups = groups.slice(0, cfg.gen_limit);
  const outFile = `${cfg.out}/outputs/${split}.txt`;
  const genFile = `${cfg.out}/outputs/${split}.generation.json`;
  const scoresFile = `${cfg.out}/scores.json`;
  const have = (p: string) => Deno.stat(p).then(() => true, () => false);
  let outputs: string[];
  let decodeSeconds = NaN;
  if (opts.reuse && await have(outFile)) {
    outputs = (await Deno.readTextFile(outFile)).split("\n").slice(0, groups.length);
    log(`${cfg.out}: outputs exist (skipping decoding)`);
  } else {
    const backend = await useBackend(cfg.backend, () => {});
    const t0 = performance.now();
    const ck = await loadCheckpoint(cfg.out, { backend });
    log(`decoding ${groups.length} ${split} MRs (beam ${cfg.beams})`);
    try {
      outputs = await generateForMRs(ck, groups, {
        ...E2E_DECODING,
        numBeams: cfg.beams,
        maxNewTokens: cfg.max_new_tokens,
        minLength: cfg.min_length,
        batchSize: cfg.gen_batch_size,
        onBatch: (done, total) => {
          const s = (performance.now() - t0) / 1000;
          log(`  ${done}/${total} MRs, ETA ${formatDuration(s / done * (total - done))}`);
        },
      });
    } finally {
      ck.model.dispose();
    }
    decodeSeconds = (performance.now() - t0) / 1000;
    await writeOutputsAndRefs(outFile, outputs, groups);
    await atomicWriteText(
      genFile,
      JSON.stringify({
        mrs: groups.length,
        beams: cfg.beams,
        batch_size: cfg.gen_batch_size,
        backend: backend.name,
        seconds: decodeSeconds,
      }) + "\n",
    );
  }
  if (opts.reuse && await have(scoresFile)) {
    const s = JSON.parse(await Deno.readTextFile(scoresFile));
    log(`${cfg.out}: scores exist (skipping scoring)`);
    return {
      scores: {
        BLEU: s.BLEU,
        NIST: s.NIST,
        METEOR: typeof s.METEOR === "number" ? s.METEOR : null,
        ROUGE_L: s.ROUGE_L,
        CIDEr: s.CIDEr,
      },
      meteorNote: s.meteor_note ?? "",
      mrs: groups.length,
      decodeSeconds,
      scoreSeconds: 0,
      dataDir,
    };
  }
  const t1 = performance.now();
  const s = await scoreAll(outputs, groups.map((g) => g.refs), {
    meteor: cfg.meteor,
    meteorDir: cfg.meteor_dir ?? undefined,
  });
  const scoreSeconds = (performance.now() - t1) / 1000;
  const scores: E2EResultScores = {
    BLEU: s.BLEU,
    NIST: s.NIST,
    METEOR: s.METEOR,
    ROUGE_L: s.ROUGE_L,
    CIDEr: s.CIDEr,
  };
  const meteorNote = s.METEOR === null
    ? "not computed (meteor: false)"
    : (s.meteorInfo?.note ?? "");
  await atomicWriteText(
    scoresFile,
    JSON.stringify({ ...scores, split, mrs: groups.length, meteor_note: meteorNote }, null, 2) +
      "\n",
  );
  return { scores, meteorNote, mrs: groups.length, decodeSeconds, scoreSeconds, dataDir };
}

/** Trains, decodes and scores; see the module documentation. */
export async function runE2E(cfg: TrainConfig, opts: TrainOptions = {}): Promise<E2ERunResult> {
  const log = opts.log ?? ((s: string) => console.error(s));
  const tr = await trainE2E(cfg, opts);
  const empty = { scores: null, meteorNote: "", mrs: 0, decodeSeconds: 0, scoreSeconds: 0 };
  if (tr.interrupted || !cfg.eval) {
    return { train: tr, ...empty, report: "" };
  }
  const d = await decodeAndScore(cfg, "test", { log });
  const { scores, meteorNote, decodeSeconds, scoreSeconds, dataDir } = d;
  const outFile = `${cfg.out}/outputs/test.txt`;
  const groups = { length: d.mrs };
  const summary = JSON.parse(await Deno.readTextFile(`${cfg.out}/summary.json`));
  const name = cfg.tuner === "prefix" ? `Prefix (L=${cfg.prefix_len})` : "Fine-tune";
  const paper = cfg.tuner === "prefix" ? PAPER_E2E_MEDIUM.prefix : PAPER_E2E_MEDIUM.fine;
  const report = [
    `# E2E test set (${groups.length} MRs) — ${cfg.model}`,
    "",
    "| Method | BLEU | NIST | METEOR | ROUGE-L | CIDEr |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
    tableRow(`${name}, ${cfg.model} (this run)`, scores),
    tableRow(`${name}, GPT-2 Medium (paper)`, {
      ...paper,
      BLEU: paper.BLEU / 100,
      METEOR: paper.METEOR / 100,
      ROUGE_L: paper.ROUGE_L / 100,
    }),
    "",
    `Scores as the official E2E script reports them (BLEU, METEOR, ROUGE-L ×100).${
      meteorNote ? ` METEOR: ${meteorNote}.` : ""
    }`,
    `Training: ${summary.steps} steps, ${formatDuration(summary.seconds_total)}${
      summary.time_budget_hit ? " (time budget reached)" : ""
    }; decoding (beam ${cfg.beams}): ${formatDuration(decodeSeconds)}; scoring: ${
      formatDuration(scoreSeconds)
    }.`,
    "",
    "Files:",
    `- run folder: ${cfg.out}`,
    `- configuration: ${cfg.out}/config.yaml`,
    `- training log and loss curve: ${cfg.out}/log.jsonl, ${cfg.out}/loss.svg`,
    cfg.tuner === "prefix"
      ? `- trained prefix: ${cfg.out}/prefix (Hugging Face peft format: ${cfg.out}/peft)`
      : `- fine-tuned model: ${cfg.out}/model`,
    `- outputs: ${outFile} (references: ${cfg.out}/outputs/test.refs.txt)`,
    `- scores: ${cfg.out}/scores.json`,
    `- data: ${dataDir}; base model: ${tr.modelDir}`,
    "",
  ].join("\n");
  await atomicWriteText(`${cfg.out}/result.md`, report);
  return {
    train: tr,
    scores,
    meteorNote,
    mrs: groups.length,
    report,
    decodeSeconds,
    scoreSeconds,
  };
}
