/**
 * The WebGPU backend under the model stack, against the CPU reference backend:
 * GPT-2 logits (the real Hugging Face checkpoint in ../shared and a random 2-layer model saved
 * and reloaded here) with a KV cache, a prefix and padding masks; one prefix-tuning step (loss
 * and every prefix gradient, dropout on); no buffer leak over 200 training steps; and how
 * `useBackend("auto")` decides between WebGPU and WebAssembly.
 *
 * Runs on whatever adapter Deno's WebGPU offers (lavapipe here, so shapes are tiny); skipped
 * with a message where there is none.
 */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import { GPT2, type GPT2Config, gpt2Config, type GPT2Output } from "../models/gpt2.ts";
import { PrefixTuning } from "../models/prefix.ts";
import { AdamW, clipGradNorm } from "../nn/optim.ts";
import { batchLoss } from "../train/e2e_loss.ts";
import type { Batch } from "../data/batching.ts";
import type { Backend } from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { getBackend, setBackend } from "../kernels/registry.ts";
import { useBackend } from "../kernels/select.ts";
import { adapterInfo, hardwareAdapterAvailable } from "../kernels/webgpu/device.ts";
import { createWebGPUBackend, type WebGPUBackend } from "../kernels/webgpu/backend.ts";
import { assertCloseScaled } from "./helpers/close.ts";

const info = await adapterInfo();
const ignore = info === null;
if (ignore) {
  console.log("webgpu model tests skipped: no WebGPU adapter (install mesa-vulkan-drivers)");
} else {
  console.log(`webgpu model tests on adapter '${info.name}' (fallback: ${info.isFallbackAdapter})`);
}
const gpu: WebGPUBackend | null = ignore ? null : await createWebGPUBackend();
const cpu = new CpuBackend();
// WebGPU keeps promises (device.lost, error scopes) that outlive a test by design.
const opts = { ignore, sanitizeOps: false, sanitizeResources: false };

const FAKE = new URL("../../shared/models/fake-gpt2", import.meta.url).pathname;
const haveFake = (() => {
  try {
    return Deno.statSync(`${FAKE}/model.safetensors`).isFile;
  } catch {
    return false;
  }
})();
if (!haveFake) console.log(`webgpu fake-gpt2 parity skipped: ${FAKE} is absent (no ../shared)`);

/** A tiny GPT-2 written by this test: 2 layers, n_embd 32, 4 heads, 61 tokens. */
const TINY: GPT2Config = gpt2Config({
  vocabSize: 61,
  nPositions: 32,
  nEmbd: 32,
  nHead: 4,
  nLayer: 2,
  embdPdrop: 0,
  attnPdrop: 0,
  residPdrop: 0,
  bosTokenId: 60,
  eosTokenId: 60,
});

/** Reads logits and the present keys/values of a forward. */
async function readOutput(out: GPT2Output) {
  const kv: Float32Array[] = [];
  for (const l of out.past ?? []) {
    kv.push((await l.k.data()) as Float32Array, (await l.v.data()) as Float32Array);
  }
  return { logits: (await out.logits.data()) as Float32Array, kv };
}

/**
 * The forwards a model must agree on across backends: plain with a left-padded row (its first
 * query attends to nothing, the fully-masked path), a cached prefix of 4 tokens then 3 more
 * tokens with a padding mask over past and current positions, and a 2-position prefix given
 * as past (prefix-tuning's path) with padding.
 */
async function forwards(model: GPT2, vocab: number) {
  const be = model.backend;
  const ids = [
    [1, 5, 9, 13, 17, 21, 25],
    [0, 0, 3, 7, 11, 2, 4],
  ].map((r) => r.map((v) => v % vocab));
  const cfg = model.config;
  // noGrad takes a synchronous function: every forward is queued inside it, read after. The
  // tidy scope frees what GPT2.forward leaves behind besides its outputs (see the report).
  const outs = lf.noGrad(() =>
    lf.tidy(() => {
      // 1. Left padding: row 1 starts with two pads.
      const mask = [[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]];
      const padded = model.forward(ids, { attentionMask: mask, useCache: true });
      // 2. KV cache: 4 tokens, then 3 with the cache and a mask over all 7 positions, where
      // row 1 also masks its last current token (right padding).
      const first = model.forward(ids.map((r) => r.slice(0, 4)), {
        attentionMask: mask.map((r) => r.slice(0, 4)),
        useCache: true,
      });
      const cached = model.forward(ids.map((r) => r.slice(4)), {
        past: first.past,
        attentionMask: [[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 0]],
        useCache: true,
      });
      // 3. A prefix of 2 positions as past (values independent of the model), padding in row 1.
      const hd = cfg.nEmbd / cfg.nHead;
      const n = 2 * cfg.nHead * 2 * hd;
      const past = Array.from({ length: cfg.nLayer }, (_, l) => {
        const mk = (which: number) =>
          lf.tensor(
            Float32Array.from({ length: n }, (_, i) => Math.sin(0.37 * i + 1.3 * l + which)),
            { shape: [2, cfg.nHead, 2, hd], backend: be },
          );
        return { k: mk(0), v: mk(1) };
      });
      const prefix = model.forward(ids, {
        past,
        attentionMask: [[1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 0, 0]],
      });
      return { padded, first, cached, prefix, past };
    })
  );
  const res: Record<string, { logits: Float32Array; kv: Float32Array[] }> = {};
  for (const k of ["padded", "cached", "prefix"] as const) res[k] = await readOutput(outs[k]);
  for (const o of [outs.padded, outs.first, outs.cached, outs.prefix]) {
    o.logits.dispose();
    for (const l of o.past ?? []) [l.k, l.v].forEach((t) => t.dispose());
  }
  for (const l of outs.past) [l.k, l.v].forEach((t) => t.dispose());
  return res;
}

async function compareModels(dir: string, label: string): Promise<void> {
  const before = gpu!.liveCount();
  const onGpu = (await GPT2.fromPretrained(dir, { backend: gpu! })).freeze().eval();
  const onCpu = (await GPT2.fromPretrained(dir, { backend: cpu })).freeze().eval();
  const vocab = onCpu.config.vocabSize;
  const [g, c] = [await forwards(onGpu, vocab), await forwards(onCpu, vocab)];
  for (const k of Object.keys(c)) {
    const worst = assertCloseScaled(g[k].logits, c[k].logits, `${label} ${k}: logits`, {
      rtol: 1e-4,
      atolScale: 1e-5,
    });
    c[k].kv.forEach((e, i) =>
      assertCloseScaled(g[k].kv[i], e, `${label} ${k}: present ${i}`, {
        rtol: 1e-4,
        atolScale: 1e-5,
      })
    );
    console.log(`  ${label} ${k}: max |Δlogit| / max |logit| = ${worst.toExponential(2)}`);
  }
  // The cache must not change the result: logits of positions 4..6 of the full padded forward
  // (on the GPU) equal those of the cached step, where row 1's last token is not masked.
  const V = vocab;
  for (let b = 0; b < 2; b++) {
    for (let t = 0; t < 3; t++) {
      if (b === 1 && t === 2) continue; // masked as its own key in the cached step
      const full = g.padded.logits.subarray((b * 7 + 4 + t) * V, (b * 7 + 5 + t) * V);
      const step = g.cached.logits.subarray((b * 3 + t) * V, (b * 3 + t + 1) * V);
      assertCloseScaled(step, full, `${label}: cached vs full logits, row ${b} position ${4 + t}`, {
        rtol: 1e-4,
        atolScale: 1e-5,
      });
    }
  }
  onGpu.dispose();
  onCpu.dispose();
  assert.equal(gpu!.liveCount(), before, `${label}: buffers left alive after the forwards`);
}

Deno.test(
  "webgpu GPT-2 logits match the CPU: random 2-layer model, cache, prefix, padding",
  opts,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "webgpu_model_" });
    try {
      const m = GPT2.random(TINY, 11, { backend: cpu });
      await m.save(dir);
      m.dispose();
      await compareModels(dir, "tiny");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("webgpu GPT-2 logits match the CPU on the Hugging Face fake-gpt2 checkpoint", {
  ...opts,
  ignore: ignore || !haveFake,
}, async () => {
  await compareModels(FAKE, "fake-gpt2");
});

// ---------------------------------------------------------------- prefix-tuning step

/** Three padded examples: MR part unlabelled (-100), pads masked and unlabelled. */
function tinyBatch(vocab: number): Batch {
  const rows = [
    { ids: [3, 8, 15, 60, 22, 31, 7, 60], mr: 4 },
    { ids: [5, 9, 60, 40, 41, 60], mr: 3 },
    { ids: [12, 60, 2, 60], mr: 2 },
  ];
  const W = 8, pad = 60 % vocab;
  const batch: Batch = { ids: [], labels: [], mask: [] };
  for (const r of rows) {
    const ids = r.ids.map((v) => v % vocab);
    const n = ids.length;
    batch.ids.push([...ids, ...Array(W - n).fill(pad)]);
    batch.labels.push(
      Array.from({ length: W }, (_, t) => (t < r.mr || t >= n ? -100 : ids[t])),
    );
    batch.mask.push(Array.from({ length: W }, (_, t) => (t < n ? 1 : 0)));
  }
  return batch;
}

/** Loss and prefix gradients of one step on a backend, dropout on (same seed ⇒ same masks). */
async function prefixStep(be: Backend, cfg: GPT2Config, f16 = false) {
  const model = GPT2.random(cfg, 5, { backend: be });
  model.freeze();
  if (f16) {
    const live = be.liveCount();
    const r = await model.storeFrozenAsF16();
    assert.equal(r.parameters, model.parameters().length, "every frozen tensor converted");
    assert.equal(r.bytesSaved, 2 * model.numParameters());
    assert.equal(be.liveCount(), live, "conversion keeps the buffer count");
  }
  const prefix = new PrefixTuning(
    {
      prefixLen: 3,
      nLayer: cfg.nLayer,
      nHead: cfg.nHead,
      nEmbd: cfg.nEmbd,
      mid: 16,
      mlp: true,
      dropout: 0.2,
    },
    { seed: 9, backend: be },
  );
  lf.manualSeed(1234);
  const loss = lf.tidy(() => {
    const l = batchLoss(model, prefix, tinyBatch(cfg.vocabSize), be);
    l.backward();
    return l;
  });
  const value = await loss.item();
  loss.dispose();
  const grads: [string, Float32Array][] = [];
  for (const [name, p] of prefix.namedParameters()) {
    assert.ok(p.grad, `${be.name}: no gradient for prefix parameter ${name}`);
    grads.push([name, (await p.grad.data()) as Float32Array]);
  }
  prefix.dispose();
  model.dispose();
  return { loss: value, grads };
}

Deno.test(
  "webgpu prefix-tuning step: same loss and prefix gradients as the CPU",
  opts,
  async () => {
    // Dropout in the model (train mode) and on the prefix: the masks are bit-identical.
    const cfg = { ...TINY, embdPdrop: 0.1, attnPdrop: 0.1, residPdrop: 0.1 };
    const before = gpu!.liveCount();
    const g = await prefixStep(gpu!, cfg);
    const c = await prefixStep(cpu, cfg);
    assert.equal(gpu!.liveCount(), before, "buffers left alive after the step");
    assert.ok(Number.isFinite(c.loss) && c.loss > 0, `CPU loss ${c.loss}`);
    assertCloseScaled([g.loss], [c.loss], "loss", { rtol: 1e-4, atolScale: 0 });
    console.log(`  loss: webgpu ${g.loss}, cpu ${c.loss}`);
    assert.deepEqual(g.grads.map(([n]) => n), c.grads.map(([n]) => n));
    c.grads.forEach(([name, e], i) => {
      let norm = 0;
      for (const v of e) norm += v * v;
      assert.ok(norm > 0, `CPU gradient of ${name} is all zero: the check would be empty`);
      const worst = assertCloseScaled(g.grads[i][1], e, `gradient of ${name}`, {
        rtol: 1e-4,
        atolScale: 1e-5,
      });
      console.log(`  grad ${name}: max |Δ| / max |g| = ${worst.toExponential(2)}`);
    });
  },
);

Deno.test(
  "webgpu prefix-tuning with the frozen model stored as f16: close to the f32 CPU step",
  opts,
  async () => {
    const be = await createWebGPUBackend({ f16Weights: true }).catch(() => null);
    if (!be) {
      console.log("  skipped: this adapter has no shader-f16");
      return;
    }
    const cfg = { ...TINY, embdPdrop: 0.1, attnPdrop: 0.1, residPdrop: 0.1 };
    const g = await prefixStep(be, cfg, true);
    const c = await prefixStep(cpu, cfg);
    assert.equal(be.liveCount(), 0, "buffers left alive");
    // Weights rounded to f16 (relative error ≤ 2⁻¹¹): the step agrees to about 1e-3.
    assertCloseScaled([g.loss], [c.loss], "loss (f16 weights)", { rtol: 2e-3, atolScale: 0 });
    c.grads.forEach(([name, e], i) => {
      const worst = assertCloseScaled(g.grads[i][1], e, `f16: gradient of ${name}`, {
        rtol: 2e-2,
        atolScale: 2e-3,
      });
      console.log(`  f16 grad ${name}: max |Δ| / max |g| = ${worst.toExponential(2)}`);
    });
    // Unfreezing and training an f16 weight is refused with a clear message.
    const m = GPT2.random(TINY, 5, { backend: be }).freeze();
    await m.storeFrozenAsF16();
    const w = m.stateDict().get("transformer.ln_f.weight")!;
    const [gw, mw, vw] = [0, 1, 2].map(() => be.full(w.size, 0, "f32"));
    assert.throws(
      () =>
        be.adamw(w.storage, gw, mw, vw, {
          lr: 1,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: 0,
          step: 1,
        }),
      /read-only f16 weight buffer/,
    );
    for (const b of [gw, mw, vw]) be.dispose(b);
    m.dispose();
  },
);

// ---------------------------------------------------------------- leaks

Deno.test("webgpu training loop: liveCount is flat from step 10 to step 200", opts, async () => {
  const be = gpu!;
  const cfg = gpt2Config({
    vocabSize: 19,
    nPositions: 16,
    nEmbd: 8,
    nHead: 2,
    nLayer: 1,
    embdPdrop: 0,
    attnPdrop: 0,
    residPdrop: 0,
  });
  const baseline = be.liveCount(); // buffers other tests still hold
  const model = GPT2.random(cfg, 3, { backend: be }).freeze().eval();
  const prefix = new PrefixTuning(
    { prefixLen: 2, nLayer: 1, nHead: 2, nEmbd: 8, mid: 8, mlp: true, dropout: 0.1 },
    { seed: 4, backend: be },
  );
  const opt = new AdamW(prefix.parameters(), { lr: 1e-2 });
  const batch = tinyBatch(cfg.vocabSize);
  const live = new Map<number, number>();
  const created = new Map<number, number>();
  const losses: number[] = [];
  const t0 = performance.now();
  for (let step = 1; step <= 200; step++) {
    const lossT = lf.tidy(() => {
      const l = batchLoss(model, prefix, batch, be);
      l.backward();
      return l;
    });
    losses.push(await lossT.item());
    lossT.dispose();
    await clipGradNorm(prefix.parameters(), 1.0);
    opt.step();
    opt.zeroGrad();
    if (step % 10 === 0) {
      live.set(step, be.liveCount());
      created.set(step, be.stats().created);
    }
  }
  const ms = (performance.now() - t0) / 200;
  console.log(
    `  200 steps, ${ms.toFixed(1)} ms/step; live after step 10: ${live.get(10)}, ` +
      `after 200: ${live.get(200)}; pool buffers created: ${created.get(10)} → ${
        created.get(200)
      }; ` +
      `loss ${losses[0].toFixed(4)} → ${losses[199].toFixed(4)}`,
  );
  for (const [step, n] of live) {
    assert.equal(n, live.get(10), `liveCount after step ${step} differs from step 10`);
  }
  assert.equal(created.get(200), created.get(10), "the buffer pool kept growing");
  // Resident after a step: the frozen model, the prefix parameters and AdamW's two moments.
  const expected = baseline + model.parameters().length + 3 * prefix.parameters().length;
  assert.equal(live.get(200), expected, "live buffers besides parameters and moments");
  // The prefix really trains (a frozen random model bounds how far): mean loss of the last
  // 10 steps below that of the first 10.
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const [early, late] = [mean(losses.slice(0, 10)), mean(losses.slice(-10))];
  assert.ok(late < early, `loss did not fall: first 10 steps ${early}, last 10 ${late}`);
  opt.dispose();
  prefix.dispose();
  model.dispose();
  assert.equal(be.liveCount(), baseline, "buffers alive after disposing everything");
});

// ---------------------------------------------------------------- auto selection

/**
 * A script run in a child process (the adapter is cached per process), which replaces
 * `navigator.gpu` before the backend selection first asks for an adapter:
 * - `none`: no WebGPU at all;
 * - `hardware`: the real adapter, reported as a non-fallback "Test Hardware GPU";
 * - `software-by-name`: the real adapter, no fallback flag, named like SwiftShader;
 * - `compat-unnamed`: as `software-by-name`, but a compatibility-mode request gets an adapter
 *   that names nothing (Chromium's OpenGL ES adapter over ANGLE);
 * - `real`: untouched.
 * It prints the chosen backend and the log line as JSON.
 */
const CHILD = `
const mode = Deno.args[0];
const real = navigator.gpu;
function wrap(name, fallback, compatName) {
  return {
    async requestAdapter(o) {
      const a = await real.requestAdapter(o);
      if (a === null) return null;
      const compat = compatName !== undefined && o?.featureLevel === "compatibility";
      const info = compat
        ? { vendor: "", architecture: "", device: "", description: compatName }
        : { vendor: "test", architecture: "", device: "", description: name };
      if (fallback !== undefined) info.isFallbackAdapter = fallback;
      return {
        info,
        limits: a.limits,
        features: a.features,
        requestDevice: (d) => a.requestDevice(d),
      };
    },
  };
}
if (mode === "none") Object.defineProperty(navigator, "gpu", { value: undefined });
if (mode === "hardware") {
  Object.defineProperty(navigator, "gpu", { value: wrap("Test Hardware GPU", false) });
}
if (mode === "software-by-name") {
  Object.defineProperty(navigator, "gpu", { value: wrap("SwiftShader Device (Subzero)") });
}
if (mode === "compat-unnamed") {
  Object.defineProperty(navigator, "gpu", {
    value: wrap("SwiftShader Device (Subzero)", undefined, ""),
  });
}
const { useBackend } = await import(${
  JSON.stringify(new URL("../kernels/select.ts", import.meta.url).href)
});
const { adapterInfo, hardwareAdapterAvailable } = await import(${
  JSON.stringify(new URL("../kernels/webgpu/device.ts", import.meta.url).href)
});
const hw = await hardwareAdapterAvailable();
let line = "";
const b = await useBackend("auto", (s) => line = s);
const adapter = (await adapterInfo())?.name ?? null;
console.log(JSON.stringify({ chosen: b.name, hw, line, adapter }));
Deno.exit(0);
`;

async function autoIn(
  mode: string,
): Promise<{ chosen: string; hw: boolean; line: string; adapter: string | null }> {
  const file = await Deno.makeTempFile({ prefix: "webgpu_auto_", suffix: ".js" });
  try {
    await Deno.writeTextFile(file, CHILD);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-lock", file, mode],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
    assert.ok(
      out.success && text.startsWith("{"),
      `child (${mode}) failed: ${new TextDecoder().decode(out.stderr)}`,
    );
    return JSON.parse(text);
  } finally {
    await Deno.remove(file);
  }
}

Deno.test("useBackend('auto'): wasm on this fallback adapter, webgpu only on hardware", {
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  // This process: the adapter's description decides.
  const hw = await hardwareAdapterAvailable();
  if (info === null) assert.equal(hw, false);
  else {
    assert.equal(
      hw,
      !info.isFallbackAdapter && info.name !== "",
      "hardwareAdapterAvailable vs isFallbackAdapter",
    );
  }
  const prev = getBackend();
  try {
    const lines: string[] = [];
    const b = await useBackend("auto", (s) => lines.push(s));
    console.log(`  auto here: ${lines.join("; ")}`);
    if (hw) assert.equal(b.name, "webgpu", lines.join("; "));
    else assert.notEqual(b.name, "webgpu", lines.join("; "));
  } finally {
    await setBackend(prev);
  }
  // The decision itself, with navigator.gpu replaced in child processes.
  const [none, soft, compat] = await Promise.all([
    autoIn("none"),
    autoIn("software-by-name"),
    autoIn("compat-unnamed"),
  ]);
  assert.equal(none.hw, false);
  assert.equal(none.chosen, "wasm", none.line);
  assert.equal(soft.hw, false, "a SwiftShader-named adapter counts as software");
  assert.equal(soft.chosen, "wasm", soft.line);
  if (info !== null) {
    // A compatibility-mode adapter is taken over a software core one, but one that names
    // nothing is not trusted to be hardware.
    assert.equal(compat.adapter, "", "the compatibility-mode adapter was not chosen");
    assert.equal(compat.hw, false);
    assert.equal(compat.chosen, "wasm", compat.line);
  }
  if (info === null) return; // no real adapter to dress up as hardware
  const [hard, real] = await Promise.all([autoIn("hardware"), autoIn("real")]);
  assert.equal(hard.hw, true);
  assert.equal(hard.chosen, "webgpu", hard.line);
  assert.match(hard.line, /hardware adapter/);
  assert.equal(real.chosen, info.isFallbackAdapter ? "wasm" : "webgpu", real.line);
  console.log(
    `  auto: none → ${none.chosen}, SwiftShader-named → ${soft.chosen}, ` +
      `hardware-flagged → ${hard.chosen}, real '${info.name}' → ${real.chosen}`,
  );
});
