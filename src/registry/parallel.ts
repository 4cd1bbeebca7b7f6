// Running blob transfers a few at a time: one upload or download rarely fills a link or a core
// (the registry hashes and writes each stream on its own), several do.

/** How many blobs a push or pull moves at once. */
export const BLOB_TRANSFERS = 4;

/** Calls `fn` on every item, at most `limit` at once; fails with the first error once all started ones settle. */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const errors: unknown[] = [];
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (e) {
        failed = true;
        errors.push(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (errors.length > 0) throw errors[0];
}
