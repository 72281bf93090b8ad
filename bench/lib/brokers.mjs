// The bench's own broker servers (redis-server, nats-server with JetStream): scripts/broker-servers.mjs,
// shared with the tests, plus Redis's own accounting of its commands for the cluster scenario.
import { connect } from 'node:net';
import { startNats as startNatsServer, startRedis as startRedisServer } from '../../scripts/broker-servers.mjs';

/**
 * redis-server without persistence (no RDB snapshots, no AOF). `commandStats()` reads Redis's own
 * accounting (INFO commandstats: calls and microseconds per command, scripts' inner calls too).
 */
export async function startRedis() {
  const s = await startRedisServer();
  return { ...s, commandStats: () => commandStats(s.port) };
}

/** INFO commandstats as { command: { calls, usec } }. */
function commandStats(port) {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let buf = '';
    sock.setTimeout(5000, () => {
      sock.destroy();
      reject(new Error('redis INFO: no answer within 5 s'));
    });
    sock.on('error', reject);
    sock.on('connect', () => sock.write('*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\r\n');
      if (nl === -1) return;
      const len = Number(buf.slice(1, nl)); // a bulk string: $<len>\r\n<text>\r\n
      if (buf.length < nl + 2 + len) return;
      sock.destroy();
      const out = {};
      for (const m of buf.slice(nl + 2, nl + 2 + len).matchAll(/^cmdstat_(\S+):calls=(\d+),usec=(\d+)/gm)) out[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
      resolve(out);
    });
  });
}

/** nats-server with JetStream, its store in a temporary directory removed at stop. */
export function startNats() {
  return startNatsServer();
}
