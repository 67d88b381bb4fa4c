/**
 * The web page of `deno task serve` in a real headless Chromium, driven over the DevTools
 * protocol: it fills an E2E meaning representation, submits, watches the text stream into the
 * page, and compares the final text with the API's answer for the same request. Skips, saying
 * why, only where no Chromium is installed.
 */
import assert from "node:assert/strict";
import { MINI_ABLATION, MINI_MODEL, post, serveFolder } from "./serve_fixtures.ts";

const CANDIDATES = [
  Deno.env.get("CHROME_PATH") ?? "",
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome",
];
const isFile = (p: string) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
};
const browser = CANDIDATES.find((p) => p && isFile(p));
const haveMini = isFile(`${MINI_MODEL}/config.json`);
if (!browser) {
  console.error("serve_page_test: skipped, no Chromium found (apt-get install chromium)");
}

/** A minimal DevTools-protocol client over one WebSocket. */
class DevTools {
  #id = 0;
  readonly #pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  private constructor(readonly ws: WebSocket) {
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      const p = m.id !== undefined ? this.#pending.get(m.id) : undefined;
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.error) p.reject(new Error(`${m.error.message}`));
      else p.resolve(m.result);
    };
  }
  static async connect(url: string): Promise<DevTools> {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
    });
    return new DevTools(ws);
  }
  send(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = ++this.#id;
    this.ws.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve, reject) => this.#pending.set(id, { resolve, reject }));
  }
  async eval<T>(expression: string): Promise<T> {
    const r = await this.send("Runtime.evaluate", {
      expression,
      returnByValue: true,
      awaitPromise: true,
    }) as { result: { value: T }; exceptionDetails?: { text: string } };
    if (r.exceptionDetails) throw new Error(`page: ${r.exceptionDetails.text} in ${expression}`);
    return r.result.value;
  }
  close(): void {
    this.ws.close();
  }
}

Deno.test({
  name: "serve page in headless Chromium: fill an MR, submit, read the streamed text",
  ignore: !browser || !haveMini,
  sanitizeResources: false,
  fn: async () => {
    const { model, server } = await serveFolder(MINI_MODEL, MINI_ABLATION);
    const profile = await Deno.makeTempDir({ prefix: "lf-chromium-" });
    const child = new Deno.Command(browser!, {
      args: [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--user-data-dir=${profile}`,
        "--remote-debugging-port=0",
        "about:blank",
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let devtools: DevTools | undefined;
    try {
      // Chromium prints its DevTools endpoint on stderr.
      const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      let err = "", endpoint = "";
      const deadline = Date.now() + 30_000;
      while (!endpoint && Date.now() < deadline) {
        const { done, value } = await reader.read();
        if (done) break;
        err += value;
        endpoint = /DevTools listening on (ws:\/\/\S+)/.exec(err)?.[1] ?? "";
      }
      assert.ok(endpoint, `Chromium did not start: ${err}`);
      (async () => { // keep draining stderr so Chromium never blocks on it
        while (!(await reader.read()).done) { /* discard */ }
      })().catch(() => {});
      const http = endpoint.replace(/^ws:\/\/([^/]+)\/.*$/, "http://$1");
      const targets = await (await fetch(`${http}/json/list`)).json() as {
        type: string;
        webSocketDebuggerUrl: string;
      }[];
      const page = targets.find((t) => t.type === "page");
      assert.ok(page, "no page target");
      devtools = await DevTools.connect(page.webSocketDebuggerUrl);
      await devtools.send("Runtime.enable");
      await devtools.send("Page.enable");
      await devtools.send("Page.navigate", { url: `${server.url}/` });
      const waitFor = async (expr: string, what: string, ms = 30_000) => {
        const end = Date.now() + ms;
        for (;;) {
          if (await devtools!.eval<boolean>(expr).catch(() => false)) return;
          if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await waitFor(`document.getElementById("status")?.textContent === "ready"`, "the page");
      const options = await devtools.eval<string[]>(
        `[...document.getElementById("prefix").options].map((o) => o.value)`,
      );
      assert.deepEqual(options, ["base", "prefix_L1", "prefix_L10", "prefix_L20", "prefix_L5"]);
      // Fill the MR as a user would, greedy decoding so that the text streams.
      const fields = {
        prefix: "prefix_L5",
        decoding: "greedy",
        max_tokens: "60",
        f_name: "Blue Spice",
        f_eatType: "coffee shop",
        f_food: "French",
        f_priceRange: "cheap",
        f_rating: "5 out of 5",
        f_area: "riverside",
        f_familyFriendly: "yes",
        f_near: "Crowne Plaza Hotel",
      };
      await devtools.eval(`(() => {
        const fields = ${JSON.stringify(fields)};
        for (const [id, v] of Object.entries(fields)) {
          const el = document.getElementById(id);
          el.value = v;
          el.dispatchEvent(new Event("change"));
        }
        window.__seen = [];
        new MutationObserver(() => window.__seen.push(document.getElementById("output").textContent))
          .observe(document.getElementById("output"), { childList: true, characterData: true, subtree: true });
        document.getElementById("submit").click();
      })()`);
      await waitFor(
        `document.getElementById("status").textContent.startsWith("done")`,
        "the answer",
      );
      const shown = await devtools.eval<
        { output: string; batch: string; seen: string[]; live: string }
      >(
        `({ output: document.getElementById("output").textContent,
            batch: document.getElementById("batch").textContent,
            seen: window.__seen,
            live: document.getElementById("live").textContent })`,
      );
      // The same request through the API.
      const api = await post(`${server.url}/v1/e2e`, {
        model: "prefix_L5",
        name: "Blue Spice",
        eatType: "coffee shop",
        food: "French",
        priceRange: "cheap",
        "customer rating": "5 out of 5",
        area: "riverside",
        familyFriendly: "yes",
        near: "Crowne Plaza Hotel",
        num_beams: 1,
        max_tokens: 60,
      });
      const want = (api.body.choices as { output: string }[])[0].output;
      assert.ok(want.length > 10, want);
      assert.equal(shown.output, want);
      // It streamed: the page showed several growing prefixes of the text before the end.
      const partial = shown.seen.filter((t) => t.length > 0 && t.length < want.length);
      assert.ok(partial.length >= 3, `streamed pieces: ${JSON.stringify(shown.seen)}`);
      assert.match(shown.batch, /rode in a batch of \d+ row/);
      assert.match(shown.live, /tokens\/s/);
      console.log(`page streamed ${shown.seen.length} updates: "${shown.output}" (${shown.batch})`);
    } finally {
      await devtools?.send("Browser.close").catch(() => {});
      devtools?.close();
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.status;
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      await server.shutdown(2000);
      model.dispose();
    }
  },
});
