/**
 * What `submit` sends: the lines of a JSON Lines file, or the files of a folder or a glob (one message
 * per file, in the order of their sorted names, as Azure ML batch endpoints score a folder). Each item
 * has a 1-based number, the `line` of its result record, so resuming works the same for both.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { extname, join, relative, resolve, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { CONTENT_TYPE_BY_EXTENSION, isJsonContentType } from '../isolate/content-types.js';
import { prepareLine } from './records.js';

export type InputItem =
  | { line: number; blank: true }
  | { line: number; blank?: false; body: Buffer; contentType?: string }
  | { line: number; blank?: false; error: string; code: string };

export interface InputSource {
  /** What the state file records as the run's input: the JSONL file's or the folder's absolute path, or the glob as given. */
  id: string;
  /** Items with a result (non-blank lines, files): the progress bar's total. */
  total: number;
  /** Items up to `skipThrough` already have a result: a folder's are not read again (each comes as a blank). */
  items(skipThrough?: number): AsyncIterable<InputItem>;
  /** For files: each item's file name (relative to the folder or the glob's base), written in its result. */
  nameOf?(line: number): string;
  /** For files: a digest of the sorted names, so a resumed run refuses a folder whose files changed. */
  digest?: string;
}

/** A content type per file, from --content-type or else from its extension (content-types.ts). */
export function contentTypeFor(file: string, forced?: string): string | undefined {
  return forced || CONTENT_TYPE_BY_EXTENSION[extname(file).toLowerCase()];
}

/** A JSONL file, a folder, or a glob (`*`, `?` and `**` in its path). */
export async function openInput(input: string, forcedContentType?: string): Promise<InputSource> {
  const path = resolve(input);
  const isGlob = /[*?]/.test(input);
  if (!isGlob && !existsSync(path)) throw new Error(`input ${input}: no such file or folder`);
  if (!isGlob && !statSync(path).isDirectory()) return jsonLines(path);
  const { base, files } = isGlob ? globFiles(input) : { base: path, files: walk(path) };
  if (files.length === 0) throw new Error(`input ${input}: no files${isGlob ? ' match' : ' in the folder'}`);
  const names = files.map((f) => relative(base, f).split(sep).join('/'));
  return {
    id: isGlob ? input : path,
    total: files.length,
    nameOf: (line) => names[line - 1],
    digest: createHash('sha256').update(names.join('\n')).digest('hex'),
    async *items(skipThrough = 0) {
      for (let i = 0; i < files.length; i++)
        yield i < skipThrough ? { line: i + 1, blank: true } : await fileItem(i + 1, files[i], forcedContentType);
    },
  };
}

async function fileItem(line: number, file: string, forced: string | undefined): Promise<InputItem> {
  const contentType = contentTypeFor(file, forced);
  if (!contentType) {
    return {
      line,
      error: `no content type for '${extname(file) || file}' files: pass --content-type, or name files .npy, .safetensors, .png, .jpg, .webp or .json`,
      code: 'CONTENT_TYPE',
    };
  }
  const body = await readFile(file);
  if (!isJsonContentType(contentType)) return { line, body, contentType };
  // A JSON file is one request, as a JSONL line is.
  const prepared = prepareLine(body.toString('utf8'));
  return 'error' in prepared
    ? { line, error: prepared.error.replace(/^line/, 'file'), code: 'BAD_JSON' }
    : { line, body: prepared.body };
}

async function jsonLines(path: string): Promise<InputSource> {
  const lines = () => createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  let total = 0;
  for await (const text of lines()) if (text.trim()) total++;
  return {
    id: path,
    total,
    async *items() {
      let line = 0;
      const rl = lines();
      try {
        for await (const text of rl) {
          line++;
          if (!text.trim()) {
            yield { line, blank: true };
            continue;
          }
          const prepared = prepareLine(text);
          // Not sent: the consumer would answer the same (BAD_JSON), and nothing could be wrapped.
          yield 'error' in prepared ? { line, error: prepared.error, code: 'BAD_JSON' } : { line, body: prepared.body };
        }
      } finally {
        rl.close();
      }
    },
  };
}

/** Regular files under `dir`, recursively, dot-files and dot-folders left out, sorted by path. */
function walk(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(full));
    else if (entry.isFile()) out.push(full);
  }
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The files a glob matches: `*` and `?` within a name, `**` across folders, walked from its first folder without a wildcard. */
export function globFiles(pattern: string): { base: string; files: string[] } {
  const parts = resolve(pattern).split(sep);
  const firstWild = parts.findIndex((p) => /[*?]/.test(p));
  const base = parts.slice(0, firstWild).join(sep) || sep;
  const rest = parts.slice(firstWild).join('/');
  const regex = new RegExp(`^${globToRegex(rest)}$`);
  const files =
    existsSync(base) && statSync(base).isDirectory()
      ? walk(base).filter((f) => regex.test(relative(base, f).split(sep).join('/')))
      : [];
  return { base, files };
}

function globToRegex(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*' && glob[i + 1] === '*') {
      // `**/` matches any number of folders, none included.
      if (glob[i + 2] === '/') (out += '(?:.*/)?'), (i += 2);
      else (out += '.*'), i++;
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return out;
}
