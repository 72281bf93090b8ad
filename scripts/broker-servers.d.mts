import type { ChildProcess } from 'node:child_process';

export interface RunningServer {
  name: string;
  proc: ChildProcess;
  pid: number | undefined;
  port: number;
  /** redis://127.0.0.1:<port> or nats://127.0.0.1:<port> */
  url: string;
  /** The server binary's version, e.g. 7.0.15. */
  version: string;
  /** Stops the server (SIGCONT, SIGTERM, SIGKILL after 3 s) and removes its directory. */
  stop(): Promise<void>;
}

export function findBinary(name: string, fallback: string): string | null;
export function freePort(): Promise<number>;
export function startRedis(port?: number): Promise<RunningServer>;
export function startNats(port?: number): Promise<RunningServer>;
