import type { CommandSpec } from './args';
import { infoCommand } from './info';

/** Every CLI command, in help order. */
export const commands: CommandSpec[] = [infoCommand];
