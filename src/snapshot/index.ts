// The snapshot layer: layer tars <-> overlayfs layer directories, and overlay mounts.
export { extractLayer, type ExtractResult } from './extract.js';
export { diffToLayer, compressLayer, MEDIA_TYPES, type DiffOptions, type DiffResult, type LayerCompression } from './diff.js';
export { mountOverlay, unmountOverlay, MAX_LOWERS, type OverlayMount } from './overlay.js';
