/**
 * The demo page: loads GPT-2, its tokenizer and a prefix from the server's URLs into an engine
 * worker, decodes E2E meaning representations with beam search as the tokens come, trains a new
 * prefix with a live loss curve, and downloads it in our format or peft's. All computation runs
 * in this browser tab.
 *
 * `globalThis.lfPage` exposes the same operations to scripts (the browser tests drive it).
 *
 * @module
 */
/// <reference lib="dom" />
import { EngineClient } from "./client.ts";
import type { Decoded, EngineInfo, TrainStep } from "./engine_core.ts";
import { TRAIN_DEFAULTS } from "./settings.ts";
import { EXAMPLE_MRS } from "./examples.ts";
import { zipStore } from "./zip.ts";

const DECODE = { beams: 5, maxNewTokens: 100, minLength: 5 };

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

const engineUrl = new URL("./dist/engine.js", location.href);
let client = new EngineClient(engineUrl);
let info: EngineInfo | null = null;
let modelReady = false;
let busy = false;

function setStatus(id: string, text: string, kind: "" | "ok" | "err" | "busy" = ""): void {
  const el = $(id);
  el.textContent = text;
  el.dataset.kind = kind;
}

/** URLs go to the worker absolute: there, relative ones would resolve against its script. */
function abs(url: string): string {
  return new URL(url, location.href).href;
}

function fmtBytes(n: number): string {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MB` : `${(n / 1024).toFixed(0)} KB`;
}

function backendLabel(i: EngineInfo): string {
  if (i.backend === "webgpu") return `WebGPU${i.adapter ? ` · ${i.adapter}` : ""}`;
  if (i.backend === "wasm") {
    return `WebAssembly SIMD · ${i.threads} thread${i.threads === 1 ? "" : "s"}`;
  }
  return "CPU reference (slow)";
}

function refreshButtons(): void {
  for (const id of ["decode-btn", "train-btn"]) {
    ($<HTMLButtonElement>(id)).disabled = busy || !modelReady;
  }
  $<HTMLButtonElement>("load-btn").disabled = busy;
  $<HTMLButtonElement>("prefix-btn").disabled = busy || !modelReady;
  $<HTMLButtonElement>("stop-btn").disabled = !busy;
}

async function guard<T>(f: () => Promise<T>): Promise<T> {
  busy = true;
  refreshButtons();
  try {
    return await f();
  } finally {
    busy = false;
    refreshButtons();
  }
}

// ---- engine operations (also the scripting API) ----

async function init(backend: string): Promise<EngineInfo> {
  client.terminate();
  client = new EngineClient(engineUrl);
  modelReady = false;
  info = await client.call({ op: "init", backend });
  $("backend-pill").textContent = backendLabel(info);
  $("backend-why").textContent = info.reason +
    (info.crossOriginIsolated ? "" : " — page not cross-origin isolated: one thread");
  return info;
}

async function loadModel(url: string): Promise<unknown> {
  const bar = $<HTMLProgressElement>("load-progress");
  bar.value = 0;
  const r = await client.call({ op: "loadModel", url: abs(url) }, {
    progress: (loaded, total) => {
      bar.max = total;
      bar.value = loaded;
      setStatus("model-status", `weights ${fmtBytes(loaded)} / ${fmtBytes(total)}`, "busy");
    },
  });
  modelReady = true;
  setStatus(
    "model-status",
    `${r.nLayer} layers · ${r.nEmbd} wide · ${(r.parameters / 1e6).toFixed(1)}M parameters · ` +
      `loaded in ${(r.ms / 1000).toFixed(1)} s`,
    "ok",
  );
  return r;
}

async function loadPrefix(url: string | null, format: "prefix" | "peft"): Promise<unknown> {
  const r = await client.call({ op: "loadPrefix", url: url === null ? null : abs(url), format });
  setStatus(
    "prefix-status",
    r ? `prefix of length ${r.prefixLen} (${format === "peft" ? "peft" : "our format"})` : "none",
    "ok",
  );
  return r;
}

async function decode(mr: string, settings = DECODE): Promise<Decoded & { steps: number }> {
  const out = $("output");
  out.textContent = "";
  out.dataset.state = "live";
  let steps = 0;
  const r = await client.call({ op: "decode", mr, settings }, {
    tokens: (tokens, text) => {
      steps++;
      out.textContent = text;
      $("decode-meta").textContent = `${tokens.length} tokens`;
    },
  });
  out.textContent = r.text;
  out.dataset.state = "done";
  const tps = r.tokens.length / (r.ms / 1000);
  $("decode-meta").textContent = `${r.tokens.length} tokens · ${(r.ms / 1000).toFixed(2)} s · ` +
    `${tps.toFixed(1)} tokens/s · beam ${settings.beams}`;
  addHistory(mr, r.text);
  return { ...r, steps };
}

function addHistory(mr: string, text: string): void {
  const li = document.createElement("li");
  const m = document.createElement("div");
  m.className = "mr";
  m.textContent = mr;
  const t = document.createElement("div");
  t.textContent = text;
  li.append(m, t);
  $("history").prepend(li);
}

async function train(
  text: string,
  source: string,
  settings = TRAIN_DEFAULTS,
): Promise<TrainStep[]> {
  const losses: number[] = [];
  drawLoss(losses, settings.steps);
  const r = await client.call({ op: "train", text, source, settings }, {
    step: (s) => {
      losses.push(s.loss);
      drawLoss(losses, settings.steps);
      setStatus(
        "train-status",
        `step ${s.step}/${settings.steps} · loss ${s.loss.toFixed(4)} · ${s.ms.toFixed(0)} ms/step`,
        "busy",
      );
    },
  });
  const last = r.at(-1);
  setStatus(
    "train-status",
    last
      ? `trained ${r.length} steps · final loss ${last.loss.toFixed(4)} · the new prefix is in use`
      : "stopped before the first step",
    "ok",
  );
  if (r.length > 0) {
    const sel = $<HTMLSelectElement>("prefix-select");
    if (![...sel.options].some((o) => o.value === "trained")) {
      sel.prepend(new Option("trained in this tab", "trained"));
    }
    sel.value = "trained";
    setStatus("prefix-status", `trained in this tab (length ${settings.prefixLen})`, "ok");
  }
  $("downloads").hidden = r.length === 0;
  return r;
}

async function exportZip(format: "prefix" | "peft"): Promise<Uint8Array<ArrayBuffer>> {
  const files = await client.call({ op: "export", format });
  const folder = format === "peft" ? "peft" : "prefix";
  const named: Record<string, Uint8Array | string> = {};
  for (const [k, v] of Object.entries(files)) named[`${folder}/${k}`] = v;
  return zipStore(named);
}

// ---- loss curve ----

function drawLoss(losses: number[], steps: number): void {
  const svg = $("loss-svg");
  const W = 560, H = 200, pad = { l: 44, r: 12, t: 12, b: 28 };
  const n = Math.max(steps, losses.length, 2);
  const lo = losses.length ? Math.min(...losses) : 0, hi = losses.length ? Math.max(...losses) : 1;
  const span = hi - lo || 1;
  const x = (i: number) => pad.l + (i / (n - 1)) * (W - pad.l - pad.r);
  const y = (v: number) => pad.t + (1 - (v - lo) / span) * (H - pad.t - pad.b);
  const pts = losses.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const ticks = [lo, lo + span / 2, hi].map((v) =>
    `<text x="${pad.l - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>` +
    `<line x1="${pad.l}" x2="${W - pad.r}" y1="${y(v)}" y2="${y(v)}" class="grid"/>`
  ).join("");
  svg.innerHTML = `${losses.length ? ticks : ""}
    <text x="${(W + pad.l) / 2}" y="${H - 6}" text-anchor="middle">step (of ${steps})</text>
    <polyline points="${pts}" class="curve"/>
    ${
    losses.length ? `<circle cx="${x(losses.length - 1)}" cy="${y(losses.at(-1)!)}" r="3.5"/>` : ""
  }`;
}

// ---- wiring ----

function download(bytes: Uint8Array<ArrayBuffer>, name: string): void {
  const url = URL.createObjectURL(new Blob([bytes], { type: "application/zip" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function fetchJson<T>(url: string, fallback: T): Promise<T> {
  try {
    const r = await fetch(url);
    return r.ok ? await r.json() as T : fallback;
  } catch {
    return fallback;
  }
}

async function populate(): Promise<void> {
  const prefixes = await fetchJson<{ name: string; prefixLen: number; formats: string[] }[]>(
    "prefixes/index.json",
    [],
  );
  const sel = $<HTMLSelectElement>("prefix-select");
  for (const p of prefixes) {
    for (const f of p.formats) {
      const o = document.createElement("option");
      o.value = `${p.name}/${f}`;
      o.textContent = `${p.name} · L=${p.prefixLen} · ${
        f === "peft" ? "peft folder" : "our format"
      }`;
      sel.append(o);
    }
  }
  const five = [...sel.options].find((o) => o.value === "prefix_L5/prefix");
  if (five) sel.value = five.value;
  const data = await fetchJson<Record<string, boolean>>("data/index.json", {});
  let mrs: readonly string[] = EXAMPLE_MRS;
  if (data.test) {
    const text = await (await fetch("data/test.txt")).text();
    const seen = new Set<string>();
    for (const line of text.split("\n")) {
      const mr = line.split("||")[0].trim();
      if (mr && !seen.has(mr)) seen.add(mr);
      if (seen.size >= 40) break;
    }
    mrs = [...seen];
  }
  const ex = $<HTMLSelectElement>("mr-examples");
  for (const mr of mrs) {
    const o = document.createElement("option");
    o.value = o.textContent = mr;
    ex.append(o);
  }
  $<HTMLTextAreaElement>("mr").value = mrs[0];
  $<HTMLInputElement>("data-server").disabled = !data.train;
  if (!data.train) {
    $<HTMLInputElement>("data-file-radio").checked = true;
    $("data-server-label").title = "the server was started without --data";
  }
}

function num(id: string): number {
  return Number(($<HTMLInputElement>(id)).value);
}

function wire(): void {
  $("load-btn").onclick = () =>
    guard(async () => {
      try {
        setStatus("model-status", "starting the engine…", "busy");
        await init($<HTMLSelectElement>("backend-select").value);
        await loadModel($<HTMLInputElement>("model-url").value);
        await applyPrefix();
      } catch (e) {
        setStatus("model-status", (e as Error).message, "err");
      }
    });
  $("prefix-btn").onclick = () => guard(applyPrefix);
  $("mr-examples").onchange = () => {
    $<HTMLTextAreaElement>("mr").value = $<HTMLSelectElement>("mr-examples").value;
  };
  $("decode-btn").onclick = () =>
    guard(async () => {
      try {
        await decode($<HTMLTextAreaElement>("mr").value.trim(), {
          beams: num("beams"),
          maxNewTokens: num("max-new"),
          minLength: num("min-length"),
        });
      } catch (e) {
        $("output").textContent = (e as Error).message;
        $("output").dataset.state = "err";
      }
    });
  $("train-btn").onclick = () =>
    guard(async () => {
      try {
        let text: string, source: string;
        const file = $<HTMLInputElement>("data-file").files?.[0];
        if ($<HTMLInputElement>("data-file-radio").checked) {
          if (!file) throw new Error("choose a train.txt file (MR||reference lines)");
          text = await file.text();
          source = file.name;
        } else {
          source = "data/train.txt";
          text = await (await fetch(source)).text();
        }
        await train(text, source, {
          ...TRAIN_DEFAULTS,
          steps: num("steps"),
          pairs: num("pairs"),
          prefixLen: num("train-len"),
          lr: num("lr"),
          seed: num("seed"),
        });
      } catch (e) {
        setStatus("train-status", (e as Error).message, "err");
      }
    });
  $("stop-btn").onclick = () => client.call({ op: "stop" });
  $("dl-prefix").onclick = async () => download(await exportZip("prefix"), "prefix.zip");
  $("dl-peft").onclick = async () => download(await exportZip("peft"), "peft.zip");
  refreshButtons();
  drawLoss([], num("steps"));
}

async function applyPrefix(): Promise<void> {
  const v = $<HTMLSelectElement>("prefix-select").value;
  const upload = $<HTMLInputElement>("prefix-files").files;
  try {
    if (v === "trained") {
      const r = await client.call({ op: "useTrained" });
      setStatus("prefix-status", `trained in this tab (length ${r.prefixLen})`, "ok");
    } else if (v === "upload") {
      const files = [...(upload ?? [])];
      const conf = files.find((f) => /(prefix|adapter)_config\.json$/.test(f.name));
      const st = files.find((f) => f.name.endsWith(".safetensors"));
      if (!conf || !st) {
        throw new Error("choose the folder's two files: *_config.json and *.safetensors");
      }
      const format = conf.name.startsWith("adapter") ? "peft" : "prefix";
      const r = await client.call({
        op: "loadPrefixFiles",
        config: await conf.text(),
        safetensors: new Uint8Array(await st.arrayBuffer()),
        format,
      });
      setStatus("prefix-status", `uploaded prefix of length ${r.prefixLen}`, "ok");
    } else if (v === "none") {
      await loadPrefix(null, "prefix");
    } else {
      const [name, format] = v.split("/") as [string, "prefix" | "peft"];
      await loadPrefix(`prefixes/${name}/${format}`, format);
    }
  } catch (e) {
    setStatus("prefix-status", (e as Error).message, "err");
  }
}

/** The scripting API of the page. */
const api = {
  init,
  loadModel,
  loadPrefix,
  decode,
  train,
  exportZip,
  get info(): EngineInfo | null {
    return info;
  },
  ready: Promise.resolve(),
};
(globalThis as unknown as { lfPage: typeof api }).lfPage = api;

$("isolation").textContent = globalThis.crossOriginIsolated
  ? "cross-origin isolated"
  : "not isolated (one thread)";
$("isolation").dataset.kind = globalThis.crossOriginIsolated ? "ok" : "err";
$("webgpu").textContent = "gpu" in navigator ? "WebGPU available" : "no WebGPU";
api.ready = populate().then(wire);
