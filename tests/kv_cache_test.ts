/**
 * The preallocated KV cache (nn/kv_cache.ts) against the plain past it replaces in decoding: the
 * same logits, bit for bit, on the reference backend and on the wasm backend (WebAssembly
 * kernels, and the system BLAS where one loads), through beam reorders (repeats, permutations,
 * fewer rows), capacity growth, padded rows and a prefix; plus its errors.
 */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { createWasmBackend } from "../kernels/wasm/backend.ts";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import type { KV } from "../nn/attention.ts";
import { KVCache, movePlan } from "../nn/kv_cache.ts";

const backends: [string, lf.Backend][] = [
  ["cpu", new CpuBackend()],
  ["wasm kernels", await createWasmBackend({ threads: 2, blas: false })],
];
try {
  backends.push(["wasm BLAS", await createWasmBackend({ threads: 2, blas: true })]);
} catch (e) {
  console.log(`kv_cache_test: BLAS case skipped (${(e as Error).message})`);
}

function model(be: lf.Backend): GPT2 {
  const cfg = gpt2Config({ nLayer: 2, nEmbd: 16, nHead: 2, vocabSize: 40, nPositions: 96 });
  return GPT2.random(cfg, 3, { backend: be }).eval();
}

/** Gathers rows `src` of every layer of a plain past (what decoding did before the cache). */
function gatherPast(past: KV[], src: number[]): KV[] {
  return lf.noGrad(() =>
    past.map((l) => {
      const pick = (t: lf.Tensor) => {
        const [n, H, T, d] = t.shape;
        const idx = lf.ids(src, { backend: t.backend });
        const r = lf.reshape(lf.embedding(lf.reshape(t, [n, H * T * d]), idx), [
          src.length,
          H,
          T,
          d,
        ]);
        idx.dispose();
        return r;
      };
      return { k: pick(l.k), v: pick(l.v) };
    })
  );
}

const bits = async (t: lf.Tensor) => Array.from((await t.data()) as Float32Array);

for (const [name, be] of backends) {
  Deno.test(`KV cache equals the plain past bit for bit (${name})`, async () => {
    const m = model(be);
    const g = new lf.Xoshiro128(7);
    // Three prompts, the last one left-padded by 2, after a prefix of 3 positions.
    const prefix: KV[] = lf.noGrad(() =>
      Array.from({ length: 2 }, () => ({
        k: lf.randn([3, 2, 3, 8], { backend: be, generator: g }),
        v: lf.randn([3, 2, 3, 8], { backend: be, generator: g }),
      }))
    );
    const ids = [[5, 6, 7, 8, 9], [1, 2, 3, 4, 5], [0, 0, 11, 12, 13]];
    let masks: number[][] = ids.map((
      r,
      b,
    ) => [1, 1, 1, ...r.map((_, i) => (b === 2 && i < 2 ? 0 : 1))]);
    const positionIds = ids.map((_, b) =>
      [0, 1, 2, 3, 4].map((i) => 3 + (b === 2 ? Math.max(0, i - 2) : i))
    );
    let positions: number[] = [8, 8, 6];
    const first = lf.noGrad(() =>
      m.forward(ids, {
        past: prefix,
        attentionMask: masks,
        positionIds,
        useCache: true,
        lastTokenOnly: true,
      })
    );
    let past = first.past!;
    first.logits.dispose();
    // A block of 32 after 8 positions: the steps below cross it, so the cache grows once.
    const cache = KVCache.from(past, 4);
    assert.equal(cache.capacity, 12);
    const steps: number[][] = [
      [0, 1, 2],
      [2, 0, 1],
      [1, 1, 0],
      [0, 0, 0],
      [2, 1, 0],
      [0, 2], // a row leaves
      [1, 1],
      [0, 1],
    ];
    for (let s = 0; s < 40; s++) {
      const src = steps[s % steps.length].filter((r) => r < cache.rows);
      const tokens = src.map(() => g.int(40));
      masks = src.map((r) => [...masks[r], 1]);
      positions = src.map((r) => positions[r]);
      const pos = positions.map((p) => [p]);
      positions = positions.map((p) => p + 1);
      // Plain past: gather, concatenate.
      const gathered = gatherPast(past, src);
      for (const l of past) [l.k, l.v].forEach((t) => t.dispose());
      const plain = lf.noGrad(() =>
        m.forward(tokens.map((t) => [t]), {
          past: gathered,
          attentionMask: masks,
          positionIds: pos,
          useCache: true,
          lastTokenOnly: true,
        })
      );
      for (const l of gathered) [l.k, l.v].forEach((t) => t.dispose());
      past = plain.past!;
      // Cache: reorder in place, write one position.
      cache.reorder(src);
      cache.reserve(1);
      const cap: number = cache.capacity;
      const viaCache = lf.noGrad(() =>
        m.forward(tokens.map((t) => [t]), {
          cache,
          attentionMask: masks.map((r) => [...r, ...new Array(cap - r.length).fill(0)]),
          positionIds: pos,
          lastTokenOnly: true,
        })
      );
      assert.equal(viaCache.past, undefined);
      assert.deepEqual(
        await bits(viaCache.logits),
        await bits(plain.logits),
        `step ${s}, rows ${src}`,
      );
      viaCache.logits.dispose();
      plain.logits.dispose();
    }
    assert.equal(cache.length, 8 + 40);
    assert.equal(cache.capacity, 64); // grown in blocks of 32
    cache.dispose();
    for (const l of [...past, ...prefix]) [l.k, l.v].forEach((t) => t.dispose());
    m.dispose();
  });
}

Deno.test("KV cache: errors name the rows, capacity and mask", () => {
  const be = backends[0][1];
  const m = model(be);
  const out = lf.noGrad(() => m.forward([[1, 2]], { useCache: true }));
  const cache = KVCache.from(out.past!, 1);
  out.logits.dispose();
  assert.throws(() => cache.reorder([1]), /row 1 is outside \[0, 1\)/);
  assert.throws(
    () => lf.noGrad(() => m.forward([[3], [4]], { cache, attentionMask: [[1, 1, 1], [1, 1, 1]] })),
    /1 rows must match .* ids \[2, 1\]/,
  );
  assert.throws(() => lf.noGrad(() => m.forward([[3, 4]], { cache })), /ids \[1, 1\]/);
  assert.throws(() => lf.noGrad(() => m.forward([[3]], { cache, past: out.past })), /not both/);
  const step = () => lf.noGrad(() => m.forward([[3]], { cache, attentionMask: [[1, 1, 1]] }));
  step().logits.dispose();
  assert.throws(step, /cache full \(3 of 3\); reserve first/);
  cache.reserve(1);
  assert.throws(() => lf.noGrad(() => m.forward([[3]], { cache })), /attention mask/);
  cache.dispose();
  for (const l of out.past!) [l.k, l.v].forEach((t) => t.dispose());
  m.dispose();
});

Deno.test("KV cache: the in-place move plan equals a gather for every reorder of 4 rows", () => {
  let sets = 0;
  for (let code = 0; code < 4 ** 4; code++) {
    const src = [0, 1, 2, 3].map((i) => Math.floor(code / 4 ** i) % 4);
    const moves = src.flatMap((from, to) => (from === to ? [] : [{ from, to }]));
    const plan = movePlan(moves, 4);
    const rows = ["a", "b", "c", "d"], aside: string[] = [];
    for (const s of plan.steps) {
      if (s.save !== undefined) aside[s.save] = rows[s.row];
      else rows[s.row] = s.fromSaved !== undefined ? aside[s.fromSaved] : rows[s.from!];
    }
    assert.deepEqual(rows, src.map((r) => "abcd"[r]), `src ${src}`);
    assert.equal(plan.steps.length, moves.length + plan.saved, `src ${src}: one copy per move`);
    sets += plan.saved;
  }
  // A chain (beams shifting) needs no set-aside row; a swap needs one.
  assert.equal(movePlan([{ from: 0, to: 1 }, { from: 1, to: 2 }, { from: 2, to: 3 }], 4).saved, 0);
  assert.equal(movePlan([{ from: 0, to: 1 }, { from: 1, to: 0 }], 2).saved, 1);
  assert.ok(sets > 0);
});
