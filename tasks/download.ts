/**
 * `deno task download`: fetches a model from the Hugging Face hub, or the E2E / METEOR data.
 *
 * ```sh
 * deno task download --model gpt2-medium          # or any org/name on the hub
 * deno task download --data e2e [--out DIR]
 * deno task download --data meteor [--out DIR]
 * ```
 *
 * Models go to Hugging Face's cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, or
 * `~/.cache/huggingface/hub`; `$HF_ENDPOINT`, `$HF_HUB_OFFLINE` honoured), data sets to
 * `$LF_CACHE/<name>` (default `~/.cache/lf`). See `hub/`.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  type DataOptions,
  DATASETS,
  downloadData,
  DownloadError,
  type HubOptions,
  isHubId,
  resolveModel,
} from "../hub/mod.ts";

const USAGE = `usage:
  deno task download --model NAME [--cache DIR]    NAME: gpt2, gpt2-medium, ..., or org/name
  deno task download --data e2e|meteor [--out DIR] [--cache DIR]

  --model NAME   download a model into the Hugging Face hub cache (skipped when already there)
  --data NAME    download a data set (e2e: the E2E release and the paper's splits; meteor: METEOR resources)
  --cache DIR    models: the hub cache folder (default $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub);
                 data: the cache root (default $LF_CACHE, else ~/.cache/lf)
  --out DIR      data: the folder to write (default <cache root>/<name>)
environment: HF_ENDPOINT, HF_HUB_OFFLINE, LF_GITHUB_RAW (https://raw.githubusercontent.com)`;

/**
 * CLI entry point.
 *
 * @returns the exit code: 0 on success, 1 when a download failed, 2 on bad arguments
 */
export async function main(
  args: string[],
  options: HubOptions & DataOptions = {},
): Promise<number> {
  let values: { model?: string; data?: string; cache?: string; out?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        model: { type: "string" },
        data: { type: "string" },
        cache: { type: "string" },
        out: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    console.error(`${e instanceof Error ? e.message : e}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.model && !values.data) {
    console.error(`nothing to do: pass --model or --data\n${USAGE}`);
    return 2;
  }
  if (values.model && !isHubId(values.model)) {
    console.error(`"${values.model}" is not a hub model id (gpt2, gpt2-medium, org/name, ...)`);
    return 2;
  }
  if (values.data && !Object.hasOwn(DATASETS, values.data)) {
    console.error(
      `unknown data set "${values.data}": expected ${Object.keys(DATASETS).join(" or ")}`,
    );
    return 2;
  }
  try {
    if (values.model) {
      const hubCache = values.cache ?? options.hubCache;
      console.log(await resolveModel(values.model, { ...options, hubCache }));
    }
    if (values.data) {
      const cacheRoot = values.cache ?? options.cacheRoot;
      console.log(
        await downloadData(values.data as "e2e" | "meteor", {
          ...options,
          cacheRoot,
          out: values.out,
        }),
      );
    }
  } catch (e) {
    if (e instanceof DownloadError) {
      console.error(`download failed: ${e.message}`);
      return 1;
    }
    console.error(`error: ${(e as Error).message}`);
    return 1;
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
