// SQLite schema of the store index. Each statement is idempotent so opening an older store upgrades it.
export const SCHEMA = `
CREATE TABLE IF NOT EXISTS blobs (
  digest TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  media_type TEXT NOT NULL,
  created INTEGER NOT NULL,
  last_used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS layers (
  diff_id TEXT PRIMARY KEY,
  blob_digest TEXT NOT NULL,
  size INTEGER NOT NULL,
  media_type TEXT NOT NULL,
  unpacked INTEGER NOT NULL DEFAULT 0,
  -- bytes of the unpacked directory on disk
  disk_size INTEGER NOT NULL DEFAULT 0,
  created INTEGER NOT NULL,
  last_used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
  name TEXT PRIMARY KEY,
  manifest_digest TEXT NOT NULL,
  config_digest TEXT NOT NULL,
  created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS resolutions (
  ref TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  resolved_at INTEGER NOT NULL
);
-- A cache record: a step's key -> the layer chain its result is (diff ids, JSON array).
CREATE TABLE IF NOT EXISTS cache_records (
  key TEXT PRIMARY KEY,
  chain TEXT NOT NULL,
  created INTEGER NOT NULL,
  last_used INTEGER NOT NULL,
  build_id TEXT,
  description TEXT,
  -- the layer this step added (NULL when it changed nothing)
  layer TEXT
);
CREATE TABLE IF NOT EXISTS builds (
  id TEXT PRIMARY KEY,
  started INTEGER NOT NULL,
  finished INTEGER,
  dockerfile TEXT NOT NULL,
  context TEXT NOT NULL,
  target TEXT NOT NULL,
  args TEXT NOT NULL,
  status TEXT NOT NULL,
  pid INTEGER
);
CREATE TABLE IF NOT EXISTS build_steps (
  build_id TEXT NOT NULL,
  idx INTEGER NOT NULL,
  stage TEXT NOT NULL,
  step_label TEXT NOT NULL,
  instruction TEXT NOT NULL,
  line INTEGER,
  key TEXT,
  cached INTEGER NOT NULL,
  reason TEXT NOT NULL,
  duration_ms INTEGER NOT NULL,
  inputs TEXT NOT NULL,
  PRIMARY KEY (build_id, idx)
);
CREATE TABLE IF NOT EXISTS cache_mounts (
  id TEXT PRIMARY KEY,
  dir TEXT NOT NULL,
  sharing TEXT NOT NULL DEFAULT 'shared',
  created INTEGER NOT NULL,
  last_used INTEGER NOT NULL,
  last_build TEXT,
  builds INTEGER NOT NULL DEFAULT 0
);
`;

/** Columns added after a table was first created: added in place when an older store is opened. */
export const ADDED_COLUMNS: [table: string, column: string, definition: string][] = [
  ['layers', 'disk_size', 'INTEGER NOT NULL DEFAULT 0'],
  ['cache_records', 'layer', 'TEXT'],
  ['cache_mounts', 'sharing', "TEXT NOT NULL DEFAULT 'shared'"],
  ['cache_mounts', 'last_build', 'TEXT'],
  ['cache_mounts', 'builds', 'INTEGER NOT NULL DEFAULT 0'],
  ['cache_records', 'origin', 'TEXT'],
  ['resolutions', 'head_digest', 'TEXT'],
];

export const SCHEMA_STAT_CACHE = `
-- File lists of step inputs, once per selection digest (build_steps.inputs points here).
CREATE TABLE IF NOT EXISTS file_lists (
  digest TEXT PRIMARY KEY,
  files TEXT NOT NULL
);
-- Compressed copies of layers committed uncompressed.
CREATE TABLE IF NOT EXISTS layer_variants (
  diff_id TEXT NOT NULL,
  compression TEXT NOT NULL,
  digest TEXT NOT NULL,
  size INTEGER NOT NULL,
  media_type TEXT NOT NULL,
  PRIMARY KEY (diff_id, compression)
);
-- Where a layer whose blob is not here yet can be fetched from (an imported cache).
CREATE TABLE IF NOT EXISTS layer_sources (
  diff_id TEXT PRIMARY KEY,
  source TEXT NOT NULL
);
-- Checksums of file selections inside an (immutable) layer chain, for COPY --from keys.
CREATE TABLE IF NOT EXISTS selection_cache (
  key TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  files TEXT NOT NULL
);
-- The context stat cache of older stores, one row per file (read, then moved to stat_dirs).
CREATE TABLE IF NOT EXISTS stat_cache (
  path TEXT PRIMARY KEY,
  ino INTEGER NOT NULL,
  size INTEGER NOT NULL,
  mtime REAL NOT NULL,
  ctime REAL NOT NULL,
  digest TEXT NOT NULL
);
-- The context stat cache (cache/stat-cache-store.ts): one row per directory.
CREATE TABLE IF NOT EXISTS stat_dirs (
  dir TEXT PRIMARY KEY,
  -- JSON [[name, ino, size, mtime, ctime, digest], ...]
  entries TEXT NOT NULL
);
-- Context selections whose every entry still had the recorded stat: their checksum.
CREATE TABLE IF NOT EXISTS stat_selections (
  key TEXT PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  digest TEXT NOT NULL
);
`;
