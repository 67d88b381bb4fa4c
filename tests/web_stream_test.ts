// Pieces of the browser path that need no browser: generation's per-step callback (what the page
// streams), and fetchStream resuming a broken download with a range request.
import assert from "node:assert/strict";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { generate } from "../models/generate.ts";
import { fetchStream } from "../web/fetch_stream.ts";
import { f64 } from "./gradcheck.ts";

function tiny(): GPT2 {
  const cfg = gpt2Config({
    nLayer: 2,
    nEmbd: 16,
    nHead: 2,
    vocabSize: 23,
    nPositions: 64,
    initializerRange: 0.6,
    eosTokenId: 0,
  });
  return GPT2.random(cfg, 5, { backend: f64 }).eval();
}

Deno.test("generate onStep: one call per step; greedy's last call is the result", async () => {
  const model = tiny();
  for (const numBeams of [1, 3]) {
    const calls: number[][][] = [];
    const [out] = await generate(model, [[4, 5, 6]], {
      maxNewTokens: 12,
      numBeams,
      minNewTokens: 2,
      onStep: (t) => calls.push(t.map((r) => [...r])),
    });
    assert.ok(calls.length >= 2 && calls.length <= 12, `${calls.length} calls`);
    calls.forEach((c, i) => {
      assert.equal(c.length, 1);
      assert.equal(c[0].length, i + 1, `step ${i}: the best beam has ${i + 1} tokens`);
    });
    const plain =
      (await generate(model, [[4, 5, 6]], { maxNewTokens: 12, numBeams, minNewTokens: 2 }))[0];
    assert.deepEqual(out, plain, "the callback does not change the result");
    if (numBeams === 1) {
      // The last step either appended the final token or picked EOS (then it is not shown).
      assert.deepEqual(calls.at(-1), [out]);
    }
  }
  model.dispose();
});

Deno.test("fetchStream: a body that breaks off resumes with a range request", async () => {
  const data = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 7) & 255);
  const ranges: string[] = [];
  let first = true;
  const ac = new AbortController();
  let port = 0;
  await new Promise<void>((ready) => {
    Deno.serve({
      port: 0,
      hostname: "127.0.0.1",
      signal: ac.signal,
      onListen: (a) => {
        port = a.port;
        ready();
      },
    }, (req) => {
      const range = req.headers.get("range");
      if (range) {
        ranges.push(range);
        const start = Number(/bytes=(\d+)-/.exec(range)![1]);
        return new Response(data.slice(start), {
          status: 206,
          headers: { "content-range": `bytes ${start}-${data.length - 1}/${data.length}` },
        });
      }
      if (!first) return new Response(data);
      first = false;
      // Half the bytes, then the connection fails.
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          c.enqueue(data.slice(0, 40_000));
          await new Promise((r) => setTimeout(r, 20));
          c.error(new Error("connection lost"));
        },
      });
      return new Response(body, { headers: { "content-length": String(data.length) } });
    });
  });
  try {
    const s = await fetchStream(`http://127.0.0.1:${port}/w.bin`);
    assert.equal(s.size, data.length);
    const parts: Uint8Array[] = [];
    for await (const c of s.chunks) parts.push(c);
    const got = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      got.set(p, at);
      at += p.length;
    }
    assert.deepEqual(got, data);
    assert.equal(ranges.length, 1);
    assert.match(ranges[0], /^bytes=\d+-$/);
  } finally {
    ac.abort();
  }
});
