// CRC-64-AVRO and Parsing Canonical Form against the Avro project's published test cases
// (apache/avro share/test/data/schema-tests.txt; fingerprints printed as Java signed longs).
import { describe, expect, it } from 'vitest';
import { singleObjectHeader } from '../../schemas/codec.js';
import { crc64Avro, fingerprint64, parsingCanonicalForm } from '../../schemas/fingerprint.js';

const CASES: { input: string; canonical: string; fingerprint?: bigint }[] = [
  { input: '"null"', canonical: '"null"', fingerprint: 7195948357588979594n },
  { input: '{"type":"null"}', canonical: '"null"' },
  { input: '"boolean"', canonical: '"boolean"', fingerprint: -6970731678124411036n },
  { input: '"int"', canonical: '"int"', fingerprint: 8247732601305521295n },
  { input: '{"type":"int"}', canonical: '"int"' },
  { input: '"long"', canonical: '"long"', fingerprint: -3434872931120570953n },
  { input: '"float"', canonical: '"float"', fingerprint: 5583340709985441680n },
  { input: '"double"', canonical: '"double"', fingerprint: -8181574048448539266n },
  { input: '"bytes"', canonical: '"bytes"', fingerprint: 5746618253357095269n },
  { input: '"string"', canonical: '"string"', fingerprint: -8142146995180207161n },
  { input: '[  ]', canonical: '[]', fingerprint: -1241056759729112623n },
  { input: '[ "int"  ]', canonical: '["int"]', fingerprint: -5232228896498058493n },
  {
    input: '[ "int" , {"type":"boolean"} ]',
    canonical: '["int","boolean"]',
    fingerprint: 5392556393470105090n,
  },
  {
    input: '{"fields":[], "type":"record", "name":"foo"}',
    canonical: '{"name":"foo","type":"record","fields":[]}',
    fingerprint: -4824392279771201922n,
  },
  {
    input: '{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}',
    canonical: '{"name":"x.y.foo","type":"record","fields":[]}',
    fingerprint: 5916914534497305771n,
  },
  {
    input: '{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}',
    canonical: '{"name":"a.b.foo","type":"record","fields":[]}',
    fingerprint: -4616218487480524110n,
  },
  {
    input: '{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}',
    canonical: '{"name":"foo","type":"record","fields":[]}',
    fingerprint: -4824392279771201922n,
  },
  {
    input: '{"fields":[{"type":{"type":"boolean"}, "name":"f1"}], "type":"record", "name":"foo"}',
    canonical: '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}',
    fingerprint: 7843277075252814651n,
  },
  {
    input:
      '{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":"true"}, {"order":"descending","name":"f2","doc":"Hello","type":"int"}], "type":"record", "name":"foo" }',
    canonical:
      '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}',
    fingerprint: -4860222112080293046n,
  },
  {
    input: '{"type":"enum", "name":"foo", "symbols":["A1"]}',
    canonical: '{"name":"foo","type":"enum","symbols":["A1"]}',
    fingerprint: -6342190197741309591n,
  },
  {
    input: '{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}',
    canonical: '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}',
    fingerprint: -4448647247586288245n,
  },
  {
    input: '{"name":"foo","type":"fixed","size":15}',
    canonical: '{"name":"foo","type":"fixed","size":15}',
    fingerprint: 1756455273707447556n,
  },
  {
    input: '{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}',
    canonical: '{"name":"x.y.z.foo","type":"fixed","size":32}',
    fingerprint: -3064184465700546786n,
  },
  {
    input: '{ "items":{"type":"null"}, "type":"array"}',
    canonical: '{"type":"array","items":"null"}',
    fingerprint: -589620603366471059n,
  },
  {
    input: '{ "values":"string", "type":"map"}',
    canonical: '{"type":"map","values":"string"}',
    fingerprint: -8732877298790414990n,
  },
  {
    input:
      '{"name":"PigValue","type":"record", "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}',
    canonical:
      '{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}',
    fingerprint: -1759257747318642341n,
  },
];

describe('Parsing Canonical Form and CRC-64-AVRO (Avro schema-tests.txt)', () => {
  it.each(CASES)('$input', ({ input, canonical, fingerprint }) => {
    const schema = JSON.parse(input);
    expect(parsingCanonicalForm(schema)).toBe(canonical);
    if (fingerprint !== undefined) expect(BigInt.asIntN(64, fingerprint64(schema))).toBe(fingerprint);
  });

  it('fingerprints the canonical bytes, not the input text', () => {
    expect(crc64Avro(Buffer.from('"int"'))).toBe(BigInt.asUintN(64, 8247732601305521295n));
    expect(fingerprint64({ type: 'int', doc: 'ignored' })).toBe(fingerprint64('int'));
  });

  it('single-object header of "int" matches the Avro Ruby reference bytes', () => {
    expect([...singleObjectHeader(fingerprint64('int'))]).toEqual([
      0xc3, 0x01, 0x8f, 0x5c, 0x39, 0x3f, 0x1a, 0xd5, 0x75, 0x72,
    ]);
  });

  it('custom attributes (ktrail.js, ktrail.kind) do not change a fingerprint', () => {
    const plain = { type: 'record', name: 'r', fields: [{ name: 'pid', type: 'long' }] };
    const marked = {
      type: 'record',
      name: 'r',
      'ktrail.kind': 'x',
      fields: [{ name: 'pid', type: { type: 'long', 'ktrail.js': 'number' } }],
    };
    expect(fingerprint64(marked)).toBe(fingerprint64(plain));
  });
});
