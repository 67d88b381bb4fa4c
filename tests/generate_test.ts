/**
 * Generation: greedy against a recompute-everything argmax loop, beam search against an
 * exhaustive search (same Hugging Face scoring), bans, minimum lengths, batching, prefixes.
 * Models are tiny random GPT-2s on the float64 CPU backend (so near-ties cannot flip).
 */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { BeamHypotheses, generate, generateWithScores } from "../models/generate.ts";
import type { KV } from "../nn/attention.ts";
import { f64 } from "./gradcheck.ts";

const vals = (t: lf.Tensor): Float64Array => f64.readF64(t.contiguous().storage);

/** A tiny model with a large init so its next-token distributions are far from uniform. */
function tiny(vocabSize: number, seed: number, eos: number | null = 0, initStd = 0.6): GPT2 {
  const cfg = gpt2Config({
    nLayer: 2,
    nEmbd: 16,
    nHead: 2,
    vocabSize,
    nPositions: 64,
    initializerRange: initStd,
    eosTokenId: eos,
  });
  return GPT2.random(cfg, seed, { backend: f64 }).eval();
}

/** log-softmax of the last position of `seq` (no cache), optionally after a prefix. */
function nextLogProbs(model: GPT2, seq: number[], past?: KV[]): number[] {
  const lg = Array.from(vals(model.forward([seq], { past, lastTokenOnly: true }).logits));
  const mx = Math.max(...lg);
  const lse = mx + Math.log(lg.reduce((s, x) => s + Math.exp(x - mx), 0));
  return lg.map((x) => x - lse);
}

/** Greedy decoding by recomputing the whole sequence each step (no cache, no batching). */
function slowGreedy(
  model: GPT2,
  prompt: number[],
  maxNew: number,
  eos: number | null,
  banned: (seq: number[], gen: number[]) => Set<number> = () => new Set(),
  past?: KV[],
): number[] {
  const out: number[] = [];
  for (let g = 0; g < maxNew; g++) {
    const lp = nextLogProbs(model, [...prompt, ...out], past);
    const ban = banned([...prompt, ...out], out);
    let best = -1;
    lp.forEach((v, i) => {
      if (!ban.has(i) && (best < 0 || v > lp[best])) best = i;
    });
    if (best === eos) break;
    out.push(best);
  }
  return out;
}

Deno.test("greedy with the KV cache equals the recompute-everything argmax loop", async () => {
  const model = tiny(30, 1, 5);
  for (const prompt of [[1, 2, 3], [7], [9, 9, 9, 9, 2]]) {
    const got = await generate(model, [prompt], { maxNewTokens: 12 });
    assert.deepEqual(got[0], slowGreedy(model, prompt, 12, 5), `prompt ${prompt}`);
  }
  // EOS stops a sequence and is not returned.
  const eosModel = tiny(30, 1, null);
  const free = await generate(eosModel, [[1, 2, 3]], { maxNewTokens: 12 });
  assert.equal(free[0].length, 12);
  const stopAt = free[0][4];
  const cut = await generate(eosModel, [[1, 2, 3]], { maxNewTokens: 12, eosTokenId: stopAt });
  assert.deepEqual(cut[0], free[0].slice(0, free[0].indexOf(stopAt)));
});

Deno.test("beam search with one beam equals greedy", async () => {
  const model = tiny(30, 2, 4);
  for (const prompt of [[1, 2], [3, 8, 13], [20]]) {
    for (const lengthPenalty of [1, 0.6, 2]) {
      const g = await generateWithScores(model, [prompt], { maxNewTokens: 10, lengthPenalty });
      const b = await generateWithScores(model, [prompt], {
        maxNewTokens: 10,
        numBeams: 1,
        strategy: "beam",
        lengthPenalty,
      });
      assert.deepEqual(b[0].tokens, g[0].tokens, `prompt ${prompt}, penalty ${lengthPenalty}`);
    }
  }
});

/**
 * Every sequence of up to maxNew tokens scored as Hugging Face's beam search scores finished
 * hypotheses: an EOS-ended one by sum log-probs (EOS included) / (prompt + tokens before EOS)^lp,
 * one that runs out of length by sum / (prompt + maxNew)^lp. Banned tokens are impossible.
 */
function exhaustive(
  model: GPT2,
  prompt: number[],
  maxNew: number,
  eos: number,
  lp: number,
  banned: (gen: number[]) => Set<number>,
): { tokens: number[]; score: number } {
  let best = { tokens: [] as number[], score: -Infinity };
  const visit = (gen: number[], sum: number) => {
    const probs = nextLogProbs(model, [...prompt, ...gen]);
    const ban = banned(gen);
    probs.forEach((l, v) => {
      if (ban.has(v)) return;
      if (v === eos) {
        const score = (sum + l) / (prompt.length + gen.length) ** lp;
        if (score > best.score) best = { tokens: gen, score };
      } else if (gen.length + 1 === maxNew) {
        const score = (sum + l) / (prompt.length + maxNew) ** lp;
        if (score > best.score) best = { tokens: [...gen, v], score };
      } else {
        visit([...gen, v], sum + l);
      }
    });
  };
  visit([], 0);
  return best;
}

Deno.test("beam search (beams ≥ vocab^length) finds the exhaustive search's best sequence", async () => {
  const V = 4, maxNew = 3, eos = 0;
  // Cases (found by a scan) where greedy misses the best sequence, so the search matters.
  const cases = [[4, 1, [2, 2]], [3, 0.5, [1, 2]], [5, 2, [3, 2]]] as const;
  for (const [seed, lengthPenalty, prompt] of cases) {
    const model = tiny(V, seed, eos, 0.15);
    const want = exhaustive(model, [...prompt], maxNew, eos, lengthPenalty, () => new Set());
    const run = (numBeams: number) =>
      generateWithScores(model, [[...prompt]], {
        maxNewTokens: maxNew,
        numBeams,
        lengthPenalty,
        strategy: "beam",
      });
    const [got] = await run(V ** maxNew);
    assert.deepEqual(got.tokens, want.tokens, `seed ${seed}`);
    // Generation reads logits back as f32, the exhaustive search in f64: agreement to ~1e-7.
    assert.ok(Math.abs(got.score - want.score) < 1e-6, `score ${got.score} vs ${want.score}`);
    assert.equal(got.finished, want.tokens.length < maxNew);
    const [one] = await run(1);
    assert.ok(one.score < want.score - 1e-3, `seed ${seed}: one beam already finds the best`);
  }
  // With a bad word and a minimum length the same search, restricted the same way, still agrees.
  const model = tiny(V, 4, eos, 0.15);
  const banned = (gen: number[]) => new Set([3, ...(gen.length < 2 ? [eos] : [])]);
  const want = exhaustive(model, [2, 2], maxNew, eos, 1, banned);
  const [got] = await generateWithScores(model, [[2, 2]], {
    maxNewTokens: maxNew,
    numBeams: V ** maxNew,
    badWordsIds: [[3]],
    minLength: 4, // Hugging Face's min_length counts the prompt: ≥ 2 generated tokens
  });
  assert.deepEqual(got.tokens, want.tokens);
  assert.ok(Math.abs(got.score - want.score) < 1e-6);
  assert.ok(!got.tokens.includes(3) && got.tokens.length >= 2);
});

Deno.test("bad words never appear; a two-token bad word bans its second token after the first", async () => {
  const model = tiny(12, 7, null);
  const free = await generate(model, [[1, 2], [5]], { maxNewTokens: 15, numBeams: 3 });
  const common =
    free.flat().sort((a, b) =>
      free.flat().filter((x) => x === b).length - free.flat().filter((x) => x === a).length
    )[0];
  for (const numBeams of [1, 3]) {
    const out = await generate(model, [[1, 2], [5]], {
      maxNewTokens: 15,
      numBeams,
      badWordsIds: [[common], [6, 7]],
    });
    for (const row of out) {
      assert.ok(!row.includes(common), `token ${common} banned (beams ${numBeams}): ${row}`);
      const text = [...row];
      for (let i = 1; i < text.length; i++) assert.ok(!(text[i - 1] === 6 && text[i] === 7));
    }
  }
  // The ban follows Hugging Face: the prompt counts as preceding text, and greedy matches the
  // slow loop with the same rule.
  const banRule = (seq: number[]) => new Set([common, ...(seq.at(-1) === 6 ? [7] : [])]);
  const got = await generate(model, [[3, 6]], {
    maxNewTokens: 10,
    badWordsIds: [[common], [6, 7]],
  });
  assert.deepEqual(got[0], slowGreedy(model, [3, 6], 10, null, banRule));
});

Deno.test("minimum length: EOS is banned until reached (minNewTokens, and minLength counting the prompt)", async () => {
  const model0 = tiny(15, 8, null);
  const first = (await generate(model0, [[4, 5]], { maxNewTokens: 1 }))[0][0];
  // With EOS = the token greedy picks first, decoding would stop at once.
  const model = tiny(15, 8, first);
  for (const numBeams of [1, 4]) {
    assert.deepEqual(
      (await generate(model, [[4, 5]], { maxNewTokens: 8, numBeams }))[0],
      [],
      `beams ${numBeams}`,
    );
    const a = await generate(model, [[4, 5]], { maxNewTokens: 8, numBeams, minNewTokens: 3 });
    assert.ok(a[0].length >= 3, `minNewTokens, beams ${numBeams}: ${a[0]}`);
    const b = await generate(model, [[4, 5]], { maxNewTokens: 8, numBeams, minLength: 5 });
    assert.ok(b[0].length >= 3, `minLength 5 with a 2-token prompt, beams ${numBeams}: ${b[0]}`);
  }
  const ban = (_seq: number[], gen: number[]) => new Set(gen.length < 3 ? [first] : []);
  const g = await generate(model, [[4, 5]], { maxNewTokens: 8, minNewTokens: 3 });
  assert.deepEqual(g[0], slowGreedy(model, [4, 5], 8, first, ban));
});

Deno.test("a batch of prompts of different lengths decodes as each prompt alone", async () => {
  const model = tiny(25, 9, 3);
  const prompts = [[1, 2, 3, 4, 5, 6], [7], [8, 9, 10], [11, 12]];
  for (const numBeams of [1, 4]) {
    for (const lengthPenalty of [1, 1.7]) {
      const opts = { maxNewTokens: 10, numBeams, lengthPenalty, minLength: 4 };
      const batch = await generateWithScores(model, prompts, opts);
      for (let i = 0; i < prompts.length; i++) {
        const [alone] = await generateWithScores(model, [prompts[i]], opts);
        assert.deepEqual(batch[i].tokens, alone.tokens, `prompt ${i}, beams ${numBeams}`);
        assert.ok(Math.abs(batch[i].score - alone.score) < 1e-9);
      }
    }
  }
});

Deno.test("padding works when the config's EOS lies outside the vocabulary (pads use a valid id)", async () => {
  // gpt2Config's default eos is 50256; this model has 25 tokens.
  const cfg = gpt2Config({
    nLayer: 1,
    nEmbd: 8,
    nHead: 2,
    vocabSize: 25,
    nPositions: 32,
    initializerRange: 0.6,
  });
  const model = GPT2.random(cfg, 3, { backend: f64 }).eval();
  const prompts = [[1, 2, 3], [4]];
  const batch = await generate(model, prompts, { maxNewTokens: 5, numBeams: 2 });
  for (let i = 0; i < 2; i++) {
    assert.deepEqual(
      batch[i],
      (await generate(model, [prompts[i]], { maxNewTokens: 5, numBeams: 2 }))[0],
    );
  }
  await assert.rejects(
    generate(model, prompts, { maxNewTokens: 2, padTokenId: 25 }),
    /padTokenId 25 ≥ vocab 25/,
  );
});

Deno.test("prefix past: greedy matches the slow loop; mixed prefixes per row batch like one by one", async () => {
  const model = tiny(25, 10, 3);
  const g = new lf.Xoshiro128(4);
  const L = 3;
  const prefixFor = () =>
    [0, 1].map(() => ({
      k: lf.randn([1, 2, L, 8], { backend: f64, generator: g }),
      v: lf.randn([1, 2, L, 8], { backend: f64, generator: g }),
    }));
  const pa = prefixFor(), pb = prefixFor();
  const got = await generate(model, [[5, 6]], { maxNewTokens: 8, prefixPast: pa });
  assert.deepEqual(got[0], slowGreedy(model, [5, 6], 8, 3, undefined, pa));
  const noPrefix = await generate(model, [[5, 6]], { maxNewTokens: 8 });
  assert.notDeepEqual(got[0], noPrefix[0], "the prefix changes the output");
  // Rows 0 and 2 use prefix a, row 1 prefix b (mixed-task batching).
  const rows = [pa, pb, pa];
  const prefixPast = [0, 1].map((l) => ({
    k: lf.concat(rows.map((p) => p[l].k), 0),
    v: lf.concat(rows.map((p) => p[l].v), 0),
  }));
  const prompts = [[5, 6], [1, 2, 9, 4], [7]];
  for (const numBeams of [1, 3]) {
    const batch = await generate(model, prompts, { maxNewTokens: 8, numBeams, prefixPast });
    for (let i = 0; i < 3; i++) {
      const [alone] = await generate(model, [prompts[i]], {
        maxNewTokens: 8,
        numBeams,
        prefixPast: rows[i],
      });
      assert.deepEqual(batch[i], alone, `row ${i}, beams ${numBeams}`);
    }
  }
  // The caller's prefix tensors are not disposed by generation.
  assert.ok(!pa[0].k.disposed && !prefixPast[1].v.disposed);
});

Deno.test("BeamHypotheses: Hugging Face's n-best list and stopping rule, by hand", () => {
  const h = new BeamHypotheses(2, 1, false);
  h.add([1], -4, 4); // score −1
  h.add([2], -1, 2); // −0.5; worst kept −1
  assert.equal(h.isDone(-3, 4), false, "−1 ≥ −3/4 is false");
  assert.equal(h.isDone(-8, 4), true, "−1 ≥ −8/4");
  h.add([3], -3, 6); // −0.5 beats the worst: [1] leaves, worst becomes −0.5
  assert.deepEqual(h.beams.map(([, t]) => t[0]), [2, 3]);
  h.add([4], -10, 5); // −2: not kept
  assert.equal(h.beams.length, 2);
  assert.deepEqual(h.best(), [-0.5, [3]], "equal scores: the latest added wins");
  const early = new BeamHypotheses(1, 2, true);
  assert.equal(early.isDone(0, 1), false);
  early.add([5], -8, 2); // −8 / 2² = −2
  assert.deepEqual(early.best(), [-2, [5]]);
  assert.equal(early.isDone(100, 1), true);
});

Deno.test("generate: errors name the prompt, token and limits", async () => {
  const model = tiny(10, 1, 0);
  await assert.rejects(generate(model, [[1], []], { maxNewTokens: 3 }), /prompt 1 is empty/);
  await assert.rejects(
    generate(model, [[1, 10]], { maxNewTokens: 3 }),
    /prompt 0 token 1 = 10 is outside \[0, 10\)/,
  );
  await assert.rejects(
    generate(model, [[1, 2]], { maxNewTokens: 64 }),
    /prompt 2 \+ maxNewTokens 64 − 1 exceeds n_positions 64/,
  );
  await assert.rejects(
    generate(model, [[1]], { maxNewTokens: 3, numBeams: 2, strategy: "greedy" }),
    /one beam/,
  );
  await assert.rejects(
    generate(model, [[1], [2]], {
      maxNewTokens: 3,
      prefixPast: [0, 1].map(() => ({ k: lf.zeros([1, 2, 2, 8]), v: lf.zeros([1, 2, 2, 8]) })),
    }),
    /prefixPast\[0\] \[1, 2, 2, 8\] must be \[2, n_head, 2, head_dim\]/,
  );
});
