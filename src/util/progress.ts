// Progress reporting for the CLI (the library itself never prints): a redrawn bar
// on a terminal; otherwise (Slurm, nohup, CI logs) one plain line every
// `intervalMs` (default 10 s, FLATENN_PROGRESS_INTERVAL=<seconds>) and a last line.

export interface ProgressOptions {
  label: string;
  total: number;
  unit?: string;
  stream?: NodeJS.WriteStream;
  /** Force plain-line mode (also when the stream is not a TTY, or FLATENN_PROGRESS=plain). */
  plain?: boolean;
  /** Silence entirely. */
  quiet?: boolean;
  /** Units already done before this run started (a resumed run): the rate and ETA count only new work. */
  initial?: number;
  /** Plain-line mode: at most one line per this many ms (default 10000, or FLATENN_PROGRESS_INTERVAL seconds). */
  intervalMs?: number;
}

function defaultInterval(): number {
  const s = Number(process.env.FLATENN_PROGRESS_INTERVAL);
  return Number.isFinite(s) && s >= 0 ? s * 1000 : 10_000;
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
  private lastPlain = 0;
  private finished = false;
  private readonly tty: boolean;
  private readonly stream: NodeJS.WriteStream;

  constructor(private readonly o: ProgressOptions) {
    this.stream = o.stream ?? process.stderr;
    this.tty = !o.plain && !!this.stream.isTTY && process.env.FLATENN_PROGRESS !== 'plain';
  }

  elapsed(): number { return Number(process.hrtime.bigint() - this.start) / 1e9; }

  /** Advance to `done` units; `info` is appended (e.g. "loss 0.41 acc 86.2%"). */
  update(done: number, info = ''): void {
    this.draw(done, info, false);
  }

  private draw(done: number, info: string, final: boolean): void {
    if (this.o.quiet) return;
    this.done = done;
    const t = this.elapsed();
    const fresh = done - (this.o.initial ?? 0);
    const rate = t > 0 && fresh > 0 ? fresh / t : 0;
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
      const now = Date.now();
      if (final ? this.finished : now - this.lastPlain < (this.o.intervalMs ?? defaultInterval())) return;
      if (final) this.finished = true;
      this.lastPlain = now;
      this.stream.write(`${new Date(now).toISOString().slice(11, 19)} ${pct.toFixed(0).padStart(3)}% ${text}\n`);
    }
  }

  /** Final line (always printed unless quiet). */
  finish(info = ''): void {
    if (this.o.quiet) return;
    if (this.tty) {
      this.draw(this.o.total, info, true);
      this.stream.write('\n');
    } else {
      this.draw(this.o.total, info, true);
    }
    void this.done;
  }
}
