/** The SVG plot writer: tick choice and the elements a reader needs. */
import assert from "node:assert/strict";
import { linePlot, niceTicks } from "../train/plot.ts";

Deno.test("niceTicks: 1-2-5 steps covering the range", () => {
  assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(63.2, 71.9), [64, 66, 68, 70]);
  assert.deepEqual(niceTicks(3, 3), [3]);
});

Deno.test("linePlot: axes labels, legend entries, one path per multi-point series, escaping", () => {
  const svg = linePlot([
    { name: "BLEU <prefix>", points: [[1, 60], [5, 65], [10, 66]], markers: true },
    { name: "fine-tune", points: [[1, 64], [10, 64]], dashed: true },
  ], { title: "t", xLabel: "prefix length", yLabel: "score", logX: true, xTicks: [1, 5, 10] });
  assert.match(svg, /^<svg /);
  assert.equal((svg.match(/<path /g) ?? []).length, 2);
  assert.equal((svg.match(/<circle /g) ?? []).length, 3);
  assert.match(svg, /BLEU &lt;prefix&gt;/);
  assert.match(svg, /stroke-dasharray/);
  assert.match(svg, />prefix length</);
});
