/** numpy, the producer users have: bodies written by `np.save` and replies read back by `np.load`, in a python3 child. */
import { execFileSync } from 'node:child_process';

/** The .npy bytes numpy writes for `expr`, a Python expression over `np`. */
export function npySave(expr: string): Buffer {
  return execFileSync('python3', [
    '-c',
    `import numpy as np, io, sys\nb = io.BytesIO(); np.save(b, ${expr}); sys.stdout.buffer.write(b.getvalue())`,
  ]);
}

/** numpy's reading of an .npy body: its dtype, shape and values as JSON. */
export function npyLoad(body: Uint8Array): { dtype: string; shape: number[]; values: unknown } {
  const py = `import numpy as np, io, sys, json
a = np.load(io.BytesIO(sys.stdin.buffer.read()))
print(json.dumps({"dtype": str(a.dtype), "shape": list(a.shape), "values": a.tolist()}))`;
  return JSON.parse(execFileSync('python3', ['-c', py], { input: body, encoding: 'utf8' }));
}
