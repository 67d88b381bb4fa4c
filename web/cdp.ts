/**
 * A small driver for headless Chromium over the DevTools protocol (a WebSocket), used by the
 * browser tests and the in-browser benchmark: start the browser, open a page, evaluate
 * expressions (awaiting promises), collect console output and uncaught exceptions.
 *
 * @module
 */

/** Options of {@link launchChromium}. */
export interface ChromiumOptions {
  /** The browser binary (default: `CHROMIUM`, else /usr/bin/chromium). */
  binary?: string;
  /** Expose WebGPU without a GPU ({@link WEBGPU_FLAGS}). */
  webgpu?: boolean;
  /** More command-line flags. */
  extraFlags?: string[];
}

/** The flags that run Chromium headless, as root, without background traffic. */
export const HEADLESS_FLAGS: readonly string[] = [
  "--headless=new",
  "--no-sandbox",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-default-apps",
  "--mute-audio",
];

/**
 * Flags that expose WebGPU without a GPU: ANGLE on the system's Vulkan driver (Mesa's lavapipe
 * where there is no GPU) and WebGPU's OpenGL ES backend on top of it, a compatibility-mode
 * adapter that the library requests when no core adapter but SwiftShader's is offered.
 */
export const WEBGPU_FLAGS: readonly string[] = [
  "--enable-unsafe-webgpu",
  "--use-angle=vulkan",
  "--use-webgpu-adapter=opengles",
];

/** Flags that expose WebGPU on Chromium's SwiftShader (CPU) Vulkan adapter. */
export const WEBGPU_SWIFTSHADER_FLAGS: readonly string[] = [
  "--enable-unsafe-webgpu",
  "--use-webgpu-adapter=swiftshader",
  "--enable-features=Vulkan",
];

/** Where Chromium is, or null. */
export function findChromium(binary?: string): string | null {
  const candidates = [
    binary,
    Deno.env.get("CHROMIUM"),
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
  ];
  for (const c of candidates) {
    if (!c) continue;
    try {
      if (Deno.statSync(c).isFile) return c;
    } catch { /* next */ }
  }
  return null;
}

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
  method: string;
}

/** A running Chromium with one page. */
export class Chromium {
  /** Console lines and uncaught exceptions of the page, in order. */
  readonly console: string[] = [];
  #ws: WebSocket;
  #proc: Deno.ChildProcess;
  #dir: string;
  #next = 1;
  #pending = new Map<number, Pending>();
  #session = "";
  #closed = false;

  private constructor(proc: Deno.ChildProcess, ws: WebSocket, dir: string) {
    this.#proc = proc;
    this.#ws = ws;
    this.#dir = dir;
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data as string);
      if (m.id !== undefined) {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        if (m.error) p.reject(new Error(`${p.method}: ${m.error.message}`));
        else p.resolve(m.result ?? {});
      } else if (m.method === "Runtime.consoleAPICalled") {
        const args = (m.params.args as { value?: unknown; description?: string }[])
          .map((a) => a.value ?? a.description ?? "").join(" ");
        this.console.push(`[${m.params.type}] ${args}`);
      } else if (m.method === "Runtime.exceptionThrown") {
        const d = m.params.exceptionDetails;
        this.console.push(`[exception] ${d.exception?.description ?? d.text}`);
      }
    };
    ws.onclose = () => {
      for (const p of this.#pending.values()) p.reject(new Error("browser connection closed"));
      this.#pending.clear();
    };
  }

  /** Starts Chromium headless with a fresh profile and opens a blank page. */
  static async launch(opts: ChromiumOptions = {}): Promise<Chromium> {
    const bin = findChromium(opts.binary);
    if (!bin) throw new Error("Chromium not found (install Debian's chromium or set CHROMIUM)");
    const dir = await Deno.makeTempDir({ prefix: "lf-chromium-" });
    const proc = new Deno.Command(bin, {
      args: [
        ...HEADLESS_FLAGS,
        `--user-data-dir=${dir}`,
        "--remote-debugging-port=0",
        ...(opts.webgpu ? WEBGPU_FLAGS : []),
        ...(opts.extraFlags ?? []),
        "about:blank",
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" on stderr.
    const reader = proc.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "", wsUrl = "";
    const deadline = Date.now() + 30_000;
    while (!wsUrl) {
      const r = await Promise.race([
        reader.read(),
        new Promise<{ done: true; value: undefined }>((res) =>
          setTimeout(
            () => res({ done: true, value: undefined }),
            Math.max(0, deadline - Date.now()),
          )
        ),
      ]);
      if (r.done) {
        try {
          proc.kill("SIGKILL");
        } catch { /* gone */ }
        await Deno.remove(dir, { recursive: true }).catch(() => {});
        throw new Error(`Chromium did not start:\n${text.slice(-2000)}`);
      }
      text += r.value;
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(text);
      if (m) wsUrl = m[1];
    }
    // Keep draining stderr so the browser never blocks on a full pipe.
    (async () => {
      try {
        while (!(await reader.read()).done) { /* discard */ }
      } catch { /* closed */ }
    })();
    const ws = new WebSocket(wsUrl);
    await new Promise<void>((res, rej) => {
      ws.onopen = () => res();
      ws.onerror = () => rej(new Error(`cannot connect to ${wsUrl}`));
    });
    const c = new Chromium(proc, ws, dir);
    const { targetId } = await c.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await c.send("Target.attachToTarget", { targetId, flatten: true });
    c.#session = sessionId as string;
    await c.send("Runtime.enable", {}, true);
    await c.send("Page.enable", {}, true);
    return c;
  }

  /** Sends a DevTools command (to the page's session when `page`). */
  send(
    method: string,
    params: Record<string, unknown> = {},
    page = false,
  ): Promise<Record<string, unknown>> {
    const id = this.#next++;
    const msg: Record<string, unknown> = { id, method, params };
    if (page) msg.sessionId = this.#session;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, method });
      this.#ws.send(JSON.stringify(msg));
    });
  }

  /** Opens `url` and waits until `readyExpression` (a promise, awaited) settles. */
  async goto(url: string, readyExpression = "true"): Promise<void> {
    await this.send("Page.navigate", { url }, true);
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await this.eval(`(async () => { await ${readyExpression}; return true; })()`);
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /**
   * Evaluates `expression` in the page, awaits it if it is a promise, and returns its value
   * (JSON-serialisable values only). A thrown error becomes an Error here.
   */
  async eval<T = unknown>(expression: string): Promise<T> {
    const r = await this.send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    }, true);
    const ex = r.exceptionDetails as
      | { exception?: { description?: string }; text: string }
      | undefined;
    if (ex) throw new Error(`in the page: ${ex.exception?.description ?? ex.text}`);
    return (r.result as { value: T }).value;
  }

  /** Closes the browser and removes its profile. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await Promise.race([
        this.send("Browser.close"),
        new Promise((r) => setTimeout(r, 3000)),
      ]);
    } catch { /* already closing */ }
    try {
      this.#ws.close();
    } catch { /* closed */ }
    try {
      this.#proc.kill("SIGKILL");
    } catch { /* exited */ }
    await this.#proc.status;
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
