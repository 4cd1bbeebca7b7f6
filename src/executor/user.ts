// USER resolution against the rootfs's own /etc/passwd and /etc/group, with BuildKit's rules
// (executor/oci GetUser + moby/sys/user GetExecUser):
// - '' means uid 0 looked up in passwd (gid and groups of root's entry); any failure gives 0:0.
// - 'uid:gid' with both numeric (or 'root') skips the files and has no supplementary groups.
// - 'name' or 'uid': the first passwd entry whose name (or uid when numeric) matches gives uid,
//   gid, and the supplementary groups are every /etc/group entry listing that name as member.
//   A numeric uid without an entry is allowed: gid 0, no groups.
// - 'x:group': the primary gid comes from the group (name, or numeric gid with or without an
//   entry) and there are no supplementary groups.
import { open } from 'node:fs/promises';
import { constants } from 'node:fs';
import { StrataError } from '../errors.js';
import { resolveInRoot } from './rootpath.js';
import type { UserIds } from './types.js';

const MAX_USER_FILE_BYTES = 10 << 20;
const MAX_ID = 2 ** 31 - 1;

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}
interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** Go's Atoi with the error ignored, as the passwd parser does for broken files. */
function looseInt(s: string | undefined): number {
  if (s === undefined || !/^[+-]?\d+$/.test(s)) return 0;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : 0;
}

/** undefined when not numeric; throws when numeric but out of the 0..2^31-1 range. */
function numericId(s: string, spec: string): number | undefined {
  if (!/^[+-]?\d+$/.test(s)) return undefined;
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_ID) {
    throw new StrataError('INVALID_USER', `user "${spec}": uids and gids must be in range 0-${MAX_ID}`, {
      hint: 'use a uid/gid between 0 and 2147483647',
    });
  }
  return n;
}

/** Fast-path id: digits only, or 'root'. */
function plainId(s: string): number | undefined {
  if (s === 'root') return 0;
  if (!/^\d+$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 0xffffffff ? n : undefined;
}

/** The file's text, or undefined when it does not exist inside the rootfs. */
async function readRootFile(rootfs: string, inContainer: string): Promise<string | undefined> {
  const host = await resolveInRoot(rootfs, inContainer);
  let fh;
  try {
    fh = await open(host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new StrataError('USER_FILE_UNREADABLE', `cannot read ${inContainer} of the rootfs: ${(e as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      throw new StrataError('USER_FILE_UNREADABLE', `${inContainer} of the rootfs is not a regular file`, {
        hint: `make ${inContainer} a regular file in the image`,
      });
    }
    if (st.size > MAX_USER_FILE_BYTES) {
      throw new StrataError('USER_FILE_UNREADABLE', `${inContainer} of the rootfs exceeds ${MAX_USER_FILE_BYTES} bytes`);
    }
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}

function lines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

function parsePasswd(text: string): PasswdEntry[] {
  return lines(text).map((l) => {
    const f = l.split(':');
    return { name: f[0] ?? '', uid: looseInt(f[2]), gid: looseInt(f[3]) };
  });
}

function parseGroup(text: string): GroupEntry[] {
  return lines(text)
    .filter((l) => !l.startsWith('#'))
    .map((l) => {
      const f = l.split(':');
      const list = f[3] ?? '';
      return { name: f[0] ?? '', gid: looseInt(f[2]), members: list === '' ? [] : list.split(',') };
    });
}

/**
 * Resolve a Dockerfile USER value ('name', 'uid', 'name:group', 'uid:gid' or '') to ids using
 * the files of `rootfs` (never the host's). additionalGids are the supplementary groups only;
 * the spec builder adds the primary gid as BuildKit does.
 */
export async function resolveUser(rootfs: string, user: string): Promise<UserIds> {
  if (user === '') {
    try {
      return await lookup(rootfs, '0');
    } catch {
      return { uid: 0, gid: 0, additionalGids: [] };
    }
  }
  const parts = user.split(':');
  if (parts.length >= 2) {
    const uid = plainId(parts[0] as string);
    const gid = plainId(parts.slice(1).join(':'));
    if (uid !== undefined && gid !== undefined) return { uid, gid, additionalGids: [] };
  }
  return lookup(rootfs, user);
}

async function lookup(rootfs: string, spec: string): Promise<UserIds> {
  const [userArg = '', groupArg = ''] = spec.split(':');
  const uidArg = numericId(userArg, spec);
  const gidArg = numericId(groupArg, spec);

  const passwdText = await readRootFile(rootfs, '/etc/passwd');
  const users = passwdText === undefined ? [] : parsePasswd(passwdText);
  const match = users.find((u) => {
    if (userArg === '') return u.uid === 0;
    if (uidArg !== undefined) return u.uid === uidArg;
    return u.name === userArg;
  });

  let uid = 0;
  let gid = 0;
  let additionalGids: number[] = [];
  if (match) {
    uid = match.uid;
    gid = match.gid;
  } else if (userArg !== '') {
    if (uidArg === undefined) {
      const why = passwdText === undefined ? 'the rootfs has no /etc/passwd' : 'no entry with that name in /etc/passwd';
      throw new StrataError('UNKNOWN_USER', `unable to find user ${userArg}: ${why}`, {
        hint: `create the user first (e.g. RUN useradd ${userArg}) or use a numeric uid`,
      });
    }
    uid = uidArg;
  }

  if (groupArg !== '' || match) {
    const groupText = await readRootFile(rootfs, '/etc/group');
    const groups = groupText === undefined ? [] : parseGroup(groupText);
    if (groupArg !== '') {
      const g = groups.find((e) => (gidArg !== undefined ? e.gid === gidArg : e.name === groupArg));
      if (g) gid = g.gid;
      else if (gidArg !== undefined) gid = gidArg;
      else {
        const why = groupText === undefined ? 'the rootfs has no /etc/group' : 'no entry with that name in /etc/group';
        throw new StrataError('UNKNOWN_GROUP', `unable to find group ${groupArg}: ${why}`, {
          hint: `create the group first (e.g. RUN groupadd ${groupArg}) or use a numeric gid`,
        });
      }
    } else if (match) {
      additionalGids = groups.filter((g) => g.members.includes(match.name)).map((g) => g.gid);
    }
  }
  return { uid, gid, additionalGids };
}
