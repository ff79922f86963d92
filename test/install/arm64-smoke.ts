// Run by test/install/arm64.test.ts, natively and under qemu-aarch64 with an arm64
// Node: loads the addon named by FLATENN_NATIVE, runs kernels on fixed random inputs
// of awkward sizes and a small int4 model, and prints one JSON line of results
// (hashes of the outputs, so the two architectures can be compared byte for byte).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { engineInfo, setIsa } from '../../src/native/info';
import { fakeQuantWeight, reluFakeQuant, faultOrder, packInt, unpackInt } from '../../src/native/kernels-quant';
import { sgemm } from '../../src/native/kernels-f32';
import { readDeployed } from '../../src/deploy/format';
import { Engine } from '../../src/engine/engine';
import { writeTinyModel, xorshift } from '../helpers/tiny-model';

const h = (a: ArrayBufferView) => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex').slice(0, 16);

async function main() {
  const isa = process.argv[2];
  if (isa) setIsa(isa);
  const r = xorshift(7);
  const out: Record<string, unknown> = {};
  const info = engineInfo();
  out.arch = process.arch;
  out.isa = info.isa;
  out.variants = [...new Set(info.kernels.flatMap((k) => k.variants))].sort();
  for (const n of [1, 17, 1001]) {
    const w = Float32Array.from({ length: n }, () => (r() - 0.5) * 3);
    const o = new Float32Array(n), codes = new Int8Array(n);
    fakeQuantWeight(w, o, codes, Float32Array.of(0.37), 4);
    const y = new Float32Array(n), mask = new Uint8Array(n);
    const z = reluFakeQuant(w, y, mask, 4, 0.25);
    const packed = packInt(codes, 4);
    const back = unpackInt(packed, 4, n);
    out[`quant${n}`] = [h(o), h(codes), h(y), h(mask), z, h(packed), h(back)];
  }
  const M = 37, N = 29, K = 53;
  const A = Float32Array.from({ length: M * K }, () => r() - 0.5), B = Float32Array.from({ length: K * N }, () => r() - 0.5);
  const C = new Float32Array(M * N);
  sgemm(false, false, M, N, K, 1, A, K, B, N, 0, C, N);
  out.sgemm = h(C);
  out.faultOrder = h(faultOrder(123, 4, 5003, null, 300));
  // the int4 engine (qgemm / requant / pooling kernels) against the JS reference engine
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flatenn-smoke-'));
  const file = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(file, 3);
  const model = await readDeployed(file);
  const n = 48;
  const images = Uint8Array.from({ length: n * 784 }, () => Math.floor(r() * 256));
  const labels = Uint8Array.from({ length: n }, () => Math.floor(r() * 10));
  const native = new Engine(model).evaluateSync({ images, labels, count: n });
  const ref = new Engine(model, { backend: 'reference' }).evaluateSync({ images, labels, count: n });
  out.engine = [h(native.predictions), native.accuracy];
  out.engineMatchesReference = h(native.predictions) === h(ref.predictions) && native.accuracy === ref.accuracy;
  fs.rmSync(dir, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
