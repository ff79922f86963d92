import type { CommandSpec } from './args';
import { infoCommand } from './info';
import { trainCommand } from './train';
import { evalCommand } from './eval';

/** Every CLI command, in help order. */
export const commands: CommandSpec[] = [trainCommand, evalCommand, infoCommand];
