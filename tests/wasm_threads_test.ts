/** The wasm backend's thread pool: jobs run on workers over the shared memory, failures surface. */
import assert from "node:assert/strict";
import { detectFeatures, i32, ModuleBuilder, op, store } from "../kernels/wasm/builder.ts";
import { SLOT_BYTES, ThreadPool } from "../kernels/wasm/threads.ts";

const ok = detectFeatures().threads;
if (!ok) console.log("no shared memory/atomics here: skipping the thread pool tests");

Deno.test({
  name: "thread pool: workers run jobs on the shared memory; traps become errors",
  ignore: !ok,
  fn: async () => {
    const m = new ModuleBuilder();
    m.importMemory({ module: "env", name: "memory", initial: 1, maximum: 2, shared: true });
    // put(addr, v): memory[addr] = v·2
    m.addFunction(
      "put",
      ["i32", "i32"],
      [],
      (f, a, v) => f.do(store("i32.store", a, op("i32.mul", v, i32(2)))),
    );
    m.addFunction("trap", [], [], (f) => f.emit(op("unreachable")));
    const module = await WebAssembly.compile(m.toBytes() as BufferSource);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 2, shared: true });
    const pool = await ThreadPool.create(module, memory, 0, 2, ["put", "trap"]);
    assert.equal(pool.size, 2);
    const mem = new Int32Array(memory.buffer);
    const base = 2 * SLOT_BYTES;
    for (let round = 1; round <= 50; round++) {
      pool.post("put", [[base, round], [base + 4, -round]]);
      pool.wait();
      assert.deepEqual([mem[base / 4], mem[base / 4 + 1]], [2 * round, -2 * round]);
    }
    pool.post("trap", [[]]);
    assert.throws(() => pool.wait(), /kernel failed on a worker thread/);
    // The worker survives a failed job.
    pool.post("put", [[base, 21]]);
    pool.wait();
    assert.equal(mem[base / 4], 42);
    assert.throws(() => pool.post("nope", [[]]), /not available to workers/);
    pool.close();
    assert.equal(pool.size, 0);
    assert.throws(() => pool.post("put", [[base, 1]]), /after close/);
  },
});
