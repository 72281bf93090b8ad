// The broker conformance suite (test/broker/conformance.ts) against the NATS broker, on a
// nats-server this file starts itself (127.0.0.1, a free port, JetStream in a temporary store
// directory) and kills at the end. Each broker gets its own subject prefix and KV bucket; `peer`
// is a second node on the same server and prefix, so the multi-node cases run. loseState purges
// the topic's seq/epoch counter; the broker stays the same. The broker declares no history,
// retained or presence, so those cases are skipped. Without nats-server the suite is skipped
// (with the reason), except under CI=true, where it fails.
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Broker } from '../../src/pubsub/broker.js';
import { NatsBroker, patternToSubjects, subjectToTopic, topicToSubject } from '../../src/pubsub/nats-broker.js';
import { brokerConformance } from './conformance.js';
import { serverForFile, startNats } from '../servers.js';

describe('NATS subject mapping', () => {
  it('maps every allowed topic character to a valid token and back', () => {
    const topics = ['a', 'a/b.c/d', 'A-Z_a-z0-9/.:@~=,', '..', 'x/%2E', 'v1.2/sensor:7@home~x=1,2'];
    for (const t of topics) {
      const s = topicToSubject('p.q', t);
      assert.ok(!/[\s*>]/.test(s), s);
      assert.equal(s.split('.').length, 2 + t.split('/').length, s);
      assert.equal(subjectToTopic('p.q', s), t);
    }
  });
  it("maps '+' to '*' and 'a/#' to both 'a.>' and 'a'", () => {
    assert.deepEqual(patternToSubjects('p', 'a/+/c'), ['p.a.*.c']);
    assert.deepEqual(patternToSubjects('p', 'a.b/#'), ['p.a%2Eb.>', 'p.a%2Eb']);
    assert.deepEqual(patternToSubjects('p', '#'), ['p.>']);
  });
});

const { server, failure, skip } = await serverForFile('nats-server', startNats);

if (server === null) {
  describe('NatsBroker', () => {
    // skipped with the reason; under CI=true not skipped, so it fails
    it('conformance needs a nats-server with JetStream (CI=true)', { skip }, () => {
      throw new Error(`cannot start nats-server: ${failure}`);
    });
  });
} else {
  const running = server;
  const servers = `nats://127.0.0.1:${running.port}`;

  brokerConformance('NatsBroker', {
    features: { history: false, retained: false, presence: false },
    filters: true,
    create: () => new NatsBroker({ servers, prefix: `t${randomBytes(6).toString('hex')}` }),
    capped: () => new NatsBroker({ servers, prefix: `t${randomBytes(6).toString('hex')}` }), // no retained values: the case is skipped
    peer: (first: Broker) => new NatsBroker({ servers, prefix: (first as NatsBroker).prefix }),
    loseState: async (b: Broker, topic: string) => {
      await (b as NatsBroker).forget(topic);
      return b;
    },
  });
}
