/**
 * The isolate's main: the entry script's runtime (runtime.ts) driven over a worker thread's port or a
 * child process's IPC channel.
 */
import { Worker, parentPort } from 'node:worker_threads';
import { ScriptRuntime } from './runtime.js';
import { unpackBodies, type FromRuntime, type ToRuntime } from './protocol.js';

const send: (msg: FromRuntime, transfer?: ArrayBuffer[]) => void = parentPort
  ? (msg, transfer) => parentPort!.postMessage(msg, transfer)
  : (msg) => process.send!(msg);

const runtime = new ScriptRuntime();

async function handle(msg: ToRuntime): Promise<void> {
  if (msg.type === 'init') return send(await runtime.init(msg));
  const outcomes = await runtime.call(msg.method, unpackBodies(msg.bodies), msg.metas);
  send({ type: 'result', id: msg.id, outcomes }, [outcomes.bodies.bytes.buffer as ArrayBuffer]);
}

const onMessage = (msg: ToRuntime) => void handle(msg);
if (parentPort) parentPort.on('message', onMessage);
else {
  process.on('message', onMessage);
  // The consumer is gone: nothing will read our replies, so do not linger as an orphan.
  process.on('disconnect', () => process.exit(0));
  watchParent();
}

/**
 * A run stuck in a synchronous loop never sees 'disconnect': when the consumer is killed (SIGKILL) it
 * would spin on as an orphan for ever (seen here). A watchdog thread, which the loop cannot block,
 * ends this process once its parent has gone.
 */
function watchParent(): void {
  const watchdog = new Worker(
    `const { workerData } = require('node:worker_threads');
     setInterval(() => { if (process.ppid !== workerData.parent) process.kill(process.pid, 'SIGKILL'); }, 500);`,
    { eval: true, workerData: { parent: process.ppid } },
  );
  watchdog.unref();
}
