// Shared by every bench server process: report readiness and resource usage over IPC.
export function serve(start) {
  let closeFn = null;
  process.on('message', async (m) => {
    if (m.cmd === 'stats') {
      const u = process.cpuUsage();
      // maxRss: the kernel's high-water mark of the process's RSS (ru_maxrss), catching peaks between samples
      process.send({ type: 'stats', id: m.id, cpuMs: (u.user + u.system) / 1000, rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed, maxRss: process.resourceUsage().maxRSS * 1024 });
    } else if (m.cmd === 'gc') {
      globalThis.gc?.();
      process.send({ type: 'gc', id: m.id });
    } else if (m.cmd === 'exit') {
      try {
        await closeFn?.();
      } finally {
        process.exit(0);
      }
    }
  });
  const opts = JSON.parse(process.env.BENCH_OPTS ?? '{}');
  Promise.resolve(start(opts)).then(({ port, close, info }) => {
    closeFn = close;
    process.send({ type: 'ready', port, info: info ?? {} });
  }, (err) => {
    console.error(err);
    process.exit(1);
  });
}
