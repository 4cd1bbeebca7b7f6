// `strata du` and `strata prune`, with buildx's filters: until=DURATION, id=ID, type=TYPE.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { StrataError } from '../../errors.js';
import { Store } from '../../cache/store.js';
import { usage, type RecordType, type UsageRecord } from '../../cache/usage.js';
import { prune } from '../../cache/prune.js';
import { sweepStatCache } from '../../cache/stat-cache-store.js';
import { parseDuration } from '../../frontend/duration.js';
import { collect } from '../build-options.js';
import { formatSize, parseSize } from '../size.js';

const TYPES: RecordType[] = ['regular', 'image', 'exec.cachemount', 'source.local'];

interface Filters {
  untilMs?: number;
  ids: string[];
  types: RecordType[];
}

export function parseFilters(values: string[]): Filters {
  const f: Filters = { ids: [], types: [] };
  for (const v of values) {
    const eq = v.indexOf('=');
    const k = eq < 0 ? v : v.slice(0, eq);
    const val = eq < 0 ? '' : v.slice(eq + 1).replace(/^"|"$/g, '');
    if (k === 'until') f.untilMs = parseDuration(val, '--filter until');
    else if (k === 'id') f.ids.push(val);
    else if (k === 'type') {
      if (!TYPES.includes(val as RecordType)) {
        throw new StrataError('BAD_FLAG', `--filter type=${val}: unknown type`, { hint: `types: ${TYPES.join(', ')}` });
      }
      f.types.push(val as RecordType);
    } else throw new StrataError('BAD_FLAG', `--filter ${v}: unknown filter`, { hint: 'filters: until=DURATION, id=ID, type=TYPE' });
  }
  return f;
}

function filterRecords(records: UsageRecord[], f: Filters, now: number): UsageRecord[] {
  return records.filter(
    (r) =>
      (!f.types.length || f.types.includes(r.type)) &&
      // As prune matches them: a record id by prefix, a cache mount only by its whole id.
      (!f.ids.length || f.ids.some((id) => r.id === id || (r.type !== 'exec.cachemount' && r.id.startsWith(id)))) &&
      (f.untilMs === undefined || now - r.last_used >= f.untilMs),
  );
}

const iso = (t: number) => new Date(t).toISOString();

export function registerDuPrune(program: Command): void {
  program
    .command('du')
    .description('Show what the store holds: cache records, base layers, cache mounts')
    .option('--root <dir>', 'store directory')
    .option('--verbose', 'one block per record with every field')
    .option('--filter <k=v>', 'until=DURATION, id=ID, type=TYPE (repeatable)', collect, [])
    .option('--format <fmt>', 'table or json', 'table')
    .action((o: { root?: string; verbose?: boolean; filter: string[]; format: string }) => {
      const store = Store.open(o.root ? resolve(o.root) : undefined);
      try {
        const records = filterRecords(usage(store), parseFilters(o.filter), store.now());
        if (o.format === 'json') {
          process.stdout.write(
            JSON.stringify(
              records.map((r) => ({ id: r.id, type: r.type, size: r.size, created: iso(r.created), last_used: iso(r.last_used), in_use: r.in_use, shared: r.shared, description: r.description })),
              null,
              2,
            ) + '\n',
          );
          return;
        }
        if (o.verbose) {
          for (const r of records) {
            process.stdout.write(
              `ID:\t\t${r.id}\nType:\t\t${r.type}\nSize:\t\t${formatSize(r.size)}\nCreated at:\t${iso(r.created)}\nLast used:\t${iso(r.last_used)}\nIn use:\t\t${r.in_use}\nShared:\t\t${r.shared}\nDescription:\t${r.description}\n\n`,
            );
          }
        } else {
          process.stdout.write(`${'ID'.padEnd(40)}${'TYPE'.padEnd(17)}${'SIZE'.padEnd(10)}${'LAST USED'.padEnd(26)}${'IN USE'.padEnd(8)}SHARED\n`);
          for (const r of records) {
            process.stdout.write(`${r.id.padEnd(40)}${r.type.padEnd(17)}${formatSize(r.size).padEnd(10)}${iso(r.last_used).padEnd(26)}${String(r.in_use).padEnd(8)}${r.shared}\n`);
          }
        }
        const total = records.reduce((n, r) => n + r.size, 0);
        const shared = records.filter((r) => r.shared).reduce((n, r) => n + r.size, 0);
        process.stdout.write(`Shared:\t\t${formatSize(shared)}\nPrivate:\t${formatSize(total - shared)}\nReclaimable:\t${formatSize(records.filter((r) => !r.in_use).reduce((n, r) => n + r.size, 0))}\nTotal:\t\t${formatSize(total)}\n`);
      } finally {
        store.close();
      }
    });

  program
    .command('prune')
    .description('Remove cache. Cache mounts go only with --all or a type/id filter that names them')
    .option('--root <dir>', 'store directory')
    .option('-a, --all', 'remove everything not in use, cache mounts included')
    .option('--filter <k=v>', 'until=DURATION, id=ID, type=TYPE (repeatable)', collect, [])
    .option('--keep-storage <size>', 'remove least recently used records until the store is at most this big')
    .option('-f, --force', 'do not ask (strata never asks; accepted for buildx compatibility)')
    .option('--dry-run', 'show what would be removed')
    .action((o: { root?: string; all?: boolean; filter: string[]; keepStorage?: string; dryRun?: boolean }) => {
      const store = Store.open(o.root ? resolve(o.root) : undefined);
      try {
        const f = parseFilters(o.filter);
        const r = prune(store, {
          all: o.all,
          untilMs: f.untilMs,
          ids: f.ids,
          types: f.types,
          keepStorage: o.keepStorage ? parseSize(o.keepStorage, '--keep-storage') : undefined,
          dryRun: o.dryRun,
        });
        for (const rec of r.removed) process.stdout.write(`${o.dryRun ? 'would remove' : 'removed'} ${rec.type} ${rec.id} ${formatSize(rec.size)} ${rec.description}\n`);
        // Context stat entries of paths that are gone are no cache record, but grow the index.
        if (!o.dryRun) sweepStatCache(store);
        process.stdout.write(`Total: ${o.dryRun ? 'would free' : 'freed'} ${formatSize(r.freed)}\n`);
      } finally {
        store.close();
      }
    });
}
