/**
 * `deno task serve` against a real server on loopback: every endpoint, every bad input with its
 * status (the server keeps serving), cancellation when the client goes away, graceful shutdown
 * of the task on SIGTERM, and mixed-prefix concurrent requests equal to each request decoded
 * alone by `generate` (token ids compared), on a tiny random GPT-2 and on the shipped miniature
 * with its trained prefixes.
 */
import assert from "node:assert/strict";
import {
  decodeAlone,
  metricValue,
  MINI_ABLATION,
  MINI_MODEL,
  parseSSE,
  post,
  type Served,
  serveFolder,
  type TinyFixture,
  writeTinyFixture,
} from "./serve_fixtures.ts";
import { E2E_DECODING, e2ePrompt } from "../serve/e2e.ts";
import { encodePrompt } from "../data/e2e.ts";
import { loadComputedPrefix } from "../models/prefix.ts";

const root = await Deno.makeTempDir({ prefix: "lf-serve-test-" });
let fx: TinyFixture;
const fixture = async () => (fx ??= await writeTinyFixture(root));

async function withServer(
  opts: Parameters<typeof serveFolder>[2],
  fn: (s: Served, url: string) => Promise<void>,
): Promise<void> {
  const f = await fixture();
  const s = await serveFolder(f.modelDir, f.prefixesDir, opts);
  try {
    await fn(s, s.server.url);
  } finally {
    await s.server.shutdown(2000);
    s.model.dispose();
  }
}

const health = async (url: string) => {
  const r = await fetch(`${url}/health`);
  await r.body?.cancel();
  return r.status;
};

Deno.test("serve: endpoints (models, health, metrics, page, completions, e2e, streaming, prefixes)", async () => {
  await withServer({ apiKey: "sesame" }, async ({ tokenizer }, url) => {
    // models: base plus the three prefixes of the folder, named by folder, with size and shape
    const models = await (await fetch(`${url}/v1/models`)).json();
    const byId = Object.fromEntries(models.data.map((m: { id: string }) => [m.id, m]));
    assert.deepEqual(Object.keys(byId).sort(), ["alpha", "base", "beta", "gamma"]);
    assert.equal(byId.alpha.prefix_length, 3);
    assert.equal(byId.beta.format, "peft");
    assert.equal(byId.gamma.prefix_length, 2);
    assert.equal(byId.alpha.bytes, 4 * 3 * 2 * 2 * 16);
    assert.equal(byId.alpha.n_layer, 2);

    assert.equal(await health(url), 200);
    const page = await fetch(`${url}/`);
    assert.match(await page.text(), /<select id="prefix">/);
    const js = await fetch(`${url}/app.js`);
    assert.match(js.headers.get("content-type")!, /javascript/);
    for (const res of [page, js]) { // cross-origin isolated, as the browser demo's page
      assert.equal(res.headers.get("cross-origin-opener-policy"), "same-origin");
      assert.equal(res.headers.get("cross-origin-embedder-policy"), "require-corp");
    }
    assert.match(await js.text(), /\/v1\/e2e/);

    // completions: a list of prompts, usage counts, finish reasons
    const prompts = [" The cat", " name : Aromi | Type : pub <|endoftext|>"];
    const r = await post(`${url}/v1/completions`, {
      model: "alpha",
      prompt: prompts,
      max_tokens: 7,
    });
    assert.equal(r.status, 200);
    const choices = r.body.choices as {
      text: string;
      index: number;
      token_ids: number[];
      finish_reason: string;
    }[];
    assert.equal(choices.length, 2);
    assert.equal(r.body.object, "text_completion");
    assert.equal(r.body.model, "alpha");
    const promptTokens = prompts.reduce((n, p) => n + tokenizer.encode(p).length, 0);
    const completion = choices.reduce((n, c) => n + c.token_ids.length, 0);
    assert.deepEqual(r.body.usage, {
      prompt_tokens: promptTokens,
      completion_tokens: completion,
      total_tokens: promptTokens + completion,
    });
    for (const c of choices) {
      assert.equal(c.text, tokenizer.decode(c.token_ids));
      assert.ok(c.finish_reason === "length" ? c.token_ids.length === 7 : c.token_ids.length < 7);
    }

    // stop strings cut the text
    const full = choices[0].text;
    if (full.length > 2) {
      const stop = full.slice(1, 2);
      const s = await post(`${url}/v1/completions`, {
        model: "alpha",
        prompt: prompts[0],
        max_tokens: 7,
        stop,
      });
      const c = (s.body.choices as { text: string; finish_reason: string }[])[0];
      assert.equal(c.text, full.slice(0, full.indexOf(stop)));
      assert.equal(c.finish_reason, "stop");
    }

    // streaming: the deltas add up to the non-streamed text; usage, then [DONE]
    const st = await fetch(`${url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "beta", prompt: prompts[1], max_tokens: 9, stream: true }),
    });
    assert.equal(st.headers.get("content-type"), "text/event-stream");
    const events = parseSSE(await st.text());
    assert.equal(events.at(-1), "[DONE]");
    const data = events.slice(0, -1) as {
      choices: { text: string; finish_reason: string | null }[];
      usage?: unknown;
      lf_batch?: { rows: number };
    }[];
    const streamed = data.flatMap((e) => e.choices.map((c) => c.text)).join("");
    const ns = await post(`${url}/v1/completions`, {
      model: "beta",
      prompt: prompts[1],
      max_tokens: 9,
    });
    assert.equal(streamed, (ns.body.choices as { text: string }[])[0].text);
    assert.ok(data.some((e) => e.lf_batch && e.lf_batch.rows >= 1));
    assert.ok(data.at(-1)!.usage);

    // e2e: fields → the paper's prompt; greedy and beam; streamed output equals the answer
    const mrFields = {
      name: "The Vaults",
      eatType: "pub",
      priceRange: "£20-25",
      familyFriendly: true,
    };
    const e = await post(`${url}/v1/e2e`, { model: "gamma", ...mrFields, max_tokens: 6 });
    assert.equal(e.status, 200);
    const ec = (e.body.choices as { mr: string; output: string; text: string }[])[0];
    assert.equal(
      ec.mr,
      "name : The Vaults | Type : pub | price : £ 20 - 25 | family friendly : yes",
    );
    assert.equal(ec.output, ec.text);
    const es = await fetch(`${url}/v1/e2e`, {
      method: "POST",
      body: JSON.stringify({
        model: "gamma",
        fields: mrFields,
        max_tokens: 6,
        num_beams: 1,
        stream: true,
      }),
    });
    const eev = parseSSE(await es.text());
    const last = eev.filter((x) => x !== "[DONE]").map((x) =>
      x as { choices: { output?: string }[] }
    )
      .flatMap((x) => x.choices).find((c) => c.output !== undefined)!;
    const eg = await post(`${url}/v1/e2e`, {
      model: "gamma",
      ...mrFields,
      max_tokens: 6,
      num_beams: 1,
    });
    assert.equal(last.output, (eg.body.choices as { output: string }[])[0].output);

    // prefixes: add needs the key; a prefix of another shape is refused; delete
    const add = { name: "spare", path: fx.spareDir };
    assert.equal((await post(`${url}/v1/prefixes`, add)).status, 401);
    const auth = { authorization: "Bearer sesame" };
    assert.equal(
      (await post(`${url}/v1/prefixes`, add, { authorization: "Bearer nope" })).status,
      401,
    );
    const added = await post(`${url}/v1/prefixes`, add, auth);
    assert.equal(added.status, 201);
    assert.equal(added.body.prefix_length, 4);
    assert.equal((await post(`${url}/v1/prefixes`, add, auth)).status, 409);
    const wrong = await post(`${url}/v1/prefixes`, { name: "wide", path: fx.otherShapeDir }, auth);
    assert.equal(wrong.status, 400);
    assert.match(
      (wrong.body.error as { message: string }).message,
      /n_layer 3.*served model has n_layer 2/,
    );
    const missing = await post(
      `${url}/v1/prefixes`,
      { name: "nothing", path: `${root}/nowhere` },
      auth,
    );
    assert.equal(missing.status, 400);
    const use = await post(`${url}/v1/completions`, {
      model: "spare",
      prompt: " Hi",
      max_tokens: 2,
    });
    assert.equal(use.status, 200);
    assert.equal((await post(`${url}/v1/prefixes/spare`, undefined, {}, "DELETE")).status, 401);
    assert.equal((await post(`${url}/v1/prefixes/spare`, undefined, auth, "DELETE")).status, 200);
    assert.equal((await post(`${url}/v1/prefixes/spare`, undefined, auth, "DELETE")).status, 404);
    const gone = await post(`${url}/v1/completions`, {
      model: "spare",
      prompt: " Hi",
      max_tokens: 2,
    });
    assert.equal(gone.status, 404);

    // metrics: Prometheus text with the counters
    const m = await (await fetch(`${url}/metrics`)).text();
    assert.match(m, /# TYPE lf_requests_total counter/);
    assert.ok(metricValue(m, 'lf_requests_total{endpoint="/v1/completions",status="200"}') >= 4);
    assert.ok(metricValue(m, 'lf_requests_total{endpoint="/v1/prefixes",status="401"}') >= 2);
    assert.equal(metricValue(m, "lf_queue_depth"), 0);
    assert.ok(metricValue(m, "lf_batch_rows_count") > 0);
    assert.ok(metricValue(m, "lf_generated_tokens_total") > 0);
    assert.ok(metricValue(m, "lf_request_duration_seconds_count") > 0);
    assert.ok(Number.isFinite(metricValue(m, "lf_tokens_per_second")));
  });
});

Deno.test("serve: every bad input gets its status and a JSON error; the server keeps serving", async () => {
  await withServer(
    { maxBodyBytes: 4096, maxTokensCap: 100, maxRows: 1, maxQueue: 2 },
    async (_s, url) => {
      const cases: [string, unknown, number, RegExp][] = [
        ["malformed JSON", "{bad", 400, /malformed JSON/],
        ["not an object", "[1, 2]", 400, /JSON object/],
        [
          "invalid UTF-8",
          new Uint8Array([0x7b, 0xff, 0x7d]) as Uint8Array<ArrayBuffer>,
          400,
          /malformed/,
        ],
        ["no model", { prompt: "x" }, 400, /"model"/],
        ["unknown prefix", { model: "nope", prompt: "x" }, 404, /unknown model "nope"/],
        ["no prompt", { model: "base" }, 400, /"prompt"/],
        ["empty prompt", { model: "base", prompt: "" }, 400, /empty/],
        ["prompt of numbers", { model: "base", prompt: [1, 2] }, 400, /"prompt"/],
        [
          "max_tokens over the cap",
          { model: "base", prompt: "x", max_tokens: 101 },
          400,
          /max_tokens/,
        ],
        [
          "max_tokens not an integer",
          { model: "base", prompt: "x", max_tokens: 2.5 },
          400,
          /max_tokens/,
        ],
        [
          "max_tokens over n_positions",
          { model: "alpha", prompt: " a".repeat(60), max_tokens: 70 },
          400,
          /n_positions 128/,
        ],
        [
          "stream with beams",
          { model: "base", prompt: "x", num_beams: 2, stream: true },
          400,
          /greedy/,
        ],
        ["bad stop", { model: "base", prompt: "x", stop: [""] }, 400, /"stop"/],
        ["bad stream", { model: "base", prompt: "x", stream: "yes" }, 400, /"stream"/],
        [
          "sampling",
          { model: "base", prompt: "x", temperature: 0.7 },
          400,
          /not supported.*temperature/,
        ],
        ["several choices", { model: "base", prompt: "x", n: 2 }, 400, /not supported.*"n"/],
        ["body over the limit", { model: "base", prompt: "x".repeat(5000) }, 413, /exceeds 4096/],
      ];
      for (const [what, body, status, message] of cases) {
        const res = await fetch(`${url}/v1/completions`, {
          method: "POST",
          body: typeof body === "string" || body instanceof Uint8Array
            ? body as string | Uint8Array<ArrayBuffer>
            : JSON.stringify(body),
        });
        assert.equal(res.status, status, what);
        assert.match(res.headers.get("content-type")!, /application\/json/, what);
        const err = (await res.json()).error;
        assert.match(err.message, message, what);
        assert.equal(err.code, status, what);
        assert.equal(await health(url), 200, `serving after ${what}`);
      }
      // A body without a declared length (chunked) is cut at the limit too.
      const chunked = new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode(" ".repeat(1000)));
          c.close();
        },
      });
      const big = await fetch(`${url}/v1/e2e`, { method: "POST", body: chunked });
      assert.equal(big.status, 413);
      await big.body?.cancel();
      // e2e without an MR, unknown endpoint, wrong method
      assert.equal((await post(`${url}/v1/e2e`, { model: "alpha" })).status, 400);
      assert.equal((await post(`${url}/v1/e2e`, { model: "alpha", name: ["x"] })).status, 400);
      assert.equal((await post(`${url}/v1/nothing`, {})).status, 404);
      assert.equal((await post(`${url}/v1/completions`, undefined, {}, "GET")).status, 405);
      assert.equal((await post(`${url}/v1/prefixes`, { name: "base", path: "/x" })).status, 400);

      // A full queue: one row decoding, two waiting, the next is refused with Retry-After.
      const long = { model: "base", prompt: " The", max_tokens: 100, min_length: 128 };
      const running = [0, 1, 2].map(() => post(`${url}/v1/completions`, long));
      let refused;
      for (let i = 0; i < 100; i++) {
        refused = await post(`${url}/v1/completions`, long);
        if (refused.status === 429) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(refused!.status, 429);
      assert.equal(refused!.headers.get("retry-after"), "1");
      // A deadline that passes while waiting in the queue: 504.
      const late = await post(`${url}/v1/completions`, { ...long, timeout: 0.05 });
      assert.ok(late.status === 504 || late.status === 429, `deadline: ${late.status}`);
      for (const r of await Promise.all(running)) assert.equal(r.status, 200);
      const late2 = await Promise.all([
        post(`${url}/v1/completions`, long),
        post(`${url}/v1/completions`, { ...long, timeout: 0.05 }),
      ]);
      assert.equal(late2[0].status, 200);
      assert.equal(late2[1].status, 504);
      assert.match((late2[1].body.error as { message: string }).message, /deadline/);
      assert.equal(await health(url), 200);
    },
  );
});

Deno.test("serve: a client that disconnects cancels its work (streamed and not)", async () => {
  await withServer({}, async ({ server }, url) => {
    const long = { model: "alpha", prompt: " The", max_tokens: 120, min_length: 128 };
    const before = server.metrics.generatedTokens;
    // Streamed: read the first event, then go away.
    const ac = new AbortController();
    const res = await fetch(`${url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify({ ...long, stream: true }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await reader.cancel().catch(() => {});
    const settle = async (n: number) => {
      for (
        let i = 0;
        i < 300 && (server.engine.activeRows > 0 || server.metrics.cancelled < n);
        i++
      ) {
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await settle(1);
    assert.equal(server.metrics.cancelled, 1);
    assert.equal(server.engine.activeRows, 0);
    // Not streamed: abort while it runs.
    const ac2 = new AbortController();
    const pending = fetch(`${url}/v1/completions`, {
      method: "POST",
      body: JSON.stringify(long),
      signal: ac2.signal,
    }).catch((e) => e);
    for (let i = 0; i < 200 && server.engine.activeRows === 0; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    ac2.abort();
    await pending;
    await settle(2);
    assert.equal(server.metrics.cancelled, 2);
    assert.equal(server.engine.activeRows, 0);
    // Far fewer tokens than the two requests would have taken.
    assert.ok(
      server.metrics.generatedTokens - before < 2 * 120,
      `${server.metrics.generatedTokens - before}`,
    );
    const m = await (await fetch(`${url}/metrics`)).text();
    assert.equal(metricValue(m, "lf_cancelled_total"), 2);
    assert.equal(await health(url), 200);
  });
});

/** Greedy and beam requests over several prefixes at once; each must equal `generate` alone. */
async function checkMixedBatches(
  s: Served,
  requests: { prefix: string; prompt: number[]; numBeams: number; maxNewTokens: number }[],
  prefixes: Record<string, Awaited<ReturnType<typeof loadComputedPrefix>>>,
): Promise<void> {
  const url = s.server.url;
  const rowsSeen: number[] = [];
  const answers = await Promise.all(requests.map(async (r) => {
    const res = await post(`${url}/v1/completions`, {
      model: r.prefix,
      prompt: s.tokenizer.decode(r.prompt),
      max_tokens: r.maxNewTokens,
      num_beams: r.numBeams,
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    rowsSeen.push((res.body.lf as { batch_rows: number }).batch_rows);
    return (res.body.choices as { token_ids: number[] }[])[0].token_ids;
  }));
  for (const [i, r] of requests.entries()) {
    const want = await decodeAlone(
      s.model,
      s.tokenizer.eosTokenId,
      r.prefix === "base" ? null : prefixes[r.prefix],
      r.prompt,
      { maxNewTokens: r.maxNewTokens, numBeams: r.numBeams, minLength: 0, badWordsIds: [] },
    );
    assert.deepEqual(answers[i], want, `request ${i} (${r.prefix}, beams ${r.numBeams})`);
  }
  // The requests really shared batches, for their prompts and for decoding.
  assert.ok(Math.max(...rowsSeen) > 1, `batch sizes ${rowsSeen}`);
  const m = await (await fetch(`${url}/metrics`)).text();
  assert.ok(
    metricValue(m, 'lf_prefill_rows_bucket{le="1"}') < metricValue(m, "lf_prefill_rows_count"),
    "no prompts ran together",
  );
}

Deno.test("serve: concurrent mixed-prefix requests equal one-by-one generation (tiny model, wasm and cpu)", async () => {
  const f = await fixture();
  for (const backend of ["wasm", "cpu"]) {
    // On cpu one model call takes every row (its arithmetic is row-independent at any size).
    const s = await serveFolder(f.modelDir, f.prefixesDir, { backend, maxRows: 8 });
    try {
      const names = ["alpha", "beta", "gamma", "base"];
      const requests = Array.from({ length: 14 }, (_, i) => ({
        prefix: names[i % 4],
        prompt: s.tokenizer.encode(` Request ${i}:${" more".repeat(i % 5)}`),
        numBeams: i % 7 === 6 ? 5 : 1,
        maxNewTokens: 6 + (i % 5) * 3,
      }));
      await checkMixedBatches(s, requests, f.prefixes);
      // Different prefixes give different outputs, so a mixed-up row would show.
      const outs = await Promise.all(
        ["alpha", "beta"].map((m) =>
          post(`${s.server.url}/v1/completions`, { model: m, prompt: " Same", max_tokens: 8 })
        ),
      );
      assert.notDeepEqual(
        (outs[0].body.choices as { token_ids: number[] }[])[0].token_ids,
        (outs[1].body.choices as { token_ids: number[] }[])[0].token_ids,
      );
    } finally {
      await s.server.shutdown(2000);
      s.model.dispose();
    }
  }
});

Deno.test({
  name:
    "serve: the shipped miniature with its trained prefixes, mixed in batches, equals generate alone",
  ignore: !(await Deno.stat(MINI_MODEL).then(() => true, () => false)),
  fn: async () => {
    const s = await serveFolder(MINI_MODEL, MINI_ABLATION, { maxRows: 16 });
    try {
      const names = ["prefix_L1", "prefix_L5", "prefix_L10", "base"];
      const prefixes: Record<string, Awaited<ReturnType<typeof loadComputedPrefix>>> = {};
      for (const n of names.slice(0, 3)) {
        prefixes[n] = await loadComputedPrefix(`${MINI_ABLATION}/${n}/prefix`);
      }
      const mrs = [
        { name: "The Vaults", eatType: "pub", food: "Italian", area: "riverside" },
        {
          name: "Aromi",
          eatType: "coffee shop",
          "customer rating": "5 out of 5",
          near: "Café Rouge",
        },
        { name: "Blue Spice", food: "French", priceRange: "less than £20", familyFriendly: "no" },
        { name: "The Eagle", eatType: "restaurant", priceRange: "high", area: "city centre" },
      ];
      const requests = Array.from({ length: 12 }, (_, i) => ({
        prefix: names[i % 4],
        prompt: encodePrompt(s.tokenizer, e2ePrompt(mrs[(i >> 1) % 4])),
        numBeams: i >= 10 ? 5 : 1,
        maxNewTokens: 40,
      }));
      await checkMixedBatches(s, requests, prefixes);
      // /v1/e2e: the paper's prompt and decoding (newlines banned, min_length 5), greedy and beam.
      const e2e = await Promise.all(mrs.map((mr, i) =>
        post(`${s.server.url}/v1/e2e`, {
          model: names[i],
          ...mr,
          num_beams: i === 3 ? 5 : 1,
          max_tokens: 40,
        })
      ));
      for (const [i, r] of e2e.entries()) {
        assert.equal(r.status, 200);
        const want = await decodeAlone(
          s.model,
          s.tokenizer.eosTokenId,
          names[i] === "base" ? null : prefixes[names[i]],
          encodePrompt(s.tokenizer, e2ePrompt(mrs[i])),
          {
            ...E2E_DECODING,
            numBeams: i === 3 ? 5 : 1,
            maxNewTokens: 40,
            badWordsIds: [[628], [198]],
          },
        );
        assert.deepEqual(
          (r.body.choices as { token_ids: number[] }[])[0].token_ids,
          want,
          `e2e ${i}`,
        );
      }
    } finally {
      await s.server.shutdown(2000);
      s.model.dispose();
    }
  },
});

Deno.test("serve: the task binds loopback, serves, and on SIGTERM finishes running work and exits 0", async () => {
  const f = await fixture();
  const task = new URL("../tasks/serve.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-no-legacy-abort",
      task,
      "--model",
      f.modelDir,
      "--prefixes",
      f.prefixesDir,
      "--port",
      "0",
      "--backend",
      "wasm",
      "--grace",
      "20",
    ],
    stdout: "null",
    stderr: "piped",
    env: { LF_API_KEY: "from-env" },
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let log = "", url = "";
  const logDone = (async () => {
    for (;;) {
      const { done, value } = await lines.read();
      if (done) break;
      log += value;
    }
  })();
  for (let i = 0; i < 600 && !url; i++) {
    const m = /serving \d+ prefixes on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
    if (m) url = m[1];
    else await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(url, `no "serving" line in: ${log}`);
  assert.match(log, /API key required/);
  assert.match(log, /skipped .*not-a-prefix/);
  // The API key from the environment protects the prefix endpoints.
  assert.equal((await post(`${url}/v1/prefixes/alpha`, undefined, {}, "DELETE")).status, 401);
  // A long request is running when SIGTERM arrives: it still gets its whole answer.
  const running = post(`${url}/v1/completions`, {
    model: "alpha",
    prompt: " The",
    max_tokens: 100,
    min_length: 128,
  });
  for (let i = 0; i < 200; i++) {
    const h = await (await fetch(`${url}/health`)).json();
    if (h.active_rows > 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 100));
  // No new work is accepted while it drains (503), or the listener is already closed.
  const after = await post(`${url}/v1/completions`, { model: "alpha", prompt: " x", max_tokens: 2 })
    .then((r) => r.status, () => "closed");
  assert.ok(after === 503 || after === "closed", `after SIGTERM: ${after}`);
  const r = await running;
  assert.equal(r.status, 200);
  assert.equal((r.body.choices as { token_ids: number[] }[])[0].token_ids.length, 100);
  const status = await child.status;
  await logDone;
  assert.equal(status.code, 0, log);
  assert.match(log, /SIGTERM: no new requests/);
});

Deno.test("serve: binding another address than loopback needs --host", async () => {
  const help = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../tasks/serve.ts", import.meta.url).pathname, "--help"],
    stdout: "piped",
  }).output();
  assert.match(
    new TextDecoder().decode(help.stdout),
    /--host ADDR +address to bind \(default 127\.0\.0\.1/,
  );
  await withServer({}, async (_s, url) => {
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(await health(url), 200);
  });
  const bad = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../tasks/serve.ts", import.meta.url).pathname,
      "--model",
      "x",
      "extra",
    ],
    stderr: "piped",
  }).output();
  assert.equal(bad.code, 2);
});
