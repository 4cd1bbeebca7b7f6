// Human ages for explanations: `26h`, `3d`, `90s`; a whole hour or minute reads `1h`, `1m`, not `60m`.
export function formatAge(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120 && !(s >= 60 && s % 60 === 0)) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 120 && !(m >= 60 && m % 60 === 0)) return `${m}m`;
  const h = Math.round(m / 60);
  if (h < 72) return `${h}h`;
  return `${Math.round(h / 24)}d`;
}
