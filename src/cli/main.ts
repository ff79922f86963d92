#!/usr/bin/env node
// flatenn command-line entry. Exit codes: 0 success, 1 failure, 2 bad usage.
import { cleanupNow, installSignalCleanup } from '../io/cleanup';
import { helpText, parseCommand, UsageError, type CommandSpec, int, str } from './args';

type Commands = typeof import('./commands').commands;
let commands: Commands = [];

function topHelp(): string {
  const w = Math.max(...commands.map((c) => c.name.length)) + 2;
  return [
    'Usage: flatenn <command> [options]',
    '',
    'Train 4-bit networks that tolerate faulty weight memory, and measure them with fault-injection campaigns.',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(w)}${c.summary.split('\n')[0]}`),
    '',
    "Run 'flatenn <command> --help' for a command's options.",
  ].join('\n');
}

function findCommand(argv: string[]): { cmd: CommandSpec; rest: string[] } | undefined {
  // two-word commands first ("data fetch")
  for (const c of commands) {
    const words = c.name.split(' ');
    if (words.every((w, i) => argv[i] === w)) return { cmd: c, rest: argv.slice(words.length) };
  }
  return undefined;
}

export async function main(argv: string[]): Promise<number> {
  try {
    commands = (require('./commands') as typeof import('./commands')).commands;
  } catch (e) {
    process.stderr.write(`flatenn: ${(e as Error).message}\n`);
    return 1;
  }
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(topHelp() + '\n');
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === '--version' || argv[0] === '-v') {
    process.stdout.write(require('../../../package.json').version + '\n');
    return 0;
  }
  const found = findCommand(argv);
  const group = commands.filter((c) => c.name.includes(' ') && c.name.split(' ')[0] === argv[0]);
  if (!found && group.length > 0) {
    // a command group ('data'): list its subcommands
    const w = Math.max(...group.map((c) => c.name.length)) + 2;
    const text = [`Usage: flatenn ${argv[0]} <${group.map((c) => c.name.split(' ')[1]).join('|')}> [options]`, '', 'Commands:', ...group.map((c) => `  ${c.name.padEnd(w)}${c.summary.split('\n')[0]}`), '', `Run 'flatenn ${argv[0]} <command> --help' for a command's options.`].join('\n');
    const asked = argv.length === 2 && (argv[1] === '--help' || argv[1] === '-h');
    if (asked) { process.stdout.write(text + '\n'); return 0; }
    process.stderr.write(`flatenn ${argv[0]}: ${argv[1] === undefined ? 'name a subcommand' : `unknown subcommand '${argv[1]}'`}\n\n${text}\n`);
    return 2;
  }
  if (!found) {
    process.stderr.write(`flatenn: unknown command '${argv[0]}'\n\n${topHelp()}\n`);
    return 2;
  }
  const { cmd, rest } = found;
  try {
    const { values, positionals } = parseCommand(cmd, rest);
    if (values.help) {
      process.stdout.write(helpText(cmd) + '\n');
      return 0;
    }
    if (!cmd.ownThreadsIsa) await applyCommon(values);
    const r = await cmd.run(values, positionals);
    return typeof r === 'number' ? r : 0;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`flatenn ${cmd.name}: ${e.message}\nRun 'flatenn ${cmd.name} --help' for usage.\n`);
      return 2;
    }
    const err = e as Error;
    process.stderr.write(`flatenn ${cmd.name}: ${err.message}\n`);
    if (process.env.FLATENN_DEBUG) process.stderr.write(String(err.stack) + '\n');
    return 1;
  }
}

async function applyCommon(values: Record<string, unknown>): Promise<void> {
  const v = values as Parameters<typeof int>[0];
  const isa = str(v, 'isa');
  const threads = v.threads !== undefined ? int(v, 'threads', 1, 1024) : undefined;
  const info = require('../native/info') as typeof import('../native/info');
  if (isa !== undefined) {
    try {
      info.setIsa(isa);
    } catch (e) {
      throw new UsageError(`--isa: ${(e as Error).message}`);
    }
  }
  if (threads !== undefined) info.setThreads(threads);
}

/** A closed pipe (`flatenn ... | head`) ends the command quietly instead of with a stack trace. */
function quietOnEpipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') { cleanupNow(); process.exit(process.exitCode ?? 0); }
    process.stderr.write(`flatenn: ${e.message}\n`);
    process.exit(1);
  });
}

if (require.main === module) {
  quietOnEpipe(process.stdout);
  installSignalCleanup();
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (e) => { process.stderr.write(`flatenn: ${(e as Error).stack ?? e}\n`); process.exitCode = 1; },
  );
}
