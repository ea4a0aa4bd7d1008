import { pino, type Logger } from 'pino';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** One JSON line per event on stdout; journald or the harness keeps it. */
export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { name: 'tsnet' } });
}
