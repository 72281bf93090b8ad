// The broker conformance suite (test/broker/conformance.ts) against the Redis broker, on a
// redis-server this file starts itself (127.0.0.1, a free port, no persistence) and kills at the
// end. Each broker gets its own key prefix; `peer` is a second node on the same server and prefix,
// so the multi-node cases run. loseState deletes the topic's keys; the broker stays the same.
// Without redis-server the suite is skipped (with the reason), except under CI=true, where it fails.
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { Broker } from '../../src/pubsub/broker.js';
import { RedisBroker } from '../../src/pubsub/redis-broker.js';
import { brokerConformance } from './conformance.js';
import { serverForFile, startRedis } from '../servers.js';

const { server, failure, skip } = await serverForFile('redis-server', startRedis);

if (server === null) {
  describe('RedisBroker', () => {
    // skipped with the reason; under CI=true not skipped, so it fails
    it('conformance needs a redis-server (CI=true)', { skip }, () => {
      throw new Error(`cannot start redis-server: ${failure}`);
    });
  });
} else {
  const running = server;
  const url = `redis://127.0.0.1:${running.port}`;

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
