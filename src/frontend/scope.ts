// Variable scope of one stage: ENV from the image config plus ARGs declared in the stage.
// ENV always wins over an ARG of the same name, as in Docker.
import type { RuntimeConfig } from '../graph/config.js';

export class StageScope {
  /** Declared ARGs in order; undefined value = declared without a value. */
  readonly args = new Map<string, string | undefined>();

  constructor(private readonly config: RuntimeConfig) {}

  envValue(name: string): string | undefined {
    const env = this.config.Env ?? [];
    for (let i = env.length - 1; i >= 0; i--) {
      const e = env[i]!;
      const eq = e.indexOf('=');
      const k = eq < 0 ? e : e.slice(0, eq);
      if (k === name) return eq < 0 ? '' : e.slice(eq + 1);
    }
    return undefined;
  }

  lookup = (name: string): string | undefined => {
    const e = this.envValue(name);
    if (e !== undefined) return e;
    return this.args.get(name);
  };

  /** Whether `name` resolves to an ARG (so a step using it depends on that build arg). */
  isArg(name: string): boolean {
    return this.envValue(name) === undefined && this.args.get(name) !== undefined;
  }

  /** ARGs with a value that no ENV overrides: they join RUN's environment. */
  argEnv(): [string, string][] {
    const out: [string, string][] = [];
    for (const [k, v] of this.args) {
      if (v !== undefined && this.envValue(k) === undefined) out.push([k, v]);
    }
    return out;
  }
}

export function setEnv(config: RuntimeConfig, key: string, value: string): void {
  const env = config.Env ?? [];
  const i = env.findIndex((e) => e === key || e.startsWith(key + '='));
  if (i >= 0) env[i] = `${key}=${value}`;
  else env.push(`${key}=${value}`);
  config.Env = env;
}
