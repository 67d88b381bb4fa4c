/** Library loading for generation: eval mode, every checkpoint form, decoding of MRs. */
import assert from "node:assert/strict";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { generateWithScores } from "../models/generate.ts";
import { PrefixTuning } from "../models/prefix.ts";
import { generateForMRs, loadCheckpoint } from "../models/checkpoint.ts";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import { main as generateMain } from "../tasks/generate.ts";

const CFG = gpt2Config({ nLayer: 1, nEmbd: 8, nHead: 2, nPositions: 64 }); // dropout 0.1

Deno.test("fromPretrained returns eval mode: two identical beam searches give identical scores", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await GPT2.random(CFG, 4).save(dir);
    const model = await GPT2.fromPretrained(dir);
    assert.equal(model.training, false);
    const run = () => generateWithScores(model, [[10, 20, 30]], { maxNewTokens: 8, numBeams: 3 });
    assert.deepEqual(await run(), await run());
    model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadCheckpoint: run folder, prefix folder, peft folder give the same outputs; fine-tuned model", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const base = GPT2.random(CFG, 4);
    await base.save(`${dir}/base`);
    const tok = await GPT2Tokenizer.offlineDefault();
    await tok.save(`${dir}/base`);
    const prefix = PrefixTuning.forModel(base, { prefixLen: 2, mid: 4, seed: 9 });
    await prefix.export(`${dir}/run/prefix`, { base_model: `${dir}/base` });
    await prefix.savePeft(`${dir}/run/peft`, `${dir}/base`);
    const mrs = ["name : The Eagle | Type : pub", "name : Aromi | food : Chinese"];
    const opts = { numBeams: 2, maxNewTokens: 6 };
    const outs: string[][] = [];
    for (const where of ["run", "run/prefix", "run/peft"]) {
      const ck = await loadCheckpoint(`${dir}/${where}`);
      assert.ok(ck.prefix, where);
      assert.equal(ck.model.training, false);
      outs.push(await generateForMRs(ck, mrs, opts));
      ck.model.dispose();
    }
    assert.equal(outs[0].length, 2);
    assert.deepEqual(outs[1], outs[0]);
    assert.deepEqual(outs[2], outs[0]);
    // The CLI takes the peft folder that training writes, and decodes the same lines.
    await Deno.mkdir(`${dir}/data`);
    await Deno.writeTextFile(
      `${dir}/data/test.txt`,
      mrs.map((m) => `${m}||A reference .\n`).join(""),
    );
    const code = await generateMain([
      "--checkpoint",
      `${dir}/run/peft`,
      "--data",
      `${dir}/data`,
      "--beams",
      "2",
      "--max-new-tokens",
      "6",
      "--backend",
      "cpu",
      "--out",
      `${dir}/out/test.txt`,
    ]);
    assert.equal(code, 0);
    assert.equal(
      await Deno.readTextFile(`${dir}/out/test.txt`),
      outs[0].map((o) => o + "\n").join(""),
    );
    // A plain (or fine-tuned) model folder: no prefix, other outputs.
    const plain = await loadCheckpoint(`${dir}/base`);
    assert.equal(plain.prefix, null);
    assert.notDeepEqual(await generateForMRs(plain, mrs, opts), outs[0]);
    // A prefix for another model size is refused, naming both.
    const other = GPT2.random(gpt2Config({ nLayer: 2, nEmbd: 8, nHead: 2 }), 1);
    await other.save(`${dir}/other`);
    await tok.save(`${dir}/other`);
    await assert.rejects(
      () => loadCheckpoint(`${dir}/run`, { baseModel: `${dir}/other` }),
      /prefix is for n_layer 1, n_embd 8, n_head 2, but .*other has 2, 8, 2/,
    );
    // A model folder without a tokenizer is an error, not a silent fallback.
    await Deno.remove(`${dir}/other/vocab.json`);
    await assert.rejects(() => loadCheckpoint(`${dir}/other`), /no vocab\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
