/**
 * `deno task bench`: end-to-end figures for every available backend as one table, then the
 * same-run comparison with PyTorch where `/usr/bin/python3` has torch (see `bench/`).
 *
 * ```sh
 * deno task bench [--backend cpu,wasm,webgpu|all] [--json] [--quick] [--full]
 *                  [--skip matmul,train,generate,peer] [--compare-attention]
 *                  [--peer-threads 1,2] [--peer-rounds 3] [--peer-only matmul,prefix,fine,decode]
 *                  [--medium]   # the peer comparison on a GPT-2 Medium-shaped model (24 × 1024)
 *                  [--check-loss]   # each step's loss also on the reference backend (slow)
 * deno task bench --serve [--clients 16]   # the server: concurrent clients vs one at a time
 * ```
 *
 * The comparisons with PyTorch on their own:
 *
 * ```sh
 * # beam-5 decoding (GPT-2 124M shape, prompt 32, KV cache): prefill and per-token cost, 1 and 2 threads
 * deno task bench --skip matmul,train,generate --peer-only decode --peer-rounds 5 --json
 * # GPT-2 Medium-shaped steps at 10 × 64, time and peak RSS, the loss checked on the reference backend
 * deno task bench --medium --check-loss --peer-threads 2 --json
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { Backend } from "../kernels/backend.ts";
import { backendNames, loadBackend } from "../kernels/select.ts";
import {
  benchGenerate,
  benchMatmul,
  type BenchRow,
  benchTrain,
  say,
  table,
} from "../bench/suite.ts";
import {
  comparePeer,
  type PeerOptions,
  type PeerRow,
  peerTable,
  TorchPeer,
} from "../bench/peer.ts";

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  if (args.includes("--serve")) return await (await import("../serve/bench.ts")).main(args);
  const { values } = parseArgs({
    args,
    options: {
      backend: { type: "string", default: "all" },
      json: { type: "boolean" },
      quick: { type: "boolean" },
      full: { type: "boolean" },
      skip: { type: "string", default: "" },
      "compare-attention": { type: "boolean" },
      "peer-threads": { type: "string", default: "1,2" },
      "peer-rounds": { type: "string", default: "3" },
      "peer-only": { type: "string", default: "" },
      medium: { type: "boolean" },
      "check-loss": { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(
      "usage: deno task bench [--backend cpu,wasm,webgpu|all] [--json] [--quick] [--full] " +
        "[--skip matmul,train,generate,peer] [--compare-attention] [--peer-threads 1,2] " +
        "[--peer-rounds 3] [--peer-only matmul,prefix,fine,decode] [--medium] [--check-loss]",
    );
    return 0;
  }
  const skip = new Set(values.skip!.split(",").filter(Boolean));
  const rows: BenchRow[] = [];
  if (!values.medium) {
    let names = values.backend === "all" ? backendNames() : values.backend!.split(",");
    if (values.backend === "all") {
      // WebGPU joins "all" only on a hardware adapter: on a software rasteriser it is slower
      // than the CPU.
      const { hardwareAdapterAvailable } = await import("../kernels/webgpu/device.ts");
      if (!(await hardwareAdapterAvailable().catch(() => false))) {
        names = names.filter((n) => n !== "webgpu");
      }
    }
    for (const name of names) {
      let be: Backend;
      try {
        be = await loadBackend(name);
      } catch (e) {
        say(`${name}: unavailable (${(e as Error).message})`);
        continue;
      }
      say(`benchmarking ${name} ...`);
      if (!skip.has("matmul")) rows.push(...await benchMatmul(be, !!values.quick, !!values.full));
      const slow = be.name === "cpu" && !values.full;
      const skipped = (name: string, unit: string) =>
        rows.push({
          backend: be.name,
          name,
          value: NaN,
          unit,
          note: "skipped (reference backend; --full)",
        });
      if (!skip.has("train")) {
        if (slow) skipped("GPT-2 124M train step (prefix), 10×64", "s/step");
        else rows.push(...await benchTrain(be, !!values.quick, !!values["compare-attention"]));
      }
      if (!skip.has("generate")) {
        if (slow) skipped("GPT-2 124M beam-5 generation", "tokens/s");
        else rows.push(...await benchGenerate(be));
      }
    }
  }
  let peer: PeerRow[] = [];
  let peerNote = "";
  if (!skip.has("peer")) {
    const why = await TorchPeer.unavailable();
    if (why) {
      peerNote = `PyTorch comparison skipped: ${why}`;
      say(peerNote);
    } else {
      const opts: PeerOptions = {
        threads: values["peer-threads"]!.split(",").map(Number),
        rounds: Number(values["peer-rounds"]),
        checkLoss: !!values["check-loss"],
      };
      const only = values["peer-only"]!.split(",").filter(Boolean);
      if (only.length) opts.parts = only as PeerOptions["parts"];
      if (values.medium) {
        opts.model = { nLayer: 24, nHead: 16, nEmbd: 1024 };
        opts.label = "GPT-2 Medium";
        opts.parts ??= ["prefix", "fine"];
      }
      peer = await comparePeer(opts);
    }
  }
  if (values.json) console.log(JSON.stringify({ rows, peer, peerNote }, null, 2));
  else {
    if (rows.length) console.log(table(rows));
    if (peer.length) console.log("\n" + peerTable(peer));
    if (peerNote) console.log(peerNote);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
