/** Unit tests of the wasm backend's view helpers and allocator size classes. */
import assert from "node:assert/strict";
import { checkView, collapseDims } from "../kernels/wasm/views.ts";
import { sizeClass } from "../kernels/wasm/heap.ts";

Deno.test("collapseDims merges dimensions contiguous for every operand", () => {
  // Contiguous [2, 3, 4] everywhere: one row of 24.
  assert.deepEqual(collapseDims([2, 3, 4], [[12, 4, 1], [12, 4, 1]]), {
    dims: [24],
    strides: [[1], [1]],
  });
  // A bias broadcast over rows ([0, 1]) blocks the merge: 2 rows of 4.
  assert.deepEqual(collapseDims([2, 4], [[4, 1], [0, 1]]), {
    dims: [2, 4],
    strides: [[4, 1], [0, 1]],
  });
  // Size-1 dimensions vanish; broadcast batch dims (stride 0 in both) merge with each other.
  assert.deepEqual(
    collapseDims([2, 1, 3, 5, 5], [[75, 75, 25, 5, 1], [0, 0, 0, 5, 1]]),
    { dims: [6, 25], strides: [[25, 1], [0, 1]] },
  );
  // A transposed operand keeps both dimensions.
  assert.deepEqual(collapseDims([3, 4], [[4, 1], [1, 3]]), {
    dims: [3, 4],
    strides: [[4, 1], [1, 3]],
  });
  // Rank 0 (and all-ones) become one element.
  assert.deepEqual(collapseDims([], [[], []]), { dims: [1], strides: [[0], [0]] });
  assert.deepEqual(collapseDims([1, 1], [[1, 1]]), { dims: [1], strides: [[0]] });
});

Deno.test("checkView accepts in-bounds views and names the culprit otherwise", () => {
  checkView({ shape: [2, 3], strides: [3, 1], offset: 0 }, 6, "x");
  checkView({ shape: [4, 5], strides: [-5, 1], offset: 15 }, 20, "x"); // flipped rows
  checkView({ shape: [0, 9], strides: [9, 1], offset: 100 }, 1, "x"); // empty: anything goes
  assert.throws(
    () => checkView({ shape: [2, 3], strides: [3, 1], offset: 1 }, 6, "left input"),
    /left input view \(shape \[2,3\], strides \[3,1\], offset 1\) reaches elements 1\.\.6 of a buffer of 6/,
  );
  assert.throws(
    () => checkView({ shape: [2], strides: [1, 1], offset: 0 }, 6, "y"),
    /shape \[2\] but strides \[1,1\]/,
  );
  assert.throws(
    () => checkView({ shape: [2, 2], strides: [-3, 1], offset: 0 }, 6, "z"),
    /elements -3\.\.1/,
  );
});

Deno.test("sizeClass: 16-byte multiples, at most 25% over, monotone", () => {
  let prev = 0;
  for (let b = 1; b < 1 << 20; b += 1 + (b >> 6)) {
    const c = sizeClass(b);
    assert.ok(c >= b && c % 16 === 0, `sizeClass(${b}) = ${c}`);
    assert.ok(c <= Math.max(16, b * 1.25 + 16), `sizeClass(${b}) = ${c} wastes > 25%`);
    assert.ok(c >= prev, "monotone");
    prev = c;
  }
  assert.equal(sizeClass(1000), 1024);
  assert.equal(sizeClass(1025), 1280);
});
