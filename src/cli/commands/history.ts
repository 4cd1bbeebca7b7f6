// `strata history ls|show` and `strata explain`: what each build did and why each step ran.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { StrataError } from '../../errors.js';
import { Store, pidAlive } from '../../cache/store.js';
import type { StepInputs } from '../../cache/explain.js';

interface BuildRow {
  id: string;
  started: number;
  finished: number | null;
  dockerfile: string;
  context: string;
  target: string;
  args: string;
  status: string;
  pid: number | null;
}

interface StepRow {
  idx: number;
  stage: string;
  step_label: string;
  instruction: string;
  line: number | null;
  key: string;
  cached: number;
  reason: string;
  duration_ms: number;
  inputs: string;
}

/** A build recorded as running whose process is gone was killed (kill -9, power loss). */
function statusOf(b: BuildRow): string {
  return b.status === 'running' && (b.pid === null || !pidAlive(b.pid)) ? 'killed' : b.status;
}

function openStore(root?: string): Store {
  return Store.open(root ? resolve(root) : undefined);
}

function findBuild(store: Store, id?: string): BuildRow {
  let row: BuildRow | undefined;
  if (id) {
    const rows = store.db.prepare("SELECT * FROM builds WHERE id=? OR id LIKE ? ESCAPE '\\' ORDER BY started DESC LIMIT 6").all(id, `${id.replace(/[\\%_]/g, '\\$&')}%`) as BuildRow[];
    row = rows.find((r) => r.id === id) ?? (rows.length === 1 ? rows[0] : undefined);
    if (!row && rows.length > 1) {
      throw new StrataError('AMBIGUOUS_BUILD', `build id prefix ${id} matches ${rows.length > 5 ? 'more than 5' : rows.length} builds: ${rows.slice(0, 5).map((r) => r.id).join(', ')}`, {
        hint: 'give more characters of the id',
      });
    }
  } else row = store.db.prepare("SELECT * FROM builds WHERE status<>'imported' ORDER BY started DESC LIMIT 1").get() as BuildRow | undefined;
  if (!row) {
    throw new StrataError('NO_BUILD', id ? `no build with id ${id}` : 'no build recorded in this store yet', {
      hint: id ? 'list builds with `strata history ls`' : 'run `strata build` first',
    });
  }
  return row;
}

function steps(store: Store, id: string): StepRow[] {
  return store.db.prepare('SELECT * FROM build_steps WHERE build_id=? ORDER BY idx').all(id) as StepRow[];
}

function buildJson(b: BuildRow, rows: StepRow[]) {
  return {
    build: {
      id: b.id,
      time: new Date(b.started).toISOString(),
      target: b.target,
      dockerfile: b.dockerfile,
      context: b.context,
      status: statusOf(b),
      args: JSON.parse(b.args) as Record<string, string>,
      duration_ms: b.finished ? b.finished - b.started : null,
    },
    steps: rows.map((s) => {
      const inputs = JSON.parse(s.inputs) as StepInputs;
      return {
        stage: s.stage,
        step: s.step_label,
        instruction: s.instruction,
        line: s.line,
        cached: s.cached === 1,
        reason: s.cached === 1 ? '' : s.reason,
        note: inputs.note ?? '',
        duration_ms: s.duration_ms,
        key: s.key,
      };
    }),
  };
}

export function registerHistory(program: Command): void {
  const history = program.command('history').description('Builds recorded in the store');
  history
    .command('ls')
    .description('List recorded builds, newest first')
    .option('--root <dir>', 'store directory')
    .option('--format <fmt>', 'table or json', 'table')
    .action((o: { root?: string; format: string }) => {
      const store = openStore(o.root);
      try {
        const rows = store.db.prepare('SELECT * FROM builds ORDER BY started DESC').all() as BuildRow[];
        const counts = store.db.prepare('SELECT SUM(cached) AS hits, COUNT(*) AS total FROM build_steps WHERE build_id=?');
        if (o.format === 'json') {
          process.stdout.write(JSON.stringify(rows.map((b) => buildJson(b, []).build), null, 2) + '\n');
          return;
        }
        // Imported builds (another machine's, from a cache import) have longer ids and statuses.
        const idW = Math.max(16, ...rows.map((b) => b.id.length)) + 2;
        const stW = Math.max(6, ...rows.map((b) => statusOf(b).length)) + 2;
        const tgW = Math.max(12, ...rows.map((b) => b.target.length)) + 2;
        process.stdout.write(`${'ID'.padEnd(idW)}${'TIME'.padEnd(26)}${'STATUS'.padEnd(stW)}${'CACHED'.padEnd(8)}${'TARGET'.padEnd(tgW)}DOCKERFILE\n`);
        for (const b of rows) {
          const c = counts.get(b.id) as { hits: number | null; total: number };
          process.stdout.write(
            `${b.id.padEnd(idW)}${new Date(b.started).toISOString().padEnd(26)}${statusOf(b).padEnd(stW)}${`${c.hits ?? 0}/${c.total}`.padEnd(8)}${b.target.padEnd(tgW)}${b.dockerfile}\n`,
          );
        }
      } finally {
        store.close();
      }
    });
  history
    .command('show')
    .description('Show one build: every step, hit or miss, and why')
    .argument('<id>', 'build id (a prefix is enough)')
    .option('--root <dir>', 'store directory')
    .option('--format <fmt>', 'text or json', 'text')
    .action((id: string, o: { root?: string; format: string }) => printExplain(id, o));

  program
    .command('explain')
    .description('Explain a build (default: the last one): each step, its Dockerfile line, hit or miss, and the input that changed')
    .argument('[id]', 'build id (a prefix is enough)')
    .option('--root <dir>', 'store directory')
    .option('--format <fmt>', 'text or json', 'text')
    .action((id: string | undefined, o: { root?: string; format: string }) => printExplain(id, o));
}

function printExplain(id: string | undefined, o: { root?: string; format: string }): void {
  const store = openStore(o.root);
  try {
    const b = findBuild(store, id);
    const data = buildJson(b, steps(store, b.id));
    if (o.format === 'json') {
      process.stdout.write(JSON.stringify(data, null, 2) + '\n');
      return;
    }
    const hits = data.steps.filter((s) => s.cached).length;
    process.stdout.write(`build ${b.id}  ${data.build.time}  target ${b.target}  ${statusOf(b)}\n`);
    process.stdout.write(`${b.dockerfile}  (${hits}/${data.steps.length} steps cached)\n\n`);
    for (const s of data.steps) {
      const where = s.line ? `line ${s.line}` : '';
      const verdict = s.cached ? 'CACHED' : `RAN ${(s.duration_ms / 1000).toFixed(1)}s`;
      process.stdout.write(`${s.step} ${s.instruction}\n    ${where.padEnd(10)}${verdict}${s.cached ? (s.note ? `  (${s.note})` : '') : `  because ${s.reason}`}\n`);
    }
  } finally {
    store.close();
  }
}
