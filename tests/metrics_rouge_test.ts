// ROUGE-L on hand-computed cases (pycocoevalcap's definition: LCS, max precision and
// max recall over the references taken separately, F with beta = 1.2, mean over
// instances). The same cases agree with the official script.
import assert from "node:assert/strict";
import { lcsLength, rougeL, rougeLSentence } from "../metrics/rouge.ts";
import { assertNear } from "./helpers/close.ts";

Deno.test("lcsLength: classic small cases", () => {
  assert.equal(lcsLength("a b c d".split(" "), "a c d".split(" ")), 3);
  assert.equal(lcsLength("a b c".split(" "), "c b a".split(" ")), 1);
  assert.equal(lcsLength([], "a".split(" ")), 0);
  // "x a y b z c" vs "a b c w": a, b, c in order
  assert.equal(lcsLength("x a y b z c".split(" "), "a b c w".split(" ")), 3);
});

Deno.test("ROUGE-L: an identical output scores 1", () => {
  // P = R = 1 -> (1 + 1.44) * 1 * 1 / (1 + 1.44 * 1) = 1
  assertNear(rougeL(["the cat sat on the mat"], [["the cat sat on the mat"]]), 1, "ROUGE-L", 1e-12);
});

Deno.test("ROUGE-L: no common token scores 0; an empty output scores 0", () => {
  assert.equal(rougeL(["a b c"], [["x y z"]]), 0);
  // pycocoevalcap splits "" into one empty token, which matches nothing
  assert.equal(rougeL([""], [["x y z"]]), 0);
});

Deno.test("ROUGE-L: max precision and max recall may come from different references", () => {
  // output "The cat, sat on the mat." -> tokens "the cat sat on the mat" (6; punctuation dropped)
  // ref1 "the cat": LCS 2 -> P = 2/6, R = 2/2 = 1
  // ref2 "a dog sat on a mat today" (7): LCS "sat on mat" = 3 -> P = 3/6, R = 3/7
  // Pmax = 1/2, Rmax = 1 -> F = 2.44 * 0.5 * 1 / (1 + 1.44 * 0.5) = 1.22 / 1.72
  const refs = [["the cat", "a dog sat on a mat today"]];
  assertNear(rougeL(["The cat, sat on the mat."], refs), 1.22 / 1.72, "ROUGE-L", 1e-12);
});

Deno.test("ROUGE-L: the corpus score is the mean over instances", () => {
  // instance 1 as above (1.22/1.72), instance 2 identical (1)
  const refs = [["the cat", "a dog sat on a mat today"], ["q"]];
  assertNear(
    rougeL(["The cat, sat on the mat.", "q"], refs),
    (1.22 / 1.72 + 1) / 2,
    "ROUGE-L",
    1e-12,
  );
});

Deno.test("rougeLSentence: recall-weighted F (beta 1.2)", () => {
  // candidate "a b" vs ref "a b c d": LCS 2, P = 1, R = 1/2
  // F = 2.44 * 1 * 0.5 / (0.5 + 1.44 * 1) = 1.22 / 1.94
  assertNear(rougeLSentence("a b", ["a b c d"]), 1.22 / 1.94, "F", 1e-12);
  assert.throws(() => rougeLSentence("a", []), /no references/);
});
