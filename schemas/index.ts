// Public entry of schemas/: what the collector and the processor import.
export { type Catalog, SCHEMA_NAMES, type SchemaName, type SchemaVersion } from './catalog.js';
export {
  catalog,
  confluentHeader,
  createEncoder,
  createRegistryEncoder,
  createSchemaResolver,
  createWireCodec,
  type Decoded,
  type Encoder,
  type SchemaResolver,
  singleObjectHeader,
  toAvroEvent,
  type WireCodec,
  type WireCodecOptions,
  type WireFormat,
} from './codec.js';
export { fingerprint64, parsingCanonicalForm } from './fingerprint.js';
export {
  createSchemaRegistryClient,
  type SchemaRegistryClient,
  type SchemaRegistryOptions,
} from './registry-client.js';
export type * from './types.js';
