/**
 * The page's engine worker: runs the library off the main thread (the WebAssembly backend waits
 * on its own worker threads with `Atomics.wait`, which a page's main thread may not do) and
 * answers the requests of `protocol.ts`.
 *
 * @module
 */
import { Engine } from "./engine_core.ts";
import { parseE2EText } from "../data/e2e.ts";
import { parseComputedPrefix, parsePeftPrefix } from "../models/prefix_format.ts";
import type { Event, Request } from "./protocol.ts";

const scope = globalThis as unknown as {
  postMessage(m: Event): void;
  onmessage: ((e: MessageEvent<{ id: number; req: Request }>) => void) | null;
};

let engine: Engine | null = null;
let stopRequested = false;
let queue: Promise<void> = Promise.resolve();

function need(): Engine {
  if (!engine) throw new Error("engine not initialised");
  return engine;
}

async function handle(id: number, req: Request): Promise<unknown> {
  const post = (e: Event) => scope.postMessage(e);
  switch (req.op) {
    case "init":
      engine?.dispose();
      engine = await Engine.create({
        backend: req.backend,
        threads: req.threads,
        kernelWorkerUrl: new URL("./kernel_worker.js", import.meta.url),
      });
      return engine.info;
    case "loadModel": {
      const t0 = performance.now();
      const e = need();
      await e.loadModel(req.url, (loaded, total) => post({ id, type: "progress", loaded, total }));
      const c = e.model!.config;
      return {
        nLayer: c.nLayer,
        nEmbd: c.nEmbd,
        nHead: c.nHead,
        parameters: e.model!.numParameters(),
        ms: performance.now() - t0,
      };
    }
    case "loadPrefix":
      await need().loadPrefix(req.url, req.format);
      return need().prefix ? { prefixLen: need().prefix!.config.prefixLen } : null;
    case "loadPrefixFiles": {
      const p = req.format === "peft"
        ? parsePeftPrefix(req.config, req.safetensors, "uploaded peft folder")
        : parseComputedPrefix(req.config, req.safetensors, "uploaded prefix folder");
      need().usePrefix(p, "uploaded prefix");
      return { prefixLen: p.config.prefixLen };
    }
    case "decode":
      return await need().decode(
        req.mr,
        req.settings,
        (tokens, text) => post({ id, type: "tokens", tokens: [...tokens], text }),
      );
    case "train": {
      stopRequested = false;
      const pairs = parseE2EText(req.text, req.source);
      return await need().train(
        pairs,
        req.settings,
        (step) => post({ id, type: "step", step }),
        () => stopRequested,
      );
    }
    case "useTrained": {
      const e = need();
      if (!e.trained) throw new Error("no prefix has been trained in this tab");
      e.usePrefix(e.trained, "trained prefix");
      return { prefixLen: e.trained.config.prefixLen };
    }
    case "stop":
      stopRequested = true;
      return null;
    case "export":
      return need().prefixFiles(req.format);
  }
}

scope.onmessage = (e) => {
  const { id, req } = e.data;
  // "stop" must reach a running training at once; everything else runs in order.
  if (req.op === "stop") {
    stopRequested = true;
    scope.postMessage({ id, type: "done", result: null });
    return;
  }
  queue = queue.then(async () => {
    try {
      scope.postMessage({ id, type: "done", result: await handle(id, req) });
    } catch (err) {
      scope.postMessage({ id, type: "error", message: (err as Error).message ?? String(err) });
    }
  });
};
