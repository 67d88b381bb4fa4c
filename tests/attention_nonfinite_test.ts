/**
 * Fused attention with NaN and ±Inf, on every backend of the conformance suite
 * (`tests/helpers/backends.ts`):
 *
 * - NaN in, NaN out: a NaN or +Inf score, or all visible scores −Inf, makes the row NaN (its
 *   output, log-sum-exp and the gradients it reaches), as softmax does;
 * - a masked position is never attended: NaN or Inf in a key or value that a row may not see
 *   (causally or by padding) leaves that row exactly as with finite values there, forward and
 *   backward;
 * - the forward equals the unfused ops (scores → most-negative-f32 masking → softmax → matmul on
 *   the CPU reference) wherever those do not multiply a masked value by its zero weight;
 * - a training step with a NaN weight has a NaN loss.
 */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import type { AttentionParams, Backend, Storage } from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { buildBlockedMask, MASK_VALUE } from "../nn/attention.ts";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { assertClose } from "./helpers/close.ts";
import { BACKEND_VARIANTS } from "./helpers/backends.ts";

const cpu = new CpuBackend();
const BACKENDS: [string, Backend][] = [];
for (const v of BACKEND_VARIANTS) {
  const made = await v.make();
  if (typeof made === "string") console.log(`attention NaN/Inf tests: ${v.label} skipped: ${made}`);
  else BACKENDS.push([v.label, made]);
}
// WebGPU keeps promises (device.lost, error scopes) that outlive a test by design.
const opts = { sanitizeOps: false, sanitizeResources: false };

const T = 4, S = 4, D = 3;

/** Deterministic finite inputs: q [1, 1, T, D], k and v [1, 1, S, D]; k's column 0 positive. */
function clean(): { q: number[]; k: number[]; v: number[]; g: number[] } {
  const f = (n: number, a: number, b: number) =>
    Array.from({ length: n }, (_, i) => Math.sin(a * i + b));
  const k = f(S * D, 0.9, 0.4);
  for (let j = 0; j < S; j++) k[j * D] = 0.5 + Math.abs(k[j * D]);
  return { q: f(T * D, 1.3, 0.2), k, v: f(S * D, 0.7, 1.1), g: f(T * D, 0.37, 2.0) };
}

interface Result {
  out: Float32Array;
  lse: Float32Array;
  gq: Float32Array;
  gk: Float32Array;
  gv: Float32Array;
}

async function run(
  be: Backend,
  x: { q: number[]; k: number[]; v: number[]; g: number[] },
  mask: number[] | null,
): Promise<Result> {
  const p: AttentionParams = {
    batch: 1,
    heads: 1,
    queries: T,
    keys: S,
    dim: D,
    scale: 1 / Math.sqrt(D),
    dropP: 0,
    dropSeed: 0,
  };
  const [q, k, v, g] = [x.q, x.k, x.v, x.g].map((a) => be.fromHost(Float32Array.from(a), "f32"));
  const m = mask ? be.fromHost(Float32Array.from(mask), "f32") : null;
  const { out, lse } = be.attention(q, k, v, m, p);
  const { gq, gk, gv } = be.attentionBackward(q, k, v, m, out, lse, g, p);
  const read = async (s: Storage) => (await be.read(s)) as Float32Array;
  const r = {
    out: await read(out),
    lse: await read(lse),
    gq: await read(gq),
    gk: await read(gk),
    gv: await read(gv),
  };
  for (const s of [q, k, v, g, out, lse, gq, gk, gv, ...(m ? [m] : [])]) be.dispose(s);
  return r;
}

/** Which rows (of D values; lse: of 1) must be NaN. */
interface NanRows {
  out: number[];
  /** Rows whose log-sum-exp is NaN (NaN scores; default: those of out). */
  lse?: number[];
  gq: number[];
  gk: number[];
  gv: number[];
}

/**
 * Asserts `got` is NaN exactly on the rows listed (every element of them) and equals `ref`
 * (the same backend with finite inputs) everywhere else.
 */
function assertRows(
  got: Float32Array,
  ref: Float32Array,
  width: number,
  nanRows: number[],
  what: string,
): void {
  for (let i = 0; i < got.length; i++) {
    const row = Math.floor(i / width);
    if (nanRows.includes(row)) {
      assert.ok(Number.isNaN(got[i]), `${what}: element ${i} (row ${row}) is ${got[i]}, want NaN`);
    } else {
      assertClose([got[i]], [ref[i]], `${what}: element ${i} (row ${row})`, 1e-5, 1e-6);
    }
  }
}

interface Case {
  name: string;
  mask: number[] | null;
  /** Puts the non-finite values in. */
  edit: (x: ReturnType<typeof clean>) => void;
  /** The rows that must be NaN (absent: only compared with the CPU reference). */
  nan?: NanRows;
  /** Whether the forward must also equal the unfused ops (not where they compute 0·NaN). */
  unfused: boolean;
}

const CASES: Case[] = [
  {
    name: "NaN in query row 0",
    mask: null,
    edit: (x) => (x.q[0 * D + 1] = NaN),
    nan: { out: [0], gq: [0], gk: [0], gv: [0] },
    unfused: true,
  },
  {
    name: "NaN in query row 1",
    mask: null,
    edit: (x) => (x.q[1 * D + 2] = NaN),
    nan: { out: [1], gq: [1], gk: [0, 1], gv: [0, 1] },
    unfused: true,
  },
  {
    // Rows 0 and 1 may not see key 2: they stay finite.
    name: "NaN in key 2",
    mask: null,
    edit: (x) => (x.k[2 * D + 1] = NaN),
    nan: { out: [2, 3], gq: [2, 3], gk: [0, 1, 2, 3], gv: [0, 1, 2, 3] },
    unfused: true,
  },
  {
    // The unfused matmul gives rows 0 and 1 NaN too (0·NaN): not compared with it.
    name: "NaN in value 2 (causally masked for rows 0, 1)",
    mask: null,
    edit: (x) => x.v.fill(NaN, 2 * D, 3 * D),
    nan: { out: [2, 3], lse: [], gq: [2, 3], gk: [0, 1, 2, 3], gv: [] },
    unfused: false,
  },
  {
    name: "+Inf in value 3",
    mask: null,
    edit: (x) => (x.v[3 * D + 2] = Infinity),
    // Row 3's output is +Inf·p, not NaN; rows 0..2 never see value 3 (the unfused matmul
    // gives them 0·Inf = NaN). Checked against the CPU reference only.
    unfused: false,
  },
  {
    // Scores of row 1 are +Inf (k's column 0 is positive): softmax is NaN.
    name: "+Inf in query row 1",
    mask: null,
    edit: (x) => {
      x.q[1 * D] = Infinity;
      x.q[1 * D + 1] = x.q[1 * D + 2] = 0;
    },
    nan: { out: [1], gq: [1], gk: [0, 1], gv: [0, 1] },
    unfused: true,
  },
  {
    // Every visible score of row 1 is −Inf: 0/0, NaN (the unfused ops would attend to the
    // masked keys instead, whose most-negative-f32 scores beat −Inf).
    name: "−Inf in query row 1",
    mask: null,
    edit: (x) => {
      x.q[1 * D] = -Infinity;
      x.q[1 * D + 1] = x.q[1 * D + 2] = 0;
    },
    nan: { out: [1], gq: [1], gk: [0, 1], gv: [0, 1] },
    unfused: false,
  },
  {
    name: "padding: NaN and Inf in the masked key and value 1",
    mask: [1, 0, 1, 1],
    edit: (x) => {
      x.k[1 * D] = NaN;
      x.v[1 * D + 1] = Infinity;
      x.v[1 * D + 2] = NaN;
    },
    nan: { out: [], gq: [], gk: [], gv: [] },
    unfused: false,
  },
  {
    // Row 0 sees nothing (it attends uniformly, scores constant): NaN in key 0 changes nothing.
    name: "left padding: NaN in the key of the fully masked row",
    mask: [0, 1, 1, 1],
    edit: (x) => (x.k[0 * D + 2] = NaN),
    nan: { out: [], gq: [], gk: [], gv: [] },
    unfused: true,
  },
  {
    // Its query does not matter either: no gradient from it reaches q or k.
    name: "left padding: NaN in the query of the fully masked row",
    mask: [0, 1, 1, 1],
    edit: (x) => (x.q[0 * D + 1] = NaN),
    nan: { out: [], gq: [], gk: [], gv: [] },
    unfused: true,
  },
  {
    // ...but it attends to every value: NaN in value 0 reaches row 0 only.
    name: "left padding: NaN in a value of the fully masked row",
    mask: [0, 1, 1, 1],
    edit: (x) => x.v.fill(NaN, 0, D),
    nan: { out: [0], lse: [], gq: [], gk: [], gv: [] },
    unfused: false,
  },
];

/** The unfused forward on the CPU reference (what nn/attention.ts computed before fusion). */
async function unfusedForward(
  x: ReturnType<typeof clean>,
  mask: number[] | null,
): Promise<Float32Array> {
  return await lf.tidy(() => {
    const q = lf.tensor(Float32Array.from(x.q), { shape: [1, 1, T, D], backend: cpu });
    const k = lf.tensor(Float32Array.from(x.k), { shape: [1, 1, S, D], backend: cpu });
    const v = lf.tensor(Float32Array.from(x.v), { shape: [1, 1, S, D], backend: cpu });
    let w = q.mul(1 / Math.sqrt(D)).matmul(k.transpose(-1, -2));
    const blocked = buildBlockedMask({
      batch: 1,
      length: T,
      pastLength: S - T,
      attentionMask: mask ? [mask] : undefined,
      backend: cpu,
    });
    if (blocked) w = w.maskedFill(blocked, MASK_VALUE);
    return w.softmax(-1).matmul(v);
  }).data() as Float32Array;
}

for (const [name, be] of BACKENDS) {
  Deno.test(
    `${name}: fused attention with NaN and ±Inf: NaN in, NaN out; masked never attended`,
    opts,
    async () => {
      for (const c of CASES) {
        if (!c.nan) continue;
        const x = clean();
        const ref = await run(be, x, c.mask);
        for (const [n, a] of Object.entries(ref)) {
          assert.ok(a.every(Number.isFinite), `${c.name}: finite inputs give non-finite ${n}`);
        }
        c.edit(x);
        const got = await run(be, x, c.mask);
        const what = `${name} ${c.name}`;
        assertRows(got.out, ref.out, D, c.nan.out, `${what}: out`);
        assertRows(got.lse, ref.lse, 1, c.nan.lse ?? c.nan.out, `${what}: lse`);
        assertRows(got.gq, ref.gq, D, c.nan.gq, `${what}: gq`);
        assertRows(got.gk, ref.gk, D, c.nan.gk, `${what}: gk`);
        assertRows(got.gv, ref.gv, D, c.nan.gv, `${what}: gv`);
      }
    },
  );

  Deno.test(`${name}: fused attention with NaN and ±Inf equals the unfused ops`, opts, async () => {
    for (const c of CASES) {
      const x = clean();
      c.edit(x);
      const got = await run(be, x, c.mask);
      if (c.unfused) {
        const want = await unfusedForward(x, c.mask);
        assertClose(got.out, want, `${name} ${c.name}: fused vs unfused`, 1e-5, 1e-6);
      }
      if (name !== "cpu") {
        // And every output equals the reference backend's, NaN for NaN.
        const r = await run(cpu, x, c.mask);
        for (const k of ["out", "lse", "gq", "gk", "gv"] as const) {
          assertClose(got[k], r[k], `${name} ${c.name}: ${k} vs the CPU reference`, 1e-5, 1e-6);
        }
      }
    }
  });

  Deno.test(`${name}: a NaN weight gives a NaN loss at step 1`, opts, async () => {
    const cfg = gpt2Config({
      vocabSize: 31,
      nPositions: 8,
      nEmbd: 8,
      nHead: 2,
      nLayer: 1,
      embdPdrop: 0,
      attnPdrop: 0,
      residPdrop: 0,
    });
    const ids = [[1, 2, 3, 4, 5, 6]];
    const targets = [2, 3, 4, 5, 6, -100];
    for (const [what, index] of [["query", 0], ["key", 8]] as const) {
      const model = GPT2.random(cfg, 1, { backend: be });
      // One weight of the first layer's query (column 0) or key (column 8) projection.
      const w = model.stateDict().get("transformer.h.0.attn.c_attn.weight")!;
      const data = (await w.data()) as Float32Array;
      data[index] = NaN;
      w.replaceStorage(be.fromHost(data, "f32"));
      const loss = lf.tidy(() =>
        model.forward(ids).logits.reshape(6, cfg.vocabSize).crossEntropy(
          lf.ids(targets, { backend: be }),
        )
      );
      const value = await loss.item();
      assert.ok(Number.isNaN(value), `${name}: NaN in the ${what} weight gives loss ${value}`);
      loss.dispose();
      model.dispose();
    }
  });
}
