// `flatenn data fetch <dataset>` and `flatenn data info [dataset]`.
import { classCounts, DATASET_NAMES, loadDataset, SPLITS, type DatasetName } from '../data/dataset';
import { DatasetNotFoundError } from '../data/dirs';
import { fetchDataset, type FetchEvent } from '../data/fetch';
import { int, num, str, UsageError, type CommandSpec } from './args';

function datasetArg(positionals: string[], required: boolean): DatasetName | undefined {
  if (positionals.length > 1) throw new UsageError(`expected one dataset, got ${positionals.length}: ${positionals.join(' ')}`);
  const name = positionals[0];
  if (name === undefined) {
    if (required) throw new UsageError(`name a dataset: ${DATASET_NAMES.join(' or ')}`);
    return undefined;
  }
  if (!(DATASET_NAMES as readonly string[]).includes(name)) throw new UsageError(`unknown dataset '${name}' (one of ${DATASET_NAMES.join(', ')})`);
  return name as DatasetName;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** Progress on stderr: one rewritten line on a terminal, plain lines otherwise. */
function progressPrinter(): (e: FetchEvent) => void {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  return (e) => {
    switch (e.type) {
      case 'present':
        process.stderr.write(`${e.name}: already present, md5 verified\n`);
        break;
      case 'stale':
        process.stderr.write(`${e.name}: present but its md5 is ${e.md5}; downloading it again\n`);
        break;
      case 'start':
        process.stderr.write(`${e.name}: downloading ${e.url}\n`);
        break;
      case 'progress': {
        const now = Date.now();
        if (!tty || now - last < 100) break;
        last = now;
        const pct = e.total ? ` ${((100 * e.received) / e.total).toFixed(1).padStart(5)}% of ${mb(e.total)}` : '';
        process.stderr.write(`\r  ${mb(e.received)}${pct}\x1b[K`);
        break;
      }
      case 'done':
        process.stderr.write(`${tty ? '\r\x1b[K' : ''}${e.name}: ${mb(e.bytes)}, md5 verified, saved as ${e.path}\n`);
        break;
      case 'retry':
        process.stderr.write(`${tty ? '\r\x1b[K' : ''}${e.name}: ${e.error}; attempt ${e.attempt} in ${(e.delayMs / 1000).toFixed(1)} s${e.resumeAt > 0 ? `, continuing from ${mb(e.resumeAt)}` : ''}\n`);
        break;
    }
  };
}

export const dataFetchCommand: CommandSpec = {
  name: 'data fetch',
  summary:
    'Download a dataset\'s official files (md5-checked) into the user cache folder ($XDG_CACHE_HOME/flatenn, else ~/.cache/flatenn).\n' +
    'FashionMNIST can also come from Debian: apt-get install dataset-fashion-mnist.\n' +
    'Honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY; retries network failures and continues a partial download (also one left by an earlier run).',
  usage: 'flatenn data fetch <fashion-mnist|cifar10> [--out <dir>] [--mirror <base-url>] [--checksums <file>] [--timeout <s>]',
  common: [],
  examples: ['flatenn data fetch cifar10', 'HTTPS_PROXY=http://proxy:3128 flatenn data fetch fashion-mnist --out ~/data/fashion-mnist'],
  positionals: true,
  options: {
    out: { type: 'string', arg: '<dir>', description: 'folder to download into (default: the user cache folder for the dataset)' },
    mirror: { type: 'string', arg: '<base-url>', description: 'fetch <base-url>/<official file name> instead of the official host (env FLATENN_DATA_MIRROR)' },
    checksums: { type: 'string', arg: '<file>', description: 'md5sum-style "md5  name" lines replacing the official md5s of the files they name (for mirrors of fixtures)' },
    timeout: { type: 'string', arg: '<s>', description: 'give up after this many seconds without a connection or data', default: '30' },
    retries: { type: 'string', arg: '<n>', description: 'attempts after a network failure or HTTP 5xx, each continuing the partial file (back-off 1, 2, 4, ... s)', default: '4' },
    json: { type: 'boolean', description: 'print the result as JSON' },
  },
  async run(values, positionals) {
    const name = datasetArg(positionals, true)!;
    const mirror = str(values, 'mirror');
    if (mirror !== undefined && !/^https?:\/\/[^/]/.test(mirror)) throw new UsageError(`--mirror must be an http:// or https:// URL, got '${mirror}'`);
    const timeoutS = num(values, 'timeout', 0.001, 3600, 30);
    const r = await fetchDataset(name, {
      out: str(values, 'out'),
      mirror,
      checksums: str(values, 'checksums'),
      timeoutMs: timeoutS * 1000,
      retries: int(values, 'retries', 0, 100, 4),
      onEvent: progressPrinter(),
    });
    if (values.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    else process.stdout.write(`${name}: ${r.files.length} file${r.files.length > 1 ? 's' : ''} ready in ${r.dir}\n`);
    return 0;
  },
};

export const dataInfoCommand: CommandSpec = {
  name: 'data info',
  summary: 'Show where each dataset is found, its image and per-class counts (loading and checking every file).',
  usage: 'flatenn data info [fashion-mnist|cifar10] [--data-dir <dir>] [--json]',
  common: [],
  examples: ['flatenn data info', 'flatenn data info cifar10 --json'],
  positionals: true,
  options: {
    'data-dir': { type: 'string', arg: '<dir>', description: 'look only in this folder (default: FLATENN_DATA, then the standard places)' },
    json: { type: 'boolean', description: 'print as JSON' },
  },
  async run(values, positionals) {
    const only = datasetArg(positionals, false);
    const dataDir = str(values, 'data-dir');
    const rows: Record<string, unknown>[] = [];
    let failed = false;
    for (const name of only ? [only] : DATASET_NAMES) {
      for (const split of SPLITS) {
        try {
          const ds = await loadDataset(name, split, dataDir !== undefined ? { dataDir } : {});
          rows.push({ name, split, found: true, displayName: ds.displayName, count: ds.count, classCounts: classCounts(ds), source: ds.source });
        } catch (e) {
          // a dataset that is simply absent is not a failure unless it was asked for by name
          if (!(e instanceof DatasetNotFoundError) || only) failed = true;
          rows.push({ name, split, found: false, error: (e as Error).message });
        }
      }
    }
    if (values.json) {
      process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    } else {
      const pad = ' '.repeat(22);
      for (const r of rows) {
        const head = `${String(r.name)} ${String(r.split)}: `.padEnd(pad.length);
        if (r.found) {
          process.stdout.write(`${head}${r.count} images (${r.displayName}), per class ${(r.classCounts as number[]).join(' ')}\n${pad}from ${r.source}\n`);
        } else {
          process.stdout.write(`${head}${String(r.error).replace(/\n/g, '\n' + pad)}\n`);
        }
      }
    }
    return failed ? 1 : 0;
  },
};
