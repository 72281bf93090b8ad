// The broker conformance suite (test/broker/conformance.ts) against the in-memory broker. It is
// single-process: no peer node (the multi-node cases are skipped), and losing a topic's state means
// a new instance, as a process restart would.
import { MemoryBroker, type MemoryBrokerOptions } from '../../src/pubsub/memory-broker.js';
import { brokerConformance } from './conformance.js';

// A short presence sweep so that expired entries' leave events come soon after their ttl.
const options: MemoryBrokerOptions = { presenceSweep: 20 };

brokerConformance('MemoryBroker', {
  features: { history: true, retained: true, presence: true },
  filters: false,
  create: () => new MemoryBroker(options),
  capped: (caps) => new MemoryBroker({ ...options, retainedMaxTopics: caps.maxTopics, retainedMaxBytes: caps.maxBytes }),
  loseState: () => new MemoryBroker(options),
});
