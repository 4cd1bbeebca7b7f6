// The /etc/hosts and /etc/resolv.conf every step sees, generated per run as BuildKit does, so
// the image's own files are never used nor changed by a RUN.
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';

const FALLBACK_NAMESERVERS = ['8.8.8.8', '8.8.4.4', '2001:4860:4860::8888', '2001:4860:4860::8844'];

export function hostsFile(hostname: string): string {
  return `127.0.0.1\tlocalhost ${hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`;
}

function isLoopback(addr: string): boolean {
  const a = addr.replace(/%.*$/, '');
  if (isIP(a) === 4) return a.startsWith('127.');
  return a === '::1' || a === '0:0:0:0:0:0:0:1';
}

/**
 * With host networking the host's resolv.conf works as is (a local resolver is reachable).
 * In a private network namespace loopback nameservers point nowhere, so they are dropped and,
 * if none remain, public ones take their place (BuildKit's "legacy" transform).
 */
export function resolvConfFor(hostText: string, network: 'none' | 'host'): string {
  const lines = hostText.split('\n');
  const isNs = (l: string): string | undefined => /^\s*nameserver\s+(\S+)/.exec(l)?.[1];
  const nameservers = lines.map(isNs).filter((x): x is string => x !== undefined);
  if (network === 'host' && nameservers.length > 0) return hostText.endsWith('\n') || hostText === '' ? hostText : `${hostText}\n`;
  const kept = lines.filter((l) => {
    const ns = isNs(l);
    return ns === undefined || !isLoopback(ns);
  });
  while (kept.length > 0 && kept[kept.length - 1] === '') kept.pop();
  if (!kept.some((l) => isNs(l) !== undefined)) kept.push(...FALLBACK_NAMESERVERS.map((ns) => `nameserver ${ns}`));
  return `${kept.join('\n')}\n`;
}

export async function hostResolvConf(): Promise<string> {
  try {
    return await readFile('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
}
