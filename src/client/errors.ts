// The one error class of the client SDK. Platform-neutral.

/**
 * `code` is the protocol's error code when the server answered with ERROR (e.g. 104 FORBIDDEN,
 * docs/protocol.md section 5), or one of the client's own:
 * - 'TIMEOUT': no answer within the call's timeout (time spent waiting for a reconnection included);
 * - 'CLOSED': the client was closed, by close() or by a terminal close code (see closeCode, status);
 * - 'DISCONNECTED': the connection was lost while the call was in flight and the call cannot be
 *   repeated safely (a REQUEST or an acknowledged PUBLISH may or may not have reached the server),
 *   or the client gave up reconnecting (reconnect.maxAttempts);
 * - 'QUEUE_FULL': a publish while disconnected found the offline queue full;
 * - 'ALREADY_SUBSCRIBED': subscribe() to a pattern this client is already subscribed to.
 */
export class ClientError extends Error {
  override name = 'ClientError';
  code: number | string;
  /** The WebSocket close code that ended the connection, when a close caused this error. */
  declare closeCode?: number;
  /** The HTTP status that refused the upgrade (Node only: browsers do not expose it). */
  declare status?: number;

  constructor(code: number | string, message: string, detail?: { closeCode?: number; status?: number }) {
    super(message);
    this.code = code;
    if (detail?.closeCode !== undefined) this.closeCode = detail.closeCode;
    if (detail?.status !== undefined) this.status = detail.status;
  }
}
