/**
 * The server's counters in Prometheus' text exposition format (version 0.0.4): requests by
 * endpoint and status, queue depth, rows per decoding step, generated tokens and their recent
 * rate, and request latency.
 *
 * @module
 */

/** A cumulative histogram with fixed upper bounds. */
export class Histogram {
  /** Values ≤ each bound. */
  readonly counts: number[];
  /** Values recorded. */
  count: number = 0;
  /** Their sum. */
  sum: number = 0;
  /** A histogram with these upper bounds (ascending; +Inf is implied). */
  constructor(readonly bounds: number[]) {
    this.counts = bounds.map(() => 0);
  }
  /** Records one value. */
  observe(v: number): void {
    this.count++;
    this.sum += v;
    this.bounds.forEach((b, i) => {
      if (v <= b) this.counts[i]++;
    });
  }
  /** Exposition lines for metric `name`. */
  lines(name: string): string[] {
    return [
      ...this.bounds.map((b, i) => `${name}_bucket{le="${b}"} ${this.counts[i]}`),
      `${name}_bucket{le="+Inf"} ${this.count}`,
      `${name}_sum ${this.sum}`,
      `${name}_count ${this.count}`,
    ];
  }
}

/** What the server measures. */
export class ServerMetrics {
  /** Finished requests by `endpoint status`. */
  readonly requests: Map<string, number> = new Map();
  /** Rows per decoding step (greedy) or per beam batch (prompts). */
  readonly batchRows: Histogram = new Histogram([1, 2, 4, 8, 16, 32, 64, 128]);
  /** Prompts per prefill (greedy requests joining the batch together). */
  readonly prefillRows: Histogram = new Histogram([1, 2, 4, 8, 16, 32, 64, 128]);
  /** Seconds from arrival to the last byte of the answer. */
  readonly latency: Histogram = new Histogram([0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]);
  /** Generated tokens. */
  generatedTokens: number = 0;
  /** Prompt tokens. */
  promptTokens: number = 0;
  /** Decoding steps run (greedy) and beam batches run. */
  steps: number = 0;
  /** Requests whose client went away before the answer. */
  cancelled: number = 0;
  /** (time in ms, tokens) of recent steps, for the rate. */
  #recent: [number, number][] = [];

  /** Counts a finished request. */
  request(endpoint: string, status: number, seconds: number): void {
    const key = `${endpoint} ${status}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
    this.latency.observe(seconds);
  }

  /**
   * Counts `tokens` generated tokens; with `rows`, as one decoding step (or beam batch) of
   * that many rows (a prompt's first token, computed with the prompt alone, passes none).
   */
  step(tokens: number, rows?: number): void {
    if (rows !== undefined) {
      this.steps++;
      this.batchRows.observe(rows);
    }
    this.generatedTokens += tokens;
    const now = performance.now();
    this.#recent.push([now, tokens]);
    while (this.#recent.length > 0 && this.#recent[0][0] < now - 10_000) this.#recent.shift();
  }

  /** Generated tokens per second over the last 10 s (up to now). */
  tokensPerSecond(): number {
    const now = performance.now();
    while (this.#recent.length > 0 && this.#recent[0][0] < now - 10_000) this.#recent.shift();
    if (this.#recent.length === 0) return 0;
    const span = Math.max(1000, now - this.#recent[0][0]);
    return this.#recent.reduce((s, [, n]) => s + n, 0) / (span / 1000);
  }

  /** The exposition text; `gauges` are current values (queue depth, active rows, ...). */
  render(gauges: Record<string, [help: string, value: number]>): string {
    const out: string[] = [];
    const head = (name: string, type: string, help: string) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    head("lf_requests_total", "counter", "Finished HTTP requests by endpoint and status.");
    for (const [key, n] of [...this.requests].sort()) {
      const [endpoint, status] = key.split(" ");
      out.push(`lf_requests_total{endpoint="${endpoint}",status="${status}"} ${n}`);
    }
    head(
      "lf_request_duration_seconds",
      "histogram",
      "Seconds from arrival to the end of the answer.",
    );
    out.push(...this.latency.lines("lf_request_duration_seconds"));
    head(
      "lf_batch_rows",
      "histogram",
      "Rows per decoding step (greedy) or prompts per beam batch.",
    );
    out.push(...this.batchRows.lines("lf_batch_rows"));
    head("lf_prefill_rows", "histogram", "Prompts run together when greedy requests join.");
    out.push(...this.prefillRows.lines("lf_prefill_rows"));
    head("lf_generated_tokens_total", "counter", "Tokens generated.");
    out.push(`lf_generated_tokens_total ${this.generatedTokens}`);
    head("lf_prompt_tokens_total", "counter", "Prompt tokens read.");
    out.push(`lf_prompt_tokens_total ${this.promptTokens}`);
    head("lf_steps_total", "counter", "Decoding steps and beam batches run.");
    out.push(`lf_steps_total ${this.steps}`);
    head("lf_cancelled_total", "counter", "Requests whose client disconnected before the answer.");
    out.push(`lf_cancelled_total ${this.cancelled}`);
    head("lf_tokens_per_second", "gauge", "Generated tokens per second over the last 10 s.");
    out.push(`lf_tokens_per_second ${this.tokensPerSecond().toFixed(2)}`);
    for (const [name, [help, value]] of Object.entries(gauges)) {
      head(name, "gauge", help);
      out.push(`${name} ${value}`);
    }
    return out.join("\n") + "\n";
  }
}
