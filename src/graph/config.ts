// The runtime part of an OCI image config (the `config` object), as the frontend tracks it while
// reading a stage. Field names are the OCI/Docker ones so it serialises straight into the image.

export interface HealthConfig {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

export interface RuntimeConfig {
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  Volumes?: Record<string, Record<string, never>>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  ArgsEscaped?: boolean;
  Healthcheck?: HealthConfig;
  OnBuild?: string[];
  Shell?: string[];
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

/** What the frontend learns about a base image before planning (BuildKit's metaresolver). */
export interface BaseImageInfo {
  config: RuntimeConfig;
  history: HistoryEntry[];
  diffIds: string[];
  author?: string;
}

export function cloneConfig(c: RuntimeConfig): RuntimeConfig {
  return structuredClone(c);
}
