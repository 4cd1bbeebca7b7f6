// BuildKit's `--progress=plain` look: `#N [stage 2/4] RUN ...`, output lines prefixed with the
// vertex number and elapsed seconds, `#N CACHED`, `#N DONE 1.2s`.
import type { BuildEvent, EventSink } from './events.js';

export function plainRenderer(write: (s: string) => void, startTime = Date.now()): EventSink {
  const numbers = new Map<number, number>();
  const partial = new Map<number, string>();
  const started = new Map<number, number>();
  let next = 1;
  const num = (id: number): number => {
    let n = numbers.get(id);
    if (n === undefined) {
      n = next++;
      numbers.set(id, n);
    }
    return n;
  };
  const secs = (t: number, from: number) => ((t - from) / 1000).toFixed(3);
  const flush = (id: number) => {
    const rest = partial.get(id);
    if (rest) write(`#${num(id)} ${secs(Date.now(), started.get(id) ?? startTime)} ${rest}\n`);
    partial.delete(id);
  };
  return (e: BuildEvent) => {
    switch (e.type) {
      case 'start':
        started.set(e.vertex.id, e.time);
        write(`\n#${num(e.vertex.id)} ${e.vertex.name}\n`);
        break;
      case 'cached':
        write(`#${num(e.vertex.id)} CACHED\n`);
        break;
      case 'miss':
        write(`#${num(e.vertex.id)} cache miss: ${e.reason}\n`);
        break;
      case 'status':
        write(`#${num(e.vertex.id)} ${e.message}\n`);
        break;
      case 'log': {
        const text = (partial.get(e.vertex.id) ?? '') + e.data.toString('utf8');
        const lines = text.split('\n');
        partial.set(e.vertex.id, lines.pop()!);
        const from = started.get(e.vertex.id) ?? startTime;
        for (const l of lines) write(`#${num(e.vertex.id)} ${secs(e.time, from)} ${l}\n`);
        break;
      }
      case 'done':
        flush(e.vertex.id);
        write(`#${num(e.vertex.id)} DONE ${(e.durationMs / 1000).toFixed(1)}s\n`);
        break;
      case 'error':
        flush(e.vertex.id);
        write(`#${num(e.vertex.id)} ERROR: ${e.message}\n`);
        break;
      case 'warning':
        write(`WARNING: ${e.message}\n`);
        break;
      case 'info':
        write(`${e.message}\n`);
        break;
    }
  };
}

export function jsonRenderer(write: (s: string) => void): EventSink {
  return (e: BuildEvent) => {
    const { vertex, ...rest } = e as BuildEvent & { vertex?: { id: number; name: string } };
    const out: Record<string, unknown> = { ...rest };
    if (vertex) out.vertex = vertex;
    if (e.type === 'log') out.data = e.data.toString('utf8');
    write(JSON.stringify(out) + '\n');
  };
}
