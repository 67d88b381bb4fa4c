/**
 * Worker side of the wasm backend's thread pool. It instantiates the kernel module on the shared
 * memory, then loops synchronously: wait for a new sequence number in its control slot, run the
 * named kernel with the f64 arguments found there, publish completion. It never returns to its
 * event loop, so all communication after start-up goes through the shared memory.
 *
 * Slot layout (i32 words): 0 seq (written by the main thread), 1 done (seq of the last finished
 * job), 2 function id (−1 quits), 3 argument count, 4 error flag, 5 seq of the last job picked up;
 * f64 arguments from byte 32.
 *
 * @module
 */

/** The worker's side of its channel: `node:worker_threads`' parentPort, or a browser worker's scope. */
interface Port {
  once(type: "message", f: (m: StartMessage) => void): void;
  postMessage(m: unknown): void;
}

/** Message that starts a worker. */
interface StartMessage {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  slot: number;
  names: string[];
}

async function parentChannel(): Promise<Port | null> {
  if ("Deno" in globalThis) return (await import("node:worker_threads")).parentPort;
  const scope = globalThis as unknown as {
    postMessage?: (m: unknown) => void;
    addEventListener: (t: string, f: (e: MessageEvent) => void, o?: { once: boolean }) => void;
  };
  if (typeof scope.postMessage !== "function") return null;
  return {
    once: (type, f) => scope.addEventListener(type, (e) => f(e.data), { once: true }),
    postMessage: (m) => scope.postMessage!(m),
  };
}

const port = await parentChannel();
if (!port) throw new Error("kernels/wasm/worker.ts must run as a worker thread");

port.once("message", async (msg: StartMessage) => {
  let fns: ((...a: number[]) => void)[];
  let ctl: Int32Array;
  let args: Float64Array;
  try {
    const instance = await WebAssembly.instantiate(msg.module, { env: { memory: msg.memory } });
    fns = msg.names.map((n) => instance.exports[n] as (...a: number[]) => void);
    ctl = new Int32Array(msg.memory.buffer, msg.slot, 8);
    args = new Float64Array(msg.memory.buffer, msg.slot + 32, 24);
  } catch (e) {
    // Report start-up failures instead of leaving the pool waiting.
    port.postMessage({ error: String(e) });
    return;
  }
  // Read the sequence number before announcing readiness: the first job may be posted as soon
  // as "ready" arrives, and reading after could take that job's number for an old one.
  let seen = Atomics.load(ctl, 0);
  port.postMessage("ready");
  const a: number[] = [];
  for (;;) {
    Atomics.wait(ctl, 0, seen);
    const seq = Atomics.load(ctl, 0);
    if (seq === seen) continue;
    seen = seq;
    Atomics.store(ctl, 5, seq); // picked up (lets the caller tell a lost wake-up from a long job)
    const id = ctl[2];
    if (id < 0) break;
    const n = ctl[3];
    a.length = n;
    for (let i = 0; i < n; i++) a[i] = args[i];
    try {
      fns[id](...a);
    } catch (e) {
      ctl[4] = 1;
      console.error(`wasm backend worker: kernel ${msg.names[id]} failed: ${e}`);
    }
    Atomics.store(ctl, 1, seq);
    Atomics.notify(ctl, 1);
  }
  Atomics.store(ctl, 1, seen);
  Atomics.notify(ctl, 1);
});
