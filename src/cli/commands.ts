import type { CommandSpec } from './args';
import { infoCommand } from './info';
import { benchAvailable, benchCommand } from './bench';
import { trainCommand } from './train';
import { evalCommand } from './eval';
import { exportCommand, injectCommand, summaryCommand } from './campaign';
import { dataFetchCommand, dataInfoCommand } from './data';
import { importCommand } from './import';

/** Every CLI command, in help order. */
export const commands: CommandSpec[] = [trainCommand, evalCommand, importCommand, exportCommand, injectCommand, summaryCommand, dataFetchCommand, dataInfoCommand, ...(benchAvailable() ? [benchCommand] : []), infoCommand];
