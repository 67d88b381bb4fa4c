/**
 * A bounded load test on loopback: bursts of concurrent requests, well past the queue limit, to
 * a server with a small queue; refused clients retry. Every request gets an answer (200 or 429, nothing else), every
 * 200 carries exactly the output its own prompt and prefix give alone (nothing lost or mixed
 * up), the server keeps serving, and after the load the backend holds the same buffers as
 * before it, the backend's memory did not grow, and neither did this isolate's JS heap (the
 * process RSS is not used: `deno test --parallel` runs other test files in the same process).
 */
import assert from "node:assert/strict";
import { decodeAlone, metricValue, serveFolder, writeTinyFixture } from "./serve_fixtures.ts";

Deno.test("serve under load: 429s past the queue limit, no crash, no lost or mixed-up answers, flat memory", async () => {
  const root = await Deno.makeTempDir({ prefix: "lf-serve-load-" });
  const fx = await writeTinyFixture(root);
  const { model, tokenizer, server } = await serveFolder(fx.modelDir, fx.prefixesDir, {
    maxQueue: 6,
    maxRows: 4,
  });
  const url = server.url;
  try {
    const names = ["alpha", "beta", "gamma", "base"];
    const kinds = Array.from({ length: 12 }, (_, i) => ({
      model: names[i % 4],
      prompt: ` Load ${i}${" x".repeat(i % 3)}`,
      max_tokens: 4 + (i % 4) * 3,
    }));
    const expected: number[][] = [];
    for (const k of kinds) {
      expected.push(
        await decodeAlone(
          model,
          tokenizer.eosTokenId,
          k.model === "base" ? null : fx.prefixes[k.model],
          tokenizer.encode(k.prompt),
          { maxNewTokens: k.max_tokens, numBeams: 1, minLength: 0, badWordsIds: [] },
        ),
      );
    }
    const burst = async (n: number, seed: number) => {
      const statuses = new Map<number, number>();
      await Promise.all(Array.from({ length: n }, async (_, j) => {
        const i = (j * 7 + seed) % kinds.length;
        const stream = j % 3 === 0;
        // A refused client retries (sooner than Retry-After says, to keep the test short).
        let res: Response;
        for (let attempt = 0;; attempt++) {
          res = await fetch(`${url}/v1/completions`, {
            method: "POST",
            body: JSON.stringify({ ...kinds[i], stream }),
          });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status !== 429 || attempt === 200) break;
          assert.equal(res.headers.get("retry-after"), "1");
          await res.body?.cancel();
          await new Promise((r) => setTimeout(r, 20 + (j % 7) * 5));
        }
        assert.equal(res.status, 200);
        let ids: number[];
        if (stream) {
          const events = (await res.text()).split("\n\n").filter((e) => e.startsWith("data: {"))
            .map((e) => JSON.parse(e.slice(6)));
          ids = events.flatMap((e) => e.choices).find((c) => c.token_ids).token_ids;
        } else {
          ids = (await res.json()).choices[0].token_ids;
        }
        assert.deepEqual(ids, expected[i], `burst ${seed} request ${j} (${kinds[i].model})`);
      }));
      return statuses;
    };
    const idle = async () => {
      for (
        let i = 0;
        i < 500 && (server.engine.activeRows > 0 || server.engine.queueDepth > 0);
        i++
      ) {
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    // Warm-up burst, then the baseline.
    await burst(20, 0);
    await idle();
    const buffers0 = model.backend.liveCount();
    const heap0 = Deno.memoryUsage().heapUsed;
    const backendBytes = () =>
      (model.backend as { stats?: () => { memoryBytes: number } }).stats?.().memoryBytes ?? 0;
    const backend0 = backendBytes();
    const t0 = performance.now();
    let ok = 0, refused = 0;
    for (let round = 1; round <= 4; round++) {
      const s = await burst(40, round);
      assert.deepEqual([...s.keys()].filter((k) => k !== 200 && k !== 429), [], `round ${round}`);
      ok += s.get(200) ?? 0;
      refused += s.get(429) ?? 0;
      assert.equal((await fetch(`${url}/health`).then((r) => r.json())).status, "ok");
    }
    const seconds = (performance.now() - t0) / 1000;
    await idle();
    assert.ok(refused > 0, "the queue limit was never reached");
    assert.equal(ok, 160); // every request was answered in the end, each with its own output
    // Memory: the same tensor buffers as before the load, the backend's memory did not grow,
    // and the JS heap stays within a bound far below what leaked requests would hold.
    assert.equal(model.backend.liveCount(), buffers0);
    assert.equal(backendBytes(), backend0, "backend memory grew");
    const grown = (Deno.memoryUsage().heapUsed - heap0) / 2 ** 20;
    assert.ok(grown < 64, `JS heap grew by ${grown.toFixed(1)} MiB`);
    const m = await (await fetch(`${url}/metrics`)).text();
    assert.equal(metricValue(m, "lf_queue_depth"), 0);
    assert.equal(metricValue(m, "lf_active_rows"), 0);
    assert.ok(
      metricValue(m, 'lf_requests_total{endpoint="/v1/completions",status="429"}') >= refused,
    );
    console.log(
      `load: ${ok} answered, ${refused} refused (429) in ${seconds.toFixed(1)} s; JS heap ${
        grown >= 0 ? "+" : ""
      }${grown.toFixed(1)} MiB, ${buffers0} backend buffers before and after`,
    );
  } finally {
    await server.shutdown(5000);
    model.dispose();
  }
});
