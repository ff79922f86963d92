import type { CommandSpec } from './args';
import { infoCommand } from './info';
import { benchCommand } from './bench';
import { trainCommand } from './train';
import { evalCommand } from './eval';
import { exportCommand, injectCommand, summaryCommand } from './campaign';
import { dataFetchCommand, dataInfoCommand } from './data';
import { campaignCancelCommand, campaignCollectCommand, campaignStatusCommand, workerCommand } from './queue';

/** Every CLI command, in help order. */
export const commands: CommandSpec[] = [trainCommand, evalCommand, exportCommand, injectCommand, summaryCommand, workerCommand, campaignStatusCommand, campaignCollectCommand, campaignCancelCommand, dataFetchCommand, dataInfoCommand, benchCommand, infoCommand];
