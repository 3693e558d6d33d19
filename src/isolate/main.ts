/**
 * The isolate's main: loads the entry script, calls init() once, then answers each call from the
 * consumer with call-script.ts, over a worker thread's port or a child process's IPC channel.
 */
import { Worker, parentPort } from 'node:worker_threads';
import { loadEntryScript, type EntryScript } from './entry-script.js';
import { replyText } from '../errors.js';
import { callScript } from './call-script.js';
import { packOutcomes, unpackBodies, type FromRuntime, type ScriptInfo, type ToRuntime } from './protocol.js';

const send: (msg: FromRuntime, transfer?: ArrayBuffer[]) => void = parentPort
  ? (msg, transfer) => parentPort!.postMessage(msg, transfer)
  : (msg) => process.send!(msg);

let script: EntryScript | undefined;
let maxMessageBytes = 0;

async function handle(msg: ToRuntime): Promise<void> {
  if (msg.type === 'init') {
    let loaded: EntryScript | undefined;
    try {
      maxMessageBytes = msg.maxMessageBytes;
      loaded = await loadEntryScript(msg.entryScript);
      await loaded.init(msg.context);
      script = loaded;
      send({ type: 'ready', info: describe(loaded) });
    } catch (err) {
      // A script that cannot load (or lacks run) says so itself: blaming init() would send the user to the wrong place.
      send({ type: 'init-failed', message: loaded ? `entry script init() failed: ${replyText(err)}` : replyText(err) });
    }
    return;
  }
  const outcomes = packOutcomes(
    await callScript(script!, msg.method, unpackBodies(msg.bodies), maxMessageBytes, msg.metas),
  );
  send({ type: 'result', id: msg.id, outcomes }, [outcomes.bodies.bytes.buffer as ArrayBuffer]);
}

function describe(s: EntryScript): ScriptInfo {
  const documented = s.apiSchemas?.();
  const inputSchema = s.inputSchema ?? documented?.inputSchema;
  const outputSchema = s.outputSchema ?? documented?.outputSchema;
  return {
    modelName: typeof s.modelName === 'string' && s.modelName ? s.modelName : 'entry-script',
    hasRunBatch: typeof s.runBatch === 'function' || typeof s.runBatchParsed === 'function',
    ...(inputSchema ? { inputSchema } : {}),
    ...(outputSchema ? { outputSchema } : {}),
    ...(typeof s.bootLog === 'function' ? { bootLog: s.bootLog() } : {}),
  };
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
