// The image package's public surface: OCI types and readers, blob builders, exporters, push.
export * from './types.js';
export * from './builders.js';
export * from './canonical-json.js';
export * from './image-data.js';
export * from './oci-layout.js';
export * from './oci-archive.js';
export * from './docker-archive.js';
export * from './push.js';
