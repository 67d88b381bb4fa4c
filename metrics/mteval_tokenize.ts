/**
 * The text normalisation of NIST's `mteval-v13a.pl` (its default `tokenization`
 * sub, not the `--international-tokenization` one), which the official E2E NLG
 * scoring script uses for BLEU and NIST.
 *
 * The Perl script works on UTF-8-decoded strings, so its `\s` is Perl's Unicode
 * whitespace class; the other classes in its rules are ASCII ranges. Each
 * substitution below is the Perl rule rewritten as a JavaScript regex with the
 * same leftmost, non-overlapping `/g` semantics.
 *
 * @module
 */

/** Perl's `\s` on Unicode strings (Perl >= 5.18, which also counts vertical tab). */
export const PERL_WHITESPACE_CLASS: string =
  "\\t\\n\\v\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000";

const PERL_WS_RUN = new RegExp(`[${PERL_WHITESPACE_CLASS}]+`, "g");
const PERL_WS_LEADING = new RegExp(`^[${PERL_WHITESPACE_CLASS}]+`);
const PERL_WS_TRAILING = new RegExp(`[${PERL_WHITESPACE_CLASS}]+$`);

/** Options of {@link mtevalTokenize}. */
export interface MtevalTokenizeOptions {
  /** Keep upper case, as mteval's `-c` flag does (the E2E script does not use it). */
  preserveCase?: boolean;
}

/**
 * Normalises one segment exactly as mteval-v13a's `tokenization` sub does:
 * SGML entity decoding (`&quot; &amp; &lt; &gt;`), ASCII-only lower-casing,
 * splitting off ASCII punctuation, splitting `.` and `,` unless they sit between
 * digits, splitting `-` after a digit, and collapsing whitespace.
 *
 * @param text One segment (one output or one reference).
 * @param opts See {@link MtevalTokenizeOptions}.
 * @returns The normalised segment, tokens separated by single spaces ("" if none).
 */
export function mtevalTokenize(text: string, opts: MtevalTokenizeOptions = {}): string {
  let t = text;
  // language-independent part
  t = t.replace(/<skipped>/g, "");
  t = t.replace(/-\n/g, "");
  t = t.replace(/\n/g, " ");
  t = t.replace(/&quot;/g, '"');
  t = t.replace(/&amp;/g, "&");
  t = t.replace(/&lt;/g, "<");
  t = t.replace(/&gt;/g, ">");
  // language-dependent part
  t = ` ${t} `;
  // Perl's `tr/[A-Z]/[a-z]/` maps only ASCII capitals ('[' and ']' map to themselves).
  if (!opts.preserveCase) t = t.replace(/[A-Z]+/g, (run) => run.toLowerCase());
  // [{-~ [-` space-& (-+ :-@ /]: all ASCII punctuation except ' - . , and digits/letters
  t = t.replace(/([{-~[-` -&(-+:-@/])/g, " $1 ");
  t = t.replace(/([^0-9])([.,])/g, "$1 $2 ");
  t = t.replace(/([.,])([^0-9])/g, " $1 $2");
  t = t.replace(/([0-9])(-)/g, "$1 $2 ");
  t = t.replace(PERL_WS_RUN, " ");
  t = t.replace(PERL_WS_LEADING, "");
  t = t.replace(PERL_WS_TRAILING, "");
  return t;
}

const PERL_WS_SPLIT = new RegExp(`[${PERL_WHITESPACE_CLASS}]+`);

/**
 * Splits a normalised segment into words as mteval's `split /\s+/` does
 * (an empty segment has no words).
 *
 * @param normalised Output of {@link mtevalTokenize}.
 * @returns The words.
 */
export function mtevalWords(normalised: string): string[] {
  if (normalised === "") return [];
  const words = normalised.split(PERL_WS_SPLIT);
  // Perl's split drops trailing empty fields (a leading one cannot occur: the text is trimmed).
  while (words.length > 0 && words[words.length - 1] === "") words.pop();
  return words;
}
