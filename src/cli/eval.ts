import { loadDataset } from '../data/dataset';
import { decodeSafetensors, encodeSafetensors, readSafetensors } from '../io/safetensors';
import { deployModel } from '../deploy/export';
import { deployedFromFile } from '../deploy/format';
import { Engine } from '../engine/engine';
import { checkpointMeta, loadModelTensors, CHECKPOINT_FORMAT } from '../train/checkpoint';
import { createModel, evaluate } from '../train/trainer';
import { validateConfig } from '../train/config';
import { choice, flag, int, requireStr, str, UsageError, type CommandSpec } from './args';
import { deployedEvalHook } from './eval-deployed';

export const evalCommand: CommandSpec = {
  name: 'eval',
  summary: 'Accuracy, loss and activation sparsity of a checkpoint (fake-quant float model) or a deployed int4 model.',
  usage: 'flatenn eval --model M.safetensors [--split test|val|train] [--data-dir D] [--json]',
  examples: ['flatenn eval --model runs/qat.safetensors', 'flatenn eval --model runs/qat.int4.safetensors --split test --json'],
  options: {
    model: { type: 'string', arg: '<file>', description: 'checkpoint or deployed model (.safetensors)', required: true },
    split: { type: 'string', arg: '<s>', description: 'test, val (the held-out end of the training set) or train', default: 'test' },
    limit: { type: 'string', arg: '<n>', description: 'evaluate only the first n images of the split' },
    'data-dir': { type: 'string', arg: '<dir>', description: 'dataset folder (else FLATENN_DATA, then standard places)' },
    logits: { type: 'string', arg: '<file>', description: 'deployed model: write the logits [n][classes], labels and predictions (safetensors)' },
    predictions: { type: 'string', arg: '<file>', description: 'deployed model: write index,label,prediction per image (CSV)' },
    'compare-int4': { type: 'boolean', description: 'checkpoint: also run its export on the int4 engine and report the top-1 agreement' },
    json: { type: 'boolean', description: 'print as JSON' },
  },
  async run(v) {
    const modelPath = requireStr(v, 'model');
    const split = choice(v, 'split', ['test', 'val', 'train'] as const, 'test');
    const file = await readSafetensors(modelPath);
    const dataDir = str(v, 'data-dir');
    const fmt = file.metadata.flatenn ? (JSON.parse(file.metadata.flatenn) as { format?: string }).format : undefined;
    if (fmt !== CHECKPOINT_FORMAT) return deployedEvalHook(modelPath, file, split, v);
    if (str(v, 'logits') !== undefined || str(v, 'predictions') !== undefined) throw new UsageError('--logits and --predictions run the int4 engine: give a deployed model (flatenn export --model CKPT --out M.int4.safetensors)');
    const meta = checkpointMeta(file, modelPath);
    const cfg = validateConfig(meta.config);
    const model = createModel(cfg, meta.input.channels, meta.input.height, meta.numClasses);
    loadModelTensors(model, file, modelPath);
    const ds = await loadDataset(cfg.dataset, split === 'test' ? 'test' : 'train', dataDir ? { dataDir } : {});
    let start = 0, end = ds.count;
    if (split === 'val') start = ds.count - cfg.valSize;
    else if (split === 'train') end = ds.count - cfg.valSize;
    const limit = v.limit !== undefined ? int(v, 'limit', 1, 1e9) : undefined;
    if (limit !== undefined) end = Math.min(end, start + limit);
    if (end <= start) throw new Error(`the ${cfg.dataset} ${split} split of ${modelPath}'s run holds no images (dataset ${ds.count} images, valSize ${cfg.valSize})`);
    const t0 = Date.now();
    const r = evaluate(model, ds, { start, end });
    const seconds = (Date.now() - t0) / 1000;
    let int4: { accuracy: number; agreement: number; differing: number; backend: string; sparsity: number } | undefined;
    if (flag(v, 'compare-int4')) {
      const d = deployModel(model, cfg.dataset);
      const dm = deployedFromFile(decodeSafetensors(encodeSafetensors(d.tensors, { flatenn: JSON.stringify(d.meta) })), modelPath + ' (exported)', '');
      const engine = new Engine(dm);
      const e = await engine.evaluate({ images: ds.images.subarray(start * ds.channels * ds.height * ds.width), labels: ds.labels.subarray(start), count: end - start });
      let same = 0;
      for (let i = 0; i < e.count; i++) if (e.predictions[i] === r.predictions[i]) same++;
      int4 = { accuracy: e.accuracy, agreement: same / e.count, differing: e.count - same, backend: engine.backend, sparsity: e.sparsity };
    }
    if (flag(v, 'json')) {
      process.stdout.write(JSON.stringify({ model: modelPath, kind: 'checkpoint', arch: meta.arch, dataset: cfg.dataset, split, count: r.count, accuracy: r.accuracy, loss: r.loss, sparsity: r.sparsity, sparsityWeighted: r.sparsityWeighted, perLayerSparsity: r.perLayerSparsity, seconds, ...(int4 ? { int4 } : {}) }, null, 2) + '\n');
    } else {
      process.stdout.write(`${modelPath} (${meta.arch}, checkpoint, epoch ${meta.epoch}) on ${cfg.dataset} ${split} (${r.count} images)\n` +
        `accuracy ${(100 * r.accuracy).toFixed(2)}%  loss ${r.loss.toFixed(4)}  activation sparsity ${(100 * r.sparsity).toFixed(2)}% (layer mean; element-weighted ${(100 * r.sparsityWeighted).toFixed(2)}%)\n` +
        `per layer: ${r.perLayerSparsity.map((s) => (100 * s).toFixed(1) + '%').join(' ')}\n` +
        (int4 ? `int4 engine (${int4.backend}): accuracy ${(100 * int4.accuracy).toFixed(2)}%, sparsity ${(100 * int4.sparsity).toFixed(2)}%, top-1 agreement with the fake-quant model ${(100 * int4.agreement).toFixed(3)}% (${int4.differing} of ${r.count} differ)\n` : ''));
    }
    return 0;
  },
};
