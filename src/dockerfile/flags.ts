// Instruction flags (`--from=build`, `--link`, `--mount=...` repeated), validated as BuildKit's
// instructions.BFlags does, with its messages.
import { suggest } from './suggest.js';

type FlagType = 'bool' | 'string' | 'strings';

export class FlagError extends Error {}

interface FlagDef {
  type: FlagType;
  value: string;
  values: string[];
  used: boolean;
}

export class BFlags {
  private readonly defs = new Map<string, FlagDef>();

  constructor(private readonly args: readonly string[]) {}

  bool(name: string): this {
    this.defs.set(name, { type: 'bool', value: 'false', values: [], used: false });
    return this;
  }

  string(name: string, def = ''): this {
    this.defs.set(name, { type: 'string', value: def, values: [], used: false });
    return this;
  }

  strings(name: string): this {
    this.defs.set(name, { type: 'strings', value: '', values: [], used: false });
    return this;
  }

  /** Reads the flags; throws FlagError with BuildKit's wording. */
  parse(): this {
    for (const a of this.args) {
      if (a === '--') return this;
      if (!a.startsWith('--')) throw new FlagError(`arg should start with -- : ${a}`);
      const eq = a.indexOf('=');
      const flagName = eq < 0 ? a : a.slice(0, eq);
      const hasValue = eq >= 0;
      const value = hasValue ? a.slice(eq + 1) : '';
      const name = flagName.slice(2);
      const def = this.defs.get(name);
      if (!def) {
        const s = suggest(name, [...this.defs.keys()], true);
        throw new FlagError(`unknown flag: ${flagName}` + (s ? ` (did you mean ${s}?)` : ''));
      }
      if (def.used && def.type !== 'strings') throw new FlagError(`duplicate flag specified: ${flagName}`);
      def.used = true;
      if (def.type === 'bool') {
        if (hasValue && value === '') throw new FlagError(`missing a value on flag: ${flagName}`);
        const v = value.toLowerCase();
        if (v === 'true' || v === '') def.value = 'true';
        else if (v === 'false') def.value = 'false';
        else throw new FlagError(`expecting boolean value for flag ${flagName}, not: ${value}`);
      } else {
        if (!hasValue) throw new FlagError(`missing a value on flag: ${flagName}`);
        if (def.type === 'string') def.value = value;
        else def.values.push(value);
      }
    }
    return this;
  }

  private def(name: string): FlagDef {
    const d = this.defs.get(name);
    if (!d) throw new Error(`flag ${name} was not declared`);
    return d;
  }

  used(name: string): boolean {
    return this.def(name).used;
  }

  /** The value when given, else undefined (the default is not reported). */
  get(name: string): string | undefined {
    const d = this.def(name);
    return d.used ? d.value : undefined;
  }

  /** The value, or the declared default. */
  value(name: string): string {
    return this.def(name).value;
  }

  isTrue(name: string): boolean {
    return this.def(name).value === 'true';
  }

  values(name: string): string[] {
    return this.def(name).values;
  }
}
