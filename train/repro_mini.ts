/**
 * The whole miniature reproduction in one call (`deno task repro-mini`), resumable.
 *
 * 1. `pretrain` a small GPT-2 on the E2E training references (configs/mini_pretrain.yaml);
 * 2. the paper's recipe on it (configs/mini_ablation.yaml): prefix-tuning (length 5) with the
 *    model frozen, full fine-tuning, and the prefix-length ablation — each trained on
 *    train.txt, decoded with beam 5 on the 630 test MRs, scored with the five E2E metrics;
 * 3. the trivial baseline that emits the MR's values;
 * 4. a results folder (default `results/mini/`) with the configs used, logs, loss curves,
 *    outputs and references, scores, the figure and a Markdown report.
 *
 * It is a miniature of the paper's setting (a ~10M-parameter GPT-2 pretrained on 1M tokens of
 * E2E text instead of GPT-2 Medium on WebText), and says so in its report.
 *
 * @module
 */
// deno-lint-ignore no-import-prefix -- the import map does not apply to importers elsewhere
import { stringify as toYaml } from "npm:yaml@^2.6.0";
import { groupByMR, readE2ESplit } from "../data/e2e.ts";
import { scoreAll } from "../metrics/mod.ts";
import { atomicWriteText } from "../io/atomic.ts";
import { type AblationRow, loadAblationConfig, runAblation } from "./ablation.ts";
import { resolveE2EData } from "./e2e.ts";
import { PAPER_E2E_MEDIUM } from "./pipeline.ts";
import { loadPretrainConfig, pretrain } from "./pretrain.ts";

/** The trivial baseline: the values of a linearised MR, in order ("The Vaults pub ..."). */
export function mrValues(mr: string): string {
  return mr.split("|").map((f) => f.split(" : ").slice(1).join(" : ").trim()).filter(Boolean).join(
    " ",
  );
}

/**
 * How often outputs contain the MR's `name` and `near` values verbatim (proper nouns that must be
 * copied from the input), as fractions of the MRs that have the field: a direct check of whether a
 * model copies from its prompt.
 */
export function copyRates(mrs: string[], outputs: string[]): { name: number; near: number } {
  const count = { name: [0, 0], near: [0, 0] };
  mrs.forEach((mr, i) => {
    for (const f of mr.split("|")) {
      const [k, ...v] = f.split(" : ");
      const key = k.trim() as "name" | "near";
      if (key !== "name" && key !== "near") continue;
      count[key][1]++;
      if ((outputs[i] ?? "").includes(v.join(" : ").trim())) count[key][0]++;
    }
  });
  const frac = ([a, b]: number[]) => (b ? a / b : NaN);
  return { name: frac(count.name), near: frac(count.near) };
}

/** Whether two folder paths name the same place (after resolving `.`/`..` and slashes). */
function sameDir(a: string, b: string): boolean {
  const norm = (p: string) => {
    const out: string[] = [];
    for (const part of (p.startsWith("/") ? p : `${Deno.cwd()}/${p}`).split("/")) {
      if (part === "" || part === ".") continue;
      if (part === "..") out.pop();
      else out.push(part);
    }
    return out.join("/");
  };
  return norm(a) === norm(b);
}

async function copyIfExists(from: string, to: string): Promise<void> {
  try {
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(from, to);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

const f1 = (x: number) => (100 * x).toFixed(1);

/** "0.412 s/step, 1733 s/epoch (est.), decode 312 s" for a run. */
function timing(r: AblationRow): string {
  return `${r.sec_per_step.toFixed(3)} s/step, ${r.sec_per_epoch.toFixed(0)} s/epoch, decode ${
    r.gen_seconds.toFixed(0)
  } s`;
}

/**
 * The miniature's checks as a checklist computed from the scores (✓ met, ✗ missed): fine-tuning
 * ≥ 60 BLEU, prefix-tuning ≥ 55 BLEU, a prefix step faster than a fine-tuning step, both above
 * the MR-values baseline.
 */
export function checks(
  ft: AblationRow | undefined,
  pre: AblationRow | undefined,
  base: { BLEU: number },
): string[] {
  const mark = (ok: boolean) => (ok ? "✓" : "✗");
  const out: string[] = [];
  if (ft) out.push(`- ${mark(ft.BLEU >= 0.6)} fine-tuning ≥ 60 BLEU: ${f1(ft.BLEU)}`);
  if (pre) out.push(`- ${mark(pre.BLEU >= 0.55)} prefix-tuning ≥ 55 BLEU: ${f1(pre.BLEU)}`);
  if (ft && pre) {
    out.push(
      `- ${mark(pre.sec_per_step < ft.sec_per_step)} prefix step faster than fine-tuning step: ${
        pre.sec_per_step.toFixed(3)
      } s vs ${ft.sec_per_step.toFixed(3)} s (${(pre.sec_per_step / ft.sec_per_step).toFixed(2)}×)`,
    );
  }
  for (const [name, r] of [["fine-tuning", ft], ["prefix-tuning", pre]] as const) {
    if (r) {
      out.push(
        `- ${mark(r.BLEU > base.BLEU)} ${name} above the MR-values baseline: ${f1(r.BLEU)} vs ${
          f1(base.BLEU)
        } BLEU`,
      );
    }
  }
  return out;
}

/** Runs everything; returns the report text. */
export async function reproMini(opts: {
  results: string;
  pretrainConfig: string;
  ablationConfig: string;
  /** E2E data folder for every step (default: each config's, else the download). */
  data?: string;
  log?: (s: string) => void;
}): Promise<string> {
  const log = opts.log ?? ((s: string) => console.error(s));
  const t0 = performance.now();
  const pcfg = await loadPretrainConfig(opts.pretrainConfig, opts.data ? { data: opts.data } : {});
  const pr = await pretrain(pcfg, { resume: true, log });
  if (pr.interrupted) throw new Error("pretraining was interrupted; run again to continue it");
  const modelDir = pr.modelDir;
  const pre = JSON.parse(await Deno.readTextFile(`${pcfg.out}/summary.json`));
  const acfg = await loadAblationConfig(opts.ablationConfig, {
    model: modelDir,
    ...(opts.data ? { data: opts.data } : {}),
  });
  const rows = await runAblation(acfg, log);

  // Trivial baseline on the same references.
  const dataDir = await resolveE2EData(acfg.train.data);
  let groups = groupByMR(await readE2ESplit(dataDir, acfg.split));
  if (acfg.train.gen_limit > 0) groups = groups.slice(0, acfg.train.gen_limit);
  const baselineOut = groups.map((g) => mrValues(g.mr));
  const base = await scoreAll(baselineOut, groups.map((g) => g.refs), {
    meteorDir: acfg.train.meteor_dir ?? undefined,
  });

  // Results folder.
  const R = opts.results;
  await Deno.mkdir(`${R}/runs`, { recursive: true });
  await atomicWriteText(`${R}/configs/pretrain.yaml`, toYaml(pcfg)).catch(async () => {
    await Deno.mkdir(`${R}/configs`, { recursive: true });
    await atomicWriteText(`${R}/configs/pretrain.yaml`, toYaml(pcfg));
  });
  await atomicWriteText(`${R}/configs/ablation.yaml`, toYaml({ ...acfg }));
  // Pretraining kept inside the results folder already (the default) is not copied.
  if (!sameDir(pcfg.out, `${R}/pretrain`)) {
    for (const f of ["log.jsonl", "loss.svg", "summary.json"]) {
      await copyIfExists(`${pcfg.out}/${f}`, `${R}/pretrain/${f}`);
    }
  }
  // Runs kept inside the results folder already (configs/mini_ablation.yaml) are not copied.
  for (const r of acfg.out.startsWith(`${R}/`) ? [] : rows) {
    const d = `${acfg.out}/${r.run}`;
    for (
      const f of [
        "log.jsonl",
        "loss.svg",
        "summary.json",
        "scores.json",
        "config.yaml",
        `outputs/${acfg.split}.txt`,
        `outputs/${acfg.split}.refs.txt`,
      ]
    ) {
      await copyIfExists(`${d}/${f}`, `${R}/runs/${r.run}/${f}`);
    }
    if (r.tuner === "prefix") {
      for (const f of ["prefix/prefix.safetensors", "prefix/prefix_config.json"]) {
        await copyIfExists(`${d}/${f}`, `${R}/runs/${r.run}/${f}`);
      }
    }
  }
  await atomicWriteText(`${R}/baseline_mr_values.txt`, baselineOut.map((o) => o + "\n").join(""));
  // The ablation's tables and figure: linked where they are inside the results folder, else copied.
  const inside = acfg.out.startsWith(`${R}/`);
  if (!inside) {
    for (const f of ["results.csv", "results.md", "ablation.svg"]) {
      await copyIfExists(`${acfg.out}/${f}`, `${R}/${f}`);
    }
  }
  const figure = inside ? `${acfg.out.slice(R.length + 1)}/ablation.svg` : "ablation.svg";

  const main = rows.find((r) => r.run === "prefix_L5") ?? rows.find((r) => r.tuner === "prefix");
  const mrs = groups.map((g) => g.mr);
  const copyLines: string[] = [];
  for (const r of rows) {
    const outs = (await Deno.readTextFile(`${acfg.out}/${r.run}/outputs/${acfg.split}.txt`)).split(
      "\n",
    );
    const c = copyRates(mrs, outs);
    copyLines.push(`| ${r.run} | ${f1(c.name)}% | ${f1(c.near)}% |`);
  }
  const ft = rows.find((r) => r.tuner === "fine");
  const row = (
    name: string,
    r: { BLEU: number; NIST: number; METEOR: number | null; ROUGE_L: number; CIDEr: number },
    extra: string,
  ) =>
    `| ${name} | ${f1(r.BLEU)} | ${r.NIST.toFixed(2)} | ${
      r.METEOR === null ? "–" : f1(r.METEOR)
    } | ${f1(r.ROUGE_L)} | ${r.CIDEr.toFixed(2)} | ${extra} |`;
  const params = (r: AblationRow) =>
    `${r.trainable.toLocaleString("en")} (${(100 * r.trainable / r.model_params).toFixed(2)}%)`;
  const stored = (r: AblationRow) =>
    `${r.stored.toLocaleString("en")} (${(100 * r.stored / r.model_params).toFixed(2)}%)`;
  const lines = [
    "# Miniature reproduction of Prefix-Tuning on E2E",
    "",
    "**This is a miniature of the paper's setting, not the paper's experiment.** GPT-2 Medium's",
    "pretrained weights cannot be downloaded on the machine this ran on, so a small GPT-2 (same",
    `architecture and tokenizer, ${
      (pre.parameters / 1e6).toFixed(1)
    }M parameters: n_layer ${pcfg.n_layer}, n_head ${pcfg.n_head}, n_embd ${pcfg.n_embd})`,
    `was pretrained from scratch on the E2E training references only (${pre.steps} steps, ${
      (pre.seconds / 60).toFixed(1)
    } min),`,
    "then prefix-tuned (frozen) and fully fine-tuned on `train.txt` with the paper's recipe, decoded",
    `with beam 5 on the ${groups.length} test MRs and scored with our TypeScript E2E metrics`,
    "(METEOR without the paraphrase table where it is absent; see metrics/).",
    "",
    "Command: `deno task repro-mini` (resumable; finished steps are skipped).",
    "",
    "| Method | BLEU | NIST | METEOR | ROUGE-L | CIDEr | trainable / stored parameters | s/step, s/epoch (est.), decode |",
    "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ...(ft
      ? [
        row(
          "Fine-tune (ours, miniature)",
          ft,
          `${params(ft)} / ${stored(ft)} | ${timing(ft)}`,
        ),
      ]
      : []),
    ...(main
      ? [
        row(
          `Prefix L=${main.prefix_len} (ours, miniature)`,
          main,
          `${params(main)} / ${stored(main)} | ${timing(main)}`,
        ),
      ]
      : []),
    row("MR values (trivial baseline)", base, "– | –"),
    `| Fine-tune (paper, GPT-2 Medium) | ${PAPER_E2E_MEDIUM.fine.BLEU} | ${PAPER_E2E_MEDIUM.fine.NIST} | ${PAPER_E2E_MEDIUM.fine.METEOR} | ${PAPER_E2E_MEDIUM.fine.ROUGE_L} | ${PAPER_E2E_MEDIUM.fine.CIDEr} | 100% | – |`,
    `| Prefix (paper, GPT-2 Medium) | ${PAPER_E2E_MEDIUM.prefix.BLEU} | ${PAPER_E2E_MEDIUM.prefix.NIST} | ${PAPER_E2E_MEDIUM.prefix.METEOR} | ${PAPER_E2E_MEDIUM.prefix.ROUGE_L} | ${PAPER_E2E_MEDIUM.prefix.CIDEr} | 0.1% | – |`,
    "",
    "## Targets of the miniature, checked on the numbers above",
    "",
    ...checks(ft, main, base),
    "",
    "## Does the model copy from the MR?",
    "",
    "Share of test outputs containing the MR's `name` / `near` value verbatim:",
    "",
    "| run | name | near |",
    "| --- | ---: | ---: |",
    ...copyLines,
    "",
    "## Prefix-length ablation",
    "",
    `![BLEU and ROUGE-L against prefix length](${figure})`,
    "",
    (await Deno.readTextFile(`${acfg.out}/results.md`)).replace(/^# .*\n/, ""),
    `Total wall time of this invocation: ${((performance.now() - t0) / 60000).toFixed(1)} min.`,
    "",
    ...(await Deno.readTextFile(`${R}/NOTES.md`).then((t) => [t], () => [])),
  ];
  const report = lines.join("\n");
  await atomicWriteText(`${R}/REPORT.md`, report);
  log(`wrote ${R}/REPORT.md`);
  return report;
}
