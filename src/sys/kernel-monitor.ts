import { type ChildProcess, spawn } from 'node:child_process';

/**
 * Runs "$@" (the monitor) until it ends or the shell's stdin closes. A
 * background job's stdin is /dev/null, so the reader gets the pipe as fd 3.
 */
const MONITOR_SCRIPT = 'exec 3<&0; "$@" 3<&- & pid=$!; { read -r _ <&3; kill $pid 2>/dev/null; } & exec 3<&-; wait $pid';

export interface MonitorHandlers {
  /** The monitor printed a line: an event. */
  onEvent(line: string): void;
  /** It ended without stop(): killed by someone, or it failed. */
  onExit(code: number | null, signal: NodeJS.Signals | null): void;
  onError(error: Error): void;
}

/**
 * One long-lived event program (`ip -o monitor …`, `nft monitor`). A
 * monitor only notices that its reader is gone when it next writes, which in
 * a quiet netns is never: a shell runs it, kills it once its stdin (this
 * process's end of a pipe) closes, on stop() or when this process dies, even
 * by SIGKILL, and exits when the monitor does.
 */
export class KernelMonitor {
  private readonly child: ChildProcess;
  private stopped = false;

  constructor(file: string, args: readonly string[], handlers: MonitorHandlers) {
    this.child = spawn('sh', ['-c', MONITOR_SCRIPT, 'sh', file, ...args], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.child.stdin!.on('error', () => undefined);
    let partial = '';
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      for (const line of lines) handlers.onEvent(line);
    });
    this.child.on('error', (error) => handlers.onError(error));
    this.child.on('exit', (code, signal) => {
      this.child.stdin!.end(); // lets the shell's waiting reader go
      if (!this.stopped) handlers.onExit(code, signal);
    });
  }

  stop(): void {
    this.stopped = true;
    this.child.stdin!.end();
  }
}
