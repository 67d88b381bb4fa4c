/**
 * A pool of worker threads sharing the backend's `WebAssembly.Memory`, driven synchronously from
 * the calling thread with `Atomics.wait`/`Atomics.notify` on control slots in that memory (Deno
 * allows `Atomics.wait` on the main thread). The caller runs its own share of a job while the
 * workers run theirs, then blocks until they are done.
 *
 * In Deno, workers are `node:worker_threads` workers, unref'ed, so a forgotten pool never keeps
 * the process alive (a Deno `Worker` would, even when idle). In a browser (no `Deno` global) they
 * are module `Worker`s on `workerUrl`; the pool must then itself run in a worker, because a page's
 * main thread may not `Atomics.wait`.
 *
 * @module
 */

/** The few worker operations the pool uses, over Node-style and browser workers alike. */
interface PoolWorker {
  postMessage(m: unknown): void;
  once(type: "message" | "error", f: (v: unknown) => void): void;
  terminate(): void;
  unref(): void;
}

/** Starts one kernel worker: `node:worker_threads` under Deno, a module `Worker` elsewhere. */
async function startWorker(url: URL): Promise<PoolWorker> {
  if (!("Deno" in globalThis)) {
    const w = new Worker(url, { type: "module" });
    return {
      postMessage: (m) => w.postMessage(m),
      once: (type, f) => {
        const h = (e: Event) => {
          w.removeEventListener(type, h);
          f(type === "message" ? (e as MessageEvent).data : (e as ErrorEvent).message ?? e);
        };
        w.addEventListener(type, h);
      },
      terminate: () => w.terminate(),
      unref: () => {},
    };
  }
  const { Worker: NodeWorker } = await import("node:worker_threads");
  const w = new NodeWorker(url);
  return {
    postMessage: (m) => w.postMessage(m),
    once: (type, f) => w.once(type, f),
    terminate: () => void w.terminate(),
    unref: () => w.unref(),
  };
}

/** Bytes of shared memory each worker's control slot takes. */
export const SLOT_BYTES = 256;
const MAX_ARGS = 24;
const START_TIMEOUT_MS = 30_000;
/** How long a posted job may wait to be picked up by its worker before the pool gives up. */
export const PICKUP_TIMEOUT_MS = 10_000;

/** Synchronous job dispatch to worker threads. */
export class ThreadPool {
  private seq = 0;
  private pending = 0;
  private closed = false;

  private constructor(
    private readonly workers: PoolWorker[],
    private readonly ctl: Int32Array[],
    private readonly args: Float64Array[],
    private readonly ids: Map<string, number>,
  ) {}

  /**
   * Starts `count` workers on `memory`, each with its control slot at `slotBase + i·SLOT_BYTES`,
   * able to call the module exports `names`. `workerUrl` is the worker script (default: the
   * `worker.ts` next to this module; a bundled page passes its built copy).
   */
  static async create(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    slotBase: number,
    count: number,
    names: string[],
    workerUrl: URL = new URL("./worker.ts", import.meta.url),
  ): Promise<ThreadPool> {
    const workers: PoolWorker[] = [];
    const ctl: Int32Array[] = [];
    const args: Float64Array[] = [];
    const ready: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const slot = slotBase + i * SLOT_BYTES;
      new Uint8Array(memory.buffer, slot, SLOT_BYTES).fill(0);
      ctl.push(new Int32Array(memory.buffer, slot, 8));
      args.push(new Float64Array(memory.buffer, slot + 32, MAX_ARGS));
      let w: PoolWorker;
      try {
        w = await startWorker(workerUrl);
      } catch (e) {
        for (const o of workers) o.terminate();
        throw new Error(`wasm backend: worker start-up failed: ${e}`);
      }
      workers.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`worker ${i} not ready after ${START_TIMEOUT_MS} ms`)),
            START_TIMEOUT_MS,
          );
          w.once("message", (m: unknown) => {
            clearTimeout(timer);
            if (m === "ready") resolve();
            else reject(new Error(`worker ${i}: ${(m as { error?: string })?.error ?? m}`));
          });
          w.once("error", (e) => {
            clearTimeout(timer);
            reject(e);
          });
        }),
      );
      w.postMessage({ module, memory, slot, names });
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      for (const w of workers) w.terminate();
      throw new Error(`wasm backend: worker start-up failed: ${e}`);
    }
    for (const w of workers) w.unref();
    return new ThreadPool(workers, ctl, args, new Map(names.map((n, i) => [n, i])));
  }

  /** Number of worker threads (the caller's thread comes on top). */
  get size(): number {
    return this.closed ? 0 : this.workers.length;
  }

  /**
   * Posts one job per entry of `jobs` to workers 0.. (`fn` is an export name), without waiting.
   * Call {@link wait} after doing the caller's share.
   */
  post(fn: string, jobs: number[][]): void {
    if (this.closed) throw new Error("wasm backend: thread pool used after close()");
    if (jobs.length > this.workers.length) {
      throw new Error(`wasm backend: ${jobs.length} jobs for ${this.workers.length} workers`);
    }
    const id = this.ids.get(fn);
    if (id === undefined) throw new Error(`wasm backend: kernel ${fn} not available to workers`);
    this.seq = (this.seq + 1) | 0;
    for (let w = 0; w < jobs.length; w++) {
      const a = jobs[w];
      if (a.length > MAX_ARGS) throw new Error(`wasm backend: too many arguments for ${fn}`);
      const c = this.ctl[w];
      c[2] = id;
      c[3] = a.length;
      for (let i = 0; i < a.length; i++) this.args[w][i] = a[i];
      Atomics.store(c, 0, this.seq);
      Atomics.notify(c, 0);
    }
    this.pending = jobs.length;
  }

  /**
   * Blocks until the jobs of the last {@link post} are finished. A worker that has not even
   * picked its job up after {@link PICKUP_TIMEOUT_MS} is taken as lost: the pool closes and this
   * throws, rather than blocking forever.
   */
  wait(): void {
    let failed = false;
    const t0 = performance.now();
    for (let w = 0; w < this.pending; w++) {
      const c = this.ctl[w];
      for (;;) {
        const d = Atomics.load(c, 1);
        if (d === this.seq) break;
        if (Atomics.load(c, 5) !== this.seq && performance.now() - t0 > PICKUP_TIMEOUT_MS) {
          this.pending = 0;
          this.close();
          throw new Error(
            `wasm backend: worker ${w} did not pick up its job within ${PICKUP_TIMEOUT_MS} ms; ` +
              "threads disabled",
          );
        }
        Atomics.wait(c, 1, d, 500);
      }
      if (c[4]) {
        c[4] = 0;
        failed = true;
      }
    }
    this.pending = 0;
    if (failed) throw new Error("wasm backend: a kernel failed on a worker thread (see stderr)");
  }

  /** Stops the workers. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.workers) w.terminate();
  }
}
