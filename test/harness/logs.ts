// Log files of daemons the harness started; their tails go into error messages.
import { readFileSync } from 'node:fs';

/** The last `lines` lines of `file`, or a note if it cannot be read. Never throws. */
export function tailFile(file: string, lines = 40): string {
  try {
    const all = readFileSync(file, 'utf8').trimEnd().split('\n');
    return all.slice(-lines).join('\n');
  } catch (err) {
    return `(cannot read ${file}: ${(err as Error).message})`;
  }
}

/** "--- last N lines of <file> ---" block for error messages. */
export function logBlock(title: string, file: string, lines = 40): string {
  return `--- last ${lines} lines of ${title} (${file}) ---\n${tailFile(file, lines)}\n--- end of ${title} ---`;
}
