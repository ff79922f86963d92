import type { CommandSpec } from './args';
import { infoCommand } from './info';
import { benchAvailable, benchCommand } from './bench';
import { benchKernelsCommand } from './bench-kernels';
import { trainCommand } from './train';
import { evalCommand } from './eval';
import { exportCommand, injectCommand, summaryCommand } from './campaign';
import { dataFetchCommand, dataInfoCommand } from './data';
import { landscapeCommand } from './landscape';
import { reportCommand } from './report';
import { reproduceCommand } from './reproduce';
import { importCommand } from './import';
import { campaignCancelCommand, campaignCollectCommand, campaignStatusCommand, workerCommand } from './queue';

/**
 * Every CLI command, in help order (a two-word command before the one-word command it starts with).
 * `bench` runs the benchmarks of a source checkout: absent from an installed package (`bench kernels` stays).
 */
export const commands: CommandSpec[] = [trainCommand, evalCommand, importCommand, exportCommand, injectCommand, summaryCommand, workerCommand, campaignStatusCommand, campaignCollectCommand, campaignCancelCommand, landscapeCommand, reportCommand, reproduceCommand, dataFetchCommand, dataInfoCommand, benchKernelsCommand, ...(benchAvailable() ? [benchCommand] : []), infoCommand];
