import { pino, type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'json' | 'pretty';

/**
 * One JSON line per event on stdout, which journald, `docker plugin` logs
 * or the harness keep; `pretty` colours and aligns them for a terminal.
 * pino-pretty runs in the same thread (a sync destination), so a crash
 * loses no line.
 */
export function createLogger(level: LogLevel, format: LogFormat = 'json'): Logger {
  const options = { level, base: { name: 'tsnet' } };
  if (format === 'json') return pino(options);
  return pino(options, pinoPretty({ sync: true, colorize: process.stdout.isTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' }));
}
