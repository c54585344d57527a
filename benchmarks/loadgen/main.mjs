// The load generator: runs one workload against one server and prints its result as one JSON line.
//   node benchmarks/loadgen/main.mjs <workload> --base http://127.0.0.1:PORT [--name value ...]
// Workloads: fanout, http, initial, idle (see their modules for what they measure and options).
import { parseArgs } from 'node:util';
import { fanout } from './fanout.mjs';
import { http } from './http.mjs';
import { idle } from './idle.mjs';
import { initial } from './initial.mjs';

const workloads = { fanout, http, initial, idle };

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    base: { type: 'string' },
    run: { type: 'string', default: `run${Date.now().toString(36)}` },
    libraries: { type: 'string', default: '8' },
    replicas: { type: 'string', default: '4' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    'think-ms': { type: 'string', default: '0' },
    operations: { type: 'string', default: '20000' },
    batch: { type: 'string', default: '100' },
    joins: { type: 'string', default: '3' },
    sockets: { type: 'string', default: '1000' },
    'group-size': { type: 'string', default: '10' },
    'heartbeat-ms': { type: 'string', default: '15000' },
    'server-pid': { type: 'string' },
    'cpu-pids': { type: 'string', default: '' },
  },
});

const [name] = positionals;
if (!workloads[name] || !values.base) {
  console.error(`usage: main.mjs <${Object.keys(workloads).join('|')}> --base URL [options]`);
  process.exit(2);
}
const number = (key) => Number(values[key]);
const result = await workloads[name]({
  base: values.base.replace(/\/$/, ''),
  run: values.run,
  libraries: number('libraries'),
  replicas: number('replicas'),
  duration: number('duration'),
  warmup: number('warmup'),
  thinkMs: number('think-ms'),
  operations: number('operations'),
  batch: number('batch'),
  joins: number('joins'),
  sockets: number('sockets'),
  groupSize: number('group-size'),
  heartbeatMs: number('heartbeat-ms'),
  serverPid: values['server-pid'] ? Number(values['server-pid']) : null,
  cpuPids: values['cpu-pids'] ? values['cpu-pids'].split(',').map(Number) : [],
});
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(0);
