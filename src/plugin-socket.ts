import { existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';

/** Whether something accepts connections on a unix socket path. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Makes a socket path ready to listen on: a socket left by a dead daemon is
 * removed, a live one is refused so two daemons never share a name.
 */
export async function claimSocketPath(path: string, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  if (!existsSync(path)) return;
  if (await answers(path)) throw new Error(`another daemon is already serving ${path}; stop it first or pick another --name`);
  unlinkSync(path);
}
