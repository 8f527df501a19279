// Parsing Canonical Form and the CRC-64-AVRO (Rabin) fingerprint, as defined in the Avro
// specification ("Schema Fingerprints"). avsc only offers MD5/SHA fingerprints, and the
// single-object encoding needs the 64-bit Rabin one, so it lives here. Both run once per
// schema at load time, never per message.

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const PRIMITIVES = new Set(['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string']);
// [ORDER] and [STRIP]: only these attributes survive, in this order.
const KEPT_ATTRIBUTES = ['name', 'type', 'fields', 'symbols', 'items', 'values', 'size'] as const;
const NAMED = new Set(['record', 'error', 'enum', 'fixed']);

/** An Avro full name: `name` as is when it has a dot or there is no namespace. */
export function fullName(name: string, namespace: string | undefined): string {
  if (name.includes('.') || namespace === undefined || namespace === '') return name;
  return `${namespace}.${name}`;
}

export function namespaceOf(full: string): string | undefined {
  const dot = full.lastIndexOf('.');
  return dot < 0 ? undefined : full.slice(0, dot);
}

/**
 * The schema in Parsing Canonical Form: full names, only the attributes that change the
 * binary encoding, fixed attribute order, no whitespace. Named types are written in full at
 * their first occurrence and by full name afterwards.
 */
export function parsingCanonicalForm(schema: unknown): string {
  return JSON.stringify(canonical(schema as Json, undefined, new Set()));
}

function canonical(schema: Json, namespace: string | undefined, defined: Set<string>): Json {
  if (typeof schema === 'string') {
    return PRIMITIVES.has(schema) ? schema : fullName(schema, namespace);
  }
  if (Array.isArray(schema)) return schema.map((branch) => canonical(branch, namespace, defined));
  if (schema === null || typeof schema !== 'object') {
    throw new TypeError(`not an Avro schema: ${JSON.stringify(schema)}`);
  }
  const type = schema.type;
  if (typeof type !== 'string') {
    // {"type": {...}} or {"type": [...]}: the wrapper carries nothing canonical.
    return canonical(type as Json, namespace, defined);
  }
  if (PRIMITIVES.has(type)) return type; // [PRIMITIVES]: {"type":"int"} -> "int"
  if (!NAMED.has(type) && type !== 'array' && type !== 'map') {
    // A reference written as {"type": "some.Name"}.
    return fullName(type, namespace);
  }

  let innerNamespace = namespace;
  const out: Record<string, Json> = {};
  if (NAMED.has(type)) {
    const rawName = schema.name;
    if (typeof rawName !== 'string')
      throw new TypeError(`named type without a name: ${JSON.stringify(schema)}`);
    const ns = typeof schema.namespace === 'string' ? schema.namespace : namespace;
    const name = fullName(rawName, ns);
    if (defined.has(name)) return name;
    defined.add(name);
    innerNamespace = namespaceOf(name);
    out.name = name;
  }
  for (const key of KEPT_ATTRIBUTES) {
    if (key === 'name' || !(key in schema)) continue;
    const value = schema[key] as Json;
    switch (key) {
      case 'type':
        out.type = type;
        break;
      case 'fields':
        out.fields = (value as Json[]).map((field) => {
          const f = field as { [key: string]: Json };
          return { name: f.name ?? null, type: canonical(f.type ?? null, innerNamespace, defined) };
        });
        break;
      case 'items':
      case 'values':
        out[key] = canonical(value, innerNamespace, defined);
        break;
      case 'size':
        out.size = Number(value); // [INTEGERS]: no leading zeros
        break;
      default:
        out[key] = value;
    }
  }
  return out;
}

// CRC-64-AVRO: the Rabin fingerprint with the polynomial the spec gives as EMPTY.
const EMPTY = 0xc15d213aa4d7a795n;
const MASK64 = 0xffffffffffffffffn;
const TABLE: bigint[] = (() => {
  const table: bigint[] = [];
  for (let i = 0; i < 256; i++) {
    let fp = BigInt(i);
    for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (EMPTY & (-(fp & 1n) & MASK64));
    table.push(fp);
  }
  return table;
})();

/** CRC-64-AVRO of raw bytes, as an unsigned 64-bit bigint. */
export function crc64Avro(bytes: Uint8Array): bigint {
  let fp = EMPTY;
  for (const byte of bytes) {
    fp = (fp >> 8n) ^ (TABLE[Number((fp ^ BigInt(byte)) & 0xffn)] as bigint);
  }
  return fp;
}

/** The schema's 64-bit fingerprint (unsigned; Java prints the same bits as a signed long). */
export function fingerprint64(schema: unknown): bigint {
  return crc64Avro(Buffer.from(parsingCanonicalForm(schema), 'utf8'));
}

/** The 8 fingerprint bytes in the order the single-object encoding writes them (little-endian). */
export function fingerprintBytes(fp: bigint): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(fp);
  return out;
}
