/**
 * Which bodies are JSON, and the binary content types the project knows (CONTRACT §2, §5). A message
 * with no contentType is JSON, as every message was before binary payloads.
 */
import { NPY_CONTENT_TYPE } from './npy.js';
import { SAFETENSORS_CONTENT_TYPE } from './safetensors.js';

export const JSON_CONTENT_TYPE = 'application/json';

/** The media type alone, lower-cased: "Image/PNG; q=1" → "image/png". */
export function mediaType(contentType: string | undefined): string {
  if (!contentType) return '';
  // Asked several times of every binary message, and the messages of a stream share one type: the last answer is kept.
  if (contentType === last.contentType) return last.mediaType;
  last.mediaType = contentType.split(';', 1)[0].trim().toLowerCase();
  last.contentType = contentType;
  return last.mediaType;
}
const last = { contentType: '', mediaType: '' };

/** No contentType, application/json, text/json and any +json type (application/vnd.x+json) are JSON. */
export function isJsonContentType(contentType: string | undefined): boolean {
  // Asked of every message: the usual answers without the split and lower-casing.
  if (contentType === undefined || contentType === JSON_CONTENT_TYPE) return true;
  const t = mediaType(contentType);
  return t === '' || t === JSON_CONTENT_TYPE || t === 'text/json' || t.endsWith('+json');
}

export const IMAGE_CONTENT_TYPES = ['image/png', 'image/jpeg', 'image/webp'] as const;

/** The binary types the built-in ONNX script reads, and the file extensions the CLI sends them for. */
export const CONTENT_TYPE_BY_EXTENSION: Readonly<Record<string, string>> = {
  '.json': JSON_CONTENT_TYPE,
  '.npy': NPY_CONTENT_TYPE,
  '.safetensors': SAFETENSORS_CONTENT_TYPE,
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
};
