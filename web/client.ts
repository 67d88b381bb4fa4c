/**
 * The page's side of the engine worker: typed requests with their progress events.
 *
 * @module
 */
import type { Event, Request, Results } from "./protocol.ts";

/** Callbacks for the events of one request. */
export interface Handlers {
  /** Bytes loaded of a model. */
  progress?: (loaded: number, total: number) => void;
  /** The best beam so far while decoding. */
  tokens?: (tokens: number[], text: string) => void;
  /** A finished training step. */
  step?: (s: Results["train"][number]) => void;
}

/** Talks to one engine worker. */
export class EngineClient {
  #worker: Worker;
  #next = 1;
  #pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; on: Handlers }
  >();

  /** Starts the worker from `url` (the built `engine.js`). */
  constructor(url: URL) {
    this.#worker = new Worker(url, { type: "module" });
    this.#worker.onmessage = (e: MessageEvent<Event>) => {
      const ev = e.data, p = this.#pending.get(ev.id);
      if (!p) return;
      switch (ev.type) {
        case "progress":
          p.on.progress?.(ev.loaded, ev.total);
          break;
        case "tokens":
          p.on.tokens?.(ev.tokens, ev.text);
          break;
        case "step":
          p.on.step?.(ev.step);
          break;
        case "done":
          this.#pending.delete(ev.id);
          p.resolve(ev.result);
          break;
        case "error":
          this.#pending.delete(ev.id);
          p.reject(new Error(ev.message));
          break;
      }
    };
    this.#worker.onerror = (e) => {
      const err = new Error(`engine worker failed: ${e.message}`);
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    };
  }

  /** Sends `req`; resolves with its result. */
  call<R extends Request>(req: R, on: Handlers = {}): Promise<Results[R["op"]]> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, on });
      this.#worker.postMessage({ id, req });
    });
  }

  /** Stops the worker. */
  terminate(): void {
    this.#worker.terminate();
  }
}
