/**
 * The `scorer` command (bin/scorer.js loads this through tsx): submit a JSON Lines file, send one
 * request, or write the AsyncAPI document. Defaults come from the consumer's own configuration
 * (config/default.json, AMQP_URL / AMQP_URL_FILE, INPUT_QUEUE, ...), read once here.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { loadConfig, redactUrl, type Config } from '../config.js';
import { buildAsyncApi } from './asyncapi.js';
import { deadLetters, DEFAULT_WINDOW, MAX_WINDOW } from './dead-letters.js';
import { loadScriptInfo } from './script-info.js';
import { send } from './send.js';
import { submit } from './submit.js';

const io = { stdout: process.stdout, stderr: process.stderr };
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

let config: Readonly<Config>;
try {
  config = loadConfig();
} catch (err) {
  process.stderr.write(`scorer: ${(err as Error).message}\n`);
  process.exit(1);
}

const integer = (name: string, min: number, max: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got "${value}"`);
  return n;
};

const urlOption = () =>
  new Option(
    '--url <url>',
    `broker URL (default: AMQP_URL or AMQP_URL_FILE, else config/default.json; now ${redactUrl(config.amqp.url)})`,
  );
const queueOption = () => new Option('--queue <name>', 'input queue (INPUT_QUEUE)').default(config.inputQueue);

const program = new Command('scorer')
  .description('Talk to the RabbitMQ scoring consumer: submit a JSON Lines file, send one request, describe the API.')
  .version(version)
  .showHelpAfterError();

program
  .command('submit')
  .description(
    'Send every line of a JSON Lines file, or every file of a folder or glob, as a scoring request and write the replies, in input order, to --out.',
  )
  .argument(
    '<input>',
    'JSON Lines file (one request per line), or a folder or quoted glob of files (one request per file, e.g. "images/*.png")',
  )
  .requiredOption(
    '-o, --out <file>',
    'results file (JSON Lines); its state file is <file>.state.json while the run is unfinished',
  )
  .addOption(urlOption())
  .addOption(queueOption())
  .option('--max-in-flight <n>', 'lines sent and not yet written, at most', integer('--max-in-flight', 1, 65_000), 1000)
  .option('--rate <n>', 'messages per second at most (0: no limit)', integer('--rate', 0, 10_000_000), 0)
  .option(
    '--idle-timeout <s>',
    'stop (resumable) when no reply comes for this long (0: wait for ever)',
    integer('--idle-timeout', 0, 31_536_000),
    300,
  )
  .option(
    '--content-type <type>',
    'for files: the content type of every file (default: from each extension: .npy, .safetensors, .png, .jpg, .webp, .json)',
  )
  .option(
    '--resume',
    'finish an interrupted run: keep what --out holds, do not send again what was sent, collect the rest from the same reply queue',
  )
  .option('--no-progress', 'no progress output')
  .addHelpText(
    'after',
    `
Input lines: a JSON object with a "data" key is sent as it is; any other JSON value is sent wrapped as
{"data": <line>}. Blank lines are skipped; a line that is not JSON is not sent and gets an error result.

Output lines, in input order, one per non-blank input line ("line" is its 1-based line number):
  {"line": 1, "status": "ok", "result": <reply body>}
  {"line": 2, "status": "error", "error": "<one line>", "code": "<x-error-code>"}

A folder (recursively, dot-files left out) or a glob: one message per file, in the order of the sorted
file names, each with the content type of its extension (or --content-type); its result records add
"file", the name relative to the folder: {"line": 1, "file": "cats/1.png", "status": "ok", ...}.

Each request carries correlationId "<run id>:<line>" and replyTo "scorer.submit.<run id>", a durable
queue of the run's own, deleted when the run completes. Interrupted (Ctrl-C, a kill, a lost connection)?
Run the same command with --resume. Exit code: 0 when every line has a result (errors included), 1 when
stopped, 130 on Ctrl-C.`,
  )
  .action(
    async (
      input: string,
      opts: {
        out: string;
        url?: string;
        queue: string;
        maxInFlight: number;
        rate: number;
        idleTimeout: number;
        contentType?: string;
        resume?: boolean;
        progress: boolean;
      },
    ) => {
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      process.exitCode = await submit(
        {
          input,
          ...(opts.contentType ? { contentType: opts.contentType } : {}),
          out: opts.out,
          url: opts.url ?? config.amqp.url,
          queue: opts.queue,
          maxInFlight: opts.maxInFlight,
          rate: opts.rate,
          idleTimeoutS: opts.idleTimeout,
          resume: opts.resume ?? false,
          progress: opts.progress,
          signal: controller.signal,
        },
        io,
      );
    },
  );

program
  .command('send')
  .description(
    'Send one request and print its reply: the body on stdout, the status on stderr. Exit 1 on an error reply or a timeout.',
  )
  .argument('[json]', 'the request: {"data": ...}, or any other JSON value, sent wrapped as {"data": <json>}')
  .option(
    '-f, --file <path>',
    'send this file instead: .npy, .safetensors, .png, .jpg, .webp as they are, .json as a request',
  )
  .option('--content-type <type>', "the file's content type (default: from its extension)")
  .option(
    '--reply-content-type <type>',
    'ask for a binary reply: application/x-npy or application/x-safetensors (header x-reply-content-type)',
  )
  .option('-o, --out <file>', 'write the reply body to this file instead of stdout')
  .addOption(urlOption())
  .addOption(queueOption())
  .option('--timeout <s>', 'seconds to wait for the reply', integer('--timeout', 1, 86_400), 30)
  .action(
    async (
      json: string | undefined,
      opts: {
        url?: string;
        queue: string;
        timeout: number;
        file?: string;
        contentType?: string;
        replyContentType?: string;
        out?: string;
      },
    ) => {
      const { url, timeout, ...rest } = opts;
      process.exitCode = await send(json, { ...rest, url: url ?? config.amqp.url, timeoutMs: timeout * 1000 }, io);
    },
  );

const deadLettersCommand = program
  .command('dead-letters')
  .description(
    `The messages parked in <INPUT_QUEUE>.dead after the delivery limit: list them, answer their callers (POISON), or replay them.`,
  )
  .addHelpText(
    'after',
    `
Each command is one pass over the dead queue from its head, taking at most the messages parked when it
began, --window unacked at a time (default ${DEFAULT_WINDOW}). A message that stays parked is put back at the
tail as a copy (never requeued: on a quorum queue a requeue counts as a delivery and can reorder), so a
pass keeps the order. Interrupted (a kill, Ctrl-C, a lost connection)? Run the same command again: it
resumes the pass from its state file (--state), doing again at most the last window (one caller answered
twice, one message copied twice and dropped as a duplicate by the next pass). Exit code: 0 when the pass
completed, 1 when stopped, 130 on Ctrl-C.`,
  );

const stateOption = () =>
  new Option(
    '--state <file>',
    'state file of the pass, kept while it is unfinished (default: scorer-dead-letters.<dead queue>.state.jsonl here)',
  );
const windowOption = () =>
  new Option(
    '--window <n>',
    `messages in hand at once: more is faster, but a kill may then reorder up to n of them and answer them twice`,
  )
    .argParser(integer('--window', 1, MAX_WINDOW))
    .default(DEFAULT_WINDOW);
const deadLettersRun = (
  command: 'list' | 'answer' | 'replay',
  opts: {
    url?: string;
    queue: string;
    state?: string;
    window: number;
    progress: boolean;
    json?: boolean;
    drop?: boolean;
    limit?: number;
    modelName?: string;
    replyQueue?: string;
  },
) => {
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  return deadLetters(
    {
      command,
      url: opts.url ?? config.amqp.url,
      queue: opts.queue,
      replyQueue: opts.replyQueue ?? config.replyQueue,
      deliveryLimit: config.deliveryLimit,
      statePath: opts.state,
      json: opts.json,
      drop: opts.drop,
      limit: opts.limit,
      modelName: opts.modelName,
      window: opts.window,
      progress: opts.progress,
      signal: controller.signal,
    },
    io,
  );
};

deadLettersCommand
  .command('list')
  .description(
    'Print each parked message: its ids, why it was dead-lettered and from where, how often, when, and whether its caller was answered; then a summary.',
  )
  .addOption(urlOption())
  .addOption(queueOption())
  .addOption(stateOption())
  .addOption(windowOption())
  .option('--json', 'one JSON object per message instead of a table')
  .option('--no-progress', 'no progress output')
  .action(async (opts) => {
    process.exitCode = await deadLettersRun('list', opts);
  });

deadLettersCommand
  .command('answer')
  .description(
    "Send each parked message's caller one error reply, x-error-code POISON, naming the queue it is parked in; keep the message (marked x-poison-answered) or, with --drop, drop it.",
  )
  .addOption(urlOption())
  .addOption(queueOption())
  .addOption(
    new Option('--reply-queue <name>', 'where replies to messages without replyTo go (REPLY_QUEUE)').default(
      config.replyQueue,
    ),
  )
  .addOption(stateOption())
  .addOption(windowOption())
  .option('--drop', 'drop each message once its caller is answered (default: keep it, marked)')
  .option(
    '--model-name <name>',
    "the x-model header of the replies (default: the configured model's name, read by loading it)",
  )
  .option('--no-progress', 'no progress output')
  .action(async (opts: { modelName?: string }) => {
    const modelName = opts.modelName ?? (await loadScriptInfo(config)).modelName;
    process.exitCode = await deadLettersRun('answer', { ...(opts as Parameters<typeof deadLettersRun>[1]), modelName });
  });

deadLettersCommand
  .command('replay')
  .description(
    'Put parked messages back on the input queue, in order, and drop them from the dead queue: after a fix to the entry script or model, so they are scored again.',
  )
  .addOption(urlOption())
  .addOption(queueOption())
  .addOption(stateOption())
  .addOption(windowOption())
  .option('--limit <n>', 'replay only the first n (try one after a fix)', integer('--limit', 1, 100_000_000))
  .option('--no-progress', 'no progress output')
  .action(async (opts) => {
    process.exitCode = await deadLettersRun('replay', opts);
  });

program
  .command('asyncapi')
  .description(
    'Write the AsyncAPI 3.0.0 document (JSON) of the queues, headers and message schemas, with the data schema of the configured model or entry script.',
  )
  .option('-o, --out <file>', 'write it here instead of stdout')
  .action(async (opts: { out?: string }) => {
    const info = await loadScriptInfo(config);
    const doc = buildAsyncApi({
      url: config.amqp.url,
      inputQueue: config.inputQueue,
      replyQueue: config.replyQueue,
      queueType: config.queueType,
      deliveryLimit: config.deliveryLimit,
      maxPriority: config.maxPriority,
      modelName: info.modelName,
      inputSchema: info.inputSchema,
      outputSchema: info.outputSchema,
      version,
    });
    const text = `${JSON.stringify(doc, null, 2)}\n`;
    if (opts.out) {
      writeFileSync(opts.out, text);
      process.stderr.write(`asyncapi: wrote ${opts.out}\n`);
    } else process.stdout.write(text);
  });

try {
  await program.parseAsync();
} catch (err) {
  process.stderr.write(`scorer ${program.args[0] ?? ''}: ${(err as Error).message.split('\n')[0]}\n`);
  process.exitCode = 1;
}
// Nothing should be left running; if something is (a socket closing slowly), do not hang the shell.
setTimeout(() => process.exit(), 2000).unref();
