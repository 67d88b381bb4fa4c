// The web page of `deno task serve`. Plain JavaScript (no build step), run by the browser as
// served: it lists the prefixes, sends an E2E meaning representation or a prompt, shows the
// text as the server streams it, the batch each token rode in, and the server's live
// throughput from /metrics.
"use strict";

const $ = (id) => document.getElementById(id);

/** Fills the prefix list from GET /v1/models. */
async function loadModels() {
  const res = await fetch("/v1/models");
  const body = await res.json();
  const select = $("prefix");
  select.textContent = "";
  for (const m of body.data) {
    const opt = document.createElement("option");
    opt.value = m.id;
    opt.textContent = m.id === "base"
      ? `base (no prefix)`
      : `${m.id} (L=${m.prefix_length}, ${(m.bytes / 1024).toFixed(0)} KiB)`;
    select.appendChild(opt);
  }
  if (body.data.length > 1) select.value = body.data[1].id;
  const base = body.data.find((m) => m.id === "base");
  if (base) $("model").textContent = base.base_model ?? "";
}

/** Reads one gauge or counter value from Prometheus text. */
function metric(text, name) {
  const m = new RegExp(`^${name} ([0-9.eE+-]+)$`, "m").exec(text);
  return m ? Number(m[1]) : NaN;
}

/** Updates the live throughput line once a second. */
async function pollMetrics() {
  try {
    const text = await (await fetch("/metrics")).text();
    const tps = metric(text, "lf_tokens_per_second");
    $("live").textContent = `${tps.toFixed(1)} tokens/s · queue ${
      metric(text, "lf_queue_depth")
    } · rows ${metric(text, "lf_active_rows")}`;
  } catch {
    $("live").textContent = "server unreachable";
  }
  setTimeout(pollMetrics, 1000);
}

/** The request body for the current form. */
function requestBody() {
  const greedy = $("decoding").value === "greedy";
  const body = {
    model: $("prefix").value,
    max_tokens: Number($("max_tokens").value),
    num_beams: greedy ? 1 : 5,
    stream: greedy,
  };
  if ($("mode").value === "prompt") {
    return ["/v1/completions", { ...body, prompt: $("prompt").value }];
  }
  const fields = {};
  for (const key of ["name", "eatType", "food", "priceRange", "area", "familyFriendly", "near"]) {
    const v = $(`f_${key}`).value.trim();
    if (v !== "") fields[key] = v;
  }
  const rating = $("f_rating").value.trim();
  if (rating !== "") fields["customer rating"] = rating;
  return ["/v1/e2e", { ...body, fields }];
}

function describeBatch(step) {
  const mix = Object.entries(step.prefixes).map(([p, n]) => `${p}×${n}`).join(", ");
  return `rode in a batch of ${step.rows} row${step.rows === 1 ? "" : "s"}${
    mix ? ` (${mix})` : ""
  }`;
}

/** Sends the form and shows the answer (streamed for greedy decoding). */
async function submit(event) {
  event.preventDefault();
  const [url, body] = requestBody();
  const out = $("output"), status = $("status"), batch = $("batch");
  out.textContent = "";
  out.classList.remove("error");
  batch.textContent = "";
  status.textContent = "waiting";
  $("submit").disabled = true;
  let maxRows = 0, lastStep = null;
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!res.ok) {
      const err = await res.json().catch(() => ({ error: { message: res.statusText } }));
      throw new Error(`${res.status}: ${err.error.message}`);
    }
    if (!body.stream) {
      const r = await res.json();
      out.textContent = r.choices[0].text;
      batch.textContent = `rode in a batch of ${r.lf.batch_rows} prompt${
        r.lf.batch_rows === 1 ? "" : "s"
      }`;
      status.textContent = `done (${
        r.choices[0].finish_reason
      }, ${r.usage.completion_tokens} tokens)`;
      return;
    }
    status.textContent = "streaming";
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "", finished = null, usage = null;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") continue;
        const event = JSON.parse(data);
        if (event.error) throw new Error(`${event.error.code}: ${event.error.message}`);
        if (event.usage) usage = event.usage;
        for (const c of event.choices) {
          if (c.text) out.textContent += c.text;
          if (c.finish_reason) finished = c;
        }
        if (event.lf_batch) {
          lastStep = event.lf_batch;
          maxRows = Math.max(maxRows, lastStep.rows);
          batch.textContent = `${describeBatch(lastStep)}; largest ${maxRows}`;
        }
      }
    }
    // The E2E answer ends with the cleaned-up text (the streamed pieces are the raw decoding).
    if (finished && finished.output !== undefined) out.textContent = finished.output;
    status.textContent = `done (${finished ? finished.finish_reason : "?"}${
      usage ? `, ${usage.completion_tokens} tokens` : ""
    })`;
  } catch (e) {
    out.textContent = String(e.message ?? e);
    out.classList.add("error");
    status.textContent = "error";
  } finally {
    $("submit").disabled = false;
  }
}

$("mode").addEventListener("change", () => {
  const prompt = $("mode").value === "prompt";
  $("mr").classList.toggle("hidden", prompt);
  $("promptBox").classList.toggle("hidden", !prompt);
});
$("form").addEventListener("submit", submit);
loadModels().then(() => {
  $("status").textContent = "ready";
});
pollMetrics();
