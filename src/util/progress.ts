// Progress reporting: a redrawn bar on a terminal, plain lines otherwise.

export interface ProgressOptions {
  label: string;
  total: number;
  unit?: string;
  stream?: NodeJS.WriteStream;
  /** Force plain-line mode (also when the stream is not a TTY, or FLATENN_PROGRESS=plain). */
  plain?: boolean;
  /** Silence entirely. */
  quiet?: boolean;
}

export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '--:--';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}` : `${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}`;
}

export class Progress {
  private readonly start = process.hrtime.bigint();
  private done = 0;
  private lastDraw = 0;
  private lastPlainPct = -1;
  private readonly tty: boolean;
  private readonly stream: NodeJS.WriteStream;

  constructor(private readonly o: ProgressOptions) {
    this.stream = o.stream ?? process.stderr;
    this.tty = !o.plain && !!this.stream.isTTY && process.env.FLATENN_PROGRESS !== 'plain';
  }

  elapsed(): number { return Number(process.hrtime.bigint() - this.start) / 1e9; }

  /** Advance to `done` units; `info` is appended (e.g. "loss 0.41 acc 86.2%"). */
  update(done: number, info = ''): void {
    if (this.o.quiet) return;
    this.done = done;
    const t = this.elapsed();
    const rate = t > 0 ? done / t : 0;
    const eta = rate > 0 ? (this.o.total - done) / rate : NaN;
    const pct = this.o.total > 0 ? Math.min(100, (100 * done) / this.o.total) : 100;
    const unit = this.o.unit ?? 'it';
    const text = `${this.o.label} ${done}/${this.o.total} ${rate.toFixed(rate >= 100 ? 0 : 2)} ${unit}/s ETA ${formatDuration(eta)}${info ? ' ' + info : ''}`;
    if (this.tty) {
      const now = Date.now();
      if (now - this.lastDraw < 100 && done < this.o.total) return;
      this.lastDraw = now;
      const width = 24, fill = Math.round((pct / 100) * width);
      const line = `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${pct.toFixed(0).padStart(3)}% ${text}`;
      const cols = this.stream.columns || 120;
      this.stream.write('\r' + line.slice(0, cols - 1).padEnd(Math.min(cols - 1, line.length)) + '\x1b[K');
    } else {
      const step = Math.floor(pct / 25);
      if (step > this.lastPlainPct || done >= this.o.total) {
        if (done >= this.o.total && this.lastPlainPct === 4) return;
        this.lastPlainPct = done >= this.o.total ? 4 : step;
        this.stream.write(`${pct.toFixed(0).padStart(3)}% ${text}\n`);
      }
    }
  }

  /** Final line (always printed unless quiet). */
  finish(info = ''): void {
    if (this.o.quiet) return;
    if (this.tty) {
      this.update(this.o.total, info);
      this.stream.write('\n');
    } else if (this.lastPlainPct < 4) {
      this.update(this.o.total, info);
    }
    void this.done;
  }
}
