// Short runtime commands (kill, delete, list): run to completion, stderr kept for messages.
import { spawn } from 'node:child_process';
import { hostCgroupLayout, runtimeInvocation } from './runtime.js';
import type { Runtime } from './types.js';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runtimeTool(rt: Runtime, root: string, args: string[], timeoutMs = 30_000): Promise<ToolResult> {
  const inv = runtimeInvocation(rt, root, args, await hostCgroupLayout());
  return new Promise((resolve, reject) => {
    const child = spawn(inv.file, inv.args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
  });
}
