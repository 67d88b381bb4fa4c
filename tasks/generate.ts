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
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import {
  E2E_DECODING,
  generateForMRs,
  type GenerateTextOptions,
  loadCheckpoint,
  writeOutputsAndRefs,
} from "../models/checkpoint.ts";
import { e2eSplitPath, groupByMR, readE2E } from "../data/e2e.ts";
import { resolveE2EData } from "../train/e2e.ts";
import { useBackend } from "../kernels/select.ts";

const USAGE = `usage: deno task generate --checkpoint DIR [options]

  --checkpoint DIR     train output folder, its prefix/ or peft/ folder, a model folder or hub id
  --split test|valid   which E2E split to decode (default test)
  --data DIR           folder with <split>.txt (default: the run's config.yaml data, else the downloaded or shipped E2E data)
  --beams N            beam width (default ${E2E_DECODING.numBeams}; 1 = greedy)
  --max-new-tokens N   most tokens generated per MR (default ${E2E_DECODING.maxNewTokens})
  --min-length N       Hugging Face's min_length: no EOS before prompt + N tokens (default ${E2E_DECODING.minLength})
  --batch-size N       MRs decoded together (default ${E2E_DECODING.batchSize}; results do not depend on it)
  --limit N            only the first N MRs (default 0: all)
  --out FILE           outputs file (default <checkpoint>/outputs/<split>.txt; references go to FILE.refs.txt)
  --model DIR|ID       base model of a prefix (default: the one the prefix records)
  --backend NAME       auto|cpu|wasm|webgpu (default auto: the fastest that works)
  --help               this text`;

class UsageError extends Error {}

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args,
      options: {
        checkpoint: { type: "string" },
        split: { type: "string", default: "test" },
        data: { type: "string" },
        beams: { type: "string" },
        "max-new-tokens": { type: "string" },
        "min-length": { type: "string" },
        "batch-size": { type: "string" },
        limit: { type: "string" },
        out: { type: "string" },
        model: { type: "string" },
        backend: { type: "string", default: "auto" },
        help: { type: "boolean" },
      },
      allowPositionals: false,
    }).values;
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  try {
    if (!v.checkpoint) throw new UsageError("--checkpoint is required");
    if (v.split !== "test" && v.split !== "valid") {
      throw new UsageError(`--split must be test or valid, got '${v.split}'`);
    }
    const int = (name: string, s: string | undefined, d: number, min: number) => {
      if (s === undefined) return d;
      const n = Number(s);
      if (!Number.isInteger(n) || n < min) {
        throw new UsageError(`--${name} must be an integer ≥ ${min}, got '${s}'`);
      }
      return n;
    };
    const limit = int("limit", v.limit, 0, 0);
    const log = (s: string) => console.error(s);
    const backend = await useBackend(v.backend!, log);
    let dataDir = v.data;
    if (!dataDir) {
      const conf = await Deno.readTextFile(`${v.checkpoint}/config.yaml`).then(
        (t) => parseYaml(t) as { data?: string | null },
        () => null,
      );
      dataDir = await resolveE2EData(conf?.data ?? null);
    }
    let groups = groupByMR(await readE2E(await e2eSplitPath(dataDir, v.split)));
    if (limit > 0) groups = groups.slice(0, limit);
    const ck = await loadCheckpoint(v.checkpoint, { backend, baseModel: v.model });
    log(
      `generating ${groups.length} outputs (${v.split}) with ${
        ck.prefix ? `the prefix in ${ck.prefixDir}` : "the model"
      } on ${ck.modelDir}`,
    );
    const t0 = performance.now();
    const opts: GenerateTextOptions = {
      numBeams: int("beams", v.beams, E2E_DECODING.numBeams, 1),
      maxNewTokens: int("max-new-tokens", v["max-new-tokens"], E2E_DECODING.maxNewTokens, 1),
      minLength: int("min-length", v["min-length"], E2E_DECODING.minLength, 0),
      batchSize: int("batch-size", v["batch-size"], E2E_DECODING.batchSize, 1),
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
    const out = v.out ?? `${v.checkpoint}/outputs/${v.split}.txt`;
    await writeOutputsAndRefs(out, outputs, groups);
    log(
      `wrote ${outputs.length} outputs to ${out} and references to ${
        out.replace(/\.txt$/, "")
      }.refs.txt`,
    );
    ck.model.dispose();
    return 0;
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    if (e instanceof UsageError) console.error(USAGE);
    return e instanceof UsageError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
