// `strata mount ...`: cache mounts as things you can list, copy out, seed, share with a dev
// container (`podman run -v "$(strata mount path pip)":/root/.cache/pip`) and remove.
import type { Command } from 'commander';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StrataError } from '../../errors.js';
import { Store } from '../../cache/store.js';
import { acquireCacheMount, cacheMountDir, cacheMountInUse } from '../../cache/cache-mounts.js';
import { usage } from '../../cache/usage.js';
import { formatSize } from '../size.js';
import { run } from '../proc.js';

function open(root?: string): Store {
  return Store.open(root ? resolve(root) : undefined);
}

function known(store: Store, id: string): boolean {
  return !!store.db.prepare('SELECT 1 FROM cache_mounts WHERE id=?').get(id);
}

function requireMount(store: Store, id: string): string {
  if (!known(store, id)) {
    throw new StrataError('NO_MOUNT', `no cache mount with id "${id}"`, { hint: 'list them with `strata mount ls` (the id defaults to the mount target, e.g. /root/.cache/pip)' });
  }
  return join(cacheMountDir(store, id), 'data');
}

const isTar = (p: string) => /\.(tar|tar\.gz|tgz|tar\.zst|tar\.zstd)$/.test(p);

/** Copies a tree's contents keeping owners, modes, times, xattrs and symlinks (Node's cp drops owners). */
async function copyTree(src: string, dest: string, what: string): Promise<void> {
  const r = await run('cp', ['-a', '--', `${src}/.`, dest]);
  if (r.code !== 0) throw new StrataError('COPY_FAILED', `${what}: ${r.stderr.trim()}`);
}

export function registerMount(program: Command): void {
  const mount = program.command('mount').description('Cache mounts (RUN --mount=type=cache): list, export, import, path, rm');
  mount
    .command('ls')
    .option('--root <dir>', 'store directory')
    .option('--format <fmt>', 'table or json', 'table')
    .action((o: { root?: string; format: string }) => {
      const store = open(o.root);
      try {
        const rows = store.db.prepare('SELECT id, sharing, created, last_used, builds FROM cache_mounts ORDER BY id').all() as {
          id: string;
          sharing: string;
          created: number;
          last_used: number;
          builds: number;
        }[];
        const sizes = new Map(usage(store).filter((r) => r.type === 'exec.cachemount').map((r) => [r.id, r]));
        const list = rows.map((r) => ({
          id: r.id,
          sharing: r.sharing,
          size: sizes.get(r.id)?.size ?? 0,
          created: new Date(r.created).toISOString(),
          last_used: new Date(r.last_used).toISOString(),
          builds: r.builds,
          in_use: sizes.get(r.id)?.in_use ?? false,
          path: join(cacheMountDir(store, r.id), 'data'),
        }));
        if (o.format === 'json') {
          process.stdout.write(JSON.stringify(list, null, 2) + '\n');
          return;
        }
        process.stdout.write(`${'ID'.padEnd(36)}${'SHARING'.padEnd(9)}${'SIZE'.padEnd(10)}${'BUILDS'.padEnd(8)}${'LAST USED'.padEnd(26)}IN USE\n`);
        for (const m of list) process.stdout.write(`${m.id.padEnd(36)}${m.sharing.padEnd(9)}${formatSize(m.size).padEnd(10)}${String(m.builds).padEnd(8)}${m.last_used.padEnd(26)}${m.in_use}\n`);
      } finally {
        store.close();
      }
    });
  mount
    .command('path')
    .argument('<id>')
    .option('--root <dir>', 'store directory')
    .option('--create', 'create the mount when it does not exist yet')
    .description('Print the host folder of a cache mount')
    .action(async (id: string, o: { root?: string; create?: boolean }) => {
      const store = open(o.root);
      try {
        if (o.create && !known(store, id)) (await acquireCacheMount(store, id, 'shared')).release();
        process.stdout.write(requireMount(store, id) + '\n');
      } finally {
        store.close();
      }
    });
  mount
    .command('export')
    .argument('<id>')
    .argument('<dest>', 'a folder, or a .tar / .tar.gz file')
    .option('--root <dir>', 'store directory')
    .description('Copy a cache mount out to a folder or a tar')
    .action(async (id: string, dest: string, o: { root?: string }) => {
      const store = open(o.root);
      try {
        const src = requireMount(store, id);
        const d = resolve(dest);
        if (isTar(d)) {
          // -a: compression from the suffix (.tar, .tar.gz/.tgz, .tar.zst).
          const r = await run('tar', ['--numeric-owner', '--xattrs', '-a', '-cf', d, '-C', src, '.']);
          if (r.code !== 0) throw new StrataError('EXPORT_FAILED', `cannot write ${d}: ${r.stderr.trim()}`);
        } else {
          mkdirSync(d, { recursive: true });
          await copyTree(src, d, `cannot copy cache mount ${id} to ${d}`);
        }
        process.stdout.write(`exported cache mount ${id} to ${d}\n`);
      } finally {
        store.close();
      }
    });
  mount
    .command('import')
    .argument('<id>')
    .argument('<src>', 'a folder, or a .tar / .tar.gz file')
    .option('--root <dir>', 'store directory')
    .option('--sharing <mode>', 'sharing mode recorded for a new mount', 'shared')
    .description('Seed a cache mount from a folder or a tar (replaces its contents)')
    .action(async (id: string, srcArg: string, o: { root?: string; sharing: string }) => {
      const store = open(o.root);
      try {
        const src = resolve(srcArg);
        if (!existsSync(src)) throw new StrataError('NO_SOURCE', `${src} does not exist`);
        if (!['shared', 'private', 'locked'].includes(o.sharing)) {
          throw new StrataError('BAD_FLAG', `--sharing ${o.sharing}: must be shared, private or locked`);
        }
        if (!statSync(src).isDirectory() && !isTar(src)) {
          throw new StrataError('BAD_FLAG', `${src} is neither a folder nor a .tar, .tar.gz, .tgz or .tar.zst file`);
        }
        if (cacheMountInUse(store, id)) throw new StrataError('IN_USE', `cache mount ${id} is in use by a running build`, { hint: 'try again when the build has finished' });
        // An existing mount keeps the sharing its builds declared; --sharing is for a new one.
        const existing = store.db.prepare('SELECT sharing FROM cache_mounts WHERE id=?').get(id) as { sharing: 'shared' | 'private' | 'locked' } | undefined;
        const lease = await acquireCacheMount(store, id, existing?.sharing ?? (o.sharing as 'shared'));
        try {
          await rm(lease.dir, { recursive: true, force: true });
          mkdirSync(lease.dir, { recursive: true });
          if (statSync(src).isDirectory()) await copyTree(src, lease.dir, `cannot copy ${src} into cache mount ${id}`);
          else {
            const r = await run('tar', ['--numeric-owner', '--same-owner', '--xattrs', '-xf', src, '-C', lease.dir]);
            if (r.code !== 0) throw new StrataError('IMPORT_FAILED', `cannot unpack ${src}: ${r.stderr.trim()}`);
          }
        } finally {
          lease.release();
        }
        process.stdout.write(`imported ${src} into cache mount ${id}\n`);
      } finally {
        store.close();
      }
    });
  mount
    .command('rm')
    .argument('<ids...>')
    .option('--root <dir>', 'store directory')
    .description('Remove cache mounts')
    .action((ids: string[], o: { root?: string }) => {
      const store = open(o.root);
      try {
        for (const id of ids) {
          requireMount(store, id);
          if (cacheMountInUse(store, id)) throw new StrataError('IN_USE', `cache mount ${id} is in use by a running build`, { hint: 'try again when the build has finished' });
          store.db.prepare('DELETE FROM cache_mounts WHERE id=?').run(id);
          rmSync(cacheMountDir(store, id), { recursive: true, force: true });
          process.stdout.write(`removed cache mount ${id}\n`);
        }
      } finally {
        store.close();
      }
    });
}
