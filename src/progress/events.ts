// Events a build emits. The solver only emits; renderers (plain, tty, json) decide how they look.
export interface VertexRef {
  id: number;
  /** `[build 2/4] RUN make` */
  name: string;
}

export type BuildEvent =
  | { type: 'start'; vertex: VertexRef; time: number }
  | { type: 'cached'; vertex: VertexRef; time: number }
  | { type: 'miss'; vertex: VertexRef; reason: string; time: number }
  | { type: 'log'; vertex: VertexRef; stream: 1 | 2; data: Buffer; time: number }
  | { type: 'status'; vertex: VertexRef; message: string; time: number }
  | { type: 'done'; vertex: VertexRef; time: number; durationMs: number }
  | { type: 'error'; vertex: VertexRef; time: number; message: string }
  | { type: 'warning'; message: string; time: number }
  | { type: 'info'; message: string; time: number };

export type EventSink = (e: BuildEvent) => void;
