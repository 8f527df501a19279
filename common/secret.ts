// A secret setting's value (a password), held so that it cannot leak by accident: JSON
// (pino log lines, config dumps), String() and util.inspect show "[secret]", never the
// value; only reveal() gives it, at the one place that hands it to a client library.
// Which settings are secrets, and how they are set, is decided in common/config.ts.
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { ConfigError } from './errors.js';

/** How a secret shows in logs and dumps. */
export const SECRET_SHOWN = '[secret]';

export class Secret {
  readonly #setting: string;
  #value: string | undefined;
  /** The file it came from (a Kubernetes Secret mount), or undefined when it was inline. */
  readonly file: string | undefined;

  private constructor(setting: string, value: string | undefined, file: string | undefined) {
    this.#setting = setting;
    this.#value = value;
    this.file = file;
  }

  static inline(setting: string, value: string): Secret {
    return new Secret(setting, value, undefined);
  }

  /**
   * Read when first used, not now: a component never reads the secrets of sections it does
   * not use (the collector and ClickHouse's password share one config file).
   */
  static fromFile(setting: string, file: string): Secret {
    return new Secret(setting, undefined, file);
  }

  /**
   * The value. One from a file is read on every call, so a rotated or corrected Secret
   * (Kubernetes updates mounted files in place) is used from the next connection on. The
   * first read failing is a ConfigError naming the setting and the path; a later one keeps
   * the last value read (a mount being swapped must not break a reconnect).
   */
  reveal(): string {
    if (this.file !== undefined) {
      try {
        this.#value = readSecretFile(this.#setting, this.file);
      } catch (err) {
        if (this.#value === undefined) throw err;
      }
    }
    return this.#value as string;
  }

  toJSON(): string {
    return SECRET_SHOWN;
  }

  toString(): string {
    return SECRET_SHOWN;
  }

  [inspect.custom](): string {
    return this.file === undefined ? SECRET_SHOWN : `${SECRET_SHOWN} (from ${this.file})`;
  }
}

/**
 * A file a setting names (a secret, a certificate, a key): its bytes, or a ConfigError that
 * names the setting and the path, never the content.
 */
export function readSettingFile(setting: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(
      `${setting}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      {
        context: { setting, file },
      },
    );
  }
}

/** The text of a secret file, without the one trailing newline `echo` or an editor adds. */
function readSecretFile(setting: string, file: string): string {
  const text = readSettingFile(setting, file)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (text === '') throw new ConfigError(`${setting}: ${file} is empty`, { context: { setting, file } });
  return text;
}

/** A URL with the password in it (user:password@) replaced by ***. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '<malformed url>';
  }
}
