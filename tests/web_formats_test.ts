// The browser path's file handling, checked in Deno against the file-system functions it
// stands in for: streamed safetensors (also chopped into odd chunks, truncated), GPT-2 from a
// stream vs fromPretrained, prefix files as bytes vs saveComputedPrefix / savePeftPrefix, the
// ZIP writer (read back by Python's zipfile), the static server's headers and byte ranges, and
// the Deno-free import graph of the training code the page shares with `deno task train`.
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import { GPT2 } from "../models/gpt2.ts";
import { loadGPT2FromStream } from "../models/gpt2_stream.ts";
import { readSafetensorsStream, type StreamedTensor } from "../models/safetensors_stream.ts";
import { encodeSafetensors, readSafetensors } from "../models/safetensors.ts";
import {
  loadComputedPrefix,
  loadPeftPrefix,
  saveComputedPrefix,
  savePeftPrefix,
} from "../models/prefix.ts";
import {
  computedPrefixFiles,
  parseComputedPrefix,
  parsePeftPrefix,
  peftPrefixFiles,
} from "../models/prefix_format.ts";
import { crc32, zipStore } from "../web/zip.ts";
import { handleWebRequest, type WebServerOptions } from "../web/server.ts";

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
}

function sample(): Uint8Array {
  return encodeSafetensors({
    "b.weight": { dtype: "F32", shape: [3, 5], data: Array.from({ length: 15 }, (_, i) => i / 7) },
    "a.bias": { dtype: "F16", shape: [7], data: [1, -2, 0.5, 65504, -0, 3, 1e-3] },
    "c.ids": { dtype: "I32", shape: [2], data: [-4, 9] },
  }, { format: "pt" });
}

Deno.test("safetensors stream: same tensors as readSafetensors, whatever the chunking", async () => {
  const bytes = sample();
  const whole = readSafetensors(bytes);
  for (const size of [1, 3, 8, 13, 4096]) {
    const got: StreamedTensor[] = [];
    const h = await readSafetensorsStream(chunked(bytes, size), bytes.length, (t) => {
      got.push(t);
    });
    assert.deepEqual(h.metadata, { format: "pt" });
    assert.deepEqual(got.map((t) => t.name).sort(), [...whole.tensors.keys()].sort());
    for (const t of got) {
      const w = whole.tensors.get(t.name)!;
      assert.deepEqual(t.shape, w.shape);
      assert.deepEqual([...t.data], [...w.data]);
    }
  }
});

Deno.test("safetensors stream: a truncated stream names the tensor it ended in", async () => {
  const bytes = sample();
  const cut = bytes.slice(0, bytes.length - 3);
  await assert.rejects(
    () => readSafetensorsStream(chunked(cut, 16), bytes.length, () => {}, { source: "m.st" }),
    /m\.st: stream ended/,
  );
});

Deno.test("GPT-2 from a stream equals GPT2.fromPretrained (shipped miniature)", async () => {
  const dir = new URL("../results/mini/pretrain/model", import.meta.url).pathname;
  const a = await GPT2.fromPretrained(dir, { backend: new lf.CpuBackend() });
  const file = await Deno.open(`${dir}/model.safetensors`);
  const size = (await file.stat()).size;
  let last = 0;
  const b = await loadGPT2FromStream(
    await Deno.readTextFile(`${dir}/config.json`),
    file.readable,
    size,
    { backend: new lf.CpuBackend(), onProgress: (n) => last = n },
  );
  assert.ok(last > 0.99 * size);
  const sa = a.stateDict(), sb = b.stateDict();
  assert.deepEqual([...sa.keys()], [...sb.keys()]);
  for (const [k, t] of sa) {
    const x = await t.data(), y = await sb.get(k)!.data();
    assert.ok(x.every((v, i) => v === y[i]), `${k} differs`);
  }
});

Deno.test("prefix files as bytes: the same files as saveComputedPrefix / savePeftPrefix", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = {
      config: { prefixLen: 3, nLayer: 2, nHead: 2, nEmbd: 4 },
      data: Float32Array.from({ length: 3 * 2 * 2 * 4 }, (_, i) => Math.sin(i)),
    };
    const meta = { base_model: "m", tuner: "prefix", mid_dim: "8" };
    await saveComputedPrefix(`${dir}/ours`, p.data, p.config, meta);
    await savePeftPrefix(`${dir}/peft`, p, "m", 8);
    const ours = computedPrefixFiles(p, meta), peft = peftPrefixFiles(p, "m", 8);
    for (const [sub, files] of [["ours", ours], ["peft", peft]] as const) {
      for (const [name, v] of Object.entries(files)) {
        const disk = await Deno.readFile(`${dir}/${sub}/${name}`);
        const mine = typeof v === "string" ? new TextEncoder().encode(v) : v;
        assert.deepEqual(mine, disk, `${sub}/${name}`);
      }
    }
    const back = parseComputedPrefix(
      ours["prefix_config.json"] as string,
      ours["prefix.safetensors"] as Uint8Array,
    );
    assert.deepEqual(back, await loadComputedPrefix(`${dir}/ours`));
    const backPeft = parsePeftPrefix(
      peft["adapter_config.json"] as string,
      peft["adapter_model.safetensors"] as Uint8Array,
    );
    assert.deepEqual(backPeft, await loadPeftPrefix(`${dir}/peft`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("zipStore: CRC-32 check value; Python's zipfile reads the archive back", async () => {
  assert.deepEqual(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  const files = { "prefix/a.json": '{"x": 1}\n', "prefix/b.bin": new Uint8Array([0, 1, 2, 255]) };
  const zip = zipStore(files);
  const py = "/usr/bin/python3";
  if (!(await Deno.stat(py).then(() => true, () => false))) {
    console.warn("skipped the zipfile read-back: /usr/bin/python3 not found");
    return;
  }
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/p.zip`, zip);
    const r = await new Deno.Command(py, {
      args: [
        "-c",
        "import sys,zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
        `${dir}/p.zip`,
        `${dir}/out`,
      ],
    }).output();
    assert.ok(r.success, new TextDecoder().decode(r.stderr));
    assert.deepEqual(await Deno.readTextFile(`${dir}/out/prefix/a.json`), '{"x": 1}\n');
    assert.deepEqual(await Deno.readFile(`${dir}/out/prefix/b.bin`), files["prefix/b.bin"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("web server: isolation headers, byte ranges, no paths outside its folders", async () => {
  const root = new URL("../", import.meta.url).pathname;
  const o: WebServerOptions = {
    distDir: `${root}web`,
    modelDir: `${root}results/mini/pretrain/model`,
    prefixesDir: `${root}results/mini/ablation`,
  };
  const get = (path: string, headers: Record<string, string> = {}) =>
    handleWebRequest(new Request(`http://x${path}`, { headers }), o);
  const page = await get("/");
  assert.deepEqual(page.status, 200);
  assert.deepEqual(page.headers.get("cross-origin-opener-policy"), "same-origin");
  assert.deepEqual(page.headers.get("cross-origin-embedder-policy"), "require-corp");
  await page.body?.cancel();
  const full = new Uint8Array(await (await get("/model/config.json")).arrayBuffer());
  const part = await get("/model/config.json", { range: "bytes=5-20" });
  assert.deepEqual(part.status, 206);
  assert.deepEqual(part.headers.get("content-range"), `bytes 5-20/${full.length}`);
  assert.deepEqual(new Uint8Array(await part.arrayBuffer()), full.slice(5, 21));
  const tail = await get("/model/config.json", { range: "bytes=-4" });
  assert.deepEqual(new Uint8Array(await tail.arrayBuffer()), full.slice(-4));
  for (
    const bad of ["/model/../deno.json", "/model/%2e%2e/deno.json", "/prefixes/x/prefix/../../a"]
  ) {
    const r = await get(bad);
    assert.deepEqual(r.status, 404, bad);
    await r.body?.cancel();
  }
  const list = await (await get("/prefixes/index.json")).json();
  assert.ok(list.some((p: { name: string }) => p.name === "prefix_L5"));
  const off = await handleWebRequest(new Request("http://x/"), { ...o, isolation: false });
  assert.deepEqual(off.headers.get("cross-origin-opener-policy"), null);
  await off.body?.cancel();
});

Deno.test("the trainer's loss and optimizer step, shared with the page, bundle without Deno.*", async () => {
  // train/e2e_loss.ts and train/step.ts are what `deno task train` and the page's engine both
  // run; a Deno API reaching their runtime import graph would break training in the page.
  const root = new URL("../", import.meta.url).pathname;
  for (const src of ["train/e2e_loss.ts", "train/step.ts"]) {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", "--platform", "browser", "--format", "esm", "--no-lock", src],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(r.success, `deno bundle ${src}: ${new TextDecoder().decode(r.stderr)}`);
    const js = new TextDecoder().decode(r.stdout);
    assert.ok(js.length > 1000, `${src}: bundle unexpectedly small`);
    const at = js.search(/\bDeno\./);
    assert.equal(at, -1, `${src}: bundle uses Deno: …${js.slice(at - 80, at + 80)}…`);
  }
});
