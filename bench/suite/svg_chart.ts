/**
 * A small SVG line-chart writer (no dependencies): linear or log axes, ticks and grid, axis labels, a title and a
 * legend. Enough for the benchmark plots; the output is plain SVG 1.1 that GitHub renders inline.
 */

export interface Series {
  name: string;
  color: string;
  /** SVG stroke-dasharray, e.g. '6 4' (naive) or '2 3'. */
  dash?: string;
  points: Array<[number, number]>;
}

export interface ChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  xScale: 'log' | 'linear';
  yScale: 'log' | 'linear';
  series: Series[];
  /** Tick label formatters (default: compact numbers). */
  formatX?: (x: number) => string;
  formatY?: (y: number) => string;
  /** Force these x ticks (default: the data's distinct x values on log axes, nice steps on linear ones). */
  xTicks?: number[];
  /** Log-axis y ticks at powers of 2 (bytes) instead of 1-2-5 per decade. */
  yBinary?: boolean;
  width?: number;
  height?: number;
}

/** Distinguishable colours (Okabe-Ito-like), by backend. */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function compactNumber(x: number): string {
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e9) return `${+(x / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(x / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(x / 1e3).toPrecision(3)}k`;
  if (a >= 1) return `${+x.toPrecision(3)}`;
  return `${+x.toPrecision(2)}`;
}

/** Powers of two in 1024s: 512, 1k, 2k, ... */
export function formatSeq(x: number): string {
  return x >= 1024 && x % 1024 === 0 ? `${x / 1024}k` : String(x);
}

export function formatMsTick(ms: number): string {
  if (ms === 0) return '0';
  if (ms >= 1000) return `${+(ms / 1000).toPrecision(3)} s`;
  if (ms >= 1) return `${+ms.toPrecision(3)} ms`;
  return `${+(ms * 1000).toPrecision(3)} µs`;
}

export function formatBytesTick(b: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) {
    b /= 1024;
    i++;
  }
  return `${+b.toPrecision(3)} ${units[i]}`;
}

function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
}

interface Axis {
  lo: number;
  hi: number;
  ticks: number[];
  map: (v: number) => number;
}

function makeAxis(values: number[], scale: 'log' | 'linear', pixelLo: number, pixelHi: number,
                  forced?: number[], distinctTicks = false, binary = false): Axis {
  let lo = Math.min(...values), hi = Math.max(...values);
  let ticks: number[];
  if (scale === 'log') {
    lo = Math.max(lo, 1e-12);
    hi = Math.max(hi, lo * 1.0001);
    if (forced ?? distinctTicks) {
      ticks = forced ?? [...new Set(values)].sort((a, b) => a - b);
      lo /= 1.15;
      hi *= 1.15;
    } else if (binary) {
      const p0 = Math.floor(Math.log2(lo)), p1 = Math.ceil(Math.log2(hi));
      const every = Math.max(1, Math.ceil((p1 - p0) / 7));
      const first = Math.floor(p0 / every) * every;
      ticks = [];
      for (let p = first; p < p1 + every; p += every) ticks.push(2 ** p);
      lo = ticks[0];
      hi = ticks[ticks.length - 1];
    } else {
      // 1-2-5 per decade when the span is small, decades otherwise.
      const d0 = Math.floor(Math.log10(lo)), d1 = Math.ceil(Math.log10(hi));
      const steps = d1 - d0 <= 3 ? [1, 2, 5] : [1];
      ticks = [];
      for (let d = d0; d <= d1; d++) for (const s of steps) ticks.push(s * 10 ** d);
      lo = Math.min(lo, Math.max(...ticks.filter((t) => t <= lo)));
      hi = Math.max(hi, Math.min(...ticks.filter((t) => t >= hi)));
      ticks = ticks.filter((t) => t >= lo * 0.999 && t <= hi * 1.001);
    }
    const l0 = Math.log(lo), l1 = Math.log(hi);
    return {lo, hi, ticks, map: (v) => pixelLo + (Math.log(Math.max(v, 1e-12)) - l0) / (l1 - l0) * (pixelHi - pixelLo)};
  }
  lo = Math.min(lo, 0);
  if (hi <= lo) hi = lo + 1;
  const step = niceStep(hi - lo, 5);
  hi = Math.ceil(hi / step - 1e-9) * step;
  ticks = forced ?? Array.from({length: Math.round((hi - lo) / step) + 1}, (_, i) => lo + i * step);
  return {lo, hi, ticks, map: (v) => pixelLo + (v - lo) / (hi - lo) * (pixelHi - pixelLo)};
}

export function lineChart(spec: ChartSpec): string {
  const W = spec.width ?? 760, H = spec.height ?? 460;
  const series = spec.series.filter((s) => s.points.length > 0);
  const legendW = 230;
  const m = {left: 78, right: legendW + 20, top: spec.subtitle ? 62 : 46, bottom: 58};
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
           `font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${
      esc(spec.title)}</text>`);
  if (spec.subtitle) {
    const size = spec.subtitle.length > 100 ? 10 : spec.subtitle.length > 85 ? 11 : 12;
    out.push(`<text x="${W / 2}" y="44" text-anchor="middle" fill="#555" font-size="${size}">${
        esc(spec.subtitle)}</text>`);
  }
  if (xs.length === 0) {
    out.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#888">no data</text></svg>`);
    return out.join('\n');
  }
  const x = makeAxis(xs, spec.xScale, m.left, W - m.right, spec.xTicks, spec.xScale === 'log');
  const y = makeAxis(ys, spec.yScale, H - m.bottom, m.top, undefined, false, spec.yBinary);
  const fx = spec.formatX ?? compactNumber, fy = spec.formatY ?? compactNumber;
  const px = (v: number) => x.map(v).toFixed(1), py = (v: number) => y.map(v).toFixed(1);

  // Grid and ticks.
  out.push('<g stroke="#e5e5e5" stroke-width="1">');
  for (const t of x.ticks) out.push(`<line x1="${px(t)}" y1="${m.top}" x2="${px(t)}" y2="${H - m.bottom}"/>`);
  for (const t of y.ticks) out.push(`<line x1="${m.left}" y1="${py(t)}" x2="${W - m.right}" y2="${py(t)}"/>`);
  out.push('</g>');
  out.push(`<rect x="${m.left}" y="${m.top}" width="${W - m.right - m.left}" height="${H - m.bottom - m.top}" ` +
           'fill="none" stroke="#333"/>');
  out.push('<g fill="#333">');
  for (const t of x.ticks) {
    out.push(`<text x="${px(t)}" y="${H - m.bottom + 18}" text-anchor="middle">${esc(fx(t))}</text>`);
  }
  for (const t of y.ticks) {
    out.push(`<text x="${m.left - 8}" y="${(y.map(t) + 4).toFixed(1)}" text-anchor="end">${esc(fy(t))}</text>`);
  }
  out.push('</g>');
  out.push(`<text x="${(m.left + W - m.right) / 2}" y="${H - 14}" text-anchor="middle" font-size="13">${
      esc(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${(m.top + H - m.bottom) / 2}) rotate(-90)" text-anchor="middle" ` +
           `font-size="13">${esc(spec.yLabel)}</text>`);

  // Lines and markers.
  for (const s of series) {
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    const d = pts.map((p, i) => `${i ? 'L' : 'M'}${px(p[0])} ${py(p[1])}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${
        s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    for (const p of pts) {
      out.push(`<circle cx="${px(p[0])}" cy="${py(p[1])}" r="3" fill="${s.dash ? 'white' : s.color}" ` +
               `stroke="${s.color}" stroke-width="1.5"><title>${esc(s.name)}: ${esc(fx(p[0]))}, ${
                   esc(fy(p[1]))}</title></circle>`);
    }
  }

  // Legend.
  const lx = W - m.right + 16;
  out.push(`<g font-size="12">`);
  series.forEach((s, i) => {
    const ly = m.top + 8 + i * 20;
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 28}" y2="${ly}" stroke="${s.color}" stroke-width="2"${
        s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    out.push(`<circle cx="${lx + 14}" cy="${ly}" r="3" fill="${s.dash ? 'white' : s.color}" stroke="${s.color}"/>`);
    out.push(`<text x="${lx + 36}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push('</g>');
  out.push('</svg>');
  return out.join('\n');
}
