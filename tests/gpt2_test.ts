/**
 * GPT-2 against an independent float64 loop implementation (tests/fixtures/gpt2_reference.ts):
 * the real Hugging Face checkpoint in ../shared (plus a regression fixture of its logits), and
 * tiny random models saved and reloaded here. Also: KV cache, prefix as past, padding masks,
 * the loss, init, loading errors, gradients.
 *
 * Regenerate the fixture (from the reference implementation, never from the model) with
 * `UPDATE_FIXTURES=1 deno test -A tests/gpt2_test.ts`.
 */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import { GPT2, type GPT2Config, gpt2Config, parseGPT2Config } from "../models/gpt2.ts";
import { writeSafetensors } from "../models/safetensors.ts";
import { f64, gradcheck } from "./gradcheck.ts";
import "../kernels/select.ts";
import {
  logSoftmax,
  parseSafetensorsF32,
  refForward,
  type RefKV,
  type RefTensor,
} from "./fixtures/gpt2_reference.ts";
import { assertClose, assertNear } from "./helpers/close.ts";

const FAKE = new URL("../../shared/models/fake-gpt2", import.meta.url).pathname;
const FIXTURE = new URL("./fixtures/fake_gpt2_logits.json", import.meta.url).pathname;
const haveShared = (() => {
  try {
    return Deno.statSync(`${FAKE}/model.safetensors`).isFile;
  } catch {
    return false;
  }
})();
if (!haveShared) console.warn(`skipping fake-gpt2 tests: ${FAKE} is absent (../shared not here)`);
const wasm = await lf.loadBackend("wasm").catch((e: Error) => {
  console.warn(`skipping the wasm-backend model test: the backend does not load (${e.message})`);
  return null;
});

const vals = (t: lf.Tensor): Float64Array => f64.readF64(t.contiguous().storage);
const refCfg = (c: GPT2Config) => ({
  nLayer: c.nLayer,
  nHead: c.nHead,
  nEmbd: c.nEmbd,
  vocabSize: c.vocabSize,
  layerNormEpsilon: c.layerNormEpsilon,
});

/** "<|endoftext|>The quick brown fox jumps over the lazy dog." in GPT-2 BPE. */
const FIXED_IDS = [50256, 464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13];
/** Vocabulary entries whose logits the fixture keeps (plus full-vocab summaries). */
const PICKED = [0, 1, 13, 198, 262, 464, 628, 2068, 7586, 21831, 30000, 50255, 50256];

interface Fixture {
  source: string;
  ids: number[];
  picked: number[];
  logits: number[][];
  logSumExp: number[];
  argmax: number[];
}

function summarise(logits: number[][]): Omit<Fixture, "source" | "ids" | "picked"> {
  return {
    logits: logits.map((row) => PICKED.map((v) => row[v])),
    logSumExp: logits.map((row) => row[0] - logSoftmax(row)[0]),
    argmax: logits.map((row) => row.indexOf(Math.max(...row))),
  };
}

Deno.test({
  name: "fake-gpt2 (a Hugging Face checkpoint) loads; logits match the reference and the fixture",
  ignore: !haveShared,
  fn: async () => {
    const model = await GPT2.fromPretrained(FAKE);
    model.eval();
    assert.deepEqual(
      [model.config.nLayer, model.config.nEmbd, model.config.nHead, model.config.vocabSize],
      [1, 2, 1, 50257],
    );
    const weights = parseSafetensorsF32(await Deno.readFile(`${FAKE}/model.safetensors`));
    assert.deepEqual([...model.stateDict().keys()].sort(), [...weights.keys()].sort());
    const ref = refForward(weights, refCfg(model.config), FIXED_IDS).logits;
    if (Deno.env.get("UPDATE_FIXTURES")) {
      const fx: Fixture = {
        source:
          "shared/models/fake-gpt2 (HF transformers 4.36 GPT2LMHeadModel); logits from tests/fixtures/gpt2_reference.ts",
        ids: FIXED_IDS,
        picked: PICKED,
        ...summarise(ref),
      };
      const tmp = `${FIXTURE}.tmp`;
      await Deno.writeTextFile(tmp, JSON.stringify(fx, null, 2) + "\n");
      await Deno.rename(tmp, FIXTURE);
    }
    const fx: Fixture = JSON.parse(await Deno.readTextFile(FIXTURE));
    assert.deepEqual(fx.ids, FIXED_IDS);
    const now = summarise(ref);
    assertClose(now.logits.flat(), fx.logits.flat(), "reference vs fixture", 1e-12, 1e-12);
    assertClose(now.logSumExp, fx.logSumExp, "reference log-sum-exp vs fixture", 1e-12, 1e-12);
    const logits = await lf.noGrad(() => model.forward([FIXED_IDS]).logits).data();
    assert.equal(logits.length, FIXED_IDS.length * 50257);
    assertClose(logits, ref.flat(), "model vs reference", 1e-6, 1e-6);
    // On the float64 backend the same checkpoint agrees with the reference to rounding level.
    const m64 = (await GPT2.fromPretrained(FAKE, { backend: f64 })).eval();
    assertClose(
      vals(m64.forward([FIXED_IDS]).logits),
      ref.flat(),
      "f64 model vs reference",
      1e-10,
      1e-10,
    );
    const mine = summarise(ref.map((_, t) => Array.from(logits.slice(t * 50257, (t + 1) * 50257))));
    assertClose(mine.logits.flat(), fx.logits.flat(), "model vs fixture", 1e-6, 1e-6);
    assert.deepEqual(mine.argmax, fx.argmax);
  },
});

const TINY = gpt2Config({
  nLayer: 2,
  nEmbd: 16,
  nHead: 2,
  vocabSize: 23,
  nPositions: 32,
  initializerRange: 0.3,
  eosTokenId: 22,
  bosTokenId: 22,
});

Deno.test("random 2-layer model: save → fromPretrained round trip, HF names, logits vs reference", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = GPT2.random(TINY, 4);
    await model.save(dir);
    const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    assert.equal(cfg.n_layer, 2);
    assert.equal(cfg.n_embd, 16);
    assert.equal(cfg.activation_function, "gelu_new");
    assert.deepEqual(cfg.architectures, ["GPT2LMHeadModel"]);
    assert.deepEqual(parseGPT2Config(cfg), TINY);
    const bytes = await Deno.readFile(`${dir}/model.safetensors`);
    const header = JSON.parse(
      new TextDecoder().decode(
        bytes.subarray(8, 8 + new DataView(bytes.buffer).getUint32(0, true)),
      ),
    );
    assert.deepEqual(header.__metadata__, { format: "pt" });
    const perLayer = (l: number) =>
      [
        "attn.c_attn.bias",
        "attn.c_attn.weight",
        "attn.c_proj.bias",
        "attn.c_proj.weight",
        "ln_1.bias",
        "ln_1.weight",
        "ln_2.bias",
        "ln_2.weight",
        "mlp.c_fc.bias",
        "mlp.c_fc.weight",
        "mlp.c_proj.bias",
        "mlp.c_proj.weight",
      ].map((n) => `transformer.h.${l}.${n}`);
    const want = [
      ...perLayer(0),
      ...perLayer(1),
      "transformer.ln_f.bias",
      "transformer.ln_f.weight",
      "transformer.wpe.weight",
      "transformer.wte.weight",
    ].sort();
    assert.deepEqual(Object.keys(header).filter((k) => k !== "__metadata__").sort(), want);
    assert.deepEqual(header["transformer.h.1.attn.c_attn.weight"].shape, [16, 48]);
    assert.deepEqual(header["transformer.h.0.mlp.c_proj.weight"].shape, [64, 16]);

    const back = await GPT2.fromPretrained(dir);
    for (const [name, p] of model.stateDict()) {
      assert.deepEqual(
        Array.from(await back.stateDict().get(name)!.data()),
        Array.from(await p.data()),
        name,
      );
    }
    // f64 backend: the model must agree with the float64 reference to rounding level.
    const m64 = await GPT2.fromPretrained(dir, { backend: f64 });
    m64.eval();
    back.eval();
    const weights = parseSafetensorsF32(bytes);
    const seqs = [[3, 1, 4, 1, 5, 9, 2, 6], [22, 7, 7, 0, 21, 8, 11, 19]];
    const out64 = vals(m64.forward(seqs).logits);
    const out32 = await lf.noGrad(() => back.forward(seqs).logits).data();
    seqs.forEach((ids, b) => {
      const ref = refForward(weights, refCfg(TINY), ids).logits.flat();
      const n = ref.length;
      assertClose(out64.slice(b * n, (b + 1) * n), ref, `f64 model row ${b}`, 1e-10, 1e-10);
      assertClose(out32.slice(b * n, (b + 1) * n), ref, `f32 model row ${b}`, 1e-4, 1e-4);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A tiny model on the f64 backend, eval mode. */
const tiny64 = (seed = 1, cfg = TINY) => GPT2.random(cfg, seed, { backend: f64 }).eval();

/** The model's weights as the reference reads them. */
function refWeights(model: GPT2): Map<string, RefTensor> {
  const m = new Map<string, RefTensor>();
  for (const [k, p] of model.stateDict()) {
    m.set(k, { shape: [...p.shape], data: Float32Array.from(vals(p)) });
  }
  return m;
}

Deno.test("KV cache: incremental logits equal the full pass; past = past ++ current", () => {
  const model = tiny64(2);
  const ids = [[5, 3, 17, 8, 1, 12, 20], [0, 9, 9, 2, 14, 6, 4]];
  const full = vals(model.forward(ids).logits);
  const first = model.forward(ids.map((r) => r.slice(0, 4)), { useCache: true });
  assert.equal(first.past!.length, 2);
  assert.deepEqual(first.past![0].k.shape, [2, 2, 4, 8]);
  let past = first.past!;
  const got = [vals(first.logits)];
  for (let t = 4; t < 7; t++) {
    const o = model.forward(ids.map((r) => [r[t]]), { past, useCache: true });
    assert.deepEqual(o.past![1].v.shape, [2, 2, t + 1, 8]);
    assertClose(vals(o.past![1].v.slice(2, 0, t)), vals(past[1].v), "old past kept", 0, 0);
    past = o.past!;
    got.push(vals(o.logits));
  }
  // Reassemble [B, T, V] from the pieces and compare.
  const V = TINY.vocabSize;
  for (let b = 0; b < 2; b++) {
    for (let t = 0; t < 7; t++) {
      const piece = t < 4
        ? got[0].slice((b * 4 + t) * V, (b * 4 + t + 1) * V)
        : got[t - 3].slice(b * V, (b + 1) * V);
      assertClose(
        piece,
        full.slice((b * 7 + t) * V, (b * 7 + t + 1) * V),
        `b ${b} t ${t}`,
        1e-12,
        1e-12,
      );
    }
  }
  // Without useCache no past is returned; lastTokenOnly gives the last row only.
  assert.equal(model.forward(ids).past, undefined);
  const last = model.forward(ids, { lastTokenOnly: true }).logits;
  assert.deepEqual(last.shape, [2, 1, V]);
  assertClose(vals(last).slice(0, V), full.slice(6 * V, 7 * V), "lastTokenOnly", 0, 0);
});

Deno.test("prefix as past: positions start at the prefix length; matches the reference", () => {
  const model = tiny64(3);
  const L = 3, H = 2, D = 8;
  const g = new lf.Xoshiro128(11);
  const past = [0, 1].map(() => ({
    k: lf.randn([1, H, L, D], { backend: f64, generator: g }),
    v: lf.randn([1, H, L, D], { backend: f64, generator: g }),
  }));
  const ids = [4, 18, 2, 9];
  const out = model.forward([ids], { past, useCache: true });
  assert.deepEqual(out.past![0].k.shape, [1, H, L + 4, D]);
  const toRef = (t: lf.Tensor): number[][][] => {
    const v = vals(t);
    return [...Array(H).keys()].map((h) =>
      [...Array(L).keys()].map((l) => Array.from(v.slice((h * L + l) * D, (h * L + l + 1) * D)))
    );
  };
  const refPast: RefKV[] = past.map((p) => ({ k: toRef(p.k), v: toRef(p.v) }));
  const ref = refForward(refWeights(model), refCfg(TINY), ids, { past: refPast });
  assertClose(vals(out.logits), ref.logits.flat(), "prefix logits", 1e-10, 1e-10);
  // The same with explicit positions L.. equals the default; positions 0.. differ.
  const explicit = vals(model.forward([ids], { past, positionIds: [[3, 4, 5, 6]] }).logits);
  assertClose(explicit, ref.logits.flat(), "explicit positions", 1e-10, 1e-10);
  const wrong = vals(model.forward([ids], { past, positionIds: [[0, 1, 2, 3]] }).logits);
  assert.ok(wrong.some((v, i) => Math.abs(v - explicit[i]) > 1e-6));
});

Deno.test("left padding with an attention mask and position ids gives each row's unpadded logits", () => {
  const model = tiny64(5);
  const V = TINY.vocabSize, w = refWeights(model);
  const short = [7, 1, 19], long = [3, 3, 12, 5, 16];
  const ids = [[0, 0, ...short], long];
  const attentionMask = [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]];
  const positionIds = [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]];
  const got = vals(model.forward(ids, { attentionMask, positionIds }).logits);
  const refShort = refForward(w, refCfg(TINY), short).logits.flat();
  const refLong = refForward(w, refCfg(TINY), long).logits.flat();
  assertClose(got.slice(2 * V, 5 * V), refShort, "padded row", 1e-10, 1e-10);
  assertClose(got.slice(5 * V), refLong, "full row", 1e-10, 1e-10);
  // A padding mask over a past: mask the middle past position for row 0 only.
  const past = model.forward([[2, 8, 4], [2, 8, 4]], { useCache: true }).past!;
  const masked = vals(
    model.forward([[6], [6]], { past, attentionMask: [[1, 0, 1, 1], [1, 1, 1, 1]] }).logits,
  );
  // Past keys come from an unmasked pass; only the new query sees the padding mask.
  const refPast = refForward(w, refCfg(TINY), [2, 8, 4]).present;
  const refStep =
    refForward(w, refCfg(TINY), [6], { past: refPast, keyMask: [1, 0, 1, 1] }).logits[0];
  assertClose(masked.slice(0, V), refStep, "masked past", 1e-10, 1e-10);
  assertClose(
    masked.slice(V),
    refForward(w, refCfg(TINY), [2, 8, 4, 6]).logits[3],
    "unmasked row",
    1e-10,
    1e-10,
  );
});

Deno.test("loss: shifted cross-entropy with ignore index -100, Hugging Face semantics", async () => {
  const model = tiny64(6);
  const w = refWeights(model);
  const ids = [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]];
  const labels = [[-100, -100, 3, 4, 5], [6, 7, -100, 9, 10]];
  let total = 0, count = 0;
  const perToken: number[] = [];
  ids.forEach((row, b) => {
    const lg = refForward(w, refCfg(TINY), row).logits;
    for (let t = 0; t < 4; t++) {
      const y = labels[b][t + 1];
      if (y === -100) {
        perToken.push(0);
        continue;
      }
      const nll = -logSoftmax(lg[t])[y];
      perToken.push(nll);
      total += nll;
      count++;
    }
  });
  assertClose(vals(model.loss(ids, labels)), [total / count], "mean loss", 1e-12, 1e-12);
  assertClose(
    vals(model.loss(ids, lf.ids(labels, { backend: f64 }), { reduction: "sum" })),
    [total],
    "sum",
    1e-12,
    1e-12,
  );
  assertClose(
    vals(model.loss(ids, labels, { reduction: "none" })),
    perToken,
    "per token",
    1e-12,
    1e-12,
  );
  // Host labels take only labelled positions through the head; a labels tensor takes all: same loss.
  assertClose(
    vals(model.loss(ids, labels, { reduction: "sum" })),
    [total],
    "sum, host labels",
    1e-12,
    1e-12,
  );
  assertClose(
    vals(model.loss(ids, lf.ids(labels, { backend: f64 }))),
    [total / count],
    "mean",
    1e-12,
    1e-12,
  );
  assert.throws(
    () => model.loss(ids, ids.map((r) => r.map(() => -100))),
    /no labelled positions/,
  );
  assert.throws(() => model.loss(ids, [[1, 2, 3]]), /labels \[1, 3\] must match ids \[2, 5\]/);
  const h = model.hidden(ids);
  assert.deepEqual(h.hidden.shape, [2, 5, 16]);
  assertClose(
    vals(model.lmHead(h.hidden)),
    vals(model.forward(ids).logits),
    "lmHead(hidden)",
    0,
    0,
  );
  await Promise.resolve();
});

Deno.test("GPT2.random: Hugging Face init statistics; seeded", async () => {
  const cfg = gpt2Config({ nLayer: 4, nEmbd: 64, nHead: 4, vocabSize: 300, nPositions: 64 });
  const m = GPT2.random(cfg, 7);
  const sd = m.stateDict();
  const std = async (k: string) => {
    const d = Array.from(await sd.get(k)!.data());
    const mean = d.reduce((s, v) => s + v, 0) / d.length;
    return Math.sqrt(d.reduce((s, v) => s + (v - mean) ** 2, 0) / d.length);
  };
  const near = (a: number, b: number, what: string) =>
    assertNear(a / b, 1, `${what}: ${a} / ${b}`, 0.05);
  near(await std("transformer.wte.weight"), 0.02, "wte");
  near(await std("transformer.wpe.weight"), 0.02, "wpe");
  near(await std("transformer.h.0.attn.c_attn.weight"), 0.02, "c_attn");
  near(await std("transformer.h.2.mlp.c_fc.weight"), 0.02, "c_fc");
  near(await std("transformer.h.1.attn.c_proj.weight"), 0.02 / Math.sqrt(8), "attn.c_proj");
  near(await std("transformer.h.3.mlp.c_proj.weight"), 0.02 / Math.sqrt(8), "mlp.c_proj");
  assert.ok((await sd.get("transformer.h.0.ln_1.weight")!.data()).every((v) => v === 1));
  assert.ok((await sd.get("transformer.ln_f.bias")!.data()).every((v) => v === 0));
  assert.ok((await sd.get("transformer.h.0.attn.c_attn.bias")!.data()).every((v) => v === 0));
  const again = GPT2.random(cfg, 7), other = GPT2.random(cfg, 8);
  const a = await sd.get("transformer.h.3.mlp.c_fc.weight")!.data();
  assert.deepEqual(await again.stateDict().get("transformer.h.3.mlp.c_fc.weight")!.data(), a);
  assert.notDeepEqual(await other.stateDict().get("transformer.h.3.mlp.c_fc.weight")!.data(), a);
});

Deno.test("fromPretrained: keys without prefix, buffers, tied lm_head; errors name file and keys", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = GPT2.random(TINY, 9);
    await model.save(`${dir}/ok`);
    // Rewrite as a GPT2Model checkpoint: no prefix, with the attention buffers and lm_head.
    const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const [k, p] of model.stateDict()) {
      tensors[k.replace(/^transformer\./, "")] = {
        dtype: "F32",
        shape: [...p.shape],
        data: (await p.data()) as Float32Array,
      };
    }
    tensors["h.0.attn.bias"] = {
      dtype: "F32",
      shape: [1, 1, 2, 2],
      data: new Float32Array([1, 0, 1, 1]),
    };
    tensors["h.1.attn.masked_bias"] = { dtype: "F32", shape: [], data: new Float32Array([-1e4]) };
    tensors["lm_head.weight"] = { ...tensors["wte.weight"] };
    await Deno.mkdir(`${dir}/bare`);
    await Deno.copyFile(`${dir}/ok/config.json`, `${dir}/bare/config.json`);
    await writeSafetensors(`${dir}/bare/model.safetensors`, tensors);
    const bare = await GPT2.fromPretrained(`${dir}/bare`);
    const want = await model.stateDict().get("transformer.h.1.mlp.c_fc.weight")!.data();
    assert.deepEqual(await bare.stateDict().get("transformer.h.1.mlp.c_fc.weight")!.data(), want);

    // Untied head, a wrong shape and a missing key: errors naming the file and keys.
    await Deno.mkdir(`${dir}/bad`);
    await Deno.copyFile(`${dir}/ok/config.json`, `${dir}/bad/config.json`);
    const file = `${dir}/bad/model.safetensors`;
    const untied = {
      ...tensors,
      "lm_head.weight": {
        ...tensors["wte.weight"],
        data: tensors["wte.weight"].data.map((v) => v + 1),
      },
    };
    await writeSafetensors(file, untied);
    await assert.rejects(
      GPT2.fromPretrained(`${dir}/bad`),
      (e: Error) => e.message.includes(file) && /lm_head\.weight differs/.test(e.message),
    );
    const broken: Record<string, (typeof tensors)[string]> = { ...tensors };
    delete broken["lm_head.weight"];
    delete broken["h.1.ln_2.bias"];
    broken["h.0.mlp.c_fc.weight"] = { dtype: "F32", shape: [64, 16], data: new Float32Array(1024) };
    await writeSafetensors(file, broken);
    await assert.rejects(
      GPT2.fromPretrained(`${dir}/bad`),
      (e: Error) =>
        e.message.includes(file) &&
        /transformer\.h\.0\.mlp\.c_fc\.weight: shape \[64, 16\] in the dict, \[16, 64\] in the model/
          .test(e.message) &&
        /missing keys: transformer\.h\.1\.ln_2\.bias/.test(e.message),
    );
    await Deno.writeTextFile(
      `${dir}/bad/config.json`,
      JSON.stringify({ n_embd: 16, n_layer: 2, n_head: 2, activation_function: "relu" }),
    );
    await assert.rejects(
      GPT2.fromPretrained(`${dir}/bad`),
      /bad\/config\.json: activation_function "relu" is not supported/,
    );
    await Deno.writeTextFile(
      `${dir}/bad/config.json`,
      JSON.stringify({ n_embd: 10, n_layer: 1, n_head: 3 }),
    );
    await assert.rejects(
      GPT2.fromPretrained(`${dir}/bad`),
      /n_embd 10 is not divisible by n_head 3/,
    );
    // A config without its sizes is an error, not GPT-2 small.
    await Deno.writeTextFile(`${dir}/bad/config.json`, JSON.stringify({ n_layer: 2, n_head: 2 }));
    await assert.rejects(
      GPT2.fromPretrained(`${dir}/bad`),
      /bad\/config\.json: "n_embd" is missing/,
    );
    await assert.rejects(
      GPT2.fromPretrained(`${dir}/nothing`),
      /nothing" is neither an existing folder nor a hub id/,
    );
    await Deno.mkdir(`${dir}/empty`);
    await assert.rejects(
      GPT2.fromPretrained(`${dir}/empty`),
      /cannot read .*empty\/config\.json/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("forward input errors name the row, column and shapes", () => {
  const model = tiny64(1);
  assert.throws(() => model.forward([[1, 2], [3]]), /ids row 1 has length 1, row 0 has 2/);
  assert.throws(() => model.forward([[1, 23]]), /ids\[0\]\[1\] = 23 is outside \[0, 23\)/);
  assert.throws(
    () => model.forward([new Array(33).fill(1)]),
    /past 0 \+ length 33 exceeds n_positions 32/,
  );
  assert.throws(
    () => model.forward([[1, 2]], { attentionMask: [[1, 1, 1]] }),
    /attention mask: shape \[1, 3\]/,
  );
  assert.throws(() => model.forward([[1, 2]], { past: [] }), /past has 0 layers, the model 2/);
});

Deno.test({
  name: "gradients of the loss wrt weights and a prefix match finite differences (f64)",
  fn: () => {
    const cfg = gpt2Config({
      nLayer: 2,
      nEmbd: 4,
      nHead: 2,
      vocabSize: 7,
      nPositions: 8,
      initializerRange: 0.5,
    });
    const model = tiny64(12, cfg);
    const g = new lf.Xoshiro128(3);
    const past = [0, 1].map(() => ({
      k: lf.randn([2, 2, 2, 2], { backend: f64, generator: g }),
      v: lf.randn([2, 2, 2, 2], { backend: f64, generator: g }),
    }));
    for (const p of past) p.k.requiresGrad = p.v.requiresGrad = true;
    const ids = [[1, 2, 3], [4, 5, 6]], labels = [[1, 2, 3], [-100, 5, 6]];
    const sd = model.stateDict();
    gradcheck("gpt2 loss", () => model.loss(ids, labels, { past }), [
      past[0].k,
      past[1].v,
      sd.get("transformer.wte.weight")!,
      sd.get("transformer.wpe.weight")!,
      sd.get("transformer.h.0.attn.c_attn.weight")!,
      sd.get("transformer.h.1.mlp.c_proj.weight")!,
      sd.get("transformer.ln_f.weight")!,
    ]);
  },
});

Deno.test({
  name: "the model on the wasm backend agrees with the CPU backend (logits, loss gradient)",
  ignore: wasm === null,
  fn: async () => {
    const cpu = GPT2.random(TINY, 4).eval(),
      other = GPT2.random(TINY, 4, { backend: wasm! }).eval();
    const ids = [[3, 1, 4, 1, 5, 9, 2, 6], [22, 7, 7, 0, 21, 8, 11, 19]];
    assertClose(
      await other.forward(ids).logits.data(),
      await cpu.forward(ids).logits.data(),
      "logits",
      1e-5,
      1e-5,
    );
    cpu.loss(ids, ids).backward();
    other.loss(ids, ids).backward();
    for (const name of ["transformer.wte.weight", "transformer.h.0.attn.c_attn.weight"]) {
      const a = cpu.stateDict().get(name)!.grad!, b = other.stateDict().get(name)!.grad!;
      assertClose(await b.data(), await a.data(), `grad ${name}`, 1e-4, 1e-4);
    }
  },
});

Deno.test("fused and unfused attention: same logits (padding, past) and same gradients with dropout (f64)", () => {
  const cfg = gpt2Config({
    nLayer: 2,
    nEmbd: 16,
    nHead: 2,
    vocabSize: 23,
    nPositions: 16,
    attnPdrop: 0.2,
    residPdrop: 0.1,
    embdPdrop: 0.1,
  });
  const g = new lf.Xoshiro128(8);
  const past = [0, 1].map(() => ({
    k: lf.randn([2, 2, 3, 8], { backend: f64, generator: g }),
    v: lf.randn([2, 2, 3, 8], { backend: f64, generator: g }),
  }));
  for (const p of past) p.k.requiresGrad = p.v.requiresGrad = true;
  const ids = [[0, 0, 7, 1, 19], [3, 3, 12, 5, 16]];
  const attentionMask = [[1, 1, 1, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]];
  const run = (fused: boolean, train: boolean) => {
    const m = tiny64(21, cfg).setFusedAttention(fused);
    if (train) m.train();
    lf.manualSeed(77);
    for (const p of past) p.k.zeroGrad(), p.v.zeroGrad();
    const logits = vals(m.forward(ids, { past, attentionMask }).logits);
    lf.manualSeed(78);
    m.loss(ids, ids, { past, attentionMask }).backward();
    const grads = [
      past[0].k.grad!,
      past[1].v.grad!,
      m.stateDict().get("transformer.h.0.attn.c_attn.weight")!.grad!,
      m.stateDict().get("transformer.wte.weight")!.grad!,
    ].map(vals);
    m.dispose();
    return { logits, grads };
  };
  for (const train of [false, true]) {
    const a = run(true, train), b = run(false, train);
    assertClose(a.logits, b.logits, `logits (train ${train})`, 1e-12, 1e-12);
    a.grads.forEach((ga, i) =>
      assertClose(ga, b.grads[i], `grad ${i} (train ${train})`, 1e-10, 1e-10)
    );
  }
  // Dropout really acts in training mode (the comparison above is not vacuous).
  assert.ok(run(true, true).logits.some((v, i) => Math.abs(v - run(true, false).logits[i]) > 1e-6));
});

Deno.test("forward and loss without a graph leave no buffers behind", () => {
  const cpu = new lf.CpuBackend();
  const m = GPT2.random(
    gpt2Config({ vocabSize: 11, nPositions: 8, nEmbd: 8, nHead: 2, nLayer: 1 }),
    0,
    {
      backend: cpu,
    },
  ).freeze().eval();
  const before = cpu.liveCount();
  lf.noGrad(() => m.forward([[1, 2, 3]])).logits.dispose();
  lf.noGrad(() => m.loss([[1, 2, 3]], [[1, 2, 3]])).dispose();
  assert.equal(cpu.liveCount(), before);
  m.dispose();
  assert.equal(cpu.liveCount(), 0);
});
