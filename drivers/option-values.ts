import { RequestError } from '../src/errors.js';
import { parseIp } from '../src/net/address.js';
import { LINK_NAME } from '../src/sys/ip.js';

/**
 * Typed readers for -o option values. Each refuses a bad value with an error
 * that names the option, before anything is created.
 */
export class OptionReader {
  constructor(private readonly options: Readonly<Record<string, string>>) {}

  has(key: string): boolean {
    return this.options[key] !== undefined;
  }

  string(key: string): string | undefined {
    return this.options[key];
  }

  /** Go's strconv.ParseBool spellings, which Docker's drivers accept. */
  bool(key: string, fallback: boolean): boolean {
    const value = this.options[key];
    if (value === undefined) return fallback;
    if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(value)) return true;
    if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(value)) return false;
    throw new RequestError(key, `"${value}" is not a boolean (true or false)`);
  }

  /** on|off switches of tsnet's own options. */
  onOff(key: string, fallback: boolean): boolean {
    const value = this.options[key];
    if (value === undefined) return fallback;
    if (value === 'on') return true;
    if (value === 'off') return false;
    throw new RequestError(key, `"${value}" must be on or off`);
  }

  integer(key: string, min: number, max: number): number | undefined {
    const value = this.options[key];
    if (value === undefined) return undefined;
    if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      throw new RequestError(key, `"${value}" is not a whole number from ${min} to ${max}`);
    }
    return Number(value);
  }

  ipv4(key: string): string | undefined {
    const value = this.options[key];
    if (value === undefined) return undefined;
    if (parseIp(value)?.family !== 4) throw new RequestError(key, `"${value}" is not an IPv4 address`);
    return value;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const value = this.options[key];
    if (value === undefined) return fallback;
    if (!(allowed as readonly string[]).includes(value)) throw new RequestError(key, `"${value}" is not one of ${allowed.join(', ')}`);
    return value as T;
  }

  linkName(key: string): string | undefined {
    const value = this.options[key];
    if (value === undefined) return undefined;
    if (!LINK_NAME.test(value)) {
      const why = Buffer.byteLength(value) > 15 ? 'is longer than 15 bytes' : 'may only hold letters, digits, _ . and -';
      throw new RequestError(key, `interface name "${value}" ${why}`);
    }
    return value;
  }
}
