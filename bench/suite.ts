/**
 * The benchmark suite behind `deno task bench`: end-to-end figures for every available backend,
 * as rows of one table.
 *
 * - matmul GFLOP/s (f32) at 256³, 512³, 1024³ and GPT-2's shapes 640×768×2304 (the fused q/k/v
 *   projection of 10×64 tokens) and 640×768×50257 (the LM head);
 * - a GPT-2 124M-shaped training step (random weights, batch 10 × 64 tokens) in prefix mode
 *   (frozen GPT-2, L = 5, MLP 512) and fine-tune mode (every weight, AdamW), with tokens/s and
 *   the memory the trainable state takes (parameters' gradients and two AdamW moments);
 * - beam-5 generation tokens/s (GPT-2 124M-shaped, prompt of 32 tokens, 20 new tokens).
 *
 * The plain-TypeScript reference backend is too slow for the GPT-2 rows (minutes per step):
 * those are skipped for it unless `full`. Timings on a shared machine are noisy; compare
 * backends within one run. The comparison with PyTorch is in `peer.ts`.
 *
 * @module
 */
import * as lf from "../mod.ts";
import type { Backend } from "../kernels/backend.ts";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { generate } from "../models/generate.ts";
import { PrefixTuning } from "../models/prefix.ts";
import { AdamW } from "../nn/optim.ts";

/** One measured figure. */
export interface BenchRow {
  /** Backend name. */
  backend: string;
  /** What was measured. */
  name: string;
  /** The value. */
  value: number;
  /** Its unit. */
  unit: string;
  /** Extra information (time per call, skipped reason). */
  note: string;
}

const enc = new TextEncoder();
/** Progress line on stderr. */
export function say(s: string): void {
  Deno.stderr.writeSync(enc.encode(s + "\n"));
}

/** `n` uniform values in [−0.5, 0.5) from `seed`. */
export function randomHost(n: number, seed: number): Float32Array {
  const g = new lf.Xoshiro128(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = g.uniform() - 0.5;
  return a;
}

/** Median wall time (ms) of `fn` over `reps` calls after one warm-up; waits on `sync`. */
export async function timeIt(
  fn: () => void | Promise<void>,
  reps: number,
  sync: () => Promise<void>,
): Promise<number> {
  await fn();
  await sync();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    await sync();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Matmul GFLOP/s rows of `be` (large shapes skipped on the reference backend unless `full`). */
export async function benchMatmul(be: Backend, quick: boolean, full: boolean): Promise<BenchRow[]> {
  const shapes: [number, number, number][] = [
    [256, 256, 256],
    [512, 512, 512],
    [1024, 1024, 1024],
    [640, 768, 2304],
    [
      640,
      768,
      50257,
    ],
  ];
  const rows: BenchRow[] = [];
  const probe = be.full(1, 0, "f32");
  const sync = async () => void (await be.read(probe));
  for (const [m, k, n] of shapes) {
    const flop = 2 * m * n * k;
    const name = `matmul ${m}×${k}×${n}`;
    if (be.name === "cpu" && flop > 3e9 && !full) {
      rows.push({
        backend: be.name,
        name,
        value: NaN,
        unit: "GFLOP/s",
        note: "skipped (reference backend; --full)",
      });
      continue;
    }
    const a = be.fromHost(randomHost(m * k, 1), "f32"),
      b = be.fromHost(randomHost(k * n, 2), "f32");
    const reps = quick || flop > 2e10 ? 2 : 5;
    const ms = await timeIt(
      () => {
        be.dispose(
          be.matmul(a, b, {
            batch: 1,
            m,
            n,
            k,
            transA: false,
            transB: false,
            aBatchStride: 0,
            bBatchStride: 0,
          }),
        );
      },
      reps,
      sync,
    );
    be.dispose(a);
    be.dispose(b);
    rows.push({
      backend: be.name,
      name,
      value: flop / ms / 1e6,
      unit: "GFLOP/s",
      note: `${ms.toFixed(1)} ms`,
    });
    say(`  ${be.name} ${name}: ${(flop / ms / 1e6).toFixed(1)} GFLOP/s`);
  }
  be.dispose(probe);
  return rows;
}

/** A GPT-2 124M-shaped model with random weights on `be`. */
export function gpt2Small(be: Backend): GPT2 {
  return GPT2.random(gpt2Config({ nLayer: 12, nHead: 12, nEmbd: 768 }), 0, { backend: be });
}

/** Train-step rows (prefix and fine-tune modes; also unfused attention with `compareAttention`). */
export async function benchTrain(
  be: Backend,
  quick: boolean,
  compareAttention: boolean,
): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const B = 10, T = 64;
  const g = new lf.Xoshiro128(5);
  const ids = Array.from({ length: B }, () => Array.from({ length: T }, () => g.int(50257)));
  const variants = compareAttention ? [true, false] : [true];
  for (
    const [mode, fused] of (["prefix", "fine"] as const).flatMap((m) =>
      variants.map((f) => [m, f] as const)
    )
  ) {
    const model = gpt2Small(be).setFusedAttention(fused);
    const label = fused ? mode : `${mode}, unfused attention`;
    let params: lf.Tensor[];
    let prefix: PrefixTuning | null = null;
    if (mode === "prefix") {
      model.freeze();
      model.eval();
      prefix = new PrefixTuning({
        prefixLen: 5,
        nLayer: 12,
        nHead: 12,
        nEmbd: 768,
        mid: 512,
        mlp: true,
        dropout: 0,
      }, {
        backend: be,
      });
      params = prefix.parameters();
    } else {
      model.train();
      params = model.parameters();
    }
    const opt = new AdamW(params, { lr: 1e-5 });
    const idsT = lf.ids(ids, { backend: be });
    const mask = lf.ones([B, (prefix ? 5 : 0) + T], { backend: be });
    const step = async () => {
      const loss = lf.tidy(() => {
        const past = prefix?.past(B);
        const l = model.loss(idsT, idsT, { past, attentionMask: mask });
        l.backward();
        return l;
      });
      await loss.item();
      loss.dispose();
      opt.step();
      opt.zeroGrad();
    };
    const ms = await timeIt(step, quick ? 1 : 3, async () => {});
    const trainable = params.reduce((s, p) => s + p.size, 0);
    rows.push({
      backend: be.name,
      name: `GPT-2 124M train step (${label}), 10×64`,
      value: ms / 1000,
      unit: "s/step",
      note: `${(B * T / (ms / 1000)).toFixed(0)} tokens/s`,
    });
    if (fused) {
      rows.push({
        backend: be.name,
        name: `GPT-2 124M trainable state (${mode})`,
        value: (trainable * 4 * 4) / 2 ** 20,
        unit: "MiB",
        note: `${trainable.toLocaleString("en")} trainable values × (weight, grad, m, v)`,
      });
    }
    say(`  ${be.name} train step ${label}: ${(ms / 1000).toFixed(2)} s`);
    idsT.dispose();
    mask.dispose();
    opt.dispose();
    prefix?.dispose();
    model.dispose();
  }
  return rows;
}

/** Beam-5 generation tokens/s of `be`. */
export async function benchGenerate(be: Backend): Promise<BenchRow[]> {
  const model = gpt2Small(be);
  model.eval();
  const g = new lf.Xoshiro128(9);
  const prompt = [Array.from({ length: 32 }, () => g.int(50000))];
  const t0 = performance.now();
  const out = await generate(model, prompt, { numBeams: 5, maxNewTokens: 20, eosTokenId: null });
  const s = (performance.now() - t0) / 1000;
  model.dispose();
  const n = out[0].length;
  say(`  ${be.name} beam-5 generation: ${(n / s).toFixed(2)} tokens/s`);
  return [{
    backend: be.name,
    name: "GPT-2 124M beam-5 generation",
    value: n / s,
    unit: "tokens/s",
    note: `${n} tokens in ${s.toFixed(1)} s`,
  }];
}

/** Formats rows as a Markdown table, one column per backend. */
export function table(rows: BenchRow[]): string {
  const backends = [...new Set(rows.map((r) => r.backend))];
  const names = [...new Set(rows.map((r) => r.name))];
  const cell = (b: string, n: string) => {
    const r = rows.find((x) => x.backend === b && x.name === n);
    if (!r) return "";
    if (!Number.isFinite(r.value)) return r.note;
    return `${r.value.toFixed(r.value >= 100 ? 0 : 2)} ${r.unit} (${r.note})`;
  };
  return [
    `| measure | ${backends.join(" | ")} |`,
    `| --- | ${backends.map(() => "---").join(" | ")} |`,
    ...names.map((n) => `| ${n} | ${backends.map((b) => cell(b, n)).join(" | ")} |`),
  ].join("\n");
}
