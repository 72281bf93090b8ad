import type { Broker, BrokerDeliver } from './broker.js';

/**
 * Single-process broker: delivers synchronously to the local hub and keeps one sequence counter
 * per topic that has ever been published to. Sequence numbers restart when the process does.
 */
export class MemoryBroker implements Broker {
  private deliver: BrokerDeliver | null = null;
  private readonly seqs = new Map<string, number>();

  start(deliver: BrokerDeliver): void {
    this.deliver = deliver;
  }

  publish(topic: string, payload: Uint8Array, exclude: number): number {
    const seq = (this.seqs.get(topic) ?? 0) + 1;
    this.seqs.set(topic, seq);
    this.deliver?.(topic, seq, payload, exclude);
    return seq;
  }

  subscribe(): void {}
  unsubscribe(): void {}

  close(): void {
    this.deliver = null;
  }
}
