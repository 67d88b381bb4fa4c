/**
 * `deno task generate`: decodes one output per distinct MR of an E2E split with a trained
 * prefix or a fine-tuned model, the paper's way (beam 5, at most 100 new tokens, min length 5,
 * newline tokens banned, cut at `<|endoftext|>`), batched.
 *
 * ```sh
 * deno task generate --checkpoint runs/e2e_prefix --split test [--data DIR] [--beams 5] [--out FILE] [--limit N]
 * ```
 *
 * `--checkpoint` is a `deno task train` output folder, its `prefix/` or `peft/` folder, a model
 * folder or a hub id (see `loadCheckpoint`). Writes `FILE` (default
 * `<checkpoint>/outputs/<split>.txt`, one line per MR in order) and `FILE` with `.refs.txt`
 * (the references, blank-line-separated blocks, the official scorer's format).
 *
 * @module
 */
import { parse as parseYaml } from "yaml";
import {
  E2E_DECODING,
  generateForMRs,
  type GenerateTextOptions,
  loadCheckpoint,
  writeOutputsAndRefs,
} from "../models/checkpoint.ts";
import { type E2ESplit, e2eSplitPath, groupByMR, readE2E } from "../data/e2e.ts";
import { resolveE2EData } from "../train/e2e.ts";
import { ConfigError, runCommand, type Schema, STEP_SCHEMA } from "../train/config.ts";
import { useBackend } from "../kernels/select.ts";

interface GenerateFlags {
  checkpoint: string | null;
  split: E2ESplit;
  data: string | null;
  beams: number;
  max_new_tokens: number;
  min_length: number;
  batch_size: number;
  limit: number;
  out: string | null;
  model: string | null;
  backend: string;
}

const SCHEMA: Schema<GenerateFlags> = {
  checkpoint: {
    kind: "string?",
    value: "DIR",
    doc: "train output folder, its prefix/ or peft/ folder, a model folder or hub id (required)",
  },
  split: { kind: "string", choices: ["test", "valid"], doc: "which E2E split to decode" },
  data: {
    kind: "string?",
    value: "DIR",
    doc:
      "folder with <split>.txt (default: the run's config.yaml data, else the downloaded or shipped E2E data)",
  },
  beams: { kind: "integer", min: 1, doc: "beam width (1 = greedy)" },
  max_new_tokens: { kind: "integer", min: 1, doc: "most tokens generated per MR" },
  min_length: {
    kind: "integer",
    min: 0,
    doc: "Hugging Face's min_length: no EOS before prompt + N tokens",
  },
  batch_size: {
    kind: "integer",
    min: 1,
    doc: "MRs decoded together (results do not depend on it)",
  },
  limit: { kind: "integer", min: 0, doc: "only the first N MRs (0: all)" },
  out: {
    kind: "string?",
    value: "FILE",
    doc: "outputs file (default <checkpoint>/outputs/<split>.txt; references go to FILE.refs.txt)",
  },
  model: {
    kind: "string?",
    value: "DIR|ID",
    doc: "base model of a prefix (default: the one the prefix records)",
  },
  backend: { ...STEP_SCHEMA.backend, doc: "compute backend (auto: the fastest that works)" },
};

const DEFAULTS: GenerateFlags = {
  checkpoint: null,
  split: "test",
  data: null,
  beams: E2E_DECODING.numBeams,
  max_new_tokens: E2E_DECODING.maxNewTokens,
  min_length: E2E_DECODING.minLength,
  batch_size: E2E_DECODING.batchSize,
  limit: 0,
  out: null,
  model: null,
  backend: "auto",
};

const USAGE = "deno task generate --checkpoint DIR [options]";

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  return await runCommand(args, SCHEMA, DEFAULTS, USAGE, async (v) => {
    if (!v.checkpoint) throw new ConfigError("command line: --checkpoint is required");
    const checkpoint = v.checkpoint;
    const log = (s: string) => console.error(s);
    const backend = await useBackend(v.backend, log);
    let dataDir = v.data;
    if (!dataDir) {
      const conf = await Deno.readTextFile(`${checkpoint}/config.yaml`).then(
        (t) => parseYaml(t) as { data?: string | null },
        () => null,
      );
      dataDir = await resolveE2EData(conf?.data ?? null);
    }
    let groups = groupByMR(await readE2E(await e2eSplitPath(dataDir, v.split)));
    if (v.limit > 0) groups = groups.slice(0, v.limit);
    const ck = await loadCheckpoint(checkpoint, { backend, baseModel: v.model ?? undefined });
    log(
      `generating ${groups.length} outputs (${v.split}) with ${
        ck.prefix ? `the prefix in ${ck.prefixDir}` : "the model"
      } on ${ck.modelDir}`,
    );
    const t0 = performance.now();
    const opts: GenerateTextOptions = {
      numBeams: v.beams,
      maxNewTokens: v.max_new_tokens,
      minLength: v.min_length,
      batchSize: v.batch_size,
      onBatch: (done, total) => {
        const s = (performance.now() - t0) / 1000;
        log(
          `  ${done}/${total} MRs, ${s.toFixed(0)} s elapsed, ETA ${
            ((s / done) * (total - done)).toFixed(0)
          } s`,
        );
      },
    };
    const outputs = await generateForMRs(ck, groups, opts);
    const out = v.out ?? `${checkpoint}/outputs/${v.split}.txt`;
    await writeOutputsAndRefs(out, outputs, groups);
    log(
      `wrote ${outputs.length} outputs to ${out} and references to ${
        out.replace(/\.txt$/, "")
      }.refs.txt`,
    );
    ck.model.dispose();
    return 0;
  });
}

if (import.meta.main) Deno.exit(await main(Deno.args));
