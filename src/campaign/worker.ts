// Worker thread of a campaign: loads the model and test images, runs the jobs
// in order and posts each record back.
import { parentPort, workerData } from 'node:worker_threads';
import { readDeployed } from '../deploy/format';
import { loadDataset } from '../data/dataset';
import { CampaignExecutor, type TrialJob } from './runner';
import type { CampaignSettings } from './results';

async function main(): Promise<void> {
  const { settings, jobs, dataDir } = workerData as { settings: CampaignSettings; jobs: TrialJob[]; dataDir: string | null };
  const model = await readDeployed(settings.model);
  if (model.hash !== settings.modelSha256) throw new Error(`${settings.model} changed while the campaign was starting`);
  const ds = await loadDataset(settings.dataset as 'fashion-mnist', 'test', dataDir ? { dataDir } : {});
  const exec = new CampaignExecutor(model, settings, { images: ds.images, labels: ds.labels, count: settings.images });
  for (const job of jobs) parentPort!.postMessage({ kind: 'record', record: exec.run(job) });
  parentPort!.postMessage({ kind: 'done' });
}

main().catch((e: Error) => parentPort!.postMessage({ kind: 'error', message: e.message }));
