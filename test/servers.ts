// Real broker servers of the test's own (redis-server, nats-server with JetStream), each on
// 127.0.0.1 and a free port, without persistence beyond a temporary directory; the broker tests and
// the multi-node gateway tests start one and stop it at the end. The recipe is
// scripts/broker-servers.mjs, shared with the cluster bench.
import { after } from 'node:test';
import { freePort, startNats, startRedis, type RunningServer } from '../scripts/broker-servers.mjs';

export { freePort, startNats, startRedis, type RunningServer };

export interface FileServer {
  server: RunningServer | null;
  /** Why it could not start ('' when it did). */
  failure: string;
  /** The skip reason for the tests that need it: false when it runs, and under CI=true (so they fail instead). */
  skip: string | false;
}

/** A server for a whole test file, stopped when the file's tests are done (`after`). */
export async function serverForFile(name: string, start: () => Promise<RunningServer>): Promise<FileServer> {
  try {
    const server = await start();
    after(() => server.stop());
    return { server, failure: '', skip: false };
  } catch (err) {
    const failure = err instanceof Error ? err.message : String(err);
    return { server: null, failure, skip: process.env.CI === 'true' ? false : `cannot start ${name}: ${failure}` };
  }
}
