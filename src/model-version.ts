/**
 * Which model folder to serve, and the version name every reply will carry. Two layouts:
 *
 * - versioned (Triton's): `models/<name>/<version>/model.onnx`, the versions whole numbers. MODEL_DIR
 *   names the model's folder (`models/iris`), or a repository holding just one such model (`models`).
 *   The highest version is served unless one is pinned; the version is `<name>/<version>` (`iris/3`).
 *   A folder beside the versions whose name is not a number is ignored, with a log line: a `3-new` or
 *   `latest` left there would otherwise be a silent no-op.
 * - flat: the model files right in MODEL_DIR, as before. The version is a short hash of the model file
 *   (the one .onnx file; else every file in the folder), so a retrained file gives a new version.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, type Dirent } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { BootError } from './errors.js';

export interface ModelVersion {
  /** The folder the entry script loads from (its AZUREML_MODEL_DIR / MODEL_DIR). */
  dir: string;
  /** `<name>/<version>` for a versioned folder, the model file's short hash for a flat one. */
  version: string;
}

export interface VersionLog {
  warn(fields: Record<string, unknown>, message: string): void;
}

const NUMERIC = /^\d+$/;

/**
 * The version folders among `names`, highest first, and the names that are not versions. Pure: the
 * comparison is numeric (10 above 9), exact for any length, and `07` and `7` are both seven.
 */
export function rankVersions(names: readonly string[]): { versions: string[]; ignored: string[] } {
  const versions = names.filter((n) => NUMERIC.test(n));
  const ignored = names.filter((n) => !NUMERIC.test(n));
  versions.sort((a, b) => {
    const d = BigInt(b) - BigInt(a);
    return d > 0n ? 1 : d < 0n ? -1 : a.localeCompare(b);
  });
  return { versions, ignored };
}

/**
 * Resolves MODEL_DIR to the folder to serve and its version. `pinned` serves that version instead of
 * the highest (a BootError if it is not there). Throws a BootError naming the folder when it cannot be
 * read or a versioned layout has no version in it.
 */
export function resolveModelVersion(modelDir: string, log: VersionLog, pinned?: string): ModelVersion {
  const here = listFolder(modelDir);
  const subfolders = here.filter((e) => e.isDirectory()).map((e) => e.name);
  if (subfolders.some((n) => NUMERIC.test(n))) return pickVersion(modelDir, subfolders, log, pinned);

  const files = here.filter((e) => e.isFile()).map((e) => e.name);
  // A repository (`models/`) holding one versioned model and no model files of its own.
  if (files.filter((f) => !f.startsWith('.')).length === 0) {
    const versioned = subfolders.filter((s) =>
      listFolder(join(modelDir, s)).some((e) => e.isDirectory() && NUMERIC.test(e.name)),
    );
    if (versioned.length === 1) {
      const inner = join(modelDir, versioned[0]);
      return pickVersion(
        inner,
        listFolder(inner)
          .filter((e) => e.isDirectory())
          .map((e) => e.name),
        log,
        pinned,
      );
    }
    if (versioned.length > 1) {
      throw new BootError(
        `model folder ${modelDir} holds several versioned models (${versioned.join(', ')}): set MODEL_DIR to one of them`,
      );
    }
  }
  if (pinned !== undefined)
    throw new BootError(`model folder ${modelDir} has no version folders, so version ${pinned} cannot be served`);
  return { dir: modelDir, version: flatVersion(modelDir, files) };
}

function pickVersion(
  modelDir: string,
  subfolders: string[],
  log: VersionLog,
  pinned: string | undefined,
): ModelVersion {
  const { versions, ignored } = rankVersions(subfolders);
  for (const folder of ignored)
    log.warn({ modelDir, folder }, 'model version folder ignored: its name is not a number');
  const name = basename(resolve(modelDir));
  if (pinned !== undefined) {
    const found =
      versions.find((v) => v === pinned) ??
      versions.find((v) => BigInt(v) === (NUMERIC.test(pinned) ? BigInt(pinned) : -1n));
    if (!found)
      throw new BootError(`model folder ${modelDir} has no version ${pinned} (versions: ${versions.join(', ')})`);
    return { dir: join(modelDir, found), version: `${name}/${found}` };
  }
  return { dir: join(modelDir, versions[0]), version: `${name}/${versions[0]}` };
}

/** Twelve hex digits of SHA-256: of the one .onnx file, else of every file's name and bytes, in name order. */
function flatVersion(modelDir: string, files: string[]): string {
  const hash = createHash('sha256');
  const onnx = files.filter((f) => f.endsWith('.onnx'));
  if (onnx.length === 1) hash.update(readFileSync(join(modelDir, onnx[0])));
  else {
    for (const f of [...files].sort()) {
      hash.update(f).update('\0');
      hash.update(readFileSync(join(modelDir, f)));
    }
  }
  return hash.digest('hex').slice(0, 12);
}

/** A model folder's entries, or the one BootError for a folder that cannot be read (here and in onnx/session.ts). */
export function listFolder(dir: string): Dirent[] {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    throw new BootError(
      `model folder ${dir} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}): check MODEL_DIR`,
    );
  }
}
