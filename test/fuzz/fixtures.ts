// The valid files the fuzz suite mutates: a hand-built deployed model, a LeNet-5
// checkpoint trained for one epoch on fixture data and its export, a small
// campaign's results, FashionMNIST-format fixtures and a CIFAR-10-style archive.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCampaign } from '../../src/campaign/campaign';
import { exportCheckpoint } from '../../src/deploy/export';
import { defaultConfig } from '../../src/train/config';
import { trainModel } from '../../src/train/run';
import { writeTinyModel } from '../helpers/tiny-model';
import { tar, tmpDir, writeMnist } from '../data/fixtures';

export async function buildFixtures(): Promise<string> {
  const dir = tmpDir('fuzz');
  const mnist = path.join(dir, 'mnist');
  writeMnist(mnist, 'train', 96, true);
  writeMnist(mnist, 'test', 16, true);
  await writeTinyModel(path.join(dir, 'tiny.safetensors'));
  const ck = path.join(dir, 'lenet.safetensors');
  await trainModel({ ...defaultConfig('lenet5'), epochs: 1, limitTrain: 64, valSize: 16, batchSize: 32 }, { out: ck, quiet: true, dataDir: mnist, testAtEnd: false });
  await exportCheckpoint(ck, path.join(dir, 'lenet-deployed.safetensors'));
  await runCampaign({ model: path.join(dir, 'tiny.safetensors'), out: path.join(dir, 'results.jsonl'), dataDir: mnist, faults: ['bitflip', 'sa1'], rates: [0, 0.02], trials: 3, limit: 4, quiet: true });
  const rec = Buffer.alloc(2 * 3073);
  fs.writeFileSync(path.join(dir, 'cifar.tar'), tar([{ name: 'cifar-10-batches-bin/' }, { name: 'cifar-10-batches-bin/test_batch.bin', data: rec }, { name: 'cifar-10-batches-bin/batches.meta.txt', data: Buffer.from('airplane\n') }]));
  return dir;
}

if (require.main === module) buildFixtures().then((d) => process.stdout.write(d + '\n'), (e: Error) => { process.stderr.write(String(e.stack) + '\n'); process.exit(1); });
