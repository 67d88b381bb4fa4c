/**
 * A small SVG line-plot writer (axes, "nice" ticks, labels, legend) for loss curves and the
 * ablation figure. No browser or library needed.
 *
 * @module
 */

/** One line of a plot. */
export interface Series {
  /** Legend label. */
  name: string;
  /** Points (x, y); NaN y values are skipped. */
  points: [number, number][];
  /** Stroke colour (default from a palette). */
  color?: string;
  /** Draw a marker at each point. */
  markers?: boolean;
  /** Dashed line. */
  dashed?: boolean;
}

/** Plot layout and labels. */
export interface PlotOptions {
  /** Title above the plot. */
  title?: string;
  /** X-axis label. */
  xLabel?: string;
  /** Y-axis label. */
  yLabel?: string;
  /** Width in px (default 640). */
  width?: number;
  /** Height in px (default 400). */
  height?: number;
  /** Log-scaled x axis (base 2 ticks at the data's x values when `xTicks` is given). */
  logX?: boolean;
  /** Explicit x tick positions. */
  xTicks?: number[];
  /** Fixed y range. */
  yRange?: [number, number];
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

/** Round tick values covering [lo, hi] (1, 2, 5 × 10^k steps). */
export function niceTicks(lo: number, hi: number, target = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Number(v.toPrecision(12)));
  }
  return out;
}

function esc(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

function fmtTick(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

/** Renders series as an SVG document string. */
export function linePlot(series: Series[], opts: PlotOptions = {}): string {
  const W = opts.width ?? 640, H = opts.height ?? 400;
  // The legend sits right of the plot area, so it never hides data.
  const legendWidth = series.length
    ? 18 + 7 * Math.max(...series.map((s) => s.name.length)) + 24
    : 0;
  const m = { left: 64, right: 20 + legendWidth, top: opts.title ? 36 : 16, bottom: 48 };
  const pts = series.flatMap((s) => s.points).filter(([x, y]) =>
    Number.isFinite(x) && Number.isFinite(y)
  );
  const tx = (x: number) => (opts.logX ? Math.log2(x) : x);
  let [x0, x1] = pts.length
    ? [Math.min(...pts.map((p) => tx(p[0]))), Math.max(...pts.map((p) => tx(p[0])))]
    : [0, 1];
  let [y0, y1] = opts.yRange ??
    (pts.length ? [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))] : [0, 1]);
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  if (!opts.yRange) {
    const pad = (y1 - y0) * 0.05;
    [y0, y1] = [y0 - pad, y1 + pad];
  }
  const pw = W - m.left - m.right, ph = H - m.top - m.bottom;
  const sx = (x: number) => m.left + ((tx(x) - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.top + (1 - (y - y0) / (y1 - y0)) * ph;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  if (opts.title) {
    out.push(
      `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(opts.title)}</text>`,
    );
  }
  // Grid and ticks.
  const yt = niceTicks(y0, y1);
  for (const v of yt) {
    const y = sy(v).toFixed(1);
    out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(
      `<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${
        fmtTick(v)
      }</text>`,
    );
  }
  const xt = opts.xTicks ?? (opts.logX ? [] : niceTicks(x0, x1));
  for (const v of xt) {
    const x = sx(v).toFixed(1);
    out.push(`<line x1="${x}" x2="${x}" y1="${m.top}" y2="${m.top + ph}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${x}" y="${m.top + ph + 16}" text-anchor="middle">${fmtTick(v)}</text>`);
  }
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`,
  );
  if (opts.xLabel) {
    out.push(
      `<text x="${m.left + pw / 2}" y="${H - 10}" text-anchor="middle">${esc(opts.xLabel)}</text>`,
    );
  }
  if (opts.yLabel) {
    out.push(
      `<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${
        esc(opts.yLabel)
      }</text>`,
    );
  }
  // Lines.
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const good = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (good.length > 1) {
      const d = good.map(([x, y], j) => `${j ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`)
        .join("");
      out.push(
        `<path d="${d}" fill="none" stroke="${color}" stroke-width="1.8"${
          s.dashed ? ' stroke-dasharray="6 4"' : ""
        }/>`,
      );
    }
    if (s.markers || good.length === 1) {
      for (const [x, y] of good) {
        out.push(
          `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3.5" fill="${color}"/>`,
        );
      }
    }
  });
  // Legend, right of the plot area.
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const y = m.top + 14 + i * 18, x = m.left + pw + 16;
    out.push(
      `<line x1="${x}" x2="${x + 22}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="2"${
        s.dashed ? ' stroke-dasharray="6 4"' : ""
      }/>`,
    );
    out.push(`<text x="${x + 28}" y="${y}" dominant-baseline="middle">${esc(s.name)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
