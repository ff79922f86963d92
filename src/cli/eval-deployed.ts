import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { loadDataset } from '../data/dataset';
import { deployedFromFile } from '../deploy/format';
import { writeSafetensors, type SafetensorsFile } from '../io/safetensors';
import { writeFileAtomic } from '../io/atomic';
import { Engine } from '../engine/engine';
import { flag, int, str, UsageError, type Values } from './args';

/** flatenn eval on a deployed model: the int4 engine over the test split. */
export async function deployedEvalHook(path: string, file: SafetensorsFile, split: string, v: Values): Promise<number> {
  const hash = createHash('sha256').update(fs.readFileSync(path)).digest('hex');
  const model = deployedFromFile(file, path, hash);
  if (split !== 'test') throw new UsageError('a deployed model is evaluated on the test split (it does not know the validation split)');
  const dataDir = str(v, 'data-dir');
  const ds = await loadDataset(model.meta.dataset as 'fashion-mnist', 'test', dataDir ? { dataDir } : {});
  if (ds.count === 0) throw new Error(`the ${model.meta.dataset} test split holds no images (${ds.source})`);
  const n = v.limit !== undefined ? Math.min(ds.count, int(v, 'limit', 1, 1e9)) : ds.count;
  const engine = new Engine(model);
  const t0 = Date.now();
  const logitsOut = str(v, 'logits'), predOut = str(v, 'predictions');
  const r = await engine.evaluate({ images: ds.images, labels: ds.labels, count: n, logits: logitsOut !== undefined });
  if (logitsOut !== undefined) {
    const K = model.meta.numClasses;
    await writeSafetensors(logitsOut, {
      logits: { dtype: 'F32', shape: [n, K], data: r.logits! },
      labels: { dtype: 'U8', shape: [n], data: ds.labels.slice(0, n) },
      predictions: { dtype: 'U8', shape: [n], data: r.predictions },
    }, { flatenn: JSON.stringify({ format: 'flatenn.logits', model: path, modelSha256: hash, dataset: model.meta.dataset, split, count: n }) });
  }
  if (predOut !== undefined) {
    const lines = ['index,label,prediction'];
    for (let i = 0; i < n; i++) lines.push(`${i},${ds.labels[i]},${r.predictions[i]}`);
    await writeFileAtomic(predOut, Buffer.from(lines.join('\n') + '\n'));
  }
  const seconds = (Date.now() - t0) / 1000;
  if (flag(v, 'json')) {
    process.stdout.write(JSON.stringify({ model: path, kind: 'deployed', backend: engine.backend, arch: model.meta.arch, dataset: model.meta.dataset, split, count: n, accuracy: r.accuracy, loss: r.loss, sparsity: r.sparsity, sparsityWeighted: r.sparsityWeighted, perLayerSparsity: r.perLayerSparsity, seconds }, null, 2) + '\n');
  } else {
    process.stdout.write(`${path} (${model.meta.arch}, deployed int${model.meta.layers[0]!.bits} engine: ${engine.backend}) on ${model.meta.dataset} test (${n} images)\n` +
      `accuracy ${(100 * r.accuracy).toFixed(2)}%  loss ${r.loss.toFixed(4)}  activation sparsity ${(100 * r.sparsity).toFixed(2)}% (layer mean; element-weighted ${(100 * r.sparsityWeighted).toFixed(2)}%)  ${seconds.toFixed(2)} s\n`);
  }
  return 0;
}
