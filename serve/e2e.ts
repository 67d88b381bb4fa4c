/**
 * E2E requests: a meaning representation given as fields, turned into the paper's prompt and
 * decoded the paper's way.
 *
 * @module
 */
import {
  E2E_DECODING as LIBRARY_E2E_DECODING,
  e2eOutputText,
  encodePrompt,
  type GPT2Tokenizer,
  OFFICIAL_TO_LINEAR_ATTRIBUTE,
  tokenizeMRValue,
} from "./lib.ts";

/**
 * Request field names accepted for each E2E attribute (official name, the paper's
 * linearised name, and a camelCase form), in the paper's attribute order.
 */
export const E2E_FIELDS: Readonly<Record<string, readonly string[]>> = {
  name: ["name"],
  eatType: ["eatType", "Type", "type"],
  food: ["food"],
  priceRange: ["priceRange", "price"],
  "customer rating": ["customer rating", "customerRating", "customer_rating", "rating"],
  area: ["area"],
  familyFriendly: ["familyFriendly", "family friendly", "family_friendly"],
  near: ["near"],
};

/**
 * The paper's decoding of E2E (the library's {@link LIBRARY_E2E_DECODING}: beam 5, at most 100
 * new tokens, Hugging Face min_length 5, the newline tokens banned), its prompt and its output
 * clean-up, as `deno task generate` does.
 */
export const E2E_DECODING = {
  numBeams: LIBRARY_E2E_DECODING.numBeams,
  maxNewTokens: LIBRARY_E2E_DECODING.maxNewTokens,
  minLength: LIBRARY_E2E_DECODING.minLength,
  badWordsIds: LIBRARY_E2E_DECODING.badWordsIds,
  /** Prompt ids: `" {mr} <|endoftext|>"`. */
  encode: (tok: GPT2Tokenizer, mr: string): number[] => encodePrompt(tok, mr),
  /** Output text of generated ids. */
  decode: (tok: GPT2Tokenizer, ids: number[]): string => e2eOutputText(tok, ids),
} as const;

/**
 * The linearised MR (`name : The Vaults | Type : pub | ...`) of a request: either `mr` (a
 * string, used as given) or the attribute fields of {@link E2E_FIELDS} (values as strings,
 * `familyFriendly` also as a boolean). Throws naming the field at fault.
 */
export function e2ePrompt(body: Record<string, unknown>): string {
  if (body.mr !== undefined) {
    if (typeof body.mr !== "string" || body.mr.trim() === "") {
      throw new Error(`"mr" must be a non-empty string`);
    }
    return body.mr.trim();
  }
  const source = (body.fields && typeof body.fields === "object" && !Array.isArray(body.fields))
    ? body.fields as Record<string, unknown>
    : body;
  const parts: string[] = [];
  for (const [attr, names] of Object.entries(E2E_FIELDS)) {
    const given = names.filter((n) =>
      source[n] !== undefined && source[n] !== null && source[n] !== ""
    );
    if (given.length > 1) throw new Error(`fields ${given.join(" and ")} name the same attribute`);
    if (given.length === 0) continue;
    let v = source[given[0]];
    if (typeof v === "boolean" && attr === "familyFriendly") v = v ? "yes" : "no";
    if (typeof v !== "string" && typeof v !== "number") {
      throw new Error(`field "${given[0]}" must be a string`);
    }
    const value = tokenizeMRValue(String(v));
    if (value === "") throw new Error(`field "${given[0]}" is empty`);
    parts.push(`${OFFICIAL_TO_LINEAR_ATTRIBUTE[attr]} : ${value}`);
  }
  if (parts.length === 0) {
    throw new Error(
      `no MR: give "mr" or some of the fields ${
        Object.values(E2E_FIELDS).map((n) => n[0]).join(", ")
      }`,
    );
  }
  return parts.join(" | ");
}
