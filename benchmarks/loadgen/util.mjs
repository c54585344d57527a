// Small helpers shared by the workloads.
import { readFile } from 'node:fs/promises';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll `predicate` every 20 ms; resolves true when it holds, false after `timeoutMs`. */
export async function waitUntil(predicate, timeoutMs) {
  const deadline = performance.now() + timeoutMs;
  while (!predicate()) {
    if (performance.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

export function collectHeartbeats(replicas) {
  return replicas.flatMap((replica) => replica.heartbeatLatencies);
}

/** Messages received per type, summed over replicas. */
export function messageCounts(replicas) {
  const totals = {};
  for (const replica of replicas) {
    for (const [type, count] of Object.entries(replica.counts)) totals[type] = (totals[type] || 0) + count;
  }
  return totals;
}

/** Resident memory of a process in KiB, from /proc (the servers run on this machine). */
export async function rssKib(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
}

/** CPU time (user + system, in clock ticks) each process has used so far, from /proc/<pid>/stat
 * (all of a process's threads). The runner converts ticks to seconds. */
export async function cpuTicks(pids) {
  return Promise.all(
    pids.map(async (pid) => {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name (which may hold spaces) start at its closing parenthesis.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
    }),
  );
}
