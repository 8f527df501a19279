// Names written into SQL text (databases, tables, columns, settings) and into the Native
// encoder's generated code are checked against this one rule, not quoted.
const PLAIN_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A name ClickHouse takes unquoted and JavaScript takes as a property name: safe as is. */
export function isPlainIdentifier(name: string): boolean {
  return PLAIN_IDENTIFIER.test(name);
}
