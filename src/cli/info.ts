import { engineInfo } from '../native/info';
import type { CommandSpec } from './args';

export const infoCommand: CommandSpec = {
  name: 'info',
  summary: 'Print the version, CPU features, the ISA chosen per kernel, the thread count and the build type.',
  usage: 'flatenn info [--json] [--isa <isa>] [--threads <n>]',
  examples: ['flatenn info', 'flatenn info --isa avx2 --json'],
  options: { json: { type: 'boolean', description: 'print as JSON' } },
  run(values) {
    const info = engineInfo();
    if (values.json) {
      process.stdout.write(JSON.stringify(info, null, 2) + '\n');
      return 0;
    }
    const c = info.cpu;
    const feats = ['sse42', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512dq', 'avx512vl', 'avx512vnni', 'avxVnni', 'avx512bf16', 'avx512fp16']
      .filter((k) => (c as unknown as Record<string, boolean>)[k]);
    const out = [
      `flatenn ${info.version} (${info.buildType} build, node ${info.node})`,
      `addon:     ${info.addonPath}`,
      `cpu:       ${c.brand || c.vendor}`,
      `features:  ${feats.join(' ') || (process.arch === 'x64' ? '(baseline x86-64 only)' : `(none: ${process.arch}, scalar kernels only)`)}`,
      `os state:  ymm=${c.osYmm ? 'yes' : 'no'} zmm=${c.osZmm ? 'yes' : 'no'}`,
      `isa:       ${info.isa} (best available: ${info.bestIsa})`,
      `threads:   ${info.threads}`,
      `kernels:`,
      ...info.kernels.map((k) => `  ${k.name.padEnd(28)} ${k.isa.padEnd(7)} (variants: ${k.variants.join(', ')})`),
    ];
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  },
};
