// Go's time.ParseDuration (HEALTHCHECK --interval and friends), with its error messages.
// strata's cache TTLs use the same syntax plus a `d` (24h) unit.

const UNITS: Record<string, bigint> = {
  ns: 1n,
  us: 1000n,
  'µs': 1000n, // U+00B5
  'μs': 1000n, // U+03BC
  ms: 1000000n,
  s: 1000000000n,
  m: 60n * 1000000000n,
  h: 3600n * 1000000000n,
};
const DAY = 24n * 3600n * 1000000000n;
const LIMIT = 1n << 63n;

export class DurationError extends Error {}

function quote(s: string): string {
  return '"' + s.replace(/["\\]/g, (c) => '\\' + c) + '"';
}

/** Nanoseconds, or throws DurationError with Go's message (`time: invalid duration "x"`). */
export function parseGoDuration(input: string, opts: { days?: boolean } = {}): bigint {
  const invalid = (): DurationError => new DurationError('time: invalid duration ' + quote(input));
  let s = input;
  let neg = false;
  if (s !== '' && (s[0] === '-' || s[0] === '+')) {
    neg = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0n;
  if (s === '') throw invalid();
  let d = 0n;
  const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9';
  while (s !== '') {
    if (!(s[0] === '.' || isDigit(s[0]))) throw invalid();
    let i = 0;
    let v = 0n;
    while (isDigit(s[i])) {
      if (v > LIMIT / 10n) throw invalid();
      v = v * 10n + BigInt(s.charCodeAt(i) - 48);
      if (v > LIMIT) throw invalid();
      i++;
    }
    const pre = i > 0;
    s = s.slice(i);
    let f = 0n;
    let scale = 1;
    let post = false;
    if (s[0] === '.') {
      s = s.slice(1);
      let j = 0;
      let overflow = false;
      while (isDigit(s[j])) {
        if (!overflow) {
          if (f > (LIMIT - 1n) / 10n) overflow = true;
          else {
            const y = f * 10n + BigInt(s.charCodeAt(j) - 48);
            if (y > LIMIT) overflow = true;
            else {
              f = y;
              scale *= 10;
            }
          }
        }
        j++;
      }
      post = j > 0;
      s = s.slice(j);
    }
    if (!pre && !post) throw invalid();
    let k = 0;
    while (k < s.length && !(s[k] === '.' || isDigit(s[k]))) k++;
    if (k === 0) throw new DurationError('time: missing unit in duration ' + quote(input));
    const u = s.slice(0, k);
    s = s.slice(k);
    const unit = UNITS[u] ?? (opts.days && u === 'd' ? DAY : undefined);
    if (unit === undefined) throw new DurationError('time: unknown unit ' + quote(u) + ' in duration ' + quote(input));
    if (v > LIMIT / unit) throw invalid();
    v *= unit;
    if (f > 0n) {
      v += BigInt(Math.trunc(Number(f) * (Number(unit) / scale)));
      if (v > LIMIT) throw invalid();
    }
    d += v;
    if (d > LIMIT) throw invalid();
  }
  if (neg) return -d;
  if (d > LIMIT - 1n) throw invalid();
  return d;
}

/** A cache TTL (`30m`, `24h`, `7d`) in milliseconds; throws DurationError. */
export function parseCacheTtl(s: string): number {
  const ns = parseGoDuration(s, { days: true });
  if (ns <= 0n) throw new DurationError(`a cache TTL must be positive, not ${quote(s)}`);
  return Number(ns / 1000000n);
}
