// Worker thread of a campaign: loads the model and test images, runs the jobs
// in order and posts each record back.
import { parentPort, workerData } from 'node:worker_threads';
import { readDeployed } from '../deploy/format';
import { loadDataset } from '../data/dataset';
import { CampaignExecutor, type TrialJob } from './runner';
import type { CampaignSettings } from './results';
import { readMasks } from './masks';

async function main(): Promise<void> {
  const { settings, jobs, dataDir, masks } = workerData as { settings: CampaignSettings; jobs: TrialJob[]; dataDir: string | null; masks: string | null };
  const model = await readDeployed(settings.model);
  if (model.hash !== settings.modelSha256) throw new Error(`${settings.model} changed while the campaign was starting`);
  const ds = await loadDataset(settings.dataset as 'fashion-mnist', 'test', dataDir ? { dataDir } : {});
  let cells: Map<string, Uint32Array> | null = null;
  if (masks !== null) {
    const m = await readMasks(masks, model.meta);
    if (m.sha256 !== settings.masksSha256) throw new Error(`${masks} changed while the campaign was starting`);
    cells = m.cells;
  }
  const exec = new CampaignExecutor(model, settings, { images: ds.images, labels: ds.labels, count: settings.images }, cells);
  for (const job of jobs) parentPort!.postMessage({ kind: 'record', record: exec.run(job) });
  parentPort!.postMessage({ kind: 'done' });
}

main().catch((e: Error) => parentPort!.postMessage({ kind: 'error', message: e.message }));
