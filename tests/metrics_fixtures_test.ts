// Our metrics against the figures the official E2E NLG scoring script printed for the
// system outputs in ../shared/e2e-metrics-fixtures (scores.tsv, 4 decimals).
// Skipped where ../shared is absent: the product never needs it.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { bleuNist } from "../metrics/bleu_nist.ts";
import { ciderTokenized } from "../metrics/cider.ts";
import { readEvalData } from "../metrics/formats.ts";
import { scoreAll } from "../metrics/mod.ts";
import { cocoTokenizeCaptions } from "../metrics/ptb_tokenize.ts";
import { rougeLTokenized } from "../metrics/rouge.ts";

const FIXTURES = fileURLToPath(new URL("../../shared/e2e-metrics-fixtures/", import.meta.url));
const METEOR_DIR = fileURLToPath(new URL("../../shared/meteor/", import.meta.url));

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const haveFixtures = exists(`${FIXTURES}scores.tsv`);
const haveMeteor = exists(`${METEOR_DIR}english.synsets`);
if (!haveFixtures) {
  console.log(`metrics_fixtures_test: skipped, ${FIXTURES} is absent (no shared data here)`);
} else if (!haveMeteor) {
  console.log(`metrics_fixtures_test: METEOR check skipped, ${METEOR_DIR} is absent`);
}

interface Row {
  outputs: string;
  refs: string;
  BLEU: string;
  NIST: string;
  METEOR: string;
  ROUGE_L: string;
  CIDEr: string;
}

async function readScores(): Promise<Row[]> {
  const lines = (await Deno.readTextFile(`${FIXTURES}scores.tsv`)).trim().split("\n");
  const header = lines[0].split("\t");
  assert.deepEqual(header, [
    "outputs",
    "refs",
    "BLEU",
    "NIST",
    "METEOR_no_paraphrase",
    "ROUGE_L",
    "CIDEr",
  ]);
  return lines.slice(1).map((l) => {
    const [outputs, refs, BLEU, NIST, METEOR, ROUGE_L, CIDEr] = l.split("\t");
    return { outputs, refs, BLEU, NIST, METEOR, ROUGE_L, CIDEr };
  });
}

Deno.test({
  name: "fixtures: BLEU, NIST, ROUGE-L and CIDEr equal the official figures to 4 decimals",
  ignore: !haveFixtures,
  fn: async () => {
    const rows = await readScores();
    assert.ok(rows.length >= 8, "scores.tsv lists the 7 outputs files and the example pair");
    // the references are shared by most rows: tokenise each references file once
    const refTokens = new Map<string, string[][]>();
    for (const row of rows) {
      const data = await readEvalData(FIXTURES + row.refs, FIXTURES + row.outputs);
      assert.equal(data.outputs.length, data.refs.length);
      let refs = refTokens.get(row.refs);
      if (refs === undefined) {
        const flat = cocoTokenizeCaptions(data.refs.flat());
        let k = 0;
        refs = data.refs.map((rs) => rs.map(() => flat[k++]));
        refTokens.set(row.refs, refs);
      }
      const outs = cocoTokenizeCaptions(data.outputs);
      const { bleu, nist } = bleuNist(data.outputs, data.refs);
      const got = {
        BLEU: bleu.toFixed(4),
        NIST: nist.toFixed(4),
        ROUGE_L: rougeLTokenized(outs, refs).toFixed(4),
        CIDEr: ciderTokenized(outs, refs).toFixed(4),
      };
      const want = { BLEU: row.BLEU, NIST: row.NIST, ROUGE_L: row.ROUGE_L, CIDEr: row.CIDEr };
      assert.deepEqual(got, want, row.outputs);
    }
  },
});

Deno.test({
  name: "fixtures: scoreAll end to end on the official example pair (METEOR without paraphrase)",
  ignore: !haveFixtures || !haveMeteor,
  fn: async () => {
    const row = (await readScores()).find((r) => r.outputs === "example-outputs.txt");
    assert.ok(row, "scores.tsv has the example pair");
    const data = await readEvalData(FIXTURES + row.refs, FIXTURES + row.outputs);
    const s = await scoreAll(data.outputs, data.refs, { meteorDir: METEOR_DIR });
    assert.deepEqual(
      [s.BLEU, s.NIST, s.METEOR ?? NaN, s.ROUGE_L, s.CIDEr].map((x) => x.toFixed(4)),
      [row.BLEU, row.NIST, row.METEOR, row.ROUGE_L, row.CIDEr],
    );
    assert.equal(s.meteorInfo?.paraphrase, false);
  },
});
