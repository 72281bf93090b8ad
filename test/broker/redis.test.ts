// The broker conformance suite (test/broker/conformance.ts) against the Redis broker, on a
// redis-server this file starts itself (127.0.0.1, a free port, no persistence) and kills at the
// end. Each broker gets its own key prefix; `peer` is a second node on the same server and prefix,
// so the multi-node cases run. loseState deletes the topic's keys; the broker stays the same.
// Without redis-server the suite is skipped (with the reason), except under CI=true, where it fails.
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import type { Broker } from '../../src/pubsub/broker.js';
import { RedisBroker } from '../../src/pubsub/redis-broker.js';
import { brokerConformance } from './conformance.js';
import { startRedis, type RunningServer } from '../servers.js';

let server: RunningServer | null = null;
let failure: string | null = null;
try {
  server = await startRedis();
} catch (err) {
  failure = err instanceof Error ? err.message : String(err);
}

if (server === null) {
  if (process.env.CI === 'true') {
    describe('RedisBroker', () => {
      it('needs a redis-server (CI=true)', () => {
        throw new Error(`cannot start redis-server: ${failure}`);
      });
    });
  } else {
    describe('RedisBroker', () => {
      it('conformance', { skip: `cannot start redis-server: ${failure}` }, () => undefined);
    });
  }
} else {
  const running = server;
  const url = `redis://127.0.0.1:${running.port}`;
  after(() => running.stop());

  const opts = { url, presenceSweep: 20 };
  brokerConformance('RedisBroker', {
    features: { history: true, retained: true, presence: true },
    filters: true,
    create: () => new RedisBroker({ ...opts, prefix: `t:${randomBytes(6).toString('hex')}:` }),
    capped: (caps) => new RedisBroker({ ...opts, prefix: `t:${randomBytes(6).toString('hex')}:`, retainedMaxTopics: caps.maxTopics, retainedMaxBytes: caps.maxBytes }),
    peer: (first: Broker) => new RedisBroker({ ...opts, prefix: (first as RedisBroker).prefix }),
    loseState: async (b: Broker, topic: string) => {
      await (b as RedisBroker).forget(topic);
      return b;
    },
  });
}
