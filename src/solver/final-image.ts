// The final image of a build (the solver's result assembled for the image exporters): config (runtime config, rootfs diff ids, history lined up with the
// layers) and manifest, written into the store's content store.
import type { Store, LayerInfo } from '../cache/store.js';
import type { HistoryEntry, RuntimeConfig } from '../graph/config.js';
import { canonicalJson } from '../graph/digest.js';
import { toOciMediaType } from '../image/types.js';

export interface BuiltImage {
  manifest: Buffer;
  manifestDigest: string;
  config: Buffer;
  configDigest: string;
  layers: { mediaType: string; digest: string; size: number }[];
}

export interface ImageInputs {
  config: RuntimeConfig;
  author?: string;
  baseHistory: HistoryEntry[];
  baseLayerCount: number;
  /** History of the stage's own instructions; `addedLayer` tells which ones own a layer. */
  steps: { entry: HistoryEntry; addedLayer: boolean }[];
  chain: LayerInfo[];
  created: Date;
  platform: { os: string; architecture: string; variant?: string };
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';

export async function writeBuiltImage(store: Store, inp: ImageInputs): Promise<BuiltImage> {
  const created = inp.created.toISOString();
  let baseHistory = inp.baseHistory;
  if (baseHistory.filter((h) => !h.empty_layer).length !== inp.baseLayerCount) {
    // A base without usable history: one entry per layer keeps history and layers aligned.
    baseHistory = Array.from({ length: inp.baseLayerCount }, () => ({ created, created_by: 'base layer' }));
  }
  const history: HistoryEntry[] = [
    ...baseHistory,
    ...inp.steps.map((s) => ({ created, ...s.entry, empty_layer: s.addedLayer ? undefined : true })),
  ];
  const configObj = {
    created,
    author: inp.author,
    architecture: inp.platform.architecture,
    os: inp.platform.os,
    variant: inp.platform.variant,
    config: inp.config,
    rootfs: { type: 'layers', diff_ids: inp.chain.map((l) => l.diffId) },
    history,
  };
  const config = Buffer.from(canonicalJson(configObj));
  const configDigest = await store.putBlob(config, OCI_CONFIG);
  const layers = inp.chain.map((l) => ({ mediaType: toOciMediaType(l.mediaType), digest: l.digest, size: l.size }));
  const manifestObj = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
    layers,
  };
  const manifest = Buffer.from(JSON.stringify(manifestObj));
  const manifestDigest = await store.putBlob(manifest, OCI_MANIFEST);
  return { manifest, manifestDigest, config, configDigest, layers };
}
