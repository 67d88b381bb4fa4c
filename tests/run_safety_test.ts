/**
 * Run folders cannot be corrupted, reused by accident or left hanging: locks, reuse rules,
 * resume with the run's own config, signals, --max-steps, kills between renames, torn log
 * lines, and data validation at load. A random tiny GPT-2 (with the real tokenizer) and inline
 * E2E lines; no network, no ../shared.
 */
import assert from "node:assert/strict";
import { stringify as toYaml } from "yaml";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import { readE2E } from "../data/e2e.ts";
import { TRAIN_DEFAULTS, type TrainConfig, trainE2E } from "../train/e2e.ts";
import { readLog } from "../train/run.ts";
import { recoverDir } from "../io/atomic.ts";
import { main as trainMain } from "../tasks/train.ts";

const LINES = [
  "name : The Vaults | Type : pub | near : Café Adriatic||The Vaults pub is near Café Adriatic . ",
  "name : The Eagle | Type : coffee shop | area : riverside||The Eagle is a coffee shop by the riverside . ",
  "name : Zizzi | Type : restaurant | food : Italian||Zizzi is an Italian restaurant . ",
  "name : Alimentum | food : Chinese||Alimentum serves Chinese food . ",
];

const quiet = () => {};
const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

/** A folder with a tiny GPT-2 (real tokenizer files) and E2E files of `n` training lines. */
async function fixture(n = 40): Promise<{ tmp: string; cfg: TrainConfig }> {
  const tmp = await Deno.makeTempDir({ prefix: "lf_run_safety_" });
  await Deno.mkdir(`${tmp}/data`);
  const lines = (k: number) =>
    Array.from({ length: k }, (_, i) => LINES[i % LINES.length]).join("\n") + "\n";
  await Deno.writeTextFile(`${tmp}/data/train.txt`, lines(n));
  await Deno.writeTextFile(`${tmp}/data/valid.txt`, lines(4));
  await Deno.writeTextFile(`${tmp}/data/test.txt`, lines(4));
  const m = GPT2.random(gpt2Config({ nLayer: 1, nHead: 2, nEmbd: 16, nPositions: 64 }), 3);
  await m.save(`${tmp}/model`);
  m.dispose();
  await (await GPT2Tokenizer.offlineDefault()).save(`${tmp}/model`);
  const cfg: TrainConfig = {
    ...TRAIN_DEFAULTS,
    model: `${tmp}/model`,
    data: `${tmp}/data`,
    out: `${tmp}/run`,
    backend: "cpu",
    epochs: 2,
    batch_size: 4,
    lr: 0.01,
    mid_dim: 8,
    prefix_dropout: 0.2,
    eval: false,
  };
  return { tmp, cfg };
}

async function withFixture(
  n: number,
  fn: (f: { tmp: string; cfg: TrainConfig }) => Promise<void>,
): Promise<void> {
  const f = await fixture(n);
  try {
    await fn(f);
  } finally {
    await Deno.remove(f.tmp, { recursive: true });
  }
}

Deno.test("an empty or blank-only train.txt is an error within seconds", async () => {
  await withFixture(4, async ({ tmp, cfg }) => {
    for (const text of ["", "\n  \n\n"]) {
      await Deno.writeTextFile(`${tmp}/data/train.txt`, text);
      const t0 = performance.now();
      await assert.rejects(
        () => trainE2E(cfg, { log: quiet }),
        /train\.txt: no MR\|\|reference pair \(the file is empty or blank\)/,
      );
      assert.ok(performance.now() - t0 < 10_000);
      assert.equal(await exists(`${cfg.out}/log.jsonl`), false);
    }
  });
});

Deno.test("a second process on the same run folder is refused, naming its pid", async () => {
  await withFixture(8, async ({ cfg }) => {
    const holder = new Deno.Command("sleep", { args: ["30"] }).spawn();
    try {
      await Deno.mkdir(cfg.out, { recursive: true });
      await Deno.writeTextFile(`${cfg.out}/.lock`, `${holder.pid}\n`);
      await assert.rejects(
        () => trainE2E(cfg, { log: quiet }),
        new RegExp(`is in use by process ${holder.pid}`),
      );
    } finally {
      holder.kill();
      await holder.status;
    }
    // The holder is gone: its stale lock is taken over, and released at the end.
    const r = await trainE2E({ ...cfg, max_steps: 2 }, { log: quiet });
    assert.equal(r.losses.length, 2);
    assert.equal(await exists(`${cfg.out}/.lock`), false);
  });
});

Deno.test("a folder holding a run is reused only with resume or overwrite", async () => {
  await withFixture(8, async ({ cfg }) => {
    const c = { ...cfg, max_steps: 2 };
    await trainE2E(c, { log: quiet });
    await assert.rejects(
      () => trainE2E(c, { log: quiet }),
      /already holds a finished run: pass --resume to reuse it or --overwrite/,
    );
    const again = await trainE2E({ ...c, max_steps: 3 }, { log: quiet, overwrite: true });
    assert.equal(again.losses.length, 3);
    const log = await readLog(`${cfg.out}/log.jsonl`);
    assert.equal(log.filter((r) => typeof r.step === "number").length, 3);
  });
});

Deno.test("--resume reads the run's config.yaml and refuses a changed lr unless --force", async () => {
  await withFixture(16, async ({ tmp, cfg }) => {
    await Deno.writeTextFile(`${tmp}/cfg.yaml`, toYaml({ ...cfg, save_every: 1 }));
    // Interrupted run, as a user would start it.
    const partial = await trainE2E({ ...cfg, save_every: 1 }, { log: quiet, stopAfterSteps: 3 });
    assert.ok(partial.interrupted);
    const err: string[] = [];
    const origError = console.error;
    console.error = (s: string) => err.push(s);
    try {
      // Only --out and --resume: the run's own config.yaml, not the default config.
      assert.equal(await trainMain(["--out", cfg.out, "--resume", "--lr", "0.5"]), 2);
      assert.match(err.join("\n"), /'lr' was 0\.01, now 0\.5/);
      assert.equal(await trainMain(["--out", cfg.out, "--resume", "--batch-size", "2"]), 2);
      assert.match(err.join("\n"), /'batch_size' was 4, now 2/);
      assert.equal(await trainMain(["--out", cfg.out, "--resume"]), 0, err.join("\n"));
    } finally {
      console.error = origError;
    }
    const summary = JSON.parse(await Deno.readTextFile(`${cfg.out}/summary.json`));
    assert.equal(summary.model, cfg.model);
    assert.equal(summary.steps, 8);
    // --force accepts a change (on a finished run: nothing left to train).
    const forced = await trainE2E({ ...cfg, lr: 0.5, save_every: 1 }, {
      log: quiet,
      resume: true,
      force: true,
    });
    assert.equal(forced.losses.length, 8);
  });
});

async function waitForSteps(log: string, n: number, child: Deno.ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const text = await Deno.readTextFile(log).catch(() => "");
    if (text.split("\n").filter((l) => l.includes('"step"')).length >= n) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error(`${log}: ${n} steps not reached`);
}

for (const [sig, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  Deno.test(`${sig} mid-epoch writes a checkpoint; --resume reaches the uninterrupted loss`, async () => {
    await withFixture(48, async ({ tmp, cfg }) => {
      const full = await trainE2E({ ...cfg, out: `${tmp}/full` }, { log: quiet });
      await Deno.writeTextFile(`${tmp}/cfg.yaml`, toYaml(cfg));
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../tasks/train.ts", import.meta.url).pathname,
          "--config",
          `${tmp}/cfg.yaml`,
        ],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      await waitForSteps(`${cfg.out}/log.jsonl`, 4, child);
      child.kill(sig);
      const out = await child.output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, code, stderr);
      assert.match(stderr, /checkpoint saved: continue with --resume/);
      const state = JSON.parse(await Deno.readTextFile(`${cfg.out}/checkpoint/state.json`));
      const logged = (await readLog(`${cfg.out}/log.jsonl`)).filter((r) =>
        typeof r.step === "number"
      );
      assert.equal(state.step, logged.length);
      assert.ok(state.step < full.losses.length, `stopped at ${state.step}`);
      const rest = await trainE2E(cfg, { log: quiet, resume: true });
      assert.deepEqual(rest.losses, full.losses);
      assert.equal(rest.losses.at(-1), full.losses.at(-1));
      assert.deepEqual(rest.validLosses, full.validLosses);
    });
  });
}

Deno.test("--max-steps ends with a checkpoint and a validation loss", async () => {
  await withFixture(40, async ({ cfg }) => {
    const r = await trainE2E({ ...cfg, max_steps: 3 }, { log: quiet });
    assert.equal(r.losses.length, 3);
    const state = JSON.parse(await Deno.readTextFile(`${cfg.out}/checkpoint/state.json`));
    assert.equal(state.step, 3);
    assert.equal(state.finished, true);
    const valid = (await readLog(`${cfg.out}/log.jsonl`)).filter((x) => "valid_loss" in x);
    assert.deepEqual(valid.map((x) => x.valid_step), [3]);
    assert.equal(r.validLosses.length, 1);
  });
});

Deno.test("a kill between the checkpoint renames, leftovers and a torn log line resume exactly", async () => {
  await withFixture(24, async ({ tmp, cfg }) => {
    const full = await trainE2E({ ...cfg, out: `${tmp}/full` }, { log: quiet });
    const part = await trainE2E({ ...cfg, save_every: 2 }, { log: quiet, stopAfterSteps: 5 });
    assert.ok(part.interrupted);
    // As a kill after "checkpoint → checkpoint.old-*" and before "tmp → checkpoint" leaves it,
    // plus a half-written temporary folder and a torn last log line.
    await Deno.rename(`${cfg.out}/checkpoint`, `${cfg.out}/checkpoint.old-4242-0`);
    await Deno.mkdir(`${cfg.out}/checkpoint.tmp-4242-1`);
    await Deno.writeTextFile(`${cfg.out}/checkpoint.tmp-4242-1/state.json`, "{");
    await Deno.writeTextFile(`${cfg.out}/log.jsonl`, '{"step":6,"epo', { append: true });
    await Deno.writeTextFile(`${cfg.out}/summary.json.tmp-4242-2`, "{");
    const rest = await trainE2E({ ...cfg, save_every: 2 }, { log: quiet, resume: true });
    assert.deepEqual(rest.losses, full.losses);
    const names = [...Deno.readDirSync(cfg.out)].map((e) => e.name);
    assert.ok(!names.some((n) => n.includes(".old-") || n.includes(".tmp-")), names.join());
  });
});

Deno.test("recoverDir restores the newest .old-* and removes the rest", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${tmp}/ck.old-1-0`);
    await Deno.writeTextFile(`${tmp}/ck.old-1-0/a`, "old");
    await new Promise((r) => setTimeout(r, 20));
    await Deno.mkdir(`${tmp}/ck.old-2-0`);
    await Deno.writeTextFile(`${tmp}/ck.old-2-0/a`, "newer");
    await Deno.mkdir(`${tmp}/ck.tmp-3-0`);
    const done = await recoverDir(`${tmp}/ck`);
    assert.equal(done.length, 3);
    assert.equal(await Deno.readTextFile(`${tmp}/ck/a`), "newer");
    assert.deepEqual([...Deno.readDirSync(tmp)].map((e) => e.name), ["ck"]);
    assert.deepEqual(await recoverDir(`${tmp}/ck`), []);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("an example longer than the model takes names file and line, or is cut if asked", async () => {
  await withFixture(8, async ({ tmp, cfg }) => {
    const long = `name : X||${"very long words ".repeat(40)}`;
    await Deno.writeTextFile(`${tmp}/data/train.txt`, `${LINES[0]}\n\n${LINES[1]}\n${long}\n`);
    await assert.rejects(
      () => trainE2E(cfg, { log: quiet }),
      /train\.txt:4: example is \d+ tokens, longer than the 59 the model takes/,
    );
    assert.equal(await exists(cfg.out), false);
    const r = await trainE2E({ ...cfg, truncate_long: true, max_steps: 1 }, { log: quiet });
    assert.equal(r.losses.length, 1);
  });
});

Deno.test("invalid UTF-8 is an error naming file, line and byte", async () => {
  await withFixture(4, async ({ tmp, cfg }) => {
    const enc = new TextEncoder();
    const bytes = new Uint8Array([
      ...enc.encode(`${LINES[0]}\nname : A||ab`),
      0xff,
      ...enc.encode("c\n"),
    ]);
    await Deno.writeFile(`${tmp}/data/train.txt`, bytes);
    const at = enc.encode(`${LINES[0]}\nname : A||ab`).length;
    await assert.rejects(
      () => readE2E(`${tmp}/data/train.txt`),
      new RegExp(
        `train\\.txt:2: invalid UTF-8 byte 0xff at column 13 \\(byte ${at} of the file\\)`,
      ),
    );
    await assert.rejects(() => trainE2E(cfg, { log: quiet }), /train\.txt:2: invalid UTF-8/);
    // Overlong encodings and lone surrogates are invalid too.
    for (const bad of [[0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
      await Deno.writeFile(`${tmp}/data/valid.txt`, new Uint8Array([0x61, ...bad]));
      await assert.rejects(() => readE2E(`${tmp}/data/valid.txt`), /valid\.txt:1: invalid UTF-8/);
    }
  });
});

Deno.test("off a GPU, the estimated time per epoch is printed before training starts", async () => {
  await withFixture(8, async ({ cfg }) => {
    const lines: string[] = [];
    const r = await trainE2E({ ...cfg, max_steps: 1 }, {
      log: (s) => lines.push(s),
      estimateEpoch: true,
    });
    const at = lines.findIndex((l) => /one epoch \(2 steps\) takes about/.test(l));
    assert.ok(at >= 0, lines.join("\n"));
    assert.match(lines[at], /runs on the cpu backend, not a GPU/);
    assert.ok(at < lines.findIndex((l) => l.includes("step 1/1")), lines.join("\n"));
    // The probe step changes nothing: same loss as without it.
    const plain = await trainE2E({ ...cfg, max_steps: 1, out: `${cfg.out}2` }, { log: quiet });
    assert.deepEqual(r.losses, plain.losses);
  });
});

Deno.test("the progress bar redraws in place and clears its line before other messages", async () => {
  const { ProgressBar } = await import("../train/loop.ts");
  let screen = "";
  const lines: string[] = [];
  const bar = new ProgressBar(true, (s) => lines.push(s), (s) => (screen += s));
  bar.update("step 1/2 loss 2.0000", 0.5, 61, 1);
  bar.update("step 2/2 loss 1.0000", 1, 0, 2);
  bar.clear();
  assert.equal(
    screen,
    "\r[############------------] step 1/2 loss 2.0000 ETA 1m01s\x1b[K" +
      "\r[########################] step 2/2 loss 1.0000 ETA 0m00s\x1b[K\r\x1b[K",
  );
  assert.equal(lines.length, 0);
  // Not a terminal: plain lines (the first, every 10th and the last), no control characters.
  const plain = new ProgressBar(false, (s) => lines.push(s), () => assert.fail("no tty writes"));
  for (let i = 1; i <= 12; i++) plain.update(`step ${i}/12`, i / 12, 1, i);
  assert.deepEqual(lines.map((l) => l.match(/step \d+/)![0]), ["step 1", "step 10", "step 12"]);
});
