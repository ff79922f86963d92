// Worker thread of a campaign: loads the model and test images, then asks the
// main thread for jobs a chunk at a time, runs them in order and posts each
// record back (the job list is never materialised: memory is flat in the trial count).
import { parentPort, workerData } from 'node:worker_threads';
import { readDeployed } from '../deploy/format';
import { loadDataset } from '../data/dataset';
import { CampaignExecutor, type TrialJob } from './runner';
import type { CampaignSettings } from './results';
import { readMasks } from './masks';

async function main(): Promise<void> {
  const { settings, dataDir, masks } = workerData as { settings: CampaignSettings; dataDir: string | null; masks: string | null };
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
  const port = parentPort!;
  port.on('message', (m: { kind: 'jobs'; jobs: TrialJob[]; end: boolean }) => {
    try {
      if (m.end) { port.postMessage({ kind: 'done' }); port.close(); return; }
      for (const job of m.jobs) port.postMessage({ kind: 'record', record: exec.run(job) });
      port.postMessage({ kind: 'need' });
    } catch (e) {
      port.postMessage({ kind: 'error', message: (e as Error).message });
      port.close();
    }
  });
  port.postMessage({ kind: 'need' });
}

main().catch((e: Error) => { parentPort!.postMessage({ kind: 'error', message: e.message }); parentPort!.close(); });
