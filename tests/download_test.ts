import assert from "node:assert/strict";
import { join } from "node:path";
import {
  DownloadError,
  downloadFile,
  type DownloadProgress,
  formatProgress,
  gitBlobSha1File,
  sha256File,
} from "../hub/download.ts";
import {
  cacheRoot,
  DATASETS,
  downloadData,
  hubFileInfo,
  MODEL_FILES,
  resolveModel,
  TOKENIZER_FILES,
} from "../hub/mod.ts";
import { main } from "../tasks/download.ts";
import { encodeSafetensors, loadSafetensors } from "../models/safetensors.ts";
import { GPT2 } from "../models/gpt2.ts";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import { hubCacheDir, hubEndpoint, hubOffline } from "../hub/hub.ts";

const FAKE_GPT2 = new URL("../../shared/models/fake-gpt2/", import.meta.url).pathname;
const haveFakeGpt2 = (() => {
  try {
    Deno.statSync(join(FAKE_GPT2, "model.safetensors"));
    return true;
  } catch {
    console.log(`skipping the hand-made Hugging Face cache test: ${FAKE_GPT2} is absent`);
    return false;
  }
})();

const SHARED_E2E = new URL("../../shared/e2e/", import.meta.url).pathname;
const haveSharedE2E = (() => {
  try {
    Deno.statSync(join(SHARED_E2E, "devset.csv"));
    return true;
  } catch {
    console.log(`skipping E2E data download test: ${SHARED_E2E} is absent`);
    return false;
  }
})();

type Bytes = Uint8Array<ArrayBuffer>;

/** Deterministic pseudo-random bytes. */
function payload(n: number, seed = 1): Bytes {
  const out = new Uint8Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** SHA-256 via WebCrypto: an implementation independent of the one under test. */
async function webSha256(bytes: Bytes): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Git blob id via WebCrypto SHA-1 of `blob <n>\0` + content. */
async function webGitSha1(bytes: Uint8Array): Promise<string> {
  const prefix = new TextEncoder().encode(`blob ${bytes.length}\0`);
  const all = new Uint8Array(prefix.length + bytes.length);
  all.set(prefix);
  all.set(bytes, prefix.length);
  const d = new Uint8Array(await crypto.subtle.digest("SHA-1", all));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

interface TestServer {
  base: string;
  requests: { method: string; path: string; range: string | null }[];
  close(): Promise<void>;
}

/** Starts a loopback server; every request is logged before `handler` runs. */
function serve(
  handler: (req: Request, url: URL, index: number) => Response | Promise<Response>,
): TestServer {
  const requests: TestServer["requests"] = [];
  const server = Deno.serve(
    {
      port: 0,
      hostname: "127.0.0.1",
      onListen() {},
      onError: () => new Response("boom", { status: 500 }),
    },
    (req) => {
      const url = new URL(req.url);
      requests.push({ method: req.method, path: url.pathname, range: req.headers.get("range") });
      return handler(req, url, requests.length - 1);
    },
  );
  return { base: `http://127.0.0.1:${server.addr.port}`, requests, close: () => server.shutdown() };
}

/** Serves `body` honouring `Range: bytes=N-` with a 206. */
function rangeResponse(
  req: Request,
  body: Bytes,
  headers: Record<string, string> = {},
): Response {
  const m = req.headers.get("range")?.match(/^bytes=(\d+)-$/);
  if (m) {
    const start = Number(m[1]);
    if (start >= body.length) {
      return new Response(null, {
        status: 416,
        headers: { "content-range": `bytes */${body.length}` },
      });
    }
    return new Response(body.slice(start), {
      status: 206,
      headers: { ...headers, "content-range": `bytes ${start}-${body.length - 1}/${body.length}` },
    });
  }
  return new Response(body, { headers });
}

/** A 200 response that sends `cutAt` bytes of `body` and then drops the connection. */
function cutResponse(body: Bytes, cutAt: number): Response {
  let sent = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (!sent) {
        sent = true;
        c.enqueue(body.slice(0, cutAt));
        return;
      }
      c.error(new Error("test server drops the connection"));
    },
  });
  return new Response(stream, { headers: { "content-length": String(body.length) } });
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function listDir(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("full download with progress, size and sha256 checks", async () => {
  const body = payload(3_000_000);
  const server = serve(() => new Response(body));
  try {
    await withTempDir(async (dir) => {
      const dest = join(dir, "sub", "file.bin");
      const reports: DownloadProgress[] = [];
      const lines: string[] = [];
      const sha = await webSha256(body);
      const res = await downloadFile(`${server.base}/file.bin`, dest, {
        expectedSize: body.length,
        sha256: sha.toUpperCase(),
        onProgress: (p) => reports.push(p),
        progress: "lines",
        log: (t) => lines.push(t),
      });
      assert.deepEqual(await Deno.readFile(dest), body);
      assert.equal(res.sha256, sha);
      assert.equal(res.size, body.length);
      assert.equal(res.skipped, false);
      assert.deepEqual(listDir(join(dir, "sub")), ["file.bin"]);
      // progress: starts at 0, never decreases, ends exactly at the total, marked done
      assert.equal(reports[0].received, 0);
      for (let i = 1; i < reports.length; i++) {
        assert.ok(reports[i].received >= reports[i - 1].received);
      }
      const last = reports[reports.length - 1];
      assert.ok(last.done && last.received === body.length && last.total === body.length);
      assert.ok(reports.length >= 3, `only ${reports.length} progress reports`);
      assert.ok(lines.length >= 1 && lines[lines.length - 1].includes("100.0%"), lines.join(""));
      assert.ok(lines.every((l) => l.endsWith("\n") && !l.includes("\r")));

      // a second call finds the verified file and fetches nothing
      const again = await downloadFile(`${server.base}/file.bin`, dest, {
        sha256: sha,
        progress: "none",
      });
      assert.equal(again.skipped, true);
      assert.equal(server.requests.length, 1);
      assert.equal(await sha256File(dest), sha);
      assert.equal(await gitBlobSha1File(dest), await webGitSha1(body));
    });
  } finally {
    await server.close();
  }
});

Deno.test("bar progress redraws one line on a terminal-style sink", async () => {
  const body = payload(2_500_000);
  const server = serve(() => new Response(body));
  try {
    await withTempDir(async (dir) => {
      let out = "";
      await downloadFile(`${server.base}/f`, join(dir, "f"), {
        progress: "bar",
        log: (t) => (out += t),
      });
      assert.ok(out.startsWith("\r"));
      assert.ok(out.endsWith("done\x1b[K\n"), JSON.stringify(out.slice(-80)));
      assert.equal(out.split("\n").length, 2);
    });
  } finally {
    await server.close();
  }
});

Deno.test("sha256 or size mismatch is rejected and leaves nothing at dest", async () => {
  const body = payload(100_000);
  const server = serve(() => new Response(body));
  try {
    await withTempDir(async (dir) => {
      const dest = join(dir, "x.bin");
      const url = `${server.base}/x.bin`;
      await assert.rejects(
        downloadFile(url, dest, { sha256: "0".repeat(64), progress: "none" }),
        (e: unknown) =>
          e instanceof DownloadError && e.message.includes("sha256") && e.message.includes(url),
      );
      assert.deepEqual(listDir(dir), []);
      await assert.rejects(
        downloadFile(url, dest, { expectedSize: 99_999, progress: "none" }),
        (e: unknown) => e instanceof DownloadError && e.message.includes("99999"),
      );
      assert.deepEqual(listDir(dir), []);
      await assert.rejects(
        downloadFile(url, dest, { gitSha1: "f".repeat(40), progress: "none" }),
        (e: unknown) => e instanceof DownloadError && e.message.includes("git blob id"),
      );
      assert.deepEqual(listDir(dir), []);
      // a wrong file already at dest is replaced by the right one
      await Deno.writeFile(dest, new Uint8Array([1, 2, 3]));
      const res = await downloadFile(url, dest, {
        sha256: await webSha256(body),
        progress: "none",
      });
      assert.equal(res.skipped, false);
      assert.deepEqual(await Deno.readFile(dest), body);
    });
  } finally {
    await server.close();
  }
});

Deno.test("an interrupted transfer is resumed with a Range request, byte-identical", async () => {
  const body = payload(1_000_000, 7);
  const cutAt = 400_000;
  const server = serve((
    req,
    _url,
    i,
  ) => (i === 0 ? cutResponse(body, cutAt) : rangeResponse(req, body)));
  try {
    await withTempDir(async (dir) => {
      const dest = join(dir, "m.bin");
      const url = `${server.base}/m.bin`;
      await assert.rejects(
        downloadFile(url, dest, { retries: 0, progress: "none" }),
        (e: unknown) =>
          e instanceof DownloadError && e.retryable && e.message.includes("lost after"),
      );
      const partSize = (await Deno.stat(`${dest}.part`)).size;
      assert.ok(partSize > 0 && partSize <= cutAt, `part has ${partSize} bytes`);
      assert.deepEqual(listDir(dir), ["m.bin.part"]);

      const res = await downloadFile(url, dest, {
        sha256: await webSha256(body),
        progress: "none",
      });
      assert.equal(server.requests[1].range, `bytes=${partSize}-`);
      assert.equal(res.resumedFrom, partSize);
      assert.deepEqual(await Deno.readFile(dest), body);
      assert.deepEqual(listDir(dir), ["m.bin"]);
    });
  } finally {
    await server.close();
  }
});

Deno.test("retries resume automatically within one call", async () => {
  const body = payload(600_000, 3);
  const server = serve((
    req,
    _url,
    i,
  ) => (i < 2 ? cutResponse(body, 100_000 * (i + 1)) : rangeResponse(req, body)));
  try {
    await withTempDir(async (dir) => {
      const dest = join(dir, "r.bin");
      const notes: string[] = [];
      const res = await downloadFile(`${server.base}/r.bin`, dest, {
        retries: 3,
        retryDelayMs: 0,
        progress: "lines",
        log: (t) => notes.push(t),
        sha256: await webSha256(body),
      });
      assert.deepEqual(await Deno.readFile(dest), body);
      assert.equal(server.requests.length, 3);
      assert.equal(server.requests[0].range, null);
      assert.match(server.requests[1].range ?? "", /^bytes=\d+-$/);
      assert.ok(res.resumedFrom > 0);
      assert.ok(notes.some((n) => n.includes("retrying (1/3)")), notes.join(""));
    });
  } finally {
    await server.close();
  }
});

Deno.test("a server that ignores Range: the download restarts from zero", async () => {
  const body = payload(300_000, 11);
  const server = serve(() => new Response(body));
  try {
    await withTempDir(async (dir) => {
      const dest = join(dir, "n.bin");
      // a stale part file whose bytes are wrong: appending to it would corrupt the result
      await Deno.writeFile(`${dest}.part`, new Uint8Array(1234).fill(0xaa));
      const notes: string[] = [];
      const res = await downloadFile(`${server.base}/n.bin`, dest, {
        progress: "lines",
        log: (t) => notes.push(t),
      });
      assert.equal(server.requests[0].range, "bytes=1234-");
      assert.equal(res.resumedFrom, 0);
      assert.deepEqual(await Deno.readFile(dest), body);
      assert.ok(notes.some((n) => n.includes("ignored the range")));
    });
  } finally {
    await server.close();
  }
});

Deno.test("a complete part file (416 or known size) is finished without refetching", async () => {
  const body = payload(50_000, 5);
  const server = serve((req) => rangeResponse(req, body));
  try {
    await withTempDir(async (dir) => {
      const dest = join(dir, "c.bin");
      await Deno.writeFile(`${dest}.part`, body);
      await downloadFile(`${server.base}/c.bin`, dest, {
        expectedSize: body.length,
        progress: "none",
      });
      assert.equal(server.requests.length, 0);
      assert.deepEqual(await Deno.readFile(dest), body);
      // without a known size the server answers 416; we start over and get it right
      await Deno.remove(dest);
      await Deno.writeFile(`${dest}.part`, body);
      await downloadFile(`${server.base}/c.bin`, dest, { progress: "none" });
      assert.deepEqual(server.requests.map((r) => r.range), [`bytes=${body.length}-`, null]);
      assert.deepEqual(await Deno.readFile(dest), body);
    });
  } finally {
    await server.close();
  }
});

Deno.test("404 gives a clear error naming the URL; nothing is left behind", async () => {
  const server = serve(() =>
    new Response("no such file", { status: 404, statusText: "Not Found" })
  );
  try {
    await withTempDir(async (dir) => {
      const url = `${server.base}/missing.json`;
      await assert.rejects(
        downloadFile(url, join(dir, "missing.json"), { progress: "none" }),
        (e: unknown) =>
          e instanceof DownloadError && e.status === 404 && !e.retryable &&
          e.message === `${url} not found: HTTP 404 Not Found`,
      );
      assert.deepEqual(listDir(dir), []);
    });
  } finally {
    await server.close();
  }
});

Deno.test("an unreachable host gives the offline message", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close(); // nothing listens there now: connection refused
  await withTempDir(async (dir) => {
    const dest = join(dir, "model.safetensors");
    await assert.rejects(
      downloadFile(`http://127.0.0.1:${port}/model.safetensors`, dest, { progress: "none" }),
      (e: unknown) => {
        assert.ok(e instanceof DownloadError);
        assert.match(
          e.message,
          new RegExp(`^cannot reach 127\\.0\\.0\\.1:${port}: .+ — are you offline\\?`),
        );
        assert.ok(e.message.endsWith(`files can be placed by hand in ${dir}`), e.message);
        return true;
      },
    );
    await assert.rejects(
      hubFileInfo(`http://127.0.0.1:${port}/x/resolve/main/config.json`, {
        manualDir: "/some/dir",
      }),
      /cannot reach .* are you offline\? files can be placed by hand in \/some\/dir/,
    );
  });
});

Deno.test("formatProgress shows bar, percent, MB, MB/s and ETA", () => {
  assert.equal(
    formatProgress({
      label: "model.safetensors",
      received: 3e6,
      total: 10e6,
      bytesPerSecond: 1e6,
      done: false,
    }),
    "model.safetensors [######--------------]  30.0%  3.0/10.0 MB  1.0 MB/s  ETA 7s",
  );
  assert.equal(
    formatProgress({
      label: "m",
      received: 100e6,
      total: 1420e6,
      bytesPerSecond: 20e6,
      done: false,
    }, 10),
    "m [----------]   7.0%  100.0/1420.0 MB  20.0 MB/s  ETA 1m06s",
  );
  assert.equal(
    formatProgress({ label: "m", received: 5e6, total: 5e6, bytesPerSecond: 2.5e6, done: true }, 4),
    "m [####] 100.0%  5.0/5.0 MB  2.5 MB/s  done",
  );
  assert.equal(
    formatProgress({ label: "m", received: 1.5e6, bytesPerSecond: 0, done: false }),
    "m 1.5 MB  0.0 MB/s",
  );
});

/** A fake Hugging Face hub: LFS file via a 302 to a "CDN" path, small files as git blobs. */
async function fakeHub(files: Record<string, Bytes>, lfs: string[]) {
  const sha: Record<string, string> = {};
  const git: Record<string, string> = {};
  for (const [name, bytes] of Object.entries(files)) {
    sha[name] = await webSha256(bytes);
    git[name] = await webGitSha1(bytes);
  }
  return serve((req, url) => {
    const cdn = url.pathname.match(/^\/cdn\/(.+)$/);
    if (cdn) return rangeResponse(req, files[cdn[1]]);
    const m = url.pathname.match(/^\/[^/]+\/[^/]+\/resolve\/[^/]+\/(.+)$/);
    if (!m || !files[m[1]]) {
      return new Response("Entry not found", { status: 404, statusText: "Not Found" });
    }
    const name = m[1];
    if (lfs.includes(name)) {
      return new Response(null, {
        status: 302,
        headers: {
          location: `/cdn/${name}`,
          "x-linked-size": String(files[name].length),
          "x-linked-etag": `"${sha[name]}"`,
          "x-repo-commit": COMMIT,
          etag: `W/"not-the-hash"`,
        },
      });
    }
    // (Deno.serve drops the body of a HEAD answer but keeps its length, as the hub does)
    return new Response(files[name], {
      headers: { etag: `W/"${git[name]}"`, "content-type": "text/plain", "x-repo-commit": COMMIT },
    });
  });
}

Deno.test("hubFileInfo reads size and sha256 of LFS files, the git blob id of others", async () => {
  const files = {
    "model.safetensors": payload(5000),
    "config.json": new TextEncoder().encode('{"n_layer": 1}'),
  };
  const server = await fakeHub(files, ["model.safetensors"]);
  try {
    const base = `${server.base}/openai-community/gpt2/resolve/main`;
    assert.deepEqual(await hubFileInfo(`${base}/model.safetensors`), {
      size: 5000,
      sha256: await webSha256(files["model.safetensors"]),
      commit: COMMIT,
    });
    const info = await hubFileInfo(`${base}/config.json`);
    assert.equal(info.gitSha1, await webGitSha1(files["config.json"]));
    assert.equal(info.sha256, undefined);
    assert.ok(server.requests.every((r) => r.method === "HEAD" && !r.path.startsWith("/cdn/")));
    await assert.rejects(
      hubFileInfo(`${base}/nope.json`),
      (e: unknown) => e instanceof DownloadError && e.status === 404,
    );
  } finally {
    await server.close();
  }
});

const COMMIT = "0123456789abcdef0123456789abcdef01234567";

Deno.test("a hub id downloads once into Hugging Face's cache layout, then works offline", async () => {
  const st = encodeSafetensors({
    "transformer.wte.weight": { dtype: "F32", shape: [3, 2], data: [1, 2, 3, 4, 5, 6] },
  });
  const files: Record<string, Bytes> = {};
  for (const f of [...MODEL_FILES, ...TOKENIZER_FILES]) {
    files[f] = f === "model.safetensors" ? st : new TextEncoder().encode(`{"file": "${f}"}`);
  }
  const server = await fakeHub(files, ["model.safetensors"]);
  try {
    await withTempDir(async (root) => {
      const opts = { hubCache: root, hfEndpoint: server.base + "/", progress: "none" as const };
      const dir = await resolveModel("gpt2", opts);
      const repo = join(root, "models--openai-community--gpt2");
      assert.equal(dir, join(repo, "snapshots", COMMIT));
      assert.equal(Deno.readTextFileSync(join(repo, "refs", "main")), COMMIT);
      assert.deepEqual(listDir(dir), [...MODEL_FILES, ...TOKENIZER_FILES].sort());
      for (const f of Object.keys(files)) {
        assert.deepEqual(await Deno.readFile(join(dir, f)), files[f], f);
      }
      // snapshot files are links into blobs/, named by their hash
      assert.ok(Deno.lstatSync(join(dir, "model.safetensors")).isSymlink);
      assert.equal(listDir(join(repo, "blobs")).length, Object.keys(files).length);
      const loaded = await loadSafetensors(join(dir, "model.safetensors"));
      assert.deepEqual(
        Array.from(loaded.tensors.get("transformer.wte.weight")!.data),
        [1, 2, 3, 4, 5, 6],
      );

      // any org/name works the same way, in its own cache folder
      const other = await resolveModel("someone/tiny-gpt2", opts);
      assert.equal(other, join(root, "models--someone--tiny-gpt2", "snapshots", COMMIT));
      assert.ok(
        server.requests.some((r) => r.path === "/someone/tiny-gpt2/resolve/main/config.json"),
      );

      const count = server.requests.length;
      const dead = { ...opts, hfEndpoint: "http://127.0.0.1:9/" };
      assert.equal(await resolveModel("gpt2", dead), dir);
      assert.equal(await resolveModel("openai-community/gpt2", dead), dir);
      assert.equal(server.requests.length, count, "a cached model must not touch the network");
      assert.equal(await resolveModel(dir, opts), dir, "an existing folder is used as is");
      await assert.rejects(
        resolveModel(join(root, "nope"), opts),
        /neither an existing folder nor a hub id/,
      );
      await assert.rejects(
        resolveModel("openai-community/gpt2-xl", { ...opts, offline: true }),
        /not in the hub cache .* HF_HUB_OFFLINE/,
      );

      // the CLI fetches only what is missing, at the cached commit; a blob still present is
      // only linked again (one HEAD, no GET)
      await Deno.remove(join(dir, "config.json"));
      assert.equal(await main(["--model", "gpt2", "--cache", root], opts), 0);
      assert.deepEqual(await Deno.readFile(join(dir, "config.json")), files["config.json"]);
      assert.deepEqual(
        server.requests.slice(count).map((r) => `${r.method} ${r.path}`),
        [
          `HEAD /openai-community/gpt2/resolve/${COMMIT}/config.json`,
        ],
      );
    });
  } finally {
    await server.close();
  }
});

Deno.test("a hub model without tokenizer files is an error, not a silent fallback", async () => {
  const server = await fakeHub({
    "config.json": new TextEncoder().encode("{}"),
    "model.safetensors": encodeSafetensors({}),
  }, []);
  try {
    await withTempDir(async (root) => {
      await assert.rejects(
        resolveModel("someone/no-tokenizer", {
          hubCache: root,
          hfEndpoint: server.base,
          progress: "none",
        }),
        /someone\/no-tokenizer: the hub has no usable tokenizer \(missing vocab\.json, merges\.txt, tokenizer\.json\)/,
      );
    });
  } finally {
    await server.close();
  }
});

Deno.test("a name that is neither a folder nor on the hub says both", async () => {
  const server = await fakeHub({}, []);
  try {
    await withTempDir(async (root) => {
      await assert.rejects(
        resolveModel("runs/tyrp", { hubCache: root, hfEndpoint: server.base, progress: "none" }),
        (e: unknown) =>
          e instanceof DownloadError && e.status === 404 &&
          e.message.startsWith(
            `model "runs/tyrp" is neither an existing folder nor a model on ${server.base}`,
          ),
      );
    });
  } finally {
    await server.close();
  }
});

Deno.test("a file missing on the hub fails with a 404 naming it", async () => {
  const server = await fakeHub({ "config.json": new TextEncoder().encode("{}") }, []);
  try {
    await withTempDir(async (root) => {
      await assert.rejects(
        resolveModel("gpt2", { hubCache: root, hfEndpoint: server.base, progress: "none" }),
        (e: unknown) =>
          e instanceof DownloadError && e.status === 404 && e.message.includes("model.safetensors"),
      );
      const snap = join(root, "models--openai-community--gpt2", "snapshots", COMMIT);
      assert.deepEqual(listDir(snap), ["config.json"]);
    });
  } finally {
    await server.close();
  }
});

Deno.test("CLI argument errors exit with 2; cache root precedence", async () => {
  assert.equal(await main(["--model", "../gpt5"]), 2);
  assert.equal(await main(["--data", "imagenet"]), 2);
  assert.equal(await main([]), 2);
  assert.equal(await main(["--bogus"]), 2);
  assert.equal(cacheRoot({ cacheRoot: "/x" }), "/x");
  const saved = Deno.env.get("LF_CACHE");
  try {
    Deno.env.set("LF_CACHE", "/from/env");
    assert.equal(cacheRoot(), "/from/env");
    Deno.env.delete("LF_CACHE");
    const xdg = Deno.env.get("XDG_CACHE_HOME");
    assert.equal(cacheRoot(), join(xdg ?? join(Deno.env.get("HOME")!, ".cache"), "lf"));
  } finally {
    if (saved !== undefined) Deno.env.set("LF_CACHE", saved);
  }
});

Deno.test({
  name: "E2E data: pinned GitHub files checked by git blob id (served from ../shared)",
  ignore: !haveSharedE2E,
  fn: async () => {
    const e2e = DATASETS.e2e;
    let tamper = false;
    const server = serve(async (_req, url) => {
      const f = e2e.find((x) => url.pathname === `/${x.repo}/${x.commit}/${x.path}`);
      let bytes: Bytes;
      try {
        bytes = await Deno.readFile(join(SHARED_E2E, f!.saveAs));
      } catch {
        return new Response("404: Not Found", { status: 404, statusText: "Not Found" });
      }
      if (tamper && f!.saveAs === "devset.csv") bytes[100] ^= 1;
      return new Response(bytes);
    });
    try {
      await withTempDir(async (out) => {
        // ../shared lacks trainset.csv: every other file arrives, and the failure names it
        await assert.rejects(
          downloadData("e2e", { out, githubRaw: server.base, progress: "none" }),
          (e: unknown) =>
            e instanceof DownloadError && /1 of 7 e2e files failed/.test(e.message) &&
            /trainset\.csv: .*404/.test(e.message),
        );
        const expected = e2e.map((f) => f.saveAs).filter((n) => n !== "trainset.csv").sort();
        assert.deepEqual(listDir(out), expected);
        for (const name of expected) {
          assert.deepEqual(
            await Deno.readFile(join(out, name)),
            await Deno.readFile(join(SHARED_E2E, name)),
            name,
          );
        }
        tamper = true;
        await Deno.remove(join(out, "devset.csv"));
        await assert.rejects(
          downloadData("e2e", { out, githubRaw: server.base, progress: "none" }),
          (e: unknown) =>
            e instanceof DownloadError && /devset\.csv: .*git blob id/.test(e.message),
        );
        assert.ok(!listDir(out).includes("devset.csv"));
      });
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "GPT2 and GPT2Tokenizer.fromPretrained read a Hugging Face cache laid out by hand, offline",
  ignore: !haveFakeGpt2,
  fn: async () => {
    await withTempDir(async (home) => {
      // What huggingface_hub leaves after from_pretrained("gpt2-medium"): blobs, links, refs/main.
      const repo = join(home, "hub", "models--gpt2-medium");
      const snap = join(repo, "snapshots", COMMIT);
      await Deno.mkdir(snap, { recursive: true });
      await Deno.mkdir(join(repo, "blobs"));
      await Deno.mkdir(join(repo, "refs"));
      await Deno.writeTextFile(join(repo, "refs", "main"), COMMIT);
      for (const f of ["config.json", "model.safetensors", "vocab.json", "merges.txt"]) {
        await Deno.copyFile(join(FAKE_GPT2, f), join(repo, "blobs", `blob-${f}`));
        await Deno.symlink(join("..", "..", "blobs", `blob-${f}`), join(snap, f));
      }
      const saved = ["HF_HOME", "HF_HUB_OFFLINE", "HF_ENDPOINT"].map((k) => [k, Deno.env.get(k)]);
      try {
        Deno.env.set("HF_HOME", home);
        Deno.env.set("HF_HUB_OFFLINE", "1");
        Deno.env.set("HF_ENDPOINT", "http://127.0.0.1:9");
        assert.equal(hubCacheDir(), join(home, "hub"));
        assert.equal(hubOffline(), true);
        assert.equal(hubEndpoint(), "http://127.0.0.1:9");
        const model = await GPT2.fromPretrained("gpt2-medium");
        const direct = await GPT2.fromPretrained(FAKE_GPT2);
        assert.deepEqual(
          await model.stateDict().get("transformer.wte.weight")!.data(),
          await direct.stateDict().get("transformer.wte.weight")!.data(),
        );
        const tok = await GPT2Tokenizer.fromPretrained("gpt2-medium");
        assert.deepEqual(tok.encode(" The Eagle"), [383, 18456]);
        // Not in the cache and offline: an error that says so, no download attempted.
        await assert.rejects(
          () => GPT2.fromPretrained("openai-community/gpt2-large"),
          /not in the hub cache .* HF_HUB_OFFLINE/,
        );
        model.dispose();
        direct.dispose();
      } finally {
        for (const [k, v] of saved) v === undefined ? Deno.env.delete(k!) : Deno.env.set(k!, v);
      }
    });
  },
});

Deno.test("hub cache folder: HF_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME", () => {
  const keys = ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"];
  const saved = keys.map((k) => [k, Deno.env.get(k)] as const);
  try {
    for (const k of keys) Deno.env.delete(k);
    Deno.env.set("XDG_CACHE_HOME", "/xdg");
    assert.equal(hubCacheDir(), "/xdg/huggingface/hub");
    assert.equal(cacheRoot(), "/xdg/lf");
    Deno.env.set("HF_HOME", "/hfhome");
    assert.equal(hubCacheDir(), "/hfhome/hub");
    Deno.env.set("HF_HUB_CACHE", "/hubcache");
    assert.equal(hubCacheDir(), "/hubcache");
    assert.equal(hubCacheDir({ hubCache: "/opt" }), "/opt");
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
});
