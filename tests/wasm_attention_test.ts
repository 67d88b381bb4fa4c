/**
 * Fused causal attention on the wasm backend against the CPU reference backend: output,
 * log-sum-exp and the three gradients, on odd sizes (1, 7, 33, 65 for T, S, d and heads), past
 * keys (S > T), padding masks with rows that see nothing, and dropout; with 64- and 32-bit
 * memory, relaxed SIMD on and off, one and two threads (bit-identical to each other).
 */
import assert from "node:assert/strict";
import {
  ATTENTION_MASK_VALUE,
  type AttentionParams,
  type Backend,
  type Storage,
} from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { createWasmBackend, type WasmBackend } from "../kernels/wasm/backend.ts";
import { assertCloseScaled } from "./helpers/close.ts";

const cpu = new CpuBackend();
const CONFIGS: [string, WasmBackend][] = [
  ["wasm64×2 relaxed", await createWasmBackend({ threads: 2 })],
  ["wasm32×1 plain", await createWasmBackend({ threads: 1, memory64: false, relaxedSimd: false })],
  ["wasm32×2 relaxed", await createWasmBackend({ threads: 2, memory64: false })],
  ["wasm64×1 plain", await createWasmBackend({ threads: 1, relaxedSimd: false })],
];

let seed = 1234567;
function rand(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randn = (n: number, lo = -2, hi = 2) =>
  Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());

interface Case {
  name: string;
  B: number;
  H: number;
  T: number;
  S: number;
  D: number;
  /** Padding mask [B][S] (1 attend, 0 masked). */
  mask?: number[][];
  drop?: number;
  /** Rows with nothing visible the case must contain (checked on the reference). */
  fullRows?: number;
}

/** A mask [B, S] with the first `pad[b]` keys of batch b masked (left padding). */
const leftPad = (S: number, pad: number[]) =>
  pad.map((n) => Array.from({ length: S }, (_, j) => (j < n ? 0 : 1)));

const CASES: Case[] = [
  { name: "all ones", B: 1, H: 1, T: 1, S: 1, D: 1 },
  { name: "self T = S = 7, d 33", B: 2, H: 3, T: 7, S: 7, D: 33 },
  { name: "past keys, T 33, S 65, d 7", B: 1, H: 2, T: 33, S: 65, D: 7 },
  { name: "65 heads, one query, d 65", B: 2, H: 65, T: 1, S: 7, D: 65 },
  {
    // S − T = 5: query 0 sees keys 0..5, all padding in batch 0, so its row attends uniformly.
    name: "padding: fully masked rows, d 65",
    B: 2,
    H: 2,
    T: 7,
    S: 12,
    D: 65,
    mask: leftPad(12, [6, 2]),
    fullRows: 2,
  },
  {
    name: "padding + holes + dropout 0.3, d 33",
    B: 2,
    H: 3,
    T: 33,
    S: 33,
    D: 33,
    mask: [
      Array.from({ length: 33 }, (_, j) => (j < 3 || j % 5 === 0 ? 0 : 1)),
      Array.from({ length: 33 }, (_, j) => (j === 32 ? 0 : 1)),
    ],
    drop: 0.3,
    fullRows: 9,
  },
  { name: "dropout 0.5, past keys, d 4", B: 3, H: 1, T: 7, S: 33, D: 4, drop: 0.5 },
  {
    name: "everything masked + dropout",
    B: 1,
    H: 2,
    T: 3,
    S: 7,
    D: 7,
    mask: [[0, 0, 0, 0, 0, 0, 0]],
    drop: 0.2,
    fullRows: 6,
  },
  {
    name: "GPT-2 prefix shape, d 64",
    B: 2,
    H: 2,
    T: 64,
    S: 69,
    D: 64,
    mask: leftPad(69, [0, 9]),
    drop: 0.1,
    fullRows: 8,
  },
];

interface Inputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  gOut: Float32Array;
  mask: Float32Array | null;
  p: AttentionParams;
}

function inputsOf(c: Case): Inputs {
  return {
    q: randn(c.B * c.H * c.T * c.D),
    k: randn(c.B * c.H * c.S * c.D),
    v: randn(c.B * c.H * c.S * c.D, -1, 1),
    gOut: randn(c.B * c.H * c.T * c.D, -1, 1),
    mask: c.mask ? Float32Array.from(c.mask.flat()) : null,
    p: {
      batch: c.B,
      heads: c.H,
      queries: c.T,
      keys: c.S,
      dim: c.D,
      scale: 1 / Math.sqrt(c.D),
      dropP: c.drop ?? 0,
      dropSeed: 0x9e3779b9 ^ (c.D * 7919),
    },
  };
}

/** Forward and backward on one backend: [out, lse, gq, gk, gv]. */
async function run(b: Backend, x: Inputs): Promise<Float32Array[]> {
  const own: Storage[] = [];
  const put = (a: Float32Array) => {
    const s = b.fromHost(a, "f32");
    own.push(s);
    return s;
  };
  const q = put(x.q), k = put(x.k), v = put(x.v), g = put(x.gOut);
  const m = x.mask ? put(x.mask) : null;
  const { out, lse } = b.attention(q, k, v, m, x.p);
  const { gq, gk, gv } = b.attentionBackward(q, k, v, m, out, lse, g, x.p);
  const res: Float32Array[] = [];
  for (const s of [out, lse, gq, gk, gv]) {
    res.push((await b.read(s)) as Float32Array);
    own.push(s);
  }
  for (const s of own) b.dispose(s);
  return res;
}

const NAMES = ["out", "lse", "dq", "dk", "dv"];

for (const c of CASES) {
  Deno.test(`wasm attention: ${c.name}`, async () => {
    const x = inputsOf(c);
    const want = await run(cpu, x);
    const marker = Math.fround(ATTENTION_MASK_VALUE);
    assert.equal(want[1].filter((l) => l === marker).length, c.fullRows ?? 0, "fully masked rows");
    const results: Float32Array[][] = [];
    for (const [name, w] of CONFIGS) {
      const got = await run(w, x);
      results.push(got);
      for (let i = 0; i < NAMES.length; i++) {
        if (NAMES[i] === "lse") {
          // Rows with nothing visible carry the marker exactly; the rest are log-sum-exps.
          for (let r = 0; r < want[1].length; r++) {
            if (want[1][r] === marker) {
              assert.equal(got[1][r], want[1][r], `${c.name} ${name} lse[${r}] marker`);
            }
          }
          const finite = (a: Float32Array) => a.map((t) => (t < -1e38 ? 0 : t));
          assertCloseScaled(finite(got[1]), finite(want[1]), `${c.name} ${name} lse`, {
            atolScale: 1e-5,
            atol: 1e-6,
          });
        } else {assertCloseScaled(got[i], want[i], `${c.name} ${name} ${NAMES[i]}`, {
            atolScale: 1e-5,
            atol: 1e-6,
          });}
      }
      assert.ok(
        got.every((a) => a.every(Number.isFinite)),
        `${c.name} ${name}: non-finite values`,
      );
    }
    // Threads split rows (forward) and heads (backward): two threads give the same bits as one
    // on the same memory/SIMD configuration (wasm64×2 relaxed vs wasm32×2 relaxed would differ
    // only in addresses, which must not matter either).
    for (let i = 0; i < NAMES.length; i++) {
      assert.deepEqual(results[0][i], results[2][i], `${c.name}: ${NAMES[i]} 64×2 vs 32×2`);
      assert.deepEqual(results[1][i], results[3][i], `${c.name}: ${NAMES[i]} 32×1 vs 64×1`);
    }
  });
}

Deno.test("wasm attention: two threads give the bits of one (relaxed SIMD)", async () => {
  const one = await createWasmBackend({ threads: 1 });
  try {
    for (const c of CASES) {
      const x = inputsOf(c);
      const a = await run(one, x), b = await run(CONFIGS[0][1], x);
      for (let i = 0; i < NAMES.length; i++) {
        assert.deepEqual(a[i], b[i], `${c.name}: ${NAMES[i]}`);
      }
    }
  } finally {
    one.close();
  }
});

Deno.test("wasm attention: dropout keeps exactly the dropoutMask pattern", async () => {
  // With v = identity rows (S = d) the output row is the dropped probability row itself, so the
  // zeros of out must be where the backend's own dropoutMask over [B, H, T, S] is 0.
  const B = 1, H = 2, T = 5, S = 8, D = 8;
  const p: AttentionParams = {
    batch: B,
    heads: H,
    queries: T,
    keys: S,
    dim: D,
    scale: 0.5,
    dropP: 0.4,
    dropSeed: 77,
  };
  const eye = new Float32Array(B * H * S * D);
  for (let h = 0; h < B * H; h++) for (let j = 0; j < S; j++) eye[h * S * D + j * D + j] = 1;
  for (const [name, w] of CONFIGS) {
    const q = w.fromHost(randn(B * H * T * D), "f32"), k = w.fromHost(randn(B * H * S * D), "f32");
    const v = w.fromHost(eye, "f32");
    const { out, lse } = w.attention(q, k, v, null, p);
    const mask = w.dropoutMask(B * H * T * S, p.dropP, p.dropSeed);
    const o = await w.read(out), m = await w.read(mask);
    for (let r = 0; r < B * H * T; r++) {
      const last = S - T + (r % T);
      for (let j = 0; j < S; j++) {
        const want0 = j > last || m[r * S + j] === 0;
        assert.equal(o[r * D + j] === 0, want0, `${name}: out[${r}, ${j}] = ${o[r * D + j]}`);
      }
    }
    for (const s of [q, k, v, out, lse, mask]) w.dispose(s);
  }
});

Deno.test("wasm attention: bad operands are named", () => {
  const w = CONFIGS[1][1];
  const p: AttentionParams = {
    batch: 1,
    heads: 1,
    queries: 2,
    keys: 3,
    dim: 4,
    scale: 0.5,
    dropP: 0,
    dropSeed: 0,
  };
  const small = w.fromHost(new Float32Array(8), "f32"),
    big = w.fromHost(new Float32Array(12), "f32");
  const tiny = w.fromHost(new Float32Array(2), "f32");
  assert.throws(
    () => w.attention(small, small, big, null, p),
    /wasm attention: k \[1, 1, 3, 4\] has 8 elements, needs 12/,
  );
  assert.throws(() => w.attention(small, big, big, small, { ...p, keys: 1 }), /keys S ≥ queries T/);
  assert.throws(
    () => w.attention(small, big, big, tiny, p),
    /wasm attention: mask \[1, 3\] has 2 elements, needs 3/,
  );
  for (const s of [small, big, tiny]) w.dispose(s);
});

Deno.test("wasm attention: stop workers", () => {
  for (const [, w] of CONFIGS) w.close();
});
