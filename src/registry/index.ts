// The registry package's public surface: references, the client, auth helpers, media types.
export * from './reference.js';
export * from './media-types.js';
export * from './platform.js';
export * from './digest.js';
export { RegistryClient } from './client.js';
export type { RegistryClientOptions, ResolvedManifest, FetchedManifest, BlobOpener, PushBlobOptions, PushBlobResult } from './client.js';
export { lookupCredentials, defaultDockerConfigPath, parseWwwAuthenticate } from './auth.js';
export type { Credentials, Challenge } from './auth.js';
