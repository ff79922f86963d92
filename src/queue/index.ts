// Queue mode (BullMQ over Redis): the library API. BullMQ and ioredis are loaded on first use.
export { enqueueCampaign, collectCampaign, campaignStatus, cancelCampaign, listCampaigns, formatProgress, CampaignFailed, TARGET_JOB_SECONDS } from './campaign';
export type { EnqueueOptions, EnqueueResult, CollectOptions, CollectResult, CollectProgress, CampaignStatus } from './campaign';
export { runWorker } from './worker';
export type { WorkerOptions, WorkerSummary } from './worker';
export { parseRedisUrl } from './connection';
export { campaignId } from './protocol';
