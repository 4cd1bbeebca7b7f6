// Mounting a layer chain: an overlay whose lowers are the chain's unpacked layers (top-most first;
// a layer kept as a filesystem image is mounted by the store first) and whose upper is a fresh
// directory under the store's tmp area.
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Store, LayerInfo } from '../cache/store.js';
import { mountOverlay, unmountOverlay } from '../snapshot/overlay.js';

export interface MountedChain {
  merged: string;
  upper: string;
  lowers: string[];
  /** Unmounts; keeps the upper when `keepUpper` so it can become a layer. */
  release(opts?: { keepUpper?: boolean }): Promise<void>;
}

/** The chain's lowers, top-most first: layer directories, or layer images mounted (once per process) by the store. */
export async function lowersOf(store: Store, chain: LayerInfo[]): Promise<string[]> {
  return (await Promise.all(chain.map((l) => store.layerLower(l.diffId)))).reverse();
}

export async function mountChain(store: Store, chain: LayerInfo[], prefix: string): Promise<MountedChain> {
  const base = store.tmpPath(prefix);
  const upper = join(base, 'upper');
  const work = join(base, 'work');
  const merged = join(base, 'merged');
  await Promise.all([mkdir(upper, { recursive: true }), mkdir(work, { recursive: true }), mkdir(merged, { recursive: true })]);
  let lowers: string[];
  try {
    lowers = await lowersOf(store, chain);
    await mountOverlay({ lowers, upper, work, target: merged });
  } catch (e) {
    await rm(base, { recursive: true, force: true });
    throw e;
  }
  let released = false;
  return {
    merged,
    upper,
    lowers,
    async release(opts = {}) {
      if (released) return;
      released = true;
      await unmountOverlay(merged);
      if (opts.keepUpper) {
        await rm(work, { recursive: true, force: true });
        await rm(merged, { recursive: true, force: true });
      } else await rm(base, { recursive: true, force: true });
    },
  };
}

/** Runs fn with the chain mounted (writes are discarded), always unmounting. */
export async function withChain<T>(store: Store, chain: LayerInfo[], fn: (merged: string) => Promise<T>): Promise<T> {
  const m = await mountChain(store, chain, 'view');
  try {
    return await fn(m.merged);
  } finally {
    await m.release();
  }
}
