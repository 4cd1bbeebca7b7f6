// Picking one manifest out of an index for a platform, with containerd's normalizations: arch
// aliases (x86_64 -> amd64, aarch64 -> arm64) and default variants (arm64 -> v8, arm -> v7).
import type { Descriptor, Platform } from './media-types.js';

export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
}

const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64', armhf: 'arm', armel: 'arm', i386: '386' };

export function normalizePlatform(p: PlatformSpec): PlatformSpec {
  const os = p.os.toLowerCase();
  const architecture = ARCH_ALIASES[p.architecture.toLowerCase()] ?? p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  if (architecture === 'arm64' && (variant === undefined || variant === '8')) variant = 'v8';
  if (architecture === 'arm' && variant === undefined) variant = 'v7';
  if (architecture === 'arm' && variant !== undefined && /^\d+$/.test(variant)) variant = `v${variant}`;
  if (architecture === 'amd64' && variant === 'v1') variant = undefined;
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

export function formatPlatform(p: PlatformSpec | Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** `linux/arm64/v8` -> {os, architecture, variant}. */
export function parsePlatform(s: string): PlatformSpec {
  const [os, architecture, variant] = s.split('/');
  if (!os || !architecture) throw new Error(`platform "${s}" is not OS/ARCH[/VARIANT]`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

export function platformMatches(want: PlatformSpec, have: Platform | undefined): boolean {
  if (!have) return false;
  const a = normalizePlatform(want);
  const b = normalizePlatform(have);
  if (a.os !== b.os || a.architecture !== b.architecture) return false;
  // amd64 images rarely carry a variant; a wanted amd64 matches any of them.
  if (a.architecture === 'amd64') return a.variant === undefined || a.variant === b.variant;
  return a.variant === b.variant;
}

/** The first index entry for the platform, skipping attestation manifests (platform unknown/unknown). */
export function selectPlatform(manifests: readonly Descriptor[], want: PlatformSpec): Descriptor | undefined {
  return manifests.find((d) => platformMatches(want, d.platform));
}
