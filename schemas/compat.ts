// Schema compatibility, as Avro resolution defines it: can `reader` read what `writer`
// wrote? avsc's createResolver answers yes or no; when it says no, this walks both schemas
// to name the record field that breaks, so a failing check says what to fix.
import type avsc from 'avsc';
import { compileSchema } from './avro-types.js';

type AnyType = avsc.Type & {
  fields?: { name: string; aliases?: string[]; type: AnyType; defaultValue(): unknown }[];
  types?: AnyType[];
  itemsType?: AnyType;
  valuesType?: AnyType;
};

function isUnion(t: AnyType): boolean {
  return t.typeName.startsWith('union');
}

/** Problems reading `writer` data with `reader`, each naming the path; empty when compatible. */
export function resolutionProblems(reader: avsc.Type, writer: avsc.Type, path: string): string[] {
  const r = reader as AnyType;
  const w = writer as AnyType;
  let message: string;
  try {
    r.createResolver(w);
    return [];
  } catch (err) {
    message = (err as Error).message;
  }

  if (isUnion(w)) {
    // Every branch the writer can produce must be readable.
    const problems = (w.types ?? []).flatMap((branch) =>
      resolutionProblems(r, branch, `${path}<${branch.name ?? branch.typeName}>`),
    );
    if (problems.length) return problems;
  } else if (isUnion(r) && w.name !== undefined) {
    const same = (r.types ?? []).find((t) => t.name === w.name || (t.aliases ?? []).includes(w.name ?? ''));
    if (same) return resolutionProblems(same, w, path);
  } else if (r.fields && w.fields) {
    const problems: string[] = [];
    for (const field of r.fields) {
      const names = [field.name, ...(field.aliases ?? [])];
      const source = w.fields.find((f) => names.includes(f.name));
      if (source === undefined) {
        if (field.defaultValue() === undefined) {
          problems.push(`${path}.${field.name}: field is not in the writer schema and has no default`);
        }
        continue;
      }
      problems.push(...resolutionProblems(field.type, source.type, `${path}.${field.name}`));
    }
    if (problems.length) return problems;
  } else if (r.itemsType && w.itemsType) {
    return resolutionProblems(r.itemsType, w.itemsType, `${path}[]`);
  } else if (r.valuesType && w.valuesType) {
    return resolutionProblems(r.valuesType, w.valuesType, `${path}{}`);
  }
  return [`${path}: ${message}`];
}

/**
 * Both directions between two versions of a schema: the newer reads the older's data
 * (backward) and the older reads the newer's (forward). Also decodes random values of each
 * through the resolver, so a resolver that builds but can't read still fails.
 */
export function compatibilityProblems(
  name: string,
  older: { label: string; type: avsc.Type },
  newer: { label: string; type: avsc.Type },
  samples = 20,
): string[] {
  const problems: string[] = [];
  const directions = [
    { kind: 'backward', reader: newer, writer: older },
    { kind: 'forward', reader: older, writer: newer },
  ];
  for (const { kind, reader, writer } of directions) {
    const found = resolutionProblems(reader.type, writer.type, name);
    if (found.length) {
      problems.push(...found.map((p) => `${kind} (${reader.label} reading ${writer.label}): ${p}`));
      continue;
    }
    const resolver = reader.type.createResolver(writer.type);
    for (let i = 0; i < samples; i++) {
      const value = writer.type.random();
      try {
        reader.type.fromBuffer(writer.type.toBuffer(value), resolver);
      } catch (err) {
        problems.push(
          `${kind} (${reader.label} reading ${writer.label}): ${name}: data did not decode: ${(err as Error).message}`,
        );
        break;
      }
    }
  }
  return problems;
}

/**
 * Checks the latest of `versions` (oldest first) against every earlier one, both ways.
 * Used on schemas/history/<Name>/ and on temporary histories in tests.
 */
export function versionProblems(
  name: string,
  versions: { label: string; schema: unknown }[],
  samples = 20,
): string[] {
  const compiled = versions.map((v) => ({ label: v.label, type: compileSchema(v.schema) }));
  const latest = compiled.at(-1);
  if (latest === undefined) return [];
  return compiled.slice(0, -1).flatMap((older) => compatibilityProblems(name, older, latest, samples));
}
