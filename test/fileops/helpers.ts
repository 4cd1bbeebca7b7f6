// Small tree builders for the file-operation tests: temp dirs, files with modes and times, links.
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export type Spec = Record<string, string | { link: string } | { dir: true; mode?: number } | { content: string; mode: number }>;

export async function tmpdir(prefix = 'strata-fo-'): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Create files (string content, mode 0644), dirs and symlinks under root. Parents are made 0755. */
export async function mkTree(root: string, spec: Spec): Promise<void> {
  for (const [rel, v] of Object.entries(spec)) {
    const p = path.join(root, rel);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    if (typeof v === 'string') {
      await fsp.writeFile(p, v);
      await fsp.chmod(p, 0o644);
    } else if ('link' in v) {
      await fsp.symlink(v.link, p);
    } else if ('dir' in v) {
      await fsp.mkdir(p, { recursive: true });
      if (v.mode !== undefined) await fsp.chmod(p, v.mode);
    } else {
      await fsp.writeFile(p, v.content);
      await fsp.chmod(p, v.mode);
    }
  }
}

export async function read(p: string): Promise<string> {
  return fsp.readFile(p, 'utf8');
}

export async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch {
    return false;
  }
}

export async function modeOf(p: string): Promise<number> {
  return (await fsp.lstat(p)).mode & 0o7777;
}

/** All paths under root (posix, sorted), dirs with a trailing slash. */
export async function listTree(root: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(dir: string, rel: string): Promise<void> {
    for (const name of (await fsp.readdir(dir)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = await fsp.lstat(path.join(dir, name));
      if (st.isDirectory()) {
        out.push(r + '/');
        await walk(path.join(dir, name), r);
      } else out.push(r);
    }
  }
  await walk(root, '');
  return out;
}
