/**
 * `deno task bench --serve`: the server's throughput with N concurrent clients over several
 * prefixes, against the same requests served one at a time.
 *
 * A server on a free loopback port serves a model and prefixes (by default the shipped
 * miniature and three of its trained prefixes). The same list of E2E requests (greedy, the
 * paper's prompt) is sent by one client, one request at a time, and by `clients` concurrent
 * clients, alternately for `rounds` rounds. Reported per phase: requests/s, generated tokens/s, p50 and p99 latency,
 * and the mean rows per decoding step; and whether both phases gave identical outputs.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { GPT2, GPT2Tokenizer } from "./lib.ts";
import { PrefixRegistry } from "./registry.ts";
import { startServer } from "./server.ts";
import { useBackend } from "../kernels/select.ts";

/** Options of {@link benchServe}. */
export interface ServeBenchOptions {
  /** Model folder. */
  model: string;
  /** Prefix folders (served under their folder names). */
  prefixes: string[];
  /** Concurrent clients in the batched phase. */
  clients: number;
  /** Requests per phase. */
  requests: number;
  /** `max_tokens` of each request. */
  maxTokens: number;
  /** Rounds of (one at a time, concurrent), alternated. */
  rounds: number;
  /** Rows per model call (undefined: the exact default). */
  stepRows?: number;
  /** Backend name. */
  backend: string;
  /** Progress lines. */
  log?: (s: string) => void;
}

/** Figures of one phase. */
export interface PhaseResult {
  /** Concurrent clients. */
  clients: number;
  /** Requests answered. */
  requests: number;
  /** Wall-clock seconds. */
  seconds: number;
  /** Requests per second. */
  requestsPerSecond: number;
  /** Generated tokens per second. */
  tokensPerSecond: number;
  /** Median latency (s). */
  p50: number;
  /** 99th-percentile latency (s). */
  p99: number;
  /** Mean rows per decoding step. */
  meanBatchRows: number;
}

/** The result of {@link benchServe}. */
export interface ServeBenchResult {
  /** One client, one request at a time. */
  sequential: PhaseResult;
  /** `clients` concurrent clients. */
  concurrent: PhaseResult;
  /** Throughput ratio concurrent / sequential (tokens/s). */
  speedup: number;
  /** Whether every request got the same output in both phases. */
  identicalOutputs: boolean;
  /** Rows per model call used. */
  stepRows: number;
  /** Backend. */
  backend: string;
}

/** A deterministic list of E2E meaning representations. */
export function benchMRs(n: number): Record<string, string>[] {
  const names = ["The Vaults", "Aromi", "Blue Spice", "The Eagle", "Zizzi", "Cotto", "Giraffe"];
  const types = ["pub", "coffee shop", "restaurant"];
  const foods = ["Italian", "French", "Chinese", "English", "Indian", "Japanese", "Fast food"];
  const prices = ["cheap", "moderate", "high", "less than £20", "£20-25"];
  const areas = ["riverside", "city centre"];
  return Array.from({ length: n }, (_, i) => {
    const mr: Record<string, string> = {
      name: names[i % names.length],
      eatType: types[(i >> 1) % types.length],
      food: foods[(i * 3) % foods.length],
    };
    if (i % 2 === 0) mr.priceRange = prices[i % prices.length];
    if (i % 3 !== 1) mr.area = areas[i % 2];
    if (i % 4 === 3) mr.familyFriendly = i % 8 === 3 ? "yes" : "no";
    return mr;
  });
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/** Runs both phases and returns their figures. */
export async function benchServe(o: ServeBenchOptions): Promise<ServeBenchResult> {
  const log = o.log ?? (() => {});
  const backend = await useBackend(o.backend);
  const model = (await GPT2.fromPretrained(o.model, { backend })).eval();
  const tokenizer = await GPT2Tokenizer.fromDir(o.model);
  const registry = new PrefixRegistry(model.config, backend);
  for (const dir of o.prefixes) {
    // A run's prefix/ or peft/ folder is named by its run folder.
    const parts = dir.replace(/\/+$/, "").split("/");
    const name = ["prefix", "peft"].includes(parts.at(-1)!) && parts.length > 1
      ? parts.at(-2)!
      : parts.at(-1)!;
    await registry.add(name, dir);
  }
  const names = registry.names();
  const server = await startServer({
    model,
    tokenizer,
    registry,
    modelName: o.model,
    port: 0,
    maxQueue: Math.max(64, o.requests),
    maxRows: Math.max(32, o.clients),
    stepRows: o.stepRows,
    log: () => {},
  });
  const mrs = benchMRs(o.requests);
  const bodies = mrs.map((mr, i) => ({
    model: names[i % names.length],
    ...mr,
    num_beams: 1,
    max_tokens: o.maxTokens,
  }));
  /** One pass over every request with `clients` concurrent clients. */
  const pass = async (clients: number) => {
    const outputs: string[] = new Array(bodies.length);
    const latencies: number[] = [];
    let tokens = 0, next = 0;
    const m = server.metrics;
    const rows0 = m.batchRows.sum, steps0 = m.batchRows.count;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: clients }, async () => {
      while (next < bodies.length) {
        const i = next++;
        const s = performance.now();
        const res = await fetch(`${server.url}/v1/e2e`, {
          method: "POST",
          body: JSON.stringify(bodies[i]),
        });
        const body = await res.json();
        if (res.status !== 200) {
          throw new Error(`request ${i}: ${res.status} ${JSON.stringify(body)}`);
        }
        latencies.push((performance.now() - s) / 1000);
        outputs[i] = body.choices[0].text;
        tokens += body.usage.completion_tokens;
      }
    }));
    return {
      seconds: (performance.now() - t0) / 1000,
      tokens,
      latencies,
      outputs,
      rows: m.batchRows.sum - rows0,
      steps: m.batchRows.count - steps0,
    };
  };
  type Pass = Awaited<ReturnType<typeof pass>>;
  const summarise = (clients: number, passes: Pass[]): PhaseResult => {
    const seconds = passes.reduce((t, p) => t + p.seconds, 0);
    const tokens = passes.reduce((t, p) => t + p.tokens, 0);
    const latencies = passes.flatMap((p) => p.latencies).sort((a, b) => a - b);
    const steps = passes.reduce((t, p) => t + p.steps, 0);
    const r: PhaseResult = {
      clients,
      requests: latencies.length,
      seconds,
      requestsPerSecond: latencies.length / seconds,
      tokensPerSecond: tokens / seconds,
      p50: quantile(latencies, 0.5),
      p99: quantile(latencies, 0.99),
      meanBatchRows: steps > 0 ? passes.reduce((t, p) => t + p.rows, 0) / steps : 0,
    };
    log(
      `${clients} client${clients === 1 ? "" : "s"}: ${r.requestsPerSecond.toFixed(2)} req/s, ${
        r.tokensPerSecond.toFixed(1)
      } tokens/s, p50 ${r.p50.toFixed(3)} s, p99 ${r.p99.toFixed(3)} s, mean batch ${
        r.meanBatchRows.toFixed(2)
      } rows`,
    );
    return r;
  };
  try {
    // One warm-up request compiles the kernels outside the measurements.
    await (await fetch(`${server.url}/v1/e2e`, {
      method: "POST",
      body: JSON.stringify(bodies[0]),
    })).body?.cancel();
    // The phases alternate (one at a time, concurrent, one at a time, ...), so that a change of
    // the machine's load during the run weighs on both alike.
    const seq: Pass[] = [], conc: Pass[] = [];
    for (let r = 0; r < o.rounds; r++) {
      seq.push(await pass(1));
      conc.push(await pass(o.clients));
      log(
        `round ${r + 1}/${o.rounds}: ${seq.at(-1)!.seconds.toFixed(1)} s one at a time, ${
          conc.at(-1)!.seconds.toFixed(1)
        } s concurrent`,
      );
    }
    const sequential = summarise(1, seq), concurrent = summarise(o.clients, conc);
    const first = seq[0].outputs;
    return {
      sequential,
      concurrent,
      speedup: concurrent.tokensPerSecond / sequential.tokensPerSecond,
      identicalOutputs: [...seq, ...conc].every((p) => p.outputs.every((t, i) => t === first[i])),
      stepRows: server.engine.stepRows,
      backend: backend.name,
    };
  } finally {
    await server.shutdown(5000);
    model.dispose();
  }
}

const USAGE =
  `usage: deno task bench --serve [--clients 16] [--requests 64] [--max-tokens 40] [--rounds 2]
       [--model DIR] [--prefixes DIR,DIR,...] [--step-rows N] [--backend auto] [--json]`;

/** CLI of `deno task bench --serve`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args,
    options: {
      serve: { type: "boolean" },
      clients: { type: "string", default: "16" },
      requests: { type: "string", default: "64" },
      "max-tokens": { type: "string", default: "40" },
      rounds: { type: "string", default: "2" },
      model: { type: "string", default: "results/mini/pretrain/model" },
      prefixes: {
        type: "string",
        default:
          "results/mini/ablation/prefix_L1/prefix,results/mini/ablation/prefix_L5/prefix,results/mini/ablation/prefix_L10/peft",
      },
      "step-rows": { type: "string" },
      backend: { type: "string", default: "auto" },
      json: { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  const int = (s: string | undefined, name: string) => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
    return n;
  };
  const r = await benchServe({
    model: v.model!,
    prefixes: v.prefixes!.split(","),
    clients: int(v.clients, "clients"),
    requests: int(v.requests, "requests"),
    maxTokens: int(v["max-tokens"], "max-tokens"),
    rounds: int(v.rounds, "rounds"),
    stepRows: v["step-rows"] === undefined ? undefined : int(v["step-rows"], "step-rows"),
    backend: v.backend!,
    log: (s) => console.error(s),
  });
  if (v.json) {
    console.log(JSON.stringify(r, null, 2));
    return 0;
  }
  const row = (name: string, p: PhaseResult) =>
    `| ${name} | ${p.clients} | ${p.requestsPerSecond.toFixed(2)} | ${
      p.tokensPerSecond.toFixed(1)
    } | ${p.p50.toFixed(3)} | ${p.p99.toFixed(3)} | ${p.meanBatchRows.toFixed(2)} |`;
  console.log(
    [
      `backend ${r.backend}, ${r.stepRows} rows per model call, ${r.sequential.requests} requests per phase; load average ${
        Deno.loadavg().map((x) => x.toFixed(2)).join(" ")
      }`,
      "",
      "| | clients | requests/s | tokens/s | p50 s | p99 s | mean batch rows |",
      "| --- | --- | --- | --- | --- | --- | --- |",
      row("one at a time", r.sequential),
      row("concurrent", r.concurrent),
      "",
      `throughput ×${r.speedup.toFixed(2)}; outputs identical in both phases: ${
        r.identicalOutputs ? "yes" : "NO"
      }`,
    ].join("\n"),
  );
  return r.identicalOutputs ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
