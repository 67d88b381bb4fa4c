/**
 * Same-run comparison with PyTorch (the peer): `torch_peer.py` runs in a child process with its
 * threads pinned (`OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, `MKL_NUM_THREADS`), and every
 * measurement alternates round by round between our WebAssembly backend (with the same thread
 * count) and PyTorch, so that load from elsewhere on the machine hits both alike. Each row keeps
 * every round; the table quotes min and median and the ratio of medians.
 *
 * Measured, at each thread count:
 * - matmul 1024³ and the LM-head shape 640×768×50257 with B transposed (GFLOP/s);
 * - a GPT-2 training step on an E2E-shaped batch of 10 × 64 tokens (each row: an unlabelled
 *   meaning representation, a labelled reference, right padding), prefix-tuning (frozen GPT-2,
 *   L = 5, MLP 512) and fine-tuning (every weight, AdamW). PyTorch runs Hugging Face's eager
 *   computation: the LM head over every position, then the shifted cross-entropy; ours takes
 *   only the labelled positions through the head (same loss);
 * - beam-5 decoding with a KV cache (prompt of 32 tokens, no EOS): prefill and per-token cost.
 *
 * Weights are random on both sides (different draws); times do not depend on the values.
 *
 * @module
 */
import * as lf from "../mod.ts";
import { createWasmBackend, type WasmBackend } from "../kernels/wasm/backend.ts";
import type { Storage } from "../kernels/backend.ts";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { generate } from "../models/generate.ts";
import { PrefixTuning } from "../models/prefix.ts";
import { AdamW } from "../nn/optim.ts";
import { randomHost, say } from "./suite.ts";

/** One compared measurement. */
export interface PeerRow {
  /** What was measured. */
  name: string;
  /** Threads on both sides. */
  threads: number;
  /** Unit of the values. */
  unit: "ms" | "GFLOP/s";
  /** Our value per round. */
  ours: number[];
  /** PyTorch's value per round. */
  torch: number[];
  /** Medians. */
  oursMedian: number;
  torchMedian: number;
  /** Best round (min time, max GFLOP/s). */
  oursBest: number;
  torchBest: number;
  /** Ours ÷ PyTorch on medians: a time ratio (< 1: we are faster) or a GFLOP/s ratio (> 1). */
  ratio: number;
  /** 1-minute load average before and after the rounds. */
  load: [number, number];
  /** Extra information (losses, peak memory). */
  note: string;
  /**
   * Training steps: the first step's loss (before any update) of ours and of PyTorch (its own
   * random weights), and with `checkLoss` the reference backend's on our weights and batch.
   */
  loss?: { ours: number; torch: number; reference?: number };
}

/** A 10 × 64-style batch shaped like E2E: MR (label -100), reference (labelled), padding. */
export interface ShapedBatch {
  /** Token ids [B, T]. */
  ids: number[][];
  /** Labels [B, T]: -100 on the MR and the padding. */
  labels: number[][];
  /** Attention mask [B, T]: 0 on the padding. */
  mask: number[][];
}

/** A deterministic E2E-shaped batch (MR 28–36 tokens, padding 0–6, the reference between). */
export function e2eShapedBatch(B: number, T: number, vocab: number, seed = 5): ShapedBatch {
  const g = new lf.Xoshiro128(seed);
  const out: ShapedBatch = { ids: [], labels: [], mask: [] };
  for (let b = 0; b < B; b++) {
    const mr = Math.min(T - 2, Math.round(T * (28 + ((b * 5) % 9)) / 64));
    const pad = Math.min(T - mr - 2, (b * 3) % 7);
    const ids = Array.from({ length: T }, () => g.int(vocab - 1));
    out.ids.push(ids);
    out.labels.push(ids.map((t, i) => (i < mr || i >= T - pad ? -100 : t)));
    out.mask.push(ids.map((_, i) => (i >= T - pad ? 0 : 1)));
  }
  return out;
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const load1 = () => {
  try {
    return Deno.loadavg()[0];
  } catch {
    return NaN;
  }
};

/** Builds a row from per-round values. */
export function peerRow(
  name: string,
  threads: number,
  unit: PeerRow["unit"],
  ours: number[],
  torch: number[],
  load: [number, number],
  note = "",
): PeerRow {
  const best = (v: number[]) => unit === "ms" ? Math.min(...v) : Math.max(...v);
  const oursMedian = median(ours), torchMedian = median(torch);
  return {
    name,
    threads,
    unit,
    ours,
    torch,
    oursMedian,
    torchMedian,
    oursBest: best(ours),
    torchBest: best(torch),
    ratio: oursMedian / torchMedian,
    load,
    note,
  };
}

/** The PyTorch child process: one JSON command per line, one JSON answer per line. */
export class TorchPeer {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncIterator<string>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.#lines = lines(child.stdout.pipeThrough(new TextDecoderStream()))[Symbol.asyncIterator]();
  }

  /** Why PyTorch cannot be used (no interpreter, no torch), or null when it can. */
  static async unavailable(python = "/usr/bin/python3"): Promise<string | null> {
    try {
      const out = await new Deno.Command(python, {
        args: ["-c", "import torch; print(torch.__version__)"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (out.success) return null;
      return `${python} has no torch (${
        new TextDecoder().decode(out.stderr).trim().split("\n").at(-1)
      })`;
    } catch (e) {
      return `${python} cannot be run (${(e as Error).message})`;
    }
  }

  /** Starts the peer with every thread setting pinned to `threads`. */
  static start(threads: number, python = "/usr/bin/python3"): TorchPeer {
    const t = String(threads);
    const child = new Deno.Command(python, {
      args: [new URL("./torch_peer.py", import.meta.url).pathname],
      env: { OMP_NUM_THREADS: t, OPENBLAS_NUM_THREADS: t, MKL_NUM_THREADS: t },
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    return new TorchPeer(child);
  }

  /** Sends one command and returns its answer (throws on the peer's error). */
  async call(cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
    await this.#writer.write(new TextEncoder().encode(JSON.stringify(cmd) + "\n"));
    const r = await this.#lines.next();
    if (r.done) throw new Error(`torch peer exited during ${cmd.cmd}`);
    const ans = JSON.parse(r.value);
    if (!ans.ok) throw new Error(`torch peer: ${cmd.cmd}: ${ans.error}`);
    return ans;
  }

  /** Ends the process. */
  async close(): Promise<void> {
    try {
      await this.#writer.write(new TextEncoder().encode('{"cmd":"quit"}\n'));
      await this.#writer.close();
    } catch { /* already gone */ }
    await this.#child.status;
  }
}

async function* lines(stream: ReadableStream<string>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of stream) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
}

/** Options of {@link comparePeer}. */
export interface PeerOptions {
  /** Thread counts to compare at (default [1, 2]). */
  threads?: number[];
  /** Rounds per measurement (default 3). */
  rounds?: number;
  /** Which parts run (default all). */
  parts?: ("matmul" | "prefix" | "fine" | "decode")[];
  /** Model size (default GPT-2 124M: 12 layers, 12 heads, 768). */
  model?: { nLayer: number; nHead: number; nEmbd: number };
  /** Label of the model in row names (default "GPT-2 124M"). */
  label?: string;
  /** Python with torch (default /usr/bin/python3). */
  python?: string;
  /**
   * Also compute each step's loss (prefix-tuning and fine-tuning) on the plain-TypeScript
   * reference backend, on the same weights and the whole batch, forward only, once per mode: it
   * must equal our first step's loss. Slow (the reference runs at a few GFLOP/s: minutes per mode
   * on a GPT-2 Medium shape).
   */
  checkLoss?: boolean;
}

/** Our time (ms) of one matmul, best of `reps`. */
function ourMatmulMs(
  be: WasmBackend,
  a: Storage,
  b: Storage,
  m: number,
  k: number,
  n: number,
  transB: boolean,
  reps: number,
): number {
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    const c = be.matmul(a, b, {
      batch: 1,
      m,
      n,
      k,
      transA: false,
      transB,
      aBatchStride: 0,
      bBatchStride: 0,
    });
    best = Math.min(best, performance.now() - t0);
    be.dispose(c);
  }
  return best;
}

/** Alternates `ours` and `theirs` for `rounds` rounds after one warm-up each. */
async function alternate(
  rounds: number,
  ours: () => Promise<number>,
  theirs: () => Promise<number>,
): Promise<{ o: number[]; t: number[]; load: [number, number] }> {
  await ours();
  await theirs();
  const l0 = load1();
  const o: number[] = [], t: number[] = [];
  for (let r = 0; r < rounds; r++) {
    o.push(await ours());
    t.push(await theirs());
  }
  return { o, t, load: [l0, load1()] };
}

/** Runs the comparison; returns one row per measurement and thread count. */
export async function comparePeer(opts: PeerOptions = {}): Promise<PeerRow[]> {
  const rounds = opts.rounds ?? 3;
  const parts = new Set(opts.parts ?? ["matmul", "prefix", "fine", "decode"]);
  const size = opts.model ?? { nLayer: 12, nHead: 12, nEmbd: 768 };
  const label = opts.label ?? "GPT-2 124M";
  const rows: PeerRow[] = [];
  // Step rows whose loss is checked on the reference backend once the peer is gone (memory).
  const toCheck = new Map<"prefix" | "fine", PeerRow>();
  for (const threads of opts.threads ?? [1, 2]) {
    const be = await createWasmBackend({ threads });
    const peer = TorchPeer.start(threads, opts.python);
    try {
      const info = await peer.call({ cmd: "info" });
      say(`peer at ${threads} thread(s): torch ${info.torch}; ours: ${be.matmulPath}`);
      if (parts.has("matmul")) {
        for (
          const [m, k, n, transB] of [[1024, 1024, 1024, false], [640, 768, 50257, true]] as const
        ) {
          const a = be.fromHost(randomHost(m * k, 1), "f32");
          const b = be.fromHost(randomHost(k * n, 2), "f32");
          const gf = (ms: number) => (2 * m * n * k) / ms / 1e6;
          const reps = m * n * k > 1e10 ? 2 : 5;
          const { o, t, load } = await alternate(
            rounds,
            () => Promise.resolve(gf(ourMatmulMs(be, a, b, m, k, n, transB, reps))),
            async () =>
              gf((await peer.call({ cmd: "matmul", m, k, n, transB, reps })).ms as number),
          );
          be.dispose(a);
          be.dispose(b);
          const name = `matmul ${m}×${k}×${n}${transB ? " (B transposed)" : ""}`;
          rows.push(peerRow(name, threads, "GFLOP/s", o, t, load, "best of reps per round"));
          say(
            `  ${name} ×${threads}: ours ${median(o).toFixed(1)}, torch ${
              median(t).toFixed(1)
            } GFLOP/s`,
          );
        }
      }
      const needModel = parts.has("prefix") || parts.has("fine") || parts.has("decode");
      if (!needModel) continue;
      const config = gpt2Config({ ...size, attnPdrop: 0, embdPdrop: 0, residPdrop: 0 });
      const model = GPT2.random(config, 0, { backend: be });
      await peer.call({
        cmd: "model",
        nLayer: size.nLayer,
        nHead: size.nHead,
        nEmbd: size.nEmbd,
        vocab: config.vocabSize,
        nPositions: config.nPositions,
      });
      const batch = e2eShapedBatch(10, 64, config.vocabSize);
      for (const mode of ["prefix", "fine"] as const) {
        if (!parts.has(mode)) continue;
        const ours = ourStep(be, model, mode, batch, size);
        await peer.call({
          cmd: "step_setup",
          mode,
          ...batch,
          prefixLen: PREFIX_LEN,
          mid: PREFIX_MID,
        });
        const losses: number[] = [], tl: number[] = [];
        const { o, t, load } = await alternate(
          rounds,
          async () => {
            const r = await ours.step();
            losses.push(r.loss);
            return r.ms;
          },
          async () => {
            const r = await peer.call({ cmd: "step" });
            tl.push(r.loss as number);
            return r.ms as number;
          },
        );
        ours.dispose();
        const rss = `peak RSS: ours ${peakRssMiB().toFixed(0)} MiB, torch ${
          ((await peer.call({ cmd: "rss" })).peakRssMiB as number).toFixed(0)
        } MiB`;
        const name = `${label} ${mode === "prefix" ? "prefix-tuning" : "fine-tuning"} step, 10×64`;
        rows.push(
          peerRow(
            name,
            threads,
            "ms",
            o,
            t,
            load,
            `first losses: ours ${losses[0].toFixed(4)}, torch ${
              tl[0].toFixed(4)
            } (different random weights); ${rss}`,
          ),
        );
        const row = rows[rows.length - 1];
        row.loss = { ours: losses[0], torch: tl[0] };
        if (opts.checkLoss && !toCheck.has(mode)) toCheck.set(mode, row);
        say(
          `  ${name} ×${threads}: ours ${median(o).toFixed(0)} ms, torch ${
            median(t).toFixed(0)
          } ms`,
        );
      }
      if (parts.has("decode")) {
        model.eval();
        const g = new lf.Xoshiro128(9);
        const prompt = Array.from({ length: 32 }, () => g.int(50000));
        const N = 20;
        const ourDecode = async (n: number) => {
          const t0 = performance.now();
          await generate(model, [prompt], { numBeams: 5, maxNewTokens: n, eosTokenId: null });
          return performance.now() - t0;
        };
        const pre: number[] = [], tpre: number[] = [];
        const { o, t, load } = await alternate(
          rounds,
          async () => {
            // Prefill ≈ a 1-token run; per token = (N-token run − 1-token run) / (N − 1).
            const t1 = await ourDecode(1);
            const tn = await ourDecode(N);
            pre.push(t1);
            return (tn - t1) / (N - 1);
          },
          async () => {
            const r = await peer.call({ cmd: "decode", prompt, beams: 5, newTokens: N });
            tpre.push(r.prefillMs as number);
            return r.perTokenMs as number;
          },
        );
        const name = `${label} beam-5 decode, per token (KV cache, prompt 32)`;
        rows.push(
          peerRow(
            name,
            threads,
            "ms",
            o,
            t,
            load,
            `tokens/s per beam set (medians): ours ${(1000 / median(o)).toFixed(2)}, torch ${
              (1000 / median(t)).toFixed(2)
            }, ours ÷ torch ${(median(t) / median(o)).toFixed(2)}×`,
          ),
        );
        rows.push(
          peerRow(
            `${label} beam-5 decode, prefill (prompt 32)`,
            threads,
            "ms",
            pre.slice(1),
            tpre.slice(1),
            load,
          ),
        );
        say(
          `  decode ×${threads}: per token ours ${median(o).toFixed(1)} ms, torch ${
            median(t).toFixed(1)
          } ms`,
        );
      }
      model.dispose();
    } finally {
      await peer.close();
      be.close();
    }
  }
  for (const [mode, row] of toCheck) {
    say(`  ${row.name}: the same loss on the reference backend (forward only) ...`);
    const t0 = performance.now();
    const vocab = gpt2Config({ ...size }).vocabSize;
    row.loss!.reference = await referenceStepLoss(size, mode, e2eShapedBatch(10, 64, vocab));
    row.note += `; first loss on the reference backend, same weights and batch: ${
      row.loss!.reference.toFixed(6)
    } (ours ${row.loss!.ours.toFixed(6)}; ${((performance.now() - t0) / 1000).toFixed(0)} s)`;
    say(`  ${row.note}`);
  }
  return rows;
}

/** Peak resident memory of this process (Linux `VmHWM`), NaN where unknown. */
export function peakRssMiB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/**
 * The loss of {@link ourStep}'s first step (before any update: random weights of seed 0, the
 * prefix's seed 0, the same batch and masks), computed on the plain-TypeScript reference backend,
 * forward only.
 */
export async function referenceStepLoss(
  size: { nLayer: number; nHead: number; nEmbd: number },
  mode: "prefix" | "fine",
  batch: ShapedBatch,
): Promise<number> {
  const { CpuBackend } = await import("../kernels/cpu/backend.ts");
  const backend = new CpuBackend();
  const config = gpt2Config({ ...size, attnPdrop: 0, embdPdrop: 0, residPdrop: 0 });
  const model = GPT2.random(config, 0, { backend }).eval();
  const prefix = mode === "prefix" ? stepPrefix(size, backend) : null;
  const B = batch.ids.length, L = prefix ? PREFIX_LEN : 0;
  const mask = batch.mask.map((r) => [...new Array(L).fill(1), ...r]);
  try {
    const loss = lf.noGrad(() =>
      lf.tidy(() =>
        model.loss(batch.ids, batch.labels, { past: prefix?.past(B), attentionMask: mask })
      )
    );
    const v = await loss.item();
    loss.dispose();
    return v;
  } finally {
    prefix?.dispose();
    model.dispose();
  }
}

/** Prefix length and MLP width of the prefix-tuning step (the paper's table-to-text setting). */
const PREFIX_LEN = 5, PREFIX_MID = 512;

/** The prefix of the prefix-tuning step (seed 0). */
function stepPrefix(
  size: { nLayer: number; nHead: number; nEmbd: number },
  backend: lf.Backend,
): PrefixTuning {
  return new PrefixTuning(
    { prefixLen: PREFIX_LEN, ...size, mid: PREFIX_MID, mlp: true, dropout: 0 },
    { backend, seed: 0 },
  );
}

/** Our training step on `batch` (prefix-tuning or fine-tuning), with its time and loss. */
export function ourStep(
  be: WasmBackend,
  model: GPT2,
  mode: "prefix" | "fine",
  batch: ShapedBatch,
  size: { nLayer: number; nHead: number; nEmbd: number },
): { step: () => Promise<{ ms: number; loss: number }>; dispose: () => void } {
  const B = batch.ids.length;
  let prefix: PrefixTuning | null = null;
  let params: lf.Tensor[];
  if (mode === "prefix") {
    model.freeze();
    model.eval();
    prefix = stepPrefix(size, be);
    params = prefix.parameters();
  } else {
    model.unfreeze();
    model.train();
    params = model.parameters();
  }
  const opt = new AdamW(params, { lr: 1e-5 });
  const ids = lf.ids(batch.ids, { backend: be });
  const L = prefix ? PREFIX_LEN : 0;
  const mask = lf.tensor(batch.mask.map((r) => [...new Array(L).fill(1), ...r]), { backend: be });
  return {
    step: async () => {
      const t0 = performance.now();
      const loss = lf.tidy(() => {
        const l = model.loss(ids, batch.labels, { past: prefix?.past(B), attentionMask: mask });
        l.backward();
        return l;
      });
      const v = await loss.item();
      loss.dispose();
      opt.step();
      opt.zeroGrad();
      return { ms: performance.now() - t0, loss: v };
    },
    dispose: () => {
      ids.dispose();
      mask.dispose();
      opt.dispose();
      prefix?.dispose();
    },
  };
}

/** Formats peer rows as a Markdown table. */
export function peerTable(rows: PeerRow[]): string {
  const f = (v: number) => v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2);
  return [
    "| measure | threads | ours median (best) | PyTorch median (best) | ours ÷ PyTorch | load 1-min | note |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...rows.map((r) =>
      `| ${r.name} | ${r.threads} | ${f(r.oursMedian)} (${f(r.oursBest)}) ${r.unit} | ` +
      `${f(r.torchMedian)} (${f(r.torchBest)}) ${r.unit} | ${r.ratio.toFixed(2)}${
        r.unit === "ms" ? " (time)" : ""
      } | ` +
      `${r.load[0].toFixed(2)}–${r.load[1].toFixed(2)} | ${r.note} |`
    ),
  ].join("\n");
}
