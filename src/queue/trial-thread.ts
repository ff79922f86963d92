// A queue worker's trial thread: keeps decoded models and executors between jobs, runs a chunk of trials
// on the native engine and posts the records back (the worker's event loop stays free for lock renewal).
import { parentPort } from 'node:worker_threads';
import { deployedFromFile, type DeployedModel } from '../deploy/format';
import { decodeSafetensors } from '../io/safetensors';
import { CampaignExecutor, type TrialJob } from '../campaign/runner';
import type { CampaignSettings } from '../campaign/results';

export interface RunMessage {
  kind: 'run';
  id: number;
  campaign: string;
  settings: CampaignSettings;
  modelSha: string;
  /** Present when this thread has not been sent the model yet. */
  modelBytes?: Uint8Array;
  data: { key: string; images: SharedArrayBuffer; labels: SharedArrayBuffer; count: number };
  trials: TrialJob[];
}
/** Every reply names the models the thread holds now (it keeps two): the worker sends a model's bytes again once it was dropped. */
type Reply = { kind: 'done'; id: number; records: ReturnType<CampaignExecutor['run']>[] } | { kind: 'error'; id: number; message: string } | { kind: 'need-model'; id: number };
export type ThreadReply = Reply & { held: string[] };

const models = new Map<string, DeployedModel>();
const executors = new Map<string, CampaignExecutor>();

function handle(m: RunMessage): Reply {
  let model = models.get(m.modelSha);
  if (!model) {
    if (!m.modelBytes) return { kind: 'need-model', id: m.id };
    model = deployedFromFile(decodeSafetensors(m.modelBytes, `model ${m.modelSha.slice(0, 12)}`), `model ${m.modelSha.slice(0, 12)}`, m.modelSha);
    if (models.size >= 2) models.delete(models.keys().next().value!);
    models.set(m.modelSha, model);
  }
  const key = `${m.campaign}|${m.data.key}`;
  let exec = executors.get(key);
  if (!exec) {
    exec = new CampaignExecutor(model, m.settings, { images: new Uint8Array(m.data.images), labels: new Uint8Array(m.data.labels), count: m.data.count });
    if (executors.size >= 4) executors.delete(executors.keys().next().value!);
    executors.set(key, exec);
  }
  return { kind: 'done', id: m.id, records: m.trials.map((t) => exec.run(t)) };
}

parentPort!.on('message', (m: RunMessage) => {
  let reply: Reply;
  try { reply = handle(m); } catch (e) { reply = { kind: 'error', id: m.id, message: (e as Error).message }; }
  parentPort!.postMessage({ ...reply, held: [...models.keys()] });
});
