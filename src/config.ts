/**
 * The one place that reads the environment. config/default.json holds every default, keyed by the
 * environment variable that overrides it; the merged whole is validated once at boot and frozen.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { Backoff } from './backoff.js';
import { BootError } from './errors.js';
import type { ImagePreprocessing } from './isolate/image.js';

export const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DEFAULTS_FILE = fileURLToPath(new URL('../config/default.json', import.meta.url));

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const name = z.string().min(1).max(255);
const path = z.string();
const NUMBER = String.raw`-?\d+(?:\.\d+)?(?:e-?\d+)?`;
const NUMBER_OR_FRACTION = /^\d+(?:\.\d+)?(?:e-?\d+)?(?:\/\d+(?:\.\d+)?)?$/;
const NUMBER_LIST = new RegExp(`^${NUMBER}(?:,${NUMBER}){0,2}$`);

/** Keyed by environment variable: the names users type are the names errors print. */
export const configSchema = z.object({
  AMQP_URL: z
    .string()
    .refine(
      (v) => splitAmqpUrls(v).every((u) => /^amqps?:\/\/\S+$/.test(u) && URL.canParse(u)),
      'expected an amqp:// or amqps:// URL, or several separated by commas',
    )
    .describe('broker URL, or several comma-separated: a reconnect tries the next'),
  AMQP_CA_FILE: path,
  AMQP_CERT_FILE: path,
  AMQP_KEY_FILE: path,
  AMQP_HEARTBEAT_S: int(0, 600),
  CONNECTION_NAME: z.string().max(255),
  INPUT_QUEUE: name,
  REPLY_QUEUE: name,
  QUEUE_TYPE: z.enum(['quorum', 'classic']),
  DELIVERY_LIMIT: int(1, 1000),
  MODEL_DIR: path,
  ENTRY_SCRIPT: path,
  PYTHON: z.string().min(1, 'expected an interpreter name on PATH or its path'),
  RELOAD_TIMEOUT_MS: int(1000, 3_600_000),
  INIT_TIMEOUT_MS: int(1000, 86_400_000),
  MODEL_WATCH_MS: int(0, 3_600_000),
  PREFETCH: int(1, 65535),
  CONCURRENCY: int(1, 64),
  MAX_BATCH_SIZE: int(1, 4096),
  MAX_BATCH_DELAY_MS: int(0, 60_000),
  BATCH_DELAY_MIN_LOAD: z.coerce.number().min(0).max(1),
  RUN_TIMEOUT_MS: int(1, 3_600_000),
  RUN_GROUP_MS: int(0, 60_000),
  MAX_MESSAGE_BYTES: int(64, 512 * 1024 * 1024),
  MAX_TENSOR_ELEMENTS: int(1, 1_000_000_000),
  ORT_INTRA_OP_THREADS: int(0, 64),
  HEAP_GROWING_PERCENT: int(0, 1000),
  ORT_GRAPH_OPTIMIZATION: z.enum(['disabled', 'basic', 'extended', 'all']),
  ORT_ALLOW_SPINNING: z.enum(['true', 'false']),
  BATCHING: z.enum(['auto', 'on', 'off']),
  INLINE_SCORING: z.enum(['auto', 'on', 'off']),
  INLINE_MAX_BATCH_MS: z.coerce.number().min(0).max(1000),
  OUTPUTS: z
    .string()
    .regex(/^[^,\s]*(\s*,\s*[^,\s]+)*$/, 'expected output names separated by commas, or nothing for every output'),
  CONFIRM_TIMEOUT_MS: int(100, 600_000),
  CONNECT_TIMEOUT_MS: int(100, 600_000),
  REPLY_ATTEMPTS: int(1, 1000),
  REPLY_REFUSED_MIN_MS: int(0, 86_400_000),
  REPLY_GIVE_UP_MS: int(1000, 86_400_000),
  MAX_IN_FLIGHT_BYTES: int(1024, 64 * 1024 * 1024 * 1024),
  READY_STALL_MS: int(1000, 86_400_000),
  LIVENESS_TIMEOUT_MS: int(1000, 86_400_000),
  BROKER_CONSUMER_TIMEOUT_MS: int(0, 86_400_000 * 7),
  RECONNECT_INITIAL_DELAY_MS: int(1, 600_000),
  RECONNECT_MAX_DELAY_MS: int(1, 3_600_000),
  ISOLATE_RESTART_INITIAL_DELAY_MS: int(1, 600_000),
  ISOLATE_RESTART_MAX_DELAY_MS: int(1, 3_600_000),
  CONNECT_RETRIES_AT_BOOT: int(0, 1000),
  SHUTDOWN_GRACE_MS: int(0, 3_600_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  HTTP_PORT: int(0, 65535),
  // Images for the built-in ONNX script (issue 14): how a decoded image becomes the model's input.
  IMAGE_SIZE: z
    .string()
    .regex(
      /^(|[1-9]\d{0,4}x[1-9]\d{0,4})$/,
      "expected WIDTHxHEIGHT (e.g. 640x640), or empty to take the model's fixed size",
    ),
  IMAGE_RESIZE: z.enum(['fill', 'cover', 'contain']),
  IMAGE_CHANNEL_ORDER: z.enum(['rgb', 'bgr']),
  IMAGE_LAYOUT: z.enum(['auto', 'nchw', 'nhwc']),
  IMAGE_SCALE: z.string().regex(NUMBER_OR_FRACTION, 'expected a positive number or fraction, e.g. 1/255 or 0.0039'),
  IMAGE_MEAN: z
    .string()
    .regex(NUMBER_LIST, 'expected one number, or one per channel separated by commas, e.g. 0.485,0.456,0.406'),
  IMAGE_STD: z
    .string()
    .regex(NUMBER_LIST, 'expected one number, or one per channel separated by commas, e.g. 0.229,0.224,0.225'),
  IMAGE_PAD_VALUE: int(0, 255),
  IMAGE_MAX_INPUT_PIXELS: int(1, 1_000_000_000),
  DEADLINE_MS: int(0, 604_800_000),
  ANSWERED_RECORD_MAX: int(0, 10_000_000),
  ANSWERED_RECORD_MAX_AGE_MS: int(0, 86_400_000),
  MAX_PRIORITY: int(0, 255),
  ANSWER_POISON: z.enum(['true', 'false']),
  OTEL_SDK_DISABLED: z.enum(['', 'true', 'false']),
  OTEL_TRACES_EXPORTER: z.enum(['', 'otlp', 'console', 'none']),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.union([z.literal(''), z.url({ protocol: /^https?$/ })]),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.union([z.literal(''), z.url({ protocol: /^https?$/ })]),
  OTEL_SERVICE_NAME: name,
});

export type ConfigKey = keyof z.infer<typeof configSchema>;
export const CONFIG_KEYS = Object.keys(configSchema.shape) as ConfigKey[];

/** Variables read besides the schema's own: aliases and secrets-from-file. */
export const EXTRA_ENV = ['AZUREML_MODEL_DIR', 'AMQP_URL_FILE'] as const;

/** ORT_*: the onnxruntime session options every isolate opens its model with. */
export type OrtOptions = Config['ort'];

/** The settings as the code reads them: whatever toConfig returns, so there is no second list of fields. */
export type Config = ReturnType<typeof toConfig>;
export type QueueType = Config['queueType'];
/** BATCHING and OUTPUTS, for the built-in ONNX script. */
export type OnnxOptions = Config['onnx'];
/** From the standard OTEL_* variables: which exporter, if any, and where it sends. */
export type TracingConfig = ReturnType<typeof tracingConfig>;

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env, defaultsFile = DEFAULTS_FILE): Readonly<Config> {
  const defaults = JSON.parse(readFileSync(defaultsFile, 'utf8')) as Record<string, unknown>;
  const merged: Record<string, unknown> = { ...defaults };
  // An empty variable counts as unset: compose's `${X:-}` and Kubernetes' optional values produce them.
  for (const key of CONFIG_KEYS) {
    if (env[key] !== undefined && env[key] !== '') merged[key] = env[key];
  }
  // AZUREML_MODEL_DIR lets ported Azure ML entry scripts run unchanged; MODEL_DIR wins when both are set.
  if (env.MODEL_DIR === undefined && env.AZUREML_MODEL_DIR !== undefined) merged.MODEL_DIR = env.AZUREML_MODEL_DIR;
  if (env.AMQP_URL_FILE) merged.AMQP_URL = readConfigFile('AMQP_URL_FILE', env.AMQP_URL_FILE).toString('utf8').trim();

  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) throw new BootError(describeIssue(parsed.error.issues[0], merged));
  const c = parsed.data;
  if (c.INLINE_SCORING === 'on' && c.ENTRY_SCRIPT !== '')
    throw new BootError(
      "config INLINE_SCORING: on runs only the built-in ONNX script on the consumer's thread; a user's ENTRY_SCRIPT runs in its own process: set INLINE_SCORING to auto or off",
    );
  for (const [max, initial] of [
    ['RECONNECT_MAX_DELAY_MS', 'RECONNECT_INITIAL_DELAY_MS'],
    ['ISOLATE_RESTART_MAX_DELAY_MS', 'ISOLATE_RESTART_INITIAL_DELAY_MS'],
  ] as const) {
    if (c[max] < c[initial])
      throw new BootError(`config ${max}: expected at least ${initial} (${c[initial]}), got ${c[max]}`);
  }
  return deepFreeze(toConfig(c));
}

function toConfig(c: z.infer<typeof configSchema>) {
  return {
    amqp: {
      /** The first of `urls`: for one-off connections (the CLI) that do not rotate. */
      url: splitAmqpUrls(c.AMQP_URL)[0],
      /** Every broker address AMQP_URL lists, in its order; the consumer's connections move to the next on each failure. */
      urls: splitAmqpUrls(c.AMQP_URL),
      caFile: c.AMQP_CA_FILE,
      certFile: c.AMQP_CERT_FILE,
      keyFile: c.AMQP_KEY_FILE,
      heartbeatS: c.AMQP_HEARTBEAT_S,
      connectionName: c.CONNECTION_NAME || `scorer@${hostname()}:${process.pid}`,
      confirmTimeoutMs: c.CONFIRM_TIMEOUT_MS,
      /** Socket connect and AMQP handshake, per attempt. */
      connectTimeoutMs: c.CONNECT_TIMEOUT_MS,
      /** Reconnects (amqplib's recovery), and the retries of a reply or a re-consume. */
      reconnect: { initialMs: c.RECONNECT_INITIAL_DELAY_MS, maxMs: c.RECONNECT_MAX_DELAY_MS } satisfies Backoff,
      connectRetriesAtBoot: c.CONNECT_RETRIES_AT_BOOT,
    },
    inputQueue: c.INPUT_QUEUE,
    replyQueue: c.REPLY_QUEUE,
    queueType: c.QUEUE_TYPE,
    deliveryLimit: c.DELIVERY_LIMIT,
    modelDir: c.MODEL_DIR,
    /** '' means the built-in ONNX entry script. */
    entryScript: c.ENTRY_SCRIPT,
    /** The interpreter of a .py entry script: a name looked up on PATH, or a path (a venv's bin/python). */
    python: c.PYTHON,
    /** Between attempts to start a fresh isolate after one died or hung and the restart failed. */
    isolateRestart: {
      initialMs: c.ISOLATE_RESTART_INITIAL_DELAY_MS,
      maxMs: c.ISOLATE_RESTART_MAX_DELAY_MS,
    } satisfies Backoff,
    /** A user's script (child process, Python) whose init() has not returned within this is killed: boot fails, a replacement is started again. */
    initTimeoutMs: c.INIT_TIMEOUT_MS,
    /** A reload whose new isolates have not booted and answered within this is given up (the old model serves on). */
    reloadTimeoutMs: c.RELOAD_TIMEOUT_MS,
    /** Reload once the model folder (or the entry script) has been quiet this long after a change; 0: no file watch. */
    modelWatchMs: c.MODEL_WATCH_MS,
    prefetch: c.PREFETCH,
    concurrency: c.CONCURRENCY,
    maxBatchSize: c.MAX_BATCH_SIZE,
    maxBatchDelayMs: c.MAX_BATCH_DELAY_MS,
    /** A batch waits for maxBatchDelayMs only while the event loop worked at least this share of the last 100 ms. */
    batchDelayMinLoad: c.BATCH_DELAY_MIN_LOAD,
    runTimeoutMs: c.RUN_TIMEOUT_MS,
    /** A script without runBatch gets several messages per call to its isolate, as many as its recent runs say fit in this; 0: one per call. */
    runGroupMs: c.RUN_GROUP_MS,
    /** V8's old generation may grow to (1 + this/100) × what the last full collection kept; 0: V8's own factor (up to 4). */
    heapGrowingPercent: c.HEAP_GROWING_PERCENT,
    maxMessageBytes: c.MAX_MESSAGE_BYTES,
    maxTensorElements: c.MAX_TENSOR_ELEMENTS,
    ort: {
      intraOpNumThreads: c.ORT_INTRA_OP_THREADS,
      graphOptimizationLevel: c.ORT_GRAPH_OPTIMIZATION,
      allowSpinning: c.ORT_ALLOW_SPINNING === 'true',
    },
    /** The built-in ONNX script: whether messages may share a run (BATCHING), which outputs to fetch (OUTPUTS; [] for all). */
    onnx: {
      batching: c.BATCHING,
      outputs: c.OUTPUTS.split(',')
        .map((o) => o.trim())
        .filter((o) => o !== ''),
    },
    image: imagePreprocessing(c),
    /**
     * The built-in ONNX script on the consumer's own thread instead of CONCURRENCY worker threads: always
     * (on), never (off), or when a full batch costs at most maxBatchMs there (auto; scorer.ts).
     */
    inline: { mode: c.INLINE_SCORING, maxBatchMs: c.INLINE_MAX_BATCH_MS },
    /** Refusals of one reply (nacked, returned from REPLY_QUEUE) before its input is dead-lettered. */
    replyAttempts: c.REPLY_ATTEMPTS,
    /** … and for at least this long: a quorum reply queue refuses publishes while it elects a leader. */
    replyRefusedMinMs: c.REPLY_REFUSED_MIN_MS,
    /** How long a reply's transient failures are retried before its input is requeued. */
    replyGiveUpMs: c.REPLY_GIVE_UP_MS,
    /** Bodies held (received, not settled) past this: no new deliveries until some are settled. */
    maxInFlightBytes: c.MAX_IN_FLIGHT_BYTES,
    /** /readyz is 503 while inputs are held and none has been settled for this long. */
    readyStallMs: c.READY_STALL_MS,
    /** /healthz fails once the consumer has been unable to connect or progress for this long. */
    livenessTimeoutMs: c.LIVENESS_TIMEOUT_MS,
    /** The broker's consumer_timeout, as the operator set it (0: none): boot warns when the settings can reach it. */
    brokerConsumerTimeoutMs: c.BROKER_CONSUMER_TIMEOUT_MS,
    shutdownGraceMs: c.SHUTDOWN_GRACE_MS,
    logLevel: c.LOG_LEVEL,
    httpPort: c.HTTP_PORT,
    /** A deadline for inputs that carry none, measured from their timestamp (else receipt); 0: none. */
    deadlineMs: c.DEADLINE_MS,
    /** Inputs whose reply was confirmed, remembered so a redelivery is acked without a second reply; 0 turns it off. */
    answeredRecord: { maxEntries: c.ANSWERED_RECORD_MAX, maxAgeMs: c.ANSWERED_RECORD_MAX_AGE_MS },
    /** x-max-priority of a classic input queue; 0: not a priority queue. */
    maxPriority: c.MAX_PRIORITY,
    /** Classic input queue: send the caller a POISON reply as the consumer dead-letters its input. */
    answerPoison: c.ANSWER_POISON === 'true',
    tracing: tracingConfig(c),
  };
}

/** IMAGE_* as numbers; a zero in IMAGE_STD or a scale of 0 is refused here, at boot. */
function imagePreprocessing(c: z.infer<typeof configSchema>): ImagePreprocessing {
  const [w, h] = c.IMAGE_SIZE ? c.IMAGE_SIZE.split('x').map(Number) : [];
  const [num, den = 1] = c.IMAGE_SCALE.split('/').map(Number);
  const scale = num / den;
  if (!(scale > 0) || !Number.isFinite(scale))
    throw new BootError(
      `config IMAGE_SCALE: expected a positive number or fraction, got ${JSON.stringify(c.IMAGE_SCALE)}`,
    );
  const std = c.IMAGE_STD.split(',').map(Number);
  if (std.some((s) => s === 0))
    throw new BootError(
      `config IMAGE_STD: expected non-zero numbers (each value is divided by it), got ${JSON.stringify(c.IMAGE_STD)}`,
    );
  return {
    ...(w ? { size: { width: w, height: h } } : {}),
    resize: c.IMAGE_RESIZE,
    channelOrder: c.IMAGE_CHANNEL_ORDER,
    layout: c.IMAGE_LAYOUT,
    scale,
    mean: c.IMAGE_MEAN.split(',').map(Number),
    std,
    padValue: c.IMAGE_PAD_VALUE,
    maxInputPixels: c.IMAGE_MAX_INPUT_PIXELS,
  };
}

/**
 * Tracing is off unless the OTEL_* variables ask for it: OTEL_TRACES_EXPORTER=otlp (or console), or an
 * OTLP endpoint set with OTEL_TRACES_EXPORTER unset. The specification's default exporter is otlp, but a
 * consumer that posts spans to localhost:4318 because nobody said otherwise costs every deployment that
 * has no collector; so an endpoint, or the exporter named, is the ask.
 */
function tracingConfig(c: z.infer<typeof configSchema>) {
  const endpoint =
    c.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ||
    (c.OTEL_EXPORTER_OTLP_ENDPOINT && `${c.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces`);
  const asked = c.OTEL_TRACES_EXPORTER || (endpoint ? 'otlp' : 'none');
  const exporter = c.OTEL_SDK_DISABLED === 'true' ? 'none' : asked;
  return {
    exporter,
    /** The OTLP/HTTP traces URL (…/v1/traces); '' when the exporter is not OTLP. */
    otlpTracesUrl: exporter === 'otlp' ? endpoint || 'http://localhost:4318/v1/traces' : '',
    serviceName: c.OTEL_SERVICE_NAME,
  };
}

/** A file a setting names (AMQP_URL_FILE, AMQP_CA_FILE, …), or a BootError naming the setting. */
export function readConfigFile(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new BootError(`config ${key}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** "config PREFETCH: expected an integer from 1 to 65535, got "abc"": the key, the rule, the value. */
function describeIssue(issue: z.core.$ZodIssue, values: Record<string, unknown>): string {
  const key = String(issue.path[0] ?? '');
  const shown = key.startsWith('AMQP_URL') ? redactUrl(String(values[key])) : values[key];
  return `config ${key}: ${ruleOf(issue)}, got ${JSON.stringify(shown) ?? 'nothing'}`;
}

function ruleOf(issue: z.core.$ZodIssue): string {
  const shape = configSchema.shape[issue.path[0] as ConfigKey];
  if (shape instanceof z.ZodNumber) return `expected an integer from ${shape.minValue} to ${shape.maxValue}`;
  if (issue.code === 'invalid_value') return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
  return issue.message;
}

/**
 * AMQP_URL's addresses. A comma splits only where an amqp:// or amqps:// URL follows, so a comma inside
 * a password (unescaped, as people paste them) stays part of it.
 */
export function splitAmqpUrls(value: string): string[] {
  return value
    .split(/,(?=\s*amqps?:\/\/)/i)
    .map((u) => u.trim())
    .filter((u) => u !== '');
}

/**
 * The broker password never reaches a log line or an error: not even in a URL that lacks its scheme or
 * has an '@' in the password, and in every address of a list.
 */
export function redactUrl(url: string): string {
  return url
    .split(/(,\s*)(?=amqps?:\/\/)/i)
    .map((part) => part.replace(/^((?:[a-z][a-z0-9+.-]*:)?\/*)([^:@/]*):([^/]*)@/i, '$1$2:***@'))
    .join('');
}

function deepFreeze<T extends object>(value: T): Readonly<T> {
  for (const v of Object.values(value)) if (v && typeof v === 'object') deepFreeze(v);
  return Object.freeze(value);
}

/**
 * Settings that are valid but risky together, as one line each for a warning at boot. The last of
 * PREFETCH inputs held can wait for every one before it: up to PREFETCH / CONCURRENCY runs of
 * RUN_TIMEOUT_MS each. Past the broker's consumer_timeout the broker closes the channel: every held
 * input is redelivered, the work done on them is thrown away, and it can happen again.
 */
export function settingWarnings(c: Readonly<Config>): string[] {
  const warnings: string[] = [];
  const worstWaitMs = (c.prefetch / c.concurrency) * c.runTimeoutMs;
  if (c.brokerConsumerTimeoutMs > 0 && worstWaitMs >= c.brokerConsumerTimeoutMs) {
    warnings.push(
      `PREFETCH (${c.prefetch}) x RUN_TIMEOUT_MS (${c.runTimeoutMs}) / CONCURRENCY (${c.concurrency}) = ${Math.round(worstWaitMs)} ms can reach the broker's consumer_timeout ` +
        `(BROKER_CONSUMER_TIMEOUT_MS ${c.brokerConsumerTimeoutMs}): lower PREFETCH or RUN_TIMEOUT_MS, raise CONCURRENCY, or raise consumer_timeout on the broker and BROKER_CONSUMER_TIMEOUT_MS here`,
    );
  }
  return warnings;
}
