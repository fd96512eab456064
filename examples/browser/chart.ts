/**
 * A small line chart on a canvas (no chart library): linear or log axes, several series, a legend, and points that
 * failed drawn as a cross on the x axis. Redraw with draw() whenever a series changes.
 */

export interface Series {
  name: string;
  color: string;
  dashed?: boolean;
  /** Dots on the points (default: when there are at most 64). */
  dots?: boolean;
  /** [x, y]; y null = failed at x (drawn as a cross at the bottom). */
  points: Array<[number, number | null]>;
}

export interface ChartOptions {
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  /** Tick labels. */
  formatX?: (x: number) => string;
  formatY?: (y: number) => string;
}

const PAD = {left: 64, right: 16, top: 28, bottom: 44};

export class LineChart {
  series: Series[] = [];

  constructor(private readonly canvas: HTMLCanvasElement, private readonly options: ChartOptions) {}

  draw(): void {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const cssWidth = canvas.clientWidth || 600, cssHeight = canvas.clientHeight || 320;
    if (canvas.width !== Math.round(cssWidth * ratio) || canvas.height !== Math.round(cssHeight * ratio)) {
      canvas.width = Math.round(cssWidth * ratio);
      canvas.height = Math.round(cssHeight * ratio);
    }
    const ctx = canvas.getContext('2d')!;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, cssWidth, cssHeight);
    ctx.font = '12px system-ui, sans-serif';
    const o = this.options;
    const fx = o.xLog ? Math.log10 : (x: number) => x;
    const fy = o.yLog ? Math.log10 : (y: number) => y;

    const xs = this.series.flatMap((s) => s.points.map((p) => p[0]));
    const ys = this.series.flatMap((s) => s.points.map((p) => p[1])).filter((y): y is number =>
        y != null && Number.isFinite(y) && (!o.yLog || y > 0));
    const plotW = cssWidth - PAD.left - PAD.right, plotH = cssHeight - PAD.top - PAD.bottom;
    this.drawFrame(ctx, plotW, plotH);
    if (xs.length === 0) return;

    let [x0, x1] = [Math.min(...xs.map(fx)), Math.max(...xs.map(fx))];
    if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
    const xPad = (x1 - x0) * 0.03;  // end points not on the frame
    [x0, x1] = [x0 - xPad, x1 + xPad];
    let [y0, y1] = ys.length > 0 ? [Math.min(...ys.map(fy)), Math.max(...ys.map(fy))] : [0, 1];
    if (!o.yLog) y0 = Math.min(0, y0);
    if (y0 === y1) [y0, y1] = [y0 - 0.5, y1 + 0.5];
    const yPad = (y1 - y0) * 0.06;
    [y0, y1] = [y0 - (o.yLog ? yPad : 0), y1 + yPad];
    const px = (x: number) => PAD.left + (fx(x) - x0) / (x1 - x0) * plotW;
    const py = (y: number) => PAD.top + plotH - (fy(y) - y0) / (y1 - y0) * plotH;

    // Ticks: powers of 10 (and 2, 5) on log axes, ~5 round steps on linear ones.
    ctx.fillStyle = '#555';
    ctx.strokeStyle = '#e4e4e4';
    ctx.lineWidth = 1;
    const xTicks = o.xLog ? [...new Set(xs)].sort((a, b) => a - b) : linearTicks(x0, x1).filter((t) => t >= 0);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const t of xTicks) {
      const x = px(t);
      line(ctx, x, PAD.top, x, PAD.top + plotH);
      ctx.fillText((o.formatX ?? String)(t), x, PAD.top + plotH + 6);
    }
    const yTicks = o.yLog ? logTicks(y0, y1) : linearTicks(y0, y1);
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const t of yTicks) {
      const y = py(t);
      line(ctx, PAD.left, y, PAD.left + plotW, y);
      ctx.fillText((o.formatY ?? formatNumber)(t), PAD.left - 6, y);
    }

    ctx.save();
    ctx.beginPath();
    ctx.rect(PAD.left, PAD.top, plotW, plotH);
    ctx.clip();
    for (const s of this.series) {
      ctx.strokeStyle = s.color;
      ctx.fillStyle = s.color;
      ctx.lineWidth = 2;
      ctx.setLineDash(s.dashed ? [6, 4] : []);
      ctx.beginPath();
      let pen = false;
      for (const [x, y] of s.points) {
        if (y == null || !(y > 0 || !o.yLog)) {
          pen = false;
          continue;
        }
        if (pen) ctx.lineTo(px(x), py(y));
        else ctx.moveTo(px(x), py(y));
        pen = true;
      }
      ctx.stroke();
      ctx.setLineDash([]);
      for (const [x, y] of s.points) {
        if (y != null && (y > 0 || !o.yLog)) {
          if (s.dots ?? s.points.length <= 64) dot(ctx, px(x), py(y));
        } else {
          cross(ctx, px(x), PAD.top + plotH - 8);
        }
      }
    }
    ctx.restore();
    this.drawLegend(ctx);
  }

  private drawFrame(ctx: CanvasRenderingContext2D, plotW: number, plotH: number): void {
    const o = this.options;
    ctx.strokeStyle = '#999';
    ctx.strokeRect(PAD.left, PAD.top, plotW, plotH);
    ctx.fillStyle = '#333';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    ctx.fillText(o.xLabel + (o.xLog ? ' (log)' : ''), PAD.left + plotW / 2, PAD.top + plotH + PAD.bottom - 4);
    ctx.save();
    ctx.translate(14, PAD.top + plotH / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textBaseline = 'middle';
    ctx.fillText(o.yLabel + (o.yLog ? ' (log)' : ''), 0, 0);
    ctx.restore();
  }

  private drawLegend(ctx: CanvasRenderingContext2D): void {
    let x = PAD.left;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    for (const s of this.series) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2;
      ctx.setLineDash(s.dashed ? [6, 4] : []);
      line(ctx, x, 12, x + 22, 12);
      ctx.setLineDash([]);
      ctx.fillStyle = '#333';
      ctx.fillText(s.name, x + 28, 12);
      x += 40 + ctx.measureText(s.name).width;
    }
  }
}

function line(ctx: CanvasRenderingContext2D, x0: number, y0: number, x1: number, y1: number): void {
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
}

function dot(ctx: CanvasRenderingContext2D, x: number, y: number): void {
  ctx.beginPath();
  ctx.arc(x, y, 3, 0, 2 * Math.PI);
  ctx.fill();
}

function cross(ctx: CanvasRenderingContext2D, x: number, y: number): void {
  ctx.lineWidth = 2;
  line(ctx, x - 5, y - 5, x + 5, y + 5);
  line(ctx, x - 5, y + 5, x + 5, y - 5);
}

/** 1, 2, 5 × powers of ten inside [10^lo, 10^hi] (lo, hi are log10 values). */
function logTicks(lo: number, hi: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
    for (const m of hi - lo > 3 ? [1] : [1, 2, 5]) {
      const t = m * 10 ** e;
      if (Math.log10(t) >= lo && Math.log10(t) <= hi) ticks.push(t);
    }
  }
  return ticks;
}

function linearTicks(lo: number, hi: number): number[] {
  const raw = (hi - lo) / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

export function formatNumber(x: number): string {
  if (x === 0) return '0';
  if (Math.abs(x) >= 1000) return `${+(x / 1000).toPrecision(3)}k`;
  return String(+x.toPrecision(3));
}
