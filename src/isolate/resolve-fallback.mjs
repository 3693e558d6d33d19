// A user's entry script may live anywhere (mounted into a container, in /tmp): its bare imports
// (onnxruntime-node, ...) resolve from its own folder first, then from this project's node_modules.
const PROJECT = new URL('../../package.json', import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    const bare = !/^(\.|\/|[a-z][a-z0-9+.-]*:)/i.test(specifier);
    if (!bare || (err?.code !== 'ERR_MODULE_NOT_FOUND' && err?.code !== 'MODULE_NOT_FOUND')) throw err;
    return nextResolve(specifier, { ...context, parentURL: PROJECT });
  }
}
