// Small CLI framework over node:util parseArgs: every command has --help,
// bad usage exits 2 with a message, failures exit 1.
import { parseArgs } from 'node:util';

export class UsageError extends Error {
  override name = 'UsageError';
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  description: string;
  default?: string | boolean;
  multiple?: boolean;
  /** Shown in help, e.g. '<n>' */
  arg?: string;
  /** Marked "(required)" in help (the command itself checks it). */
  required?: boolean;
}

export type Values = Record<string, string | boolean | string[] | undefined>;

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  options: Record<string, OptionSpec>;
  /** Allow positional arguments (named in usage). */
  positionals?: boolean;
  /** Which of COMMON_OPTIONS (--threads, --isa) mean something for this command (default: both). */
  common?: ('threads' | 'isa')[];
  /**
   * The command reads --threads / --isa itself (e.g. lists of them); the common handling, which
   * sets one ISA and one thread count before the command runs, is skipped.
   */
  ownThreadsIsa?: boolean;
  /** Example command lines, shown under --help. */
  examples?: string[];
  run(values: Values, positionals: string[]): Promise<number | void> | number | void;
}

export const COMMON_OPTIONS: Record<string, OptionSpec> = {
  threads: { type: 'string', arg: '<n>', description: 'native threads (default: FLATENN_THREADS or all cores); results do not depend on it' },
  isa: { type: 'string', arg: '<isa>', description: 'kernel ISA: scalar, avx2 or avx512 (default: FLATENN_ISA or the best this CPU has)' },
  help: { type: 'boolean', short: 'h', description: 'show this help' },
};

/**
 * The options a command accepts: its own, then the common ones that apply to it (see `common`) and that it
 * does not define itself, and --help.
 */
export function commandOptions(cmd: CommandSpec): Record<string, OptionSpec> {
  const common = cmd.common ?? ['threads', 'isa'];
  const out: Record<string, OptionSpec> = { ...cmd.options };
  for (const [k, o] of Object.entries(COMMON_OPTIONS)) if (!(k in out) && (k === 'help' || (common as string[]).includes(k))) out[k] = o;
  return out;
}

export function helpText(cmd: CommandSpec): string {
  const opts = commandOptions(cmd);
  const lines = [`Usage: ${cmd.usage}`, '', cmd.summary, '', 'Options:'];
  const entries = Object.entries(opts).sort(([, a], [, b]) => Number(!!b.required) - Number(!!a.required));
  const rows = entries.map(([k, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${k}${o.type === 'string' ? ' ' + (o.arg ?? '<value>') : ''}`;
    const def = o.default !== undefined && o.default !== false ? ` (default: ${String(o.default)})` : '';
    return [flag, (o.required ? '(required) ' : '') + o.description + def] as const;
  });
  const w = Math.max(...rows.map((r) => r[0].length)) + 2;
  for (const [f, d] of rows) lines.push(`  ${f.padEnd(w)}${d}`);
  if (cmd.examples?.length) lines.push('', 'Examples:', ...cmd.examples.map((e) => `  ${e}`));
  return lines.join('\n');
}

const given = new WeakMap<Values, string[]>();
/** The options the user wrote (not filled in from defaults). */
export function explicitOptions(values: Values): string[] {
  return given.get(values) ?? Object.keys(values);
}

export function parseCommand(cmd: CommandSpec, argv: string[]): { values: Values; positionals: string[] } {
  const all = commandOptions(cmd);
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean; default?: string | boolean }> = {};
  for (const [k, o] of Object.entries(all)) {
    options[k] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) };
  }
  // '--lr -0.1': a negative number is the option's value (parseArgs would call it ambiguous).
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!, next = argv[i + 1];
    const name = a.startsWith('--') ? a.slice(2) : undefined;
    if (name && all[name]?.type === 'string' && next !== undefined && /^-(\d|\.\d)/.test(next)) { args.push(`${a}=${next}`); i++; }
    else args.push(a);
  }
  try {
    const r = parseArgs({ args, options, allowPositionals: true, strict: true });
    if (!cmd.positionals && r.positionals.length > 0 && !r.values.help) {
      throw new UsageError(`unexpected argument '${r.positionals[0]}'`);
    }
    const values = r.values as Values;
    given.set(values, Object.keys(values));
    for (const [k, o] of Object.entries(all)) if (values[k] === undefined && o.default !== undefined) values[k] = o.default;
    return { values, positionals: r.positionals };
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError((e as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
}

// ---- value parsers: each throws UsageError naming the flag ------------------------

export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new UsageError(`--${name} expects a value`);
  return v;
}

export function requireStr(values: Values, name: string): string {
  const v = str(values, name);
  if (v === undefined || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

export function int(values: Values, name: string, lo: number, hi: number, def?: number): number {
  const v = str(values, name);
  if (v === undefined) {
    if (def === undefined) throw new UsageError(`--${name} is required`);
    return def;
  }
  if (!/^[+-]?\d+$/.test(v.trim())) throw new UsageError(`--${name} expects an integer, got '${v}'`);
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < lo || n > hi) throw new UsageError(`--${name} must be an integer in [${lo}, ${hi}], got ${v}`);
  return n;
}

export function num(values: Values, name: string, lo: number, hi: number, def?: number): number {
  const v = str(values, name);
  if (v === undefined) {
    if (def === undefined) throw new UsageError(`--${name} is required`);
    return def;
  }
  return parseNumber(v, name, lo, hi);
}

export function parseNumber(v: string, name: string, lo: number, hi: number): number {
  const t = v.trim();
  if (t === '' || !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) throw new UsageError(`--${name} expects a number, got '${v}'`);
  const n = Number(t);
  if (!Number.isFinite(n) || n < lo || n > hi) throw new UsageError(`--${name} must be in [${lo}, ${hi}], got ${v}`);
  return n;
}

export function choice<T extends string>(values: Values, name: string, allowed: readonly T[], def?: T): T {
  const v = str(values, name);
  if (v === undefined) {
    if (def === undefined) throw new UsageError(`--${name} is required (one of ${allowed.join(', ')})`);
    return def;
  }
  if (!(allowed as readonly string[]).includes(v)) throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got '${v}'`);
  return v as T;
}

export function flag(values: Values, name: string): boolean {
  return values[name] === true;
}
