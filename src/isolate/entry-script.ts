/**
 * The entry-script contract (CONTRACT §1): where the module and the model are, loading a .ts/.js
 * module at run time without a rebuild, and checking its exports at load rather than at the first message.
 */
import { existsSync } from 'node:fs';
import { extname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tsImport } from 'tsx/esm/api';
import type { OnnxOptions, OrtOptions } from '../config.js';
import { BootError } from '../errors.js';
import type { ImagePreprocessing } from './image.js';

export const BUILT_IN_ENTRY_SCRIPT = fileURLToPath(new URL('../onnx/entry.ts', import.meta.url));
const EXTENSIONS = new Set(['.ts', '.mts', '.js', '.mjs', '.cjs', '.cts', '.py']);

/** What init() is given: scripts written for Azure ML ignore it and read AZUREML_MODEL_DIR instead. */
export interface InitContext {
  modelDir: string;
  maxTensorElements: number;
  ort: OrtOptions;
  /** The built-in ONNX script's settings (BATCHING, OUTPUTS); absent means auto and every output. */
  onnx?: OnnxOptions;
  /** IMAGE_*: how the built-in script makes an image body into its input (isolate/image.ts). */
  image?: ImagePreprocessing;
}

/**
 * run's second argument: the message's contentType (application/json when it had none) and headers.
 * A script may return `{ contentType, body: Uint8Array }` for a binary reply (isolate/binary-calls.ts).
 */
export interface ScriptMeta {
  contentType: string;
  headers: Record<string, unknown>;
}

export interface EntryScript {
  init(context: InitContext): unknown;
  /** `data`: the JSON text of "data" for a JSON message; the body's bytes for any other contentType. */
  run(data: string | Uint8Array, meta?: ScriptMeta): unknown;
  runBatch?(items: Array<string | Uint8Array>, metas?: ScriptMeta[]): unknown;
  /** Our extension: the data values already parsed (a binary body as its bytes), which saves a stringify and a parse per message. */
  runBatchParsed?(values: unknown[], metas?: ScriptMeta[]): unknown;
  /**
   * Ours, with runBatchParsed: reads a body into a value of the script's own making (the built-in ONNX
   * script: a tensor, straight from the bytes), or undefined to leave the body to the general parse.
   * What it returns goes to runBatchParsed only; it is not used for scripts with an inputSchema.
   */
  readBody?(body: Uint8Array): unknown;
  modelName?: string;
  /** JSON Schema of `data`: documented in the AsyncAPI file and checked before run. */
  inputSchema?: object;
  outputSchema?: object;
  /** Schemas for documentation only, for scripts that check their own input (the built-in ONNX one). */
  apiSchemas?(): { inputSchema?: object; outputSchema?: object };
  /** Ours: frees what init() loaded, when the script's isolate outlives its use (scored inline, then replaced). */
  close?(): unknown;
  /** Ours: lines for the consumer's boot log, asked once after init(). */
  bootLog?(): Array<{ msg: string; fields: Record<string, unknown> }>;
}

/** ENTRY_SCRIPT as configured → an absolute path, checked to exist; '' → the built-in ONNX script. */
export function resolveEntryScript(configured: string, cwd = process.cwd()): string {
  if (!configured) return BUILT_IN_ENTRY_SCRIPT;
  const path = isAbsolute(configured) ? configured : resolve(cwd, configured);
  if (!EXTENSIONS.has(extname(path))) {
    throw new BootError(`ENTRY_SCRIPT ${path}: expected a .ts, .mts, .js or .mjs module, or a .py script`);
  }
  if (!existsSync(path)) throw new BootError(`ENTRY_SCRIPT ${path}: no such file`);
  return path;
}

export function resolveModelDir(configured: string, cwd = process.cwd()): string {
  return isAbsolute(configured) ? configured : resolve(cwd, configured);
}

export async function loadEntryScript(path: string): Promise<EntryScript> {
  let mod: Record<string, unknown>;
  try {
    mod = (await tsImport(pathToFileURL(path).href, import.meta.url)) as Record<string, unknown>;
  } catch (err) {
    throw new BootError(`entry script ${path} failed to load: ${(err as Error).message.split('\n')[0]}`);
  }
  // A CommonJS script compiled from TypeScript puts its exports under `default`.
  const exports = typeof mod.run !== 'function' && isObject(mod.default) ? mod.default : mod;
  for (const name of ['init', 'run'] as const) {
    if (typeof exports[name] !== 'function') {
      throw new BootError(`entry script ${path} must export a function ${name}(), found ${typeof exports[name]}`);
    }
  }
  for (const name of ['runBatch', 'runBatchParsed', 'readBody'] as const) {
    if (exports[name] !== undefined && typeof exports[name] !== 'function') {
      throw new BootError(`entry script ${path}: ${name} must be a function, found ${typeof exports[name]}`);
    }
  }
  return exports as unknown as EntryScript;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
