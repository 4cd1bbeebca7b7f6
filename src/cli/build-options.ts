// Parsing buildx-style flag values: `--output type=oci,dest=x.tar`, `--secret id=a,src=f`,
// `--build-context name=oci-layout://dir`, `--build-arg K=V` (bare K takes the value from the env).
import { StrataError } from '../errors.js';
import { splitCsv } from '../frontend/mounts.js';

export type OutputSpec =
  | { type: 'image'; push: boolean; names?: string[] }
  | { type: 'oci'; dest: string; tar: boolean; compression?: 'gzip' | 'zstd' }
  | { type: 'docker'; dest: string; compression?: 'gzip' | 'zstd' }
  | { type: 'registry'; names?: string[]; compression?: 'gzip' | 'zstd' }
  | { type: 'local'; dest: string }
  | { type: 'cacheonly' };

export function parseKv(value: string, flag: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of splitCsv(value)) {
    const eq = f.indexOf('=');
    if (eq < 0) m.set(f.toLowerCase(), 'true');
    else m.set(f.slice(0, eq).trim().toLowerCase(), f.slice(eq + 1));
  }
  if (m.size === 0) throw new StrataError('BAD_FLAG', `${flag}: empty value`);
  return m;
}

function compressionOf(kv: Map<string, string>): 'gzip' | 'zstd' | undefined {
  const c = kv.get('compression');
  if (c === undefined) return undefined;
  if (c !== 'gzip' && c !== 'zstd') throw new StrataError('BAD_FLAG', `--output compression=${c}: use gzip or zstd`);
  return c;
}

export function parseOutput(value: string): OutputSpec {
  if (value === '-') throw new StrataError('BAD_FLAG', '--output -: writing a tar to stdout needs type=..., e.g. type=oci,dest=-', {});
  const kv = parseKv(value.includes('=') ? value : `type=local,dest=${value}`, '--output');
  const type = kv.get('type') ?? 'local';
  const dest = kv.get('dest');
  const names = kv.get('name')?.split(',').filter(Boolean);
  const need = () => {
    if (!dest) throw new StrataError('BAD_FLAG', `--output type=${type} needs dest=PATH`);
    return dest;
  };
  switch (type) {
    case 'image':
      return { type: 'image', push: kv.get('push') === 'true', names };
    case 'oci':
      return { type: 'oci', dest: need(), tar: kv.get('tar') !== 'false', compression: compressionOf(kv) };
    case 'docker':
      return { type: 'docker', dest: need(), compression: compressionOf(kv) };
    case 'registry':
      return { type: 'registry', names, compression: compressionOf(kv) };
    case 'local':
      return { type: 'local', dest: need() };
    case 'cacheonly':
      return { type: 'cacheonly' };
    default:
      throw new StrataError('BAD_FLAG', `--output: unknown type "${type}"`, { hint: 'types are image, oci, docker, registry and local' });
  }
}

export function parseBuildArgs(values: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq < 0) {
      // buildx: `--build-arg NAME` takes NAME's value from the environment, if set.
      const env = process.env[v];
      if (env !== undefined) out[v] = env;
    } else out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

export function parseSecrets(values: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const kv = parseKv(v, '--secret');
    const id = kv.get('id');
    const src = kv.get('src') ?? kv.get('source');
    const env = kv.get('env');
    if (!id) throw new StrataError('BAD_FLAG', `--secret ${v}: needs id=ID`);
    if (src) out[id] = src;
    else if (env !== undefined) out[`env:${id}`] = env;
    else throw new StrataError('BAD_FLAG', `--secret ${v}: needs src=FILE`);
  }
  return out;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
