import { readFile, writeFile } from 'node:fs/promises';

/** Reads and writes /proc/sys; the path is `net/ipv4/ip_forward`-style. */
export class Sysctl {
  constructor(private readonly root = '/proc/sys') {}

  async get(key: string): Promise<string> {
    return (await readFile(`${this.root}/${key}`, 'utf8')).trim();
  }

  async set(key: string, value: string): Promise<void> {
    if ((await this.get(key)) !== value) await writeFile(`${this.root}/${key}`, value);
  }
}
