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
