// Public library API (re-exports only). CommonJS and ES module consumers both
// import it as `flatenn`.
export { engineInfo, setIsa, getIsa, bestIsa, availableIsas, setThreads, getThreads, withIsa } from './native/info';
export type { EngineInfo } from './native/info';
export type { IsaName, KernelInfo } from './native/binding';
export { Tensor } from './tensor/tensor';
export type { DType } from './tensor/tensor';

// data
export { loadDataset, subset, splitValidation, datasetInfo } from './data/dataset';
export type { ImageDataset, DatasetName, Split } from './data/dataset';
export { readSafetensors, writeSafetensors, encodeSafetensors, decodeSafetensors } from './io/safetensors';

// models and training
export { lenet5, resnet18, buildGraph, ARCHS } from './nn/graph';
export type { Graph, GraphNode, Arch } from './nn/graph';
export { Model } from './nn/model';
export type { QuantConfig, InputNorm, InputPadding } from './nn/model';
export { defaultConfig, validateConfig } from './train/config';
export type { TrainConfig } from './train/config';
export { Trainer, createModel, evaluate, releaseStepBuffers } from './train/trainer';
export type { EpochStats, EvalResult } from './train/trainer';
export { trainModel, evaluateAsync } from './train/run';
export type { TrainRunOptions, TrainRunResult, TrainProgress } from './train/run';
export { saveCheckpoint, loadCheckpoint, resumeTrainer } from './train/checkpoint';

// int4 engine, export and campaigns
export { deployModel, exportCheckpoint } from './deploy/export';
export { readDeployed } from './deploy/format';
export type { DeployedModel, DeployedMeta, LayerLayout } from './deploy/format';
export { Engine } from './engine/engine';
export type { EvaluateOptions, EvaluateResult, EngineResult } from './engine/engine';
export { importTorch } from './interop/torch-import';
export type { ImportOptions, ImportReport } from './interop/torch-import';
export { readMasks, writeMasks, maskKey } from './campaign/masks';
export type { MasksMeta, FaultMasks } from './campaign/masks';
export { runCampaign } from './campaign/campaign';
export type { CampaignOptions, CampaignResult } from './campaign/campaign';
export { FaultSpace, parseRate, FAULT_TYPES } from './campaign/faults';
export type { FaultType, FaultTargets } from './campaign/faults';
export { readResults, mergeResults, summaryRows, pairedRows, formatSummary, formatPaired, SEMANTICS } from './campaign/results';
export type { TrialRecord, CleanRecord, SummaryRow, PairedRow, CampaignSettings, ResultsFile } from './campaign/results';
export { summaryCsv, pairedCsv, recordsCsv } from './campaign/csv';
export { fetchDataset } from './data/fetch';
export type { FetchOptions, FetchEvent, ProxyEnv } from './data/fetch';
export { summarize, tQuantile } from './stats/t';

// collapse detection, landscapes, reports, the study pipeline
export { detectCollapse, TrainingDivergedError } from './train/collapse';
export type { CollapseFlag } from './train/collapse';
export { computeLandscape, writeLandscape, readLandscape, landscapeDirection, rawDirection, filterNormalize } from './landscape/landscape';
export type { LandscapeFile, LandscapeModel, LandscapeOptions } from './landscape/landscape';
export { buildReport } from './report/report';
export type { ReportOptions, ReportResult } from './report/report';
export { reproduce, FULL_BUDGET, QUICK_BUDGET, RESNET18_FULL_BUDGET, RESNET18_QUICK_BUDGET, baseBudget, defaultSeeds } from './reproduce/pipeline';
export type { Budget, ReproduceArch, ReproduceOptions, ReproduceResult } from './reproduce/pipeline';
// queue mode (BullMQ over Redis; loaded only when used)
export { enqueueCampaign, collectCampaign, runWorker, campaignStatus, cancelCampaign, listCampaigns, parseRedisUrl, campaignId, CampaignFailed } from './queue';
export type { EnqueueOptions, EnqueueResult, CollectOptions, CollectResult, CollectProgress, CampaignStatus, WorkerOptions, WorkerSummary } from './queue';
