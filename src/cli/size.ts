// Byte sizes as users write them (`10GB`, `512mb`, `1.5G`, `2GiB`) and as we print them.
import { StrataError } from '../errors.js';

export function parseSize(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$/i.exec(text.trim());
  if (!m) throw new StrataError('BAD_FLAG', `${flag} ${text}: not a size`, { hint: 'write bytes with a unit: 500MB, 10GB, 1.5G' });
  const pow = { '': 0, k: 1, m: 2, g: 3, t: 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  // buildx reads these as binary units (10GB = 10 GiB), as docker's units.RAMInBytes does.
  return Math.round(Number(m[1]) * 1024 ** pow);
}

export function formatSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : 1)}${units[i]}`;
}
