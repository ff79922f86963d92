// Public library API (re-exports only).
export { engineInfo, setIsa, getIsa, bestIsa, availableIsas, setThreads, getThreads, withIsa } from './native/info';
export type { EngineInfo } from './native/info';
export type { IsaName, KernelInfo } from './native/binding';
