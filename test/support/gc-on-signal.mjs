// Preloaded (node --expose-gc --import) into a consumer a test starts: SIGUSR2 runs a full collection, so a
// test can read what memory the consumer still holds, not what a collection has yet to free.
process.on('SIGUSR2', () => globalThis.gc());
