// SIGTERM / SIGINT handling of `wiregate start`, shared by the single process and the cluster
// primary (and so by every cluster worker, which runs the single-process start path).
import type { Logger } from 'pino';

/**
 * A repeat of the signal that started the shutdown, within this many milliseconds, is the same
 * request: one Ctrl-C under `npm start` reaches the gateway twice (from the terminal, and forwarded
 * by npm), as does a SIGTERM sent to the whole process group or cgroup. A cluster worker gets a
 * terminal's Ctrl-C from the terminal and again from the primary, which forwards it.
 */
export const DUPLICATE_SIGNAL_MS = 1000;

/**
 * Calls `begin` on the first SIGTERM or SIGINT. The same signal again within DUPLICATE_SIGNAL_MS
 * is the same request and only logged; a different signal, or the same one later, calls `abort`
 * (which exits at once).
 */
export function onShutdownSignals(log: Logger, begin: (signal: NodeJS.Signals) => void, abort: (signal: NodeJS.Signals) => void): void {
  let first: { signal: NodeJS.Signals; at: number } | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    const now = performance.now();
    if (first) {
      if (signal === first.signal && now - first.at < DUPLICATE_SIGNAL_MS) {
        log.debug({ signal }, 'same signal again, already shutting down');
        return;
      }
      log.warn({ signal }, 'second signal, exiting now');
      abort(signal);
      return;
    }
    first = { signal, at: now };
    log.info({ signal }, 'shutting down');
    begin(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
