/** Terminal output: a one-line progress bar (redrawn in place on a TTY, every 10% otherwise) and a results table. */

export class ProgressBar {
  private lastPrintedTenth = -1;
  private readonly tty = process.stdout.isTTY === true;

  constructor(private readonly label: string, private readonly total: number, private readonly width = 24) {}

  update(done: number, fields: Record<string, string>): void {
    const fraction = Math.min(1, done / this.total);
    const filled = Math.round(fraction * this.width);
    const bar = '█'.repeat(filled) + '░'.repeat(this.width - filled);
    const text = `${this.label} ${bar} ${String(done).padStart(String(this.total).length)}/${this.total}  ` +
        Object.entries(fields).map(([k, v]) => `${k} ${v}`).join('  ');
    if (this.tty) {
      process.stdout.write(`\r${text}\x1b[K`);
    } else {
      const tenth = Math.floor(fraction * 10);
      if (tenth !== this.lastPrintedTenth) {
        this.lastPrintedTenth = tenth;
        process.stdout.write(`${text}\n`);
      }
    }
  }

  done(): void {
    if (this.tty) process.stdout.write('\n');
  }
}

export function table(headers: string[], rows: string[][], rightAligned: boolean[]): string {
  const widths = headers.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) =>
      '| ' + cells.map((s, c) => rightAligned[c] ? s.padStart(widths[c]) : s.padEnd(widths[c])).join(' | ') + ' |';
  const rule = '|' + widths.map((w, c) => rightAligned[c] ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2)).join('|') +
      '|';
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

export function formatRate(tokensPerSecond: number): string {
  return tokensPerSecond >= 1000 ? `${(tokensPerSecond / 1000).toFixed(1)}k` : tokensPerSecond.toFixed(0);
}
