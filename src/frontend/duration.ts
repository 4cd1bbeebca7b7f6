// Durations as users write them in TTLs and HEALTHCHECK flags: `90s`, `15m`, `12h`, `7d`, `1h30m`, `500ms`.
import { StrataError } from '../errors.js';

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** Milliseconds. Throws a StrataError naming `what` when the text is not a duration. */
export function parseDuration(text: string, what: string): number {
  const s = text.trim();
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s))) {
    total += parseFloat(m[1]!) * UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (pos !== s.length || s.length === 0) {
    throw new StrataError('BAD_DURATION', `${what}: "${text}" is not a duration`, {
      hint: 'write a number with a unit: 90s, 15m, 12h, 7d (units ms, s, m, h, d, w; combine as 1h30m)',
    });
  }
  return total;
}

export function formatDuration(ms: number): string {
  if (ms % 86_400_000 === 0 && ms >= 86_400_000) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0 && ms >= 3_600_000) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
