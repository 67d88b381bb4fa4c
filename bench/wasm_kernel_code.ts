/**
 * The generated code of a checkout's wasm kernel module, function by function, for the A/B
 * scripts (`elementwise_ab.ts`, `row_kernels_ab.ts`): which kernels changed between two
 * checkouts of this repository.
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

/**
 * The code bytes of each elementwise row kernel (by slot name) and exported kernel (by name) of
 * the kernel module of the checkout at `root`.
 */
export async function kernelCode(
  root: string,
  o: { mem64: boolean; relaxed: boolean },
): Promise<Map<string, Uint8Array>> {
  const at = (p: string) => pathToFileURL(resolve(root, p)).href;
  const { buildKernelModule } = await import(at("kernels/wasm/kernels.ts"));
  const { readUleb } = await import(at("kernels/wasm/builder.ts"));
  const m = buildKernelModule({ ...o, shared: true, maxPages: 65536 });
  const bytes: Uint8Array = m.bytes;
  const bodies: Uint8Array[] = [];
  const exported = new Map<string, number>();
  for (let pos = 8; pos < bytes.length;) {
    const id = bytes[pos++];
    const { value: size, next } = readUleb(bytes, pos);
    let { value: n, next: p } = id === 7 || id === 10 ? readUleb(bytes, next) : { value: 0n, next };
    for (; n > 0n; n--) {
      if (id === 10) {
        // The code section: each function body with its size.
        const b = readUleb(bytes, p);
        bodies.push(bytes.slice(b.next, b.next + Number(b.value)));
        p = b.next + Number(b.value);
      } else {
        // The export section: name, kind, index (the module imports no functions).
        const len = readUleb(bytes, p);
        const name = new TextDecoder().decode(bytes.slice(len.next, len.next + Number(len.value)));
        const kind = bytes[len.next + Number(len.value)];
        const idx = readUleb(bytes, len.next + Number(len.value) + 1);
        if (kind === 0) exported.set(name, Number(idx.value));
        p = idx.next;
      }
    }
    pos = next + Number(size);
  }
  // The row kernels are the module's first functions, in table-slot order.
  const out = new Map<string, Uint8Array>();
  for (const [k, slot] of m.slots as Map<string, number>) out.set(k, bodies[slot]);
  for (const [k, idx] of exported) out.set(k, bodies[idx]);
  return out;
}

/** Prints, for both memory and SIMD flavours, which kernels' code differs between two checkouts. */
export async function printKernelDiff(oldRoot: string, newRoot: string): Promise<void> {
  for (const o of [{ mem64: true, relaxed: true }, { mem64: false, relaxed: false }]) {
    const a = await kernelCode(oldRoot, o), b = await kernelCode(newRoot, o);
    const same = (x?: Uint8Array, y?: Uint8Array) =>
      !!x && !!y && x.length === y.length && x.every((v, i) => v === y[i]);
    const keys = [...new Set([...a.keys(), ...b.keys()])];
    const diff = keys.filter((k) => !same(a.get(k), b.get(k)));
    console.log(
      `kernels (memory64 ${o.mem64}, relaxed SIMD ${o.relaxed}): ` +
        `${keys.length - diff.length} identical; differ: ` +
        diff.map((k) => `${k} (${a.get(k)?.length ?? "-"} → ${b.get(k)?.length ?? "-"} B)`).join(
          ", ",
        ),
    );
  }
}
