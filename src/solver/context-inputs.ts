// What a step reads of a build context, for its key and after it ran: the content checksum of each
// selection (COPY from a context, RUN's context bind mounts), read ahead while a container runs, and
// the check that what a step read did not change while it ran.
import { lstatSync } from 'node:fs';
import { relative } from 'node:path';
import { StrataError } from '../errors.js';
import type { Store } from '../cache/store.js';
import { digestOf } from '../graph/digest.js';
import type { Vertex } from '../graph/ops.js';
import { changedRacyFile, checksumSelection, checksumSourcesUnlessUnchanged, type ChecksumOptions, type ChecksumResult, type RacyFile, type StatCache, type UnchangedChecksum } from '../context/checksum.js';
import { Pacer, type SelectedSource } from '../context/walk.js';
import { fileChanges, type StepInputs } from '../cache/explain.js';
import { debugLine } from '../debug.js';

export interface ContextInputOptions {
  store: Store;
  /** Host directories of the main context ('context') and of named local contexts. */
  contextDirs: Record<string, string>;
  ignore?: (relPath: string, isDir: boolean) => boolean;
  ignoreMayReinclude?: boolean;
  statCache?: StatCache;
}

/** A step's context checksum; its file list (path -> `type:mode:content digest`) is made on demand. */
export interface ContextChecksum {
  digest: string;
  bytesRead: number;
  files: () => Record<string, string>;
}

/** A COPY's sources as the checksum's walk selected them: the copy takes them from here. */
interface CopySelection {
  byWord: Map<string, SelectedSource>;
  racy: RacyFile[];
}

function contextChanged(v: Vertex, paths: string[]): StrataError {
  const named = paths.length ? `${paths.slice(0, 5).join(', ')}${paths.length > 5 ? ` and ${paths.length - 5} more` : ''}` : 'files';
  return new StrataError('CONTEXT_CHANGED', `${named} changed in the build context while this step ran; its result was not cached`, {
    position: v.location && { file: v.location.file, line: v.location.line },
    hint: 'build again once nothing writes to the context (an editor, a watcher or a generator?)',
  });
}

export class ContextInputs {
  /** Bytes of context file content read for checksums (0 on a warm stat cache). */
  bytesRead = 0;
  private started?: Promise<void>;
  /** Steps whose context selections are being or were checksummed ahead. */
  private readonly checkedAhead = new Map<number, Promise<void>>();
  /** Steps that began checksumming their context for their key (nothing to do ahead for them). */
  private readonly keyed = new Set<number>();
  private readonly copySelections = new Map<number, CopySelection>();

  constructor(private readonly o: ContextInputOptions) {}

  /** A COPY's sources by word, as the walk for its key selected them (CopyRequest.selected). */
  copySelection(v: Vertex): ReadonlyMap<string, SelectedSource> | undefined {
    return this.copySelections.get(v.id)?.byWord;
  }

  /** What a step reads of a build context: one checksum each (COPY from a context, RUN's context bind mounts). */
  private selections(v: Vertex): ChecksumOptions[] {
    const op = v.op;
    const selections: { root: string; sources: string[]; excludes?: string[]; parents?: boolean }[] = [];
    if (op.kind === 'copy' && op.from.kind === 'context' && !op.sources.some((s) => /^https?:\/\//.test(s))) {
      const root = this.o.contextDirs[op.from.name];
      if (root) selections.push({ root, sources: op.sources, excludes: op.excludes, parents: op.parents });
    }
    if (op.kind === 'exec') {
      for (const m of op.mounts) {
        if (m.type === 'bind' && m.from.kind === 'context') {
          const root = this.o.contextDirs[m.from.name];
          if (root) selections.push({ root, sources: [m.source] });
        }
      }
    }
    return selections.map((s) => ({ root: s.root, ignore: s.root === this.o.contextDirs.context ? this.o.ignore : undefined, ignoreMayReinclude: this.o.ignoreMayReinclude, sources: s.sources, excludes: s.excludes, parents: s.parents, statCache: this.o.statCache }));
  }

  /**
   * Once a container runs (the main thread waits for it), the context selections of the steps not
   * keyed yet are checksummed ahead, nearest inputs first, as BuildKit sends the context while
   * earlier steps run. Only the stat cache keeps what this reads: each step still checksums its
   * selection when its turn comes, rereading nothing that did not change since.
   */
  ahead(root: Vertex): void {
    if (this.started || !this.o.statCache) return;
    const order: Vertex[] = [];
    const seen = new Set<number>();
    const visit = (v: Vertex): void => {
      if (seen.has(v.id)) return;
      seen.add(v.id);
      for (const i of v.inputs) visit(i);
      if (!this.keyed.has(v.id) && this.selections(v).length > 0) order.push(v);
    };
    visit(root);
    this.started = (async () => {
      for (const v of order) {
        if (this.keyed.has(v.id)) continue;
        const done = (async () => {
          for (const opts of this.selections(v)) {
            const r = await checksumSourcesUnlessUnchanged(opts);
            this.bytesRead += r.bytesRead;
            debugLine(`context of ${v.stepLabel} ${v.instruction} checksummed ahead (${r.bytesRead} bytes read)`);
          }
        })();
        // A failure (a bad source) is the step's to report, when it checksums for itself.
        this.checkedAhead.set(v.id, done.catch(() => undefined));
        await this.checkedAhead.get(v.id);
      }
    })();
  }

  /**
   * The checksum of the context files a step reads (COPY from a context, RUN's context bind mounts),
   * with its file list made when something asks (a hit whose list the history has never does).
   * Selections that did not change come without a list of their own: the build that recorded them
   * kept the step's list under the same digest.
   */
  async checksum(v: Vertex): Promise<ContextChecksum | undefined> {
    const r = await this.compute(v);
    if (r) this.bytesRead += r.bytesRead;
    return r;
  }

  private async compute(v: Vertex): Promise<ContextChecksum | undefined> {
    const op = v.op;
    const selections = this.selections(v);
    if (!selections.length) return undefined;
    this.keyed.add(v.id);
    await this.checkedAhead.get(v.id);
    const results: (ChecksumResult | UnchangedChecksum)[] = [];
    for (const opts of selections) results.push(await checksumSourcesUnlessUnchanged(opts));
    const digest = digestOf(results.map((r) => r.digest));
    const { db } = this.o.store;
    if (!results.every((r) => r.files) && db.prepare('SELECT 1 FROM file_lists WHERE digest=?').pluck().get(digest) === undefined) {
      // Never recorded (keyed ahead in a first build, or a build that stopped before its history
      // was written): list the files, from the walk just made.
      for (let i = 0; i < results.length; i++) if (!results[i]!.files) results[i] = await checksumSelection(selections[i]!, results[i]!.selection);
    }
    const bytesRead = results.reduce((n, r) => n + r.bytesRead, 0);
    // The copy applies .dockerignore to the context named "context" only; hand it the selection
    // only where the checksum walked with the same rules.
    const copySelection: CopySelection | undefined =
      op.kind === 'copy' && op.from.kind === 'context' && results.length === 1 && (selections[0]!.root === this.o.contextDirs.context) === (op.from.name === 'context')
        ? { byWord: new Map(op.sources.map((w, i) => [w, results[0]!.selection[i]!] as const)), racy: results[0]!.racy }
        : undefined;
    if (copySelection) this.copySelections.set(v.id, copySelection);
    if (results.every((r) => r.files)) {
      const files = () => {
        const out: Record<string, string> = {};
        for (const r of results) for (const f of r.files!) out[f.path] = `${f.type}:${f.mode.toString(8)}:${f.contentDigest ?? ''}`;
        return out;
      };
      return { files, digest, bytesRead };
    }
    const list = db.prepare('SELECT files FROM file_lists WHERE digest=?').pluck();
    return { digest, bytesRead, files: () => JSON.parse(list.get(digest) as string) as Record<string, string> };
  }

  /**
   * The key holds the context files as they were before the step ran; the step read them while it
   * ran. A file written in between (an editor, a code generator) would leave a record whose content
   * is not what its key says, served to every later build: check again and keep nothing instead.
   * The stat cache makes this a walk and a stat per file; only changed files are read again.
   */
  async verify(v: Vertex, before: StepInputs): Promise<void> {
    const after = await this.compute(v);
    if (!after || after.digest === before.filesDigest) return;
    const { changed, added, removed } = fileChanges(before.files ?? {}, after.files());
    throw contextChanged(v, [...changed, ...added, ...removed]);
  }

  /**
   * For a COPY that copied the very entries its key was computed from (the checksum's selection):
   * what it wrote is what the key says unless a file it read changed since that walk. A file's stat
   * vouches for it, except for files hashed moments after they changed, which are read again. Files
   * linked from the earlier layer were not read at all. Without that selection, the whole check.
   */
  async verifyCopy(v: Vertex, before: StepInputs, unread: ReadonlySet<string>): Promise<void> {
    const sel = this.copySelections.get(v.id);
    if (!sel) return this.verify(v, before);
    const changed: string[] = [];
    const pause = new Pacer();
    for (const s of sel.byWord.values()) {
      for (const m of s.matches) {
        for (let k = -1; k < m.entries.length; k++) {
          if ((k & 63) === 0 && pause.due()) await pause.maybe();
          const e = k < 0 ? m.root : m.entries[k]!;
          if (e.kind !== 'file' || unread.has(e.host)) continue;
          const now = lstatSync(e.host, { throwIfNoEntry: false });
          const st = e.st;
          if (!now || now.ino !== st.ino || now.size !== st.size || now.mtimeMs !== st.mtimeMs || now.ctimeMs !== st.ctimeMs || now.mode !== st.mode) {
            changed.push(e.rel === '' ? m.name : m.name === '' ? e.rel : `${m.name}/${e.rel}`);
          }
        }
      }
    }
    if (changed.length === 0) {
      const racy = await changedRacyFile(sel.racy.filter((f) => !unread.has(f.host)));
      this.bytesRead += racy.bytesRead;
      const root = v.op.kind === 'copy' && v.op.from.kind === 'context' ? this.o.contextDirs[v.op.from.name] : undefined;
      if (racy.changed) changed.push(root ? relative(root, racy.changed.host) : racy.changed.host);
    }
    if (changed.length > 0) throw contextChanged(v, changed);
  }

}
