/**
 * A packet capture on one link of a test netns (tcpdump into a file), to
 * check what crossed a wire: which protocols, and that some bytes never did.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CleanupStack } from './cleanup.js';
import { run } from './exec.js';
import { terminate } from './processes.js';

export class Capture {
  private constructor(
    private readonly file: string,
    private readonly pid: number,
  ) {}

  /** Starts capturing every packet on `link` of `netns` into `file`; resolves once tcpdump listens. */
  static async start(netns: string, link: string, file: string, cleanup: CleanupStack): Promise<Capture> {
    const child = spawn('ip', ['netns', 'exec', netns, 'tcpdump', '-i', link, '-n', '--immediate-mode', '-U', '-s', '0', '-w', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    const pid = child.pid!;
    cleanup.defer(`stop tcpdump ${pid}`, () => terminate(pid, 2000));
    await new Promise<void>((resolve, reject) => {
      let said = '';
      child.stderr.on('data', (chunk: Buffer) => {
        said += chunk.toString();
        if (said.includes('listening on')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`tcpdump on ${netns}/${link} exited ${code}: ${said}`)));
    });
    return new Capture(file, pid);
  }

  /** Stops the capture; what it saw stays in the file. */
  async stop(): Promise<void> {
    // The last packets may still be on their way through the kernel's capture buffer.
    await sleep(500);
    await terminate(this.pid, 2000);
  }

  /** The captured packets matching a pcap `filter`, one line each as `tcpdump -nn -r` prints them. */
  async packets(filter = ''): Promise<string[]> {
    const { stdout } = await run('tcpdump', ['-nn', '-r', this.file, ...(filter ? [filter] : [])]);
    return stdout.split('\n').filter((l) => l.trim() !== '');
  }

  /** Whether `bytes` appear anywhere in what was captured (headers and payloads alike). */
  contains(bytes: Buffer): boolean {
    return readFileSync(this.file).includes(bytes);
  }
}
