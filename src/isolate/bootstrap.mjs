// The isolate's entry point: plain JavaScript, so a worker thread or child process can start without a
// TypeScript loader, then loads the runtime through tsx.
import { register } from 'node:module';
import { tsImport } from 'tsx/esm/api';

register('./resolve-fallback.mjs', import.meta.url);
await tsImport('./main.ts', import.meta.url);
