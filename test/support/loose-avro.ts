// Writes EventBatch messages the real schema can't hold: every int and u32 field widened to
// a long, under the real schema's fingerprint, so a reader decodes them with the real types
// and meets values past their range (the range checks' and the fuzzer's test input).
import type avsc from 'avsc';
import { compileSchema } from '../../schemas/avro-types.js';
import { catalog, singleObjectHeader } from '../../schemas/codec.js';

export function looseEventBatchType(): { type: avsc.Type; header: Buffer } {
  const current = catalog().current.EventBatch;
  const widen = (s: unknown): unknown => {
    if (s === 'int') return { type: 'long', 'ktrail.js': 'number' };
    if (Array.isArray(s)) return s.map(widen);
    if (typeof s !== 'object' || s === null) return s;
    return Object.fromEntries(
      Object.entries(s).map(([k, v]) => [k, ['type', 'fields', 'items'].includes(k) ? widen(v) : v]),
    );
  };
  return { type: compileSchema(widen(current.schema)), header: singleObjectHeader(current.fingerprint) };
}

/** Encodes an EventBatch value with the widened schema, single-object framed. */
export function looseEventBatchWriter(): (value: Record<string, unknown>) => Buffer {
  const { type, header } = looseEventBatchType();
  return (value) => Buffer.concat([header, type.toBuffer(value)]);
}
