// Container ids carry their owner (pid + the pid's start time), so a later strata can tell a
// container or bundle of a live build from the leftovers of one killed with -9.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const ID_RE = /^strata-(\d+)-(\d+)-[0-9a-f]{12}$/;

/** Field 22 of /proc/PID/stat (clock ticks since boot), or undefined if the pid is gone. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces and parens: fields restart after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19];
  } catch {
    return undefined;
  }
}

let self: string | undefined;

export function newContainerId(): string {
  self ??= `${process.pid}-${processStartTime(process.pid) ?? '0'}`;
  return `strata-${self}-${randomBytes(6).toString('hex')}`;
}

export function isStrataId(id: string): boolean {
  return ID_RE.test(id);
}

/** True when the process that made `id` is gone (a reused pid has another start time). */
export function ownerIsDead(id: string): boolean {
  const m = ID_RE.exec(id);
  if (!m) return false;
  return processStartTime(Number(m[1])) !== m[2];
}
