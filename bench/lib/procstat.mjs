// CPU time of any process from /proc/<pid>/stat (utime + stime), so that processes the bench does
// not control over IPC (redis-server, nats-server) are measured the same way as its own; and its
// write system calls from /proc/<pid>/io (how many messages a gateway coalesces per write). Linux
// only; elsewhere both are null and the reports say "-".
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let tick = null;
function msPerTick() {
  if (tick === null) {
    try {
      tick = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    } catch {
      tick = 10; // USER_HZ is 100 on every mainstream Linux build
    }
  }
  return tick;
}

/** User + system CPU milliseconds the process has used so far (every thread), or null. */
export function cpuMs(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // comm (field 2) is in parentheses and may contain spaces: count fields after the last ')'
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // fields 14 and 15 (utime, stime) are the 12th and 13th after comm
    return (Number(f[11]) + Number(f[12])) * msPerTick();
  } catch {
    return null;
  }
}

/** Write system calls (write, writev, sendmsg, ...) the process has made so far, or null. */
export function writeCalls(pid) {
  try {
    const m = /^syscw: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'latin1'));
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/**
 * Snapshots `pids` (name -> pid); `.since()` gives, per name, the share of one core used since
 * then (`cpu`) and the write system calls made since then (`writes`).
 */
export function cpuWindow(pids) {
  const t0 = performance.now();
  const at = (f) => Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, f(pid)]));
  const c0 = at(cpuMs);
  const w0 = at(writeCalls);
  return {
    since() {
      const secs = (performance.now() - t0) / 1000;
      const c1 = at(cpuMs);
      const w1 = at(writeCalls);
      const cpu = {};
      const writes = {};
      for (const k of Object.keys(pids)) {
        cpu[k] = c0[k] === null || c1[k] === null ? null : (c1[k] - c0[k]) / 1000 / secs;
        writes[k] = w0[k] === null || w1[k] === null ? null : w1[k] - w0[k];
      }
      return { secs, cpu, writes };
    },
  };
}
