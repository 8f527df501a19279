// Rows -> ClickHouse's Native format (one columnar block), for the types the event tables
// use. WHY: chDB parses JSONEachRow at ~60-100k rows/s on this class of machine, the
// dominant cost of the whole processor; a Native block is copied into columns almost
// without parsing (measured 3-6x faster, MVs included: docs/benchmarks.md, Processor).
//
// Layout (a block as NativeWriter writes it for format Native, no block info):
//   varuint columns, varuint rows, then per column: name, type name (both varuint length +
//   UTF-8), and the column's data in bulk:
//     fixed-width ints / DateTime64: little-endian values, row after row;
//     String: varuint length + bytes per row;
//     Array(T): cumulative UInt64 end offsets for every row, then the flattened T data;
//     LowCardinality(String): the block's own dictionary, then an index per row (see
//     lowCardinalityColumn).
// Enum8 columns are written as String: the INSERT casts them. A type outside this set (Map,
// Nullable: containers and collector stats, which are small) makes encodeNativeBlock return
// undefined, and the writer uses JSONEachRow for that insert.

import { KtrailError } from '../../../common/errors.js';
import { asRows, EventColumns } from '../event-columns.js';
import { rowColumns } from '../rows.js';
import { isPlainIdentifier } from './identifier.js';
import { intRange, ROW_PASS, writeColumnsRowPass } from './native-columns.js';
import { writeEventColumns } from './native-event-block.js';
import { type Encoder, Out, writeDateTime64Text, writeGiga } from './native-out.js';

export { writeGiga };

export type ColumnTypes = ReadonlyMap<string, string>;

/** Integers up to 32 bits: a JS number must be an integer in range. */
function intColumn(type: string, bytes: 1 | 2 | 4, signed: boolean): Encoder {
  const [min, max] = intRange(type);
  return {
    wireType: type,
    value(out, v) {
      if (typeof v === 'boolean') v = v ? 1 : 0;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return false;
      out.ensure(4);
      const buf = out.buf;
      if (bytes === 1) signed ? buf.writeInt8(v, out.pos) : buf.writeUInt8(v, out.pos);
      else if (bytes === 2) signed ? buf.writeInt16LE(v, out.pos) : buf.writeUInt16LE(v, out.pos);
      else signed ? buf.writeInt32LE(v, out.pos) : buf.writeUInt32LE(v, out.pos);
      out.pos += bytes;
      return true;
    },
  };
}

const uint64Column: Encoder = { wireType: 'UInt64', value: (out, v) => out.u64(v) };

const stringColumn: Encoder = {
  wireType: 'String',
  value(out, v) {
    if (typeof v !== 'string') return false;
    out.string(v);
    return true;
  },
};

/**
 * DateTime64(9): Int64 ns since the epoch. Rows hold it as a bigint of ns (event rows) or as
 * "seconds.nanoseconds" text (rows.ts dateTime64).
 */
function dateTime64Column(type: string): Encoder {
  return {
    wireType: type,
    value(out, v) {
      if (typeof v === 'bigint') return v <= 0x7fff_ffff_ffff_ffffn && out.u64(v);
      if (typeof v !== 'string') return false;
      out.ensure(8);
      if (!writeDateTime64Text(out.buf, out.pos, v)) return false;
      out.pos += 8;
      return true;
    },
  };
}

/** Array(T) is two streams: every row's end offset (UInt64), then all the elements. */
function arrayColumn(inner: Encoder): Encoder {
  // value() is never called for arrays: compileColumns writes both streams itself.
  return { wireType: `Array(${inner.wireType})`, value: () => false, inner };
}

/**
 * LowCardinality(String), as the engine itself writes it in a Native block (checked against
 * chDB's own output): UInt64 serialization version 1 (shared dictionaries with additional
 * keys), UInt64 flags (has additional keys | update dictionary | index width), UInt64 key
 * count and the keys as Strings, the empty string first, then UInt64 row count and one
 * index per row, 1, 2 or 4 bytes wide. WHY: sent as String, every row carried the container
 * id, name, image, pod... in full (~180 bytes), written in JS and hashed back into a
 * dictionary by the engine; a batch has a few dozen distinct values per column.
 */
const lowCardinalityColumn: Encoder = {
  wireType: 'LowCardinality(String)',
  value: () => false,
  dictionary: true,
};

const SIMPLE: Record<string, Encoder> = {
  UInt8: intColumn('UInt8', 1, false),
  UInt16: intColumn('UInt16', 2, false),
  UInt32: intColumn('UInt32', 4, false),
  Int8: intColumn('Int8', 1, true),
  Int16: intColumn('Int16', 2, true),
  Int32: intColumn('Int32', 4, true),
  Bool: intColumn('Bool', 1, false),
  UInt64: uint64Column,
  String: stringColumn,
};

const encoders = new Map<string, Encoder | undefined>();

/** The encoder for a ClickHouse type name, or undefined when this module can't write it. */
export function encoderFor(type: string): Encoder | undefined {
  if (encoders.has(type)) return encoders.get(type);
  let enc: Encoder | undefined = SIMPLE[type];
  if (enc === undefined) {
    if (type === 'LowCardinality(String)') enc = lowCardinalityColumn;
    else if (/^Enum(8|16)\(/.test(type)) enc = stringColumn;
    else if (/^DateTime64\(9(, *'[^']*')?\)$/.test(type)) enc = dateTime64Column(type);
    else {
      const array = /^Array\((.+)\)$/.exec(type);
      const inner = array?.[1] === undefined ? undefined : encoderFor(array[1]);
      if (inner !== undefined && inner.inner === undefined) enc = arrayColumn(inner);
    }
  }
  encoders.set(type, enc);
  return enc;
}

/** A present value that doesn't fit its column (an int past UInt16, a time past 2262): bad data. */
export class NativeValueError extends KtrailError {
  constructor(
    readonly column: string,
    readonly row: number,
    readonly value: unknown,
  ) {
    super(
      `value ${typeof value === 'bigint' ? `${value}n` : JSON.stringify(value)?.slice(0, 80)} of row ${row} does not fit column ${column}`,
    );
  }
}

/**
 * One Native block of `rows` with the columns of the first row, typed by `types` (the
 * table's columns). Rows of one insert share their keys: rows.ts builds every row of a table
 * from the same reader schema. Undefined when the rows can't be written exactly through this
 * module: a column the table lacks, a type it doesn't write, or a missing key (the caller
 * then sends JSONEachRow, and the engine fills defaults or reports the problem), or a value of
 * another form (ISO time text). A number that doesn't fit its numeric column throws
 * NativeValueError: the JSON path would not refuse it (the engine wraps an integer that
 * overflows its column), so it is bad data.
 */
export function encodeNativeBlock(
  rows: readonly Record<string, unknown>[] | EventColumns,
  types: ColumnTypes,
): { block: Buffer; columns: readonly string[] } | undefined {
  if (rows instanceof EventColumns)
    return encodeEventColumns(rows, types) ?? encodeNativeBlock(asRows(rows), types);
  const first = rows[0];
  if (first === undefined) return undefined;
  const columns = rowColumns(first);
  const plan = planOf(columns, types);
  if (plan === undefined || !ROW_PASS) return undefined;
  const out = new Out(Math.max(4096, rows.length * columns.length * 8));
  out.varuint(columns.length);
  out.varuint(rows.length);
  if (!writeColumnsRowPass(out, rows, columns, plan)) {
    const misfit = findMisfit(rows, columns, plan);
    if (misfit !== undefined) throw misfit;
    return undefined;
  }
  return { block: out.buf.subarray(0, out.pos), columns };
}

/** Each column's encoder, or undefined when one isn't the table's or isn't writable here. */
function planOf(columns: readonly string[], types: ColumnTypes): Encoder[] | undefined {
  const plan: Encoder[] = [];
  for (const column of columns) {
    const type = types.get(column);
    const enc = type === undefined || !isPlainIdentifier(column) ? undefined : encoderFor(type);
    if (enc === undefined) return undefined;
    plan.push(enc);
  }
  return plan;
}

/** An event table's columns copied into a block; undefined when they need the row pass. */
export function encodeEventColumns(
  cols: EventColumns,
  types: ColumnTypes,
): { block: Buffer; columns: readonly string[] } | undefined {
  const columns = cols.columns;
  const plan = planOf(columns, types);
  if (cols.length === 0 || plan === undefined || !ROW_PASS) return undefined;
  const out = new Out(Math.max(4096, cols.length * columns.length * 8));
  out.varuint(columns.length);
  out.varuint(cols.length);
  if (!writeEventColumns(out, cols, plan)) return undefined;
  return { block: out.buf.subarray(0, out.pos), columns };
}

/** A number, or the decimal text of one (how rows carry u64 past 2^53). */
const isNumeric = (v: unknown): boolean =>
  typeof v === 'number' || typeof v === 'bigint' || (typeof v === 'string' && /^-?\d+$/.test(v));

/**
 * The first number that doesn't fit its numeric column (the slow path, after a block
 * failed), or undefined when what failed is a value of another form (ISO time text, a word
 * in a number column, a number in a String column): the JSON path takes those, and the
 * engine parses or refuses them itself.
 */
function findMisfit(
  rows: readonly Record<string, unknown>[],
  columns: readonly string[],
  plan: Encoder[],
): NativeValueError | undefined {
  const scratch = new Out(64);
  const fits = (enc: Encoder, v: unknown): boolean => {
    scratch.pos = 0;
    if (enc.dictionary === true) return typeof v === 'string';
    if (enc.inner === undefined) return enc.value(scratch, v);
    return Array.isArray(v) && v.every((x) => fits(enc.inner as Encoder, x));
  };
  for (let c = 0; c < columns.length; c++) {
    const column = columns[c] as string;
    for (let r = 0; r < rows.length; r++) {
      const v = (rows[r] as Record<string, unknown>)[column];
      if (v === undefined) return undefined;
      if (fits(plan[c] as Encoder, v)) continue;
      const enc = plan[c] as Encoder;
      const numericColumn = /^(U?Int|DateTime64)/.test((enc.inner ?? enc).wireType);
      const numbers = Array.isArray(v) ? v : [v];
      return numericColumn && numbers.every(isNumeric) ? new NativeValueError(column, r, v) : undefined;
    }
  }
  return undefined;
}
