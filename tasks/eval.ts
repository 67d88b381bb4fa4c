/**
 * `deno task eval REFS OUTPUTS [--json] [--meteor-dir DIR] [--no-meteor]`
 *
 * Scores system outputs against references with the five E2E NLG Challenge
 * metrics, reading the official script's formats (plain text outputs one per
 * line and references in blank-line-separated blocks, or CSV/TSV files with MR
 * and text columns). Prints a table (BLEU as a fraction, 4 decimals, like
 * `measure_scores.py`) or, with `--json`, the unrounded scores as JSON.
 * Input problems end with exit code 1 and a one-line message naming the file
 * and line.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { EvalInputError, readEvalData, scoreAll } from "../metrics/mod.ts";
import type { E2EScores } from "../metrics/mod.ts";

const USAGE = `Usage: deno task eval REFS OUTPUTS [--json] [--meteor-dir DIR] [--no-meteor]

  REFS      references: text (blocks of references separated by blank lines,
            one block per output) or .csv/.tsv with MR and reference columns
  OUTPUTS   system outputs: text (one per line) or .csv/.tsv with MR and output columns

  --json            print the unrounded scores as JSON
  --meteor-dir DIR  METEOR resource directory (default: the METEOR module's default)
  --no-meteor       skip METEOR
  -h, --help        show this help`;

/** Parsed command line. */
interface EvalArgs {
  refs: string;
  outputs: string;
  json: boolean;
  meteorDir?: string;
  meteor: boolean;
}

/** A command-line problem (printed with the usage line). */
class UsageError extends Error {}

function parseCommandLine(argv: string[]): EvalArgs | null {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: "boolean", default: false },
        "meteor-dir": { type: "string" },
        "no-meteor": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return null;
  if (positionals.length !== 2) {
    throw new UsageError(
      `expected 2 arguments (REFS OUTPUTS), got ${positionals.length}`,
    );
  }
  return {
    refs: positionals[0],
    outputs: positionals[1],
    json: values.json,
    meteorDir: values["meteor-dir"],
    meteor: !values["no-meteor"],
  };
}

/** The score table as measure_scores.py rounds it. */
function formatTable(scores: E2EScores, count: number): string {
  const rows: [string, string][] = [
    ["BLEU", scores.BLEU.toFixed(4)],
    ["NIST", scores.NIST.toFixed(4)],
    ["METEOR", scores.METEOR === null ? "n/a" : scores.METEOR.toFixed(4)],
    ["ROUGE_L", scores.ROUGE_L.toFixed(4)],
    ["CIDEr", scores.CIDEr.toFixed(4)],
  ];
  const lines = ["metric   score", ...rows.map(([m, v]) => `${m.padEnd(8)} ${v}`)];
  lines.push(`# ${count} outputs`);
  if (scores.meteorInfo !== null && scores.meteorInfo.note !== "") {
    lines.push(`# METEOR: ${scores.meteorInfo.note}`);
  }
  if (scores.METEOR === null) lines.push("# METEOR: not computed (--no-meteor)");
  return lines.join("\n");
}

/**
 * Runs the CLI.
 *
 * @param argv Command-line arguments (without the program).
 * @returns The process exit code.
 */
export async function main(argv: string[]): Promise<number> {
  let args: EvalArgs | null;
  try {
    args = parseCommandLine(argv);
  } catch (e) {
    console.error(`eval: ${(e as Error).message}\n\n${USAGE}`);
    return 1;
  }
  if (args === null) {
    console.log(USAGE);
    return 0;
  }
  try {
    const data = await readEvalData(args.refs, args.outputs);
    const scores = await scoreAll(data.outputs, data.refs, {
      meteor: args.meteor,
      meteorDir: args.meteorDir,
    });
    if (args.json) {
      console.log(JSON.stringify(
        { refs: args.refs, outputs: args.outputs, count: data.outputs.length, ...scores },
        null,
        2,
      ));
    } else {
      console.log(formatTable(scores, data.outputs.length));
    }
    return 0;
  } catch (e) {
    // input problems are expected: a message, no stack trace
    const msg = e instanceof EvalInputError ? e.message : `${(e as Error).message ?? e}`;
    console.error(`eval: ${msg}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
