// `strata cache export|import|ls`: the cache of a store moved to and from a folder or a registry
// outside of any build (same formats as --cache-to / --cache-from).
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { Store, type LayerInfo } from '../../cache/store.js';
import { readCacheIndex } from '../../cache/remote.js';
import { latestBuilds } from '../../cache/shared-history.js';
import { RegistryClient } from '../../registry/client.js';
import { Materializer } from '../../solver/materialize.js';
import { collect } from '../build-options.js';
import { describe, parseCacheFrom, parseCacheTo, runExport, runImports } from '../cache-io.js';
import { formatSize } from '../size.js';

function open(root?: string): Store {
  return Store.open(root ? resolve(root) : undefined);
}

export function registerCache(program: Command): void {
  const cache = program.command('cache').description('Move the build cache to and from a folder or a registry');
  cache
    .command('export')
    .argument('<spec>', 'type=local,dest=DIR | type=registry,ref=REF [,mounts=all|ID,ID][,compression=gzip|zstd][,keep=N]')
    .option('--root <dir>', 'store directory')
    .option('--insecure-registry <host>', 'allow plain HTTP to this registry (repeatable)', collect, [])
    .description('Export every cache record of the store (and the cache mounts asked for)')
    .action(async (specText: string, o: { root?: string; insecureRegistry: string[] }) => {
      const store = open(o.root);
      try {
        const spec = parseCacheTo(specText.includes('mode=') ? specText : `${specText},mode=max`);
        const client = new RegistryClient({ insecureRegistries: o.insecureRegistry });
        const rows = store.db.prepare('SELECT key, chain, description FROM cache_records').all() as { key: string; chain: string; description: string | null }[];
        const records = rows
          .map((r) => ({ key: r.key, chain: (JSON.parse(r.chain) as string[]).map((d) => store.layer(d)), description: r.description ?? '' }))
          .filter((r): r is { key: string; chain: LayerInfo[]; description: string } => r.chain.every((l) => !!l));
        const mountIds = (store.db.prepare('SELECT id FROM cache_mounts').all() as { id: string }[]).map((m) => m.id);
        const r = await runExport(store, client, new Materializer(store, client), spec, { records, mountIds, builds: latestBuilds(store), warn: (m) => process.stderr.write(`warning: ${m}\n`) });
        process.stdout.write(`exported ${r.records} records and ${r.mounts} cache mount(s) to ${describe(spec.dest)}${r.blobsWritten !== undefined ? ` (${r.blobsWritten} new blobs)` : ''}\n`);
      } finally {
        store.close();
      }
    });
  cache
    .command('import')
    .argument('<spec>', 'type=local,src=DIR | type=registry,ref=REF [,mounts=all|none|ID,ID]')
    .option('--root <dir>', 'store directory')
    .option('--insecure-registry <host>', 'allow plain HTTP to this registry (repeatable)', collect, [])
    .option('--fetch', 'fetch every layer now instead of when a build needs it')
    .description('Import a cache: its records become hits for later builds')
    .action(async (specText: string, o: { root?: string; insecureRegistry: string[]; fetch?: boolean }) => {
      const store = open(o.root);
      try {
        const spec = parseCacheFrom(specText);
        const client = new RegistryClient({ insecureRegistries: o.insecureRegistry });
        const warnings: string[] = [];
        const [r] = await runImports(store, client, [spec], (m) => warnings.push(m));
        for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
        if (!r) {
          process.exitCode = 1;
          return;
        }
        if (o.fetch) {
          const index = await readCacheIndex(spec.source, client);
          await new Materializer(store, client).blobsOf(index?.layers ?? []);
        }
        // The summary waits for the seeds, so that it names only mounts that really were seeded.
        const seeded = await r.seeded;
        process.stdout.write(`imported ${r.records} new records (${r.layers} layers listed); cache mounts seeded: ${seeded.length ? seeded.join(', ') : 'none'}\n`);
      } finally {
        store.close();
      }
    });
  cache
    .command('ls')
    .argument('<spec>', 'type=local,src=DIR | type=registry,ref=REF | DIR')
    .option('--insecure-registry <host>', 'allow plain HTTP to this registry (repeatable)', collect, [])
    .option('--format <fmt>', 'table or json', 'table')
    .description('List the records and cache mounts of an exported cache')
    .action(async (specText: string, o: { insecureRegistry: string[]; format: string }) => {
      const spec = parseCacheFrom(specText.includes('=') ? specText : `type=local,src=${specText}`);
      const index = await readCacheIndex(spec.source, new RegistryClient({ insecureRegistries: o.insecureRegistry }));
      if (!index) {
        process.stderr.write(`error: no strata cache at ${describe(spec.source)}\n`);
        process.exitCode = 1;
        return;
      }
      if (o.format === 'json') {
        process.stdout.write(JSON.stringify(index, null, 2) + '\n');
        return;
      }
      const size = new Map(index.layers.map((l) => [l.diffId, l.size]));
      process.stdout.write(`${'KEY'.padEnd(14)}${'CREATED'.padEnd(26)}${'LAYERS'.padEnd(8)}${'SIZE'.padEnd(10)}STEP\n`);
      for (const r of index.records) {
        const bytes = r.chain.reduce((n, d) => n + (size.get(d) ?? 0), 0);
        process.stdout.write(`${r.key.slice(7, 19).padEnd(14)}${new Date(r.created).toISOString().padEnd(26)}${String(r.chain.length).padEnd(8)}${formatSize(bytes).padEnd(10)}${r.description}\n`);
      }
      for (const m of index.mounts) {
        process.stdout.write(`cache mount ${m.id}: ${formatSize(m.size)} (${m.mediaType.endsWith('zstd') ? 'zstd' : 'gzip'}), last used ${new Date(m.lastUsed).toISOString()}\n`);
      }
      process.stdout.write(`${index.records.length} records, ${index.layers.length} layers, ${index.mounts.length} cache mounts, ${index.exports.length} export(s) kept\n`);
    });
}
