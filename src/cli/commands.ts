import type { CommandSpec } from './args';
import { infoCommand } from './info';
import { benchCommand } from './bench';
import { trainCommand } from './train';
import { evalCommand } from './eval';
import { exportCommand, injectCommand, summaryCommand } from './campaign';
import { dataFetchCommand, dataInfoCommand } from './data';
import { landscapeCommand } from './landscape';
import { reportCommand } from './report';
import { reproduceCommand } from './reproduce';

/** Every CLI command, in help order. */
export const commands: CommandSpec[] = [trainCommand, evalCommand, exportCommand, injectCommand, summaryCommand, landscapeCommand, reportCommand, reproduceCommand, dataFetchCommand, dataInfoCommand, benchCommand, infoCommand];
