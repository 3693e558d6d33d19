#!/usr/bin/env node
// The `scorer` command. Plain JavaScript, so it runs without a build: it registers tsx's loader,
// then imports the TypeScript CLI (src/cli/main.ts) as it is.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
