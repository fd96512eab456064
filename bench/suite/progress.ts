/**
 * Progress display: on a terminal, a status line rewritten in place ("[ 12/140  9%] cpu causal/D64/S256 ...") with
 * finished cases printed above it; elsewhere (CI logs) only the finished lines.
 */
export class Progress {
  private total = 0;
  private doneRuns = 0;
  private current = '';
  private readonly tty = !!process.stdout.isTTY;
  private readonly start = performance.now();

  constructor(private readonly enabled: boolean) {}

  setTotal(n: number): void {
    this.total = n;
  }

  addTotal(n: number): void {
    this.total += n;
  }

  advance(n: number): void {
    this.doneRuns += n;
    this.render();
  }

  status(text: string): void {
    this.current = text;
    this.render();
  }

  /** A finished line, kept in the log. */
  line(text: string): void {
    if (!this.enabled) return;
    if (this.tty) process.stdout.write('\r\x1b[K');
    process.stdout.write(`${this.prefix()} ${text}\n`);
    this.render();
  }

  done(text: string): void {
    if (!this.enabled) return;
    if (this.tty) process.stdout.write('\r\x1b[K');
    process.stdout.write(`${text}\n`);
  }

  private prefix(): string {
    const w = String(this.total).length;
    const pct = this.total ? Math.floor(100 * this.doneRuns / this.total) : 0;
    const s = ((performance.now() - this.start) / 1e3).toFixed(0);
    return `[${String(this.doneRuns).padStart(w)}/${this.total} ${String(pct).padStart(3)}% ${s.padStart(4)}s]`;
  }

  private render(): void {
    if (!this.enabled || !this.tty) return;
    const cols = process.stdout.columns ?? 100;
    process.stdout.write(`\r\x1b[K${`${this.prefix()} ${this.current}`.slice(0, cols - 1)}`);
  }
}
