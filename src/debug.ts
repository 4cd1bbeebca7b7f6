// STRATA_DEBUG=1: lines on stderr about what strata chose to do and how long it took, for people
// measuring or debugging a build; nothing otherwise.

/** One line on stderr with STRATA_DEBUG set; nothing otherwise. */
export function debugLine(msg: string): void {
  if (process.env.STRATA_DEBUG) process.stderr.write(`debug: ${msg}\n`);
}
