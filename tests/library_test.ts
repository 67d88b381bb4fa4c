/**
 * The library as a user sees it: prefix-tuning, saving, reloading and generating with nothing
 * but `mod.ts` (no task, no internal module), on the shipped miniature GPT-2.
 */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";

const MINI = new URL("../results/mini/pretrain/model", import.meta.url).pathname;

Deno.test("mod.ts alone: prefix-tune the miniature, save, reload (ours and peft), generate", async () => {
  const model = await lf.GPT2.fromPretrained(MINI); // evaluation mode, like Hugging Face
  const tok = await lf.GPT2Tokenizer.fromPretrained(MINI);
  model.freeze();
  const prefix = lf.PrefixTuning.forModel(model, { seed: 1 }); // the paper's L = 5, MLP 512
  const opt = new lf.AdamW(prefix.parameters(), { lr: 3e-3, weightDecay: 0 });

  // One thing the frozen model does not do by itself: answer this E2E prompt (the MR, then
  // <|endoftext|>, as in training) with this sentence.
  const prompt = tok.encode(" name : The Eagle | Type : pub | food : Thai <|endoftext|>");
  const target = tok.encode(" Visit The Eagle for Thai food today !");
  const ids = [[...prompt, ...target, tok.eosTokenId]];
  const labels = [[...prompt.map(() => -100), ...target, tok.eosTokenId]];
  const greedy = { maxNewTokens: target.length + 1, eosTokenId: tok.eosTokenId };
  const [before] = await lf.generate(model, [prompt], { ...greedy, prefix });
  assert.notDeepEqual(before.slice(0, target.length), target);

  const losses: number[] = [];
  for (let step = 0; step < 50; step++) {
    const loss = lf.tidy(() => {
      const l = model.loss(ids, labels, { past: prefix.past(1) });
      l.backward();
      return l;
    });
    losses.push(await loss.item());
    loss.dispose();
    opt.step();
    opt.zeroGrad();
  }
  assert.ok(losses.at(-1)! < losses[0] / 4, `loss ${losses[0]} → ${losses.at(-1)}`);
  prefix.eval();
  const [after] = await lf.generate(model, [prompt], { ...greedy, prefix });
  // Steered towards the target (the first tokens; later ones may still be near ties after 50
  // steps, where the rounding of one matmul library or another decides).
  assert.deepEqual(after.slice(0, 3), target.slice(0, 3));
  assert.notDeepEqual(after, before);
  const expected = await lf.generateTexts(
    { model, tokenizer: tok, prefix: await prefix.toComputed(), modelDir: MINI, prefixDir: null },
    [prompt],
    { numBeams: 1, maxNewTokens: 12 },
  );

  const dir = await Deno.makeTempDir();
  try {
    await prefix.export(`${dir}/run/prefix`, { base_model: MINI });
    await prefix.savePeft(`${dir}/run/peft`, MINI);
    // Reloaded from disk: our format, peft's format, and the run folder holding both.
    for (const where of ["run", "run/prefix", "run/peft"]) {
      const ck = await lf.loadCheckpoint(`${dir}/${where}`);
      const [text] = await lf.generateTexts(ck, [prompt], { numBeams: 1, maxNewTokens: 12 });
      assert.equal(text, expected[0], where);
      assert.match(text, /^Visit The Eagle/, where);
      ck.model.dispose();
    }
    // The saved prefix steers a batch row by row: with and without it, in one call.
    const saved = await lf.loadPrefix(`${dir}/run/peft`);
    const none = lf.PrefixTuning.forModel(model, { seed: 2 });
    const rows = await lf.generate(model, [prompt, prompt], { ...greedy, prefix: [saved, none] });
    assert.deepEqual(rows[0], after);
    assert.notDeepEqual(rows[1], after);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  prefix.dispose();
  opt.dispose();
  model.dispose();
});

Deno.test("mod.ts picks the fastest backend it can by default; LF_BACKEND overrides", async () => {
  const run = async (env: Record<string, string>) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import * as lf from "${new URL("../mod.ts", import.meta.url).href}";
        console.log(lf.getBackend().name);`,
      ],
      env,
      stderr: "null",
    }).output();
    return new TextDecoder().decode(out.stdout).trim();
  };
  const simd = WebAssembly.validate(
    new Uint8Array([
      0,
      97,
      115,
      109,
      1,
      0,
      0,
      0,
      1,
      5,
      1,
      96,
      0,
      1,
      123,
      3,
      2,
      1,
      0,
      10,
      22,
      1,
      20,
      0,
      253,
      12,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      11,
    ]),
  );
  const auto = await run({ LF_BACKEND: "auto" });
  if (simd) {
    assert.notEqual(
      auto,
      "cpu",
      "with WebAssembly SIMD the default must not be the reference backend",
    );
  }
  assert.equal(await run({ LF_BACKEND: "cpu" }), "cpu");
});

Deno.test("mod.ts imported from another folder: the offline tokenizer works (no import map there)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import * as lf from "${new URL("../mod.ts", import.meta.url).href}";
        const tok = await lf.GPT2Tokenizer.offlineDefault();
        console.log(tok.encode(" The Eagle").join(","));`,
      ],
      cwd: dir,
      env: { LF_BACKEND: "cpu" },
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, err);
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "383,18456");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
