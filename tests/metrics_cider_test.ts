// CIDEr on hand-computed cases, following pycocoevalcap's `Cider` (tf-idf with
// document frequencies from the references, idf = log(#instances) - log(max(1, df)),
// clipped cosine per n-gram order, Gaussian length penalty on the bigram count with
// sigma = 6, mean over n = 1..4 and references, times 10). The same cases agree
// with the official script.
import assert from "node:assert/strict";
import { cider, ciderScoresTokenized } from "../metrics/cider.ts";
import { assertNear } from "./helpers/close.ts";

Deno.test("CIDEr: identical outputs of at least 4 words score 10", () => {
  // 2 instances with disjoint vocabularies: every n-gram has df 1, weight log 2;
  // each order's cosine is 1, no length difference -> mean 1 -> x10
  assertNear(cider(["a b c d", "e f g h"], [["a b c d"], ["e f g h"]]), 10, "CIDEr", 1e-12);
});

Deno.test("CIDEr: a 2-word identical output only gets the 1- and 2-gram halves", () => {
  // instance 1 "a b" vs "a b": orders 1 and 2 have cosine 1; orders 3 and 4 have no
  // n-grams (zero norms, similarity left at 0) -> mean (1+1+0+0)/4 -> 5
  // instance 2 "c d" vs "e f": nothing in common -> 0; corpus mean 2.5
  assertNear(cider(["a b", "c d"], [["a b"], ["e f"]]), 2.5, "CIDEr", 1e-12);
});

Deno.test("CIDEr: clipping, unseen n-grams and the length penalty", () => {
  // instance 1: output "a b c", ref "a b"; instance 2: output "x", ref "y z". N = 2,
  // all reference n-grams have df 1 -> weight log 2; unseen ones (c, "b c", "a b c")
  // have df 0 -> max(1, 0) -> weight log 2 too.
  // order 1: hyp (a, b, c), ref (a, b): sum min*ref = 2 L^2, norms sqrt(3) L, sqrt(2) L
  //          -> 2 / sqrt(6)
  // order 2: hyp (ab, bc), ref (ab): L^2 / (sqrt(2) L * L) = 1 / sqrt(2)
  // orders 3, 4: reference norm 0 -> 0
  // bigram counts 2 vs 1 -> delta 1 -> penalty exp(-1 / 72)
  // instance 1 = (2/sqrt(6) + 1/sqrt(2)) * exp(-1/72) / 4 * 10; instance 2 = 0
  const s1 = (2 / Math.sqrt(6) + 1 / Math.sqrt(2)) * Math.exp(-1 / 72) / 4 * 10;
  const scores = ciderScoresTokenized(["a b c", "x"], [["a b"], ["y z"]]);
  assertNear(scores[0], s1, "instance 1", 1e-12);
  assert.equal(scores[1], 0);
  assertNear(cider(["a b c", "x"], [["a b"], ["y z"]]), s1 / 2, "CIDEr", 1e-12); // 1.8782356...
});

Deno.test("CIDEr: an n-gram found in every instance's references carries no weight", () => {
  // "the" occurs in both reference sets: idf = log 2 - log 2 = 0. Instance 1 output
  // "the" vs ref "the a": its only unigram has weight 0 -> norm 0 -> similarity 0.
  // Instance 2 output "b" vs ref "the b": order 1 hyp {b: L}, ref {the: 0, b: L} ->
  // L^2 / (L * L) = 1; order 2: the output has no bigram -> 0; bigram counts 0 vs 1 ->
  // penalty exp(-1/72). Score = exp(-1/72) / 4 * 10.
  const scores = ciderScoresTokenized(["the", "b"], [["the a"], ["the b"]]);
  assert.equal(scores[0], 0);
  assertNear(scores[1], 2.5 * Math.exp(-1 / 72), "instance 2", 1e-12);
});

Deno.test("CIDEr: a one-instance corpus scores 0 (log of one document)", () => {
  // pycocoevalcap's idf base is log(#instances) = log 1 = 0, so all weights vanish
  assert.equal(cider(["a b c d"], [["a b c d"]]), 0);
});

Deno.test("CIDEr: empty output and multiple references", () => {
  // instance 1 is empty: no n-grams -> 0. Instance 2 "a b" vs refs "a b" and "x y":
  // n-grams of both instances' refs are distinct, df 1 -> weight log 2. Against "a b":
  // orders 1-2 cosine 1 -> sum (1+1+0+0); against "x y": 0. Mean over orders and the 2
  // references: 2/4/2 -> x10 = 2.5; corpus mean (0 + 2.5) / 2
  assertNear(cider(["", "a b"], [["p q"], ["a b", "x y"]]), 1.25, "CIDEr", 1e-12);
});
