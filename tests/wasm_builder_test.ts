/**
 * Unit tests of the WebAssembly module builder: LEB128 encodings (known byte sequences), and
 * tiny generated functions that must compute the right thing.
 */
import assert from "node:assert/strict";
import {
  call,
  callIndirect,
  detectFeatures,
  f32,
  f32x4,
  i32,
  i64,
  lane,
  load,
  memOp,
  ModuleBuilder,
  op,
  readSleb,
  readUleb,
  shuffle32,
  store,
  writeSleb,
  writeUleb,
} from "../kernels/wasm/builder.ts";

function bytesOf(fn: (out: number[]) => void): number[] {
  const out: number[] = [];
  fn(out);
  return out;
}

async function instantiate(
  m: ModuleBuilder,
  imports: WebAssembly.Imports = {},
): Promise<Record<string, CallableFunction>> {
  const bytes = m.toBytes() as BufferSource;
  assert.ok(WebAssembly.validate(bytes), "module must validate");
  const { instance } = await WebAssembly.instantiate(bytes, imports);
  return instance.exports as Record<string, CallableFunction>;
}

Deno.test("LEB128: known encodings and round trips", () => {
  // Examples from the DWARF spec / Wikipedia.
  assert.deepEqual(bytesOf((o) => writeUleb(o, 624485)), [0xe5, 0x8e, 0x26]);
  assert.deepEqual(bytesOf((o) => writeUleb(o, 0)), [0x00]);
  assert.deepEqual(bytesOf((o) => writeUleb(o, 127)), [0x7f]);
  assert.deepEqual(bytesOf((o) => writeUleb(o, 128)), [0x80, 0x01]);
  assert.deepEqual(bytesOf((o) => writeSleb(o, -123456)), [0xc0, 0xbb, 0x78]);
  assert.deepEqual(bytesOf((o) => writeSleb(o, -1)), [0x7f]);
  assert.deepEqual(bytesOf((o) => writeSleb(o, 63)), [0x3f]);
  assert.deepEqual(bytesOf((o) => writeSleb(o, 64)), [0xc0, 0x00]);
  assert.deepEqual(bytesOf((o) => writeSleb(o, -64)), [0x40]);
  assert.deepEqual(bytesOf((o) => writeSleb(o, -65)), [0xbf, 0x7f]);
  for (const v of [0n, 1n, 300n, 2n ** 32n - 1n, 2n ** 63n + 5n]) {
    assert.equal(readUleb(bytesOf((o) => writeUleb(o, v)), 0).value, v);
  }
  for (const v of [0n, -1n, 64n, -64n, -(2n ** 31n), 2n ** 40n, -(2n ** 63n)]) {
    assert.equal(readSleb(bytesOf((o) => writeSleb(o, v)), 0).value, v);
  }
  assert.throws(() => writeUleb([], -1));
});

Deno.test("builder: scalar function, locals and a loop", async () => {
  const m = new ModuleBuilder();
  m.addFunction("add", ["i32", "i32"], ["i32"], (f, a, b) => f.emit(op("i32.add", a, b)));
  // Σ_{i<n} i·i computed with a forRange loop.
  m.addFunction("sumsq", ["i32"], ["i64"], (f, n) => {
    const i = f.local("i32");
    const s = f.local("i64");
    f.forRange(i, i32(0), n, 1, () => {
      f.set(
        s,
        op("i64.add", s, op("i64.mul", op("i64.extend_i32_s", i), op("i64.extend_i32_s", i))),
      );
    });
    f.emit(s);
  });
  m.addFunction("big", [], ["i64"], (f) => f.emit(i64(-(2n ** 40n))));
  m.addFunction("fl", ["f32"], ["f32"], (f, x) => f.emit(op("f32.mul", x, f32(0.5))));
  const ex = await instantiate(m);
  assert.equal(ex.add(2, 40), 42);
  assert.equal(ex.add(0x7fffffff, 1), -0x80000000);
  assert.equal(ex.sumsq(100), 328350n); // n(n−1)(2n−1)/6 for n = 100
  assert.equal(ex.big(), -(2n ** 40n));
  assert.equal(ex.fl(3), 1.5);
});

Deno.test("builder: memory import, SIMD, relaxed FMA, calls and call_indirect", async () => {
  const feats = detectFeatures();
  assert.equal(typeof feats.relaxedSimd, "boolean");
  assert.ok(feats.simd, "Deno's V8 has WebAssembly SIMD");
  const m = new ModuleBuilder();
  m.importMemory({ module: "env", name: "memory", initial: 1, maximum: 4, shared: true });
  const helper = m.addFunction(
    undefined,
    ["i32"],
    ["i32"],
    (f, x) => f.emit(op("i32.mul", x, i32(3))),
  );
  const twice = m.addFunction(
    undefined,
    ["i32"],
    ["i32"],
    (f, x) => f.emit(op("i32.shl", x, i32(1))),
  );
  m.setTable([helper, twice]);
  const ti = m.typeIndex(["i32"], ["i32"]);
  m.addFunction("viaCall", ["i32"], ["i32"], (f, x) => f.emit(call(helper, x)));
  m.addFunction(
    "viaTable",
    ["i32", "i32"],
    ["i32"],
    (f, slot, x) => f.emit(callIndirect(ti, slot, x)),
  );
  // out[0..4) = a·b + c on four lanes at byte addresses a=0, b=16, c=32, out=48.
  m.addFunction("fma4", [], [], (f) => {
    const r = feats.relaxedSimd
      ? op(
        "f32x4.relaxed_madd",
        load("v128.load", i32(0)),
        load("v128.load", i32(16)),
        load("v128.load", i32(32)),
      )
      : op(
        "f32x4.add",
        op("f32x4.mul", load("v128.load", i32(0)), load("v128.load", i32(16))),
        load("v128.load", i32(32)),
      );
    f.do(store("v128.store", i32(48), r));
  });
  // Reverses four lanes with a shuffle and returns lane 0 + an atomic load.
  m.addFunction("rev0", [], ["f32"], (f) => {
    f.emit(lane("f32x4.extract_lane", shuffle32(f32x4(1, 2, 3, 4), f32x4(0), [3, 2, 1, 0]), 0));
  });
  m.addFunction("atomicLoad", ["i32"], ["i32"], (f, a) => f.emit(memOp("i32.atomic.load", [a])));
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 4, shared: true });
  const ex = await instantiate(m, { env: { memory } });
  assert.equal(ex.viaCall(5), 15);
  assert.equal(ex.viaTable(0, 5), 15);
  assert.equal(ex.viaTable(1, 5), 10);
  const fl = new Float32Array(memory.buffer);
  fl.set([1, 2, 3, 4, 0.5, 0.5, 2, -1, 10, 20, 30, 40], 0);
  ex.fma4();
  assert.deepEqual(Array.from(fl.subarray(12, 16)), [10.5, 21, 36, 36]);
  assert.equal(ex.rev0(), 4);
  new Int32Array(memory.buffer)[100] = 77;
  assert.equal(ex.atomicLoad(400), 77);
});

Deno.test("builder: 64-bit memory addressing", async () => {
  if (!detectFeatures().memory64) {
    console.log("memory64 not supported here: skipping");
    return;
  }
  const m = new ModuleBuilder();
  m.importMemory({ module: "env", name: "memory", initial: 1, maximum: 2, memory64: true });
  m.addFunction("put", ["i64", "f32"], [], (f, a, v) => f.do(store("f32.store", a, v, 8)));
  const memory = new WebAssembly.Memory(
    { initial: 1n, maximum: 2n, address: "i64" } as unknown as WebAssembly.MemoryDescriptor,
  );
  const ex = await instantiate(m, { env: { memory } });
  ex.put(100n, 2.5);
  assert.equal(new DataView(memory.buffer).getFloat32(108, true), 2.5);
});

Deno.test("builder: a branch to a label outside its construct is rejected", () => {
  const m = new ModuleBuilder();
  assert.throws(() =>
    m.addFunction("bad", [], [], (f) => {
      let saved: unknown;
      f.block((l) => (saved = l));
      f.br(saved as never);
    })
  );
});
