// The frame the network brokers carry a published message in: `seq|epoch|exclude|node|payload`,
// ASCII header fields and then the payload's raw bytes (everything after the fourth `|`, so the
// framing is binary-safe). The Redis broker builds it in its publish script, the NATS broker in JS.

const BAR = 0x7c;

export interface BrokerFrame {
  seq: number;
  epoch: string;
  /** The publisher's local connection id to skip (0 = none). */
  exclude: number;
  /** The publishing node's id: `exclude` applies only there. */
  node: string;
  payload: Buffer;
}

/** Builds a frame (the NATS broker; Redis builds the same bytes in Lua). */
export function encodeBrokerFrame(seq: number, epoch: string, exclude: number, node: string, payload: Uint8Array): Buffer {
  const head = Buffer.from(`${seq}|${epoch}|${exclude}|${node}|`, 'latin1');
  const frame = Buffer.allocUnsafe(head.length + payload.length);
  head.copy(frame, 0);
  frame.set(payload, head.length);
  return frame;
}

/** Reads a frame; null when it is not one. */
export function parseBrokerFrame(b: Buffer): BrokerFrame | null {
  const b1 = b.indexOf(BAR);
  const b2 = b.indexOf(BAR, b1 + 1);
  const b3 = b.indexOf(BAR, b2 + 1);
  const b4 = b.indexOf(BAR, b3 + 1);
  if (b1 < 0 || b2 < 0 || b3 < 0 || b4 < 0) return null;
  return {
    seq: Number(b.toString('latin1', 0, b1)),
    epoch: b.toString('latin1', b1 + 1, b2),
    exclude: Number(b.toString('latin1', b2 + 1, b3)),
    node: b.toString('latin1', b3 + 1, b4),
    payload: b.subarray(b4 + 1),
  };
}
