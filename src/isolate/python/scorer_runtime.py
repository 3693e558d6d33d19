"""The Python side of a Python entry script's isolate (standard library only).

Started by src/isolate/python-isolate.ts as `PYTHON scorer_runtime.py`, one process per CONCURRENCY
slot. It imports the user's score.py, calls init() once, then answers the consumer's calls with
run(data) per item, or run_batch(items) for a batch. The consumer parses each message and sends
`data` as its JSON text; this process never sees a malformed body. A message whose contentType is not
JSON comes as its body's bytes. A run (run_batch) that names a second positional parameter also gets
each message's Meta(content_type, headers); a result {'content_type': str, 'body': bytes} is a binary
reply, sent as it is with that content type. init, run and run_batch may be coroutine functions
(`async def`): each is awaited on one event loop kept for the process's life, so a client or pool that
init opens on it still works in run.

The wire (src/isolate/python-protocol.ts has the other end and the layout of each frame): frames on
the process's original stdin and stdout, each `u32 length | u8 type | payload`, little-endian. Bodies
travel as bytes, side by side, with their end offsets: no JSON document per batch. The script's own
print() goes to stderr, so it can never corrupt a frame.
"""
import asyncio
import base64
import collections
import datetime
import decimal
import importlib.util
import inspect
import json
import os
import signal
import struct
import sys

if sys.version_info < (3, 8):
    sys.stderr.write('scorer: PYTHON must be Python 3.8 or later, got %s\n' % sys.version.split()[0])
    sys.exit(1)

# Frame types, as in python-protocol.ts.
INIT, CALL, READY, INIT_FAILED, RESULT = b'I'[0], b'C'[0], b'R'[0], b'F'[0], b'O'[0]
METHOD_RUN, METHOD_BATCH = 0, 1
KIND_DATA_TEXT = 0  # the JSON text under "data", given to the script as a str
KIND_BYTES = 1  # a binary message's body (its contentType is not JSON), given as bytes
OK, RUN_FAILED, BAD_RESULT, BINARY = 0, 1, 2, 3
JSON_CONTENT_TYPE = 'application/json'

# What run(data, meta) gets: the message's content type ('application/json' when it had none) and its
# AMQP headers, a dict. A namedtuple: meta.content_type, meta.headers, or `content_type, headers = meta`.
Meta = collections.namedtuple('Meta', ['content_type', 'headers'])

HEAD = struct.Struct('<IB')
CALL_HEAD = struct.Struct('<IBI')


def take_protocol_fds():
    """Keeps the consumer's pipes for frames and points fds 0 and 1 elsewhere: a script that prints,
    or a library that writes to fd 1 from C, must not interleave bytes with a frame."""
    proto_in = os.fdopen(os.dup(0), 'rb', buffering=1 << 16)
    proto_out = os.fdopen(os.dup(1), 'wb', buffering=1 << 16)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    try:
        sys.stdout.reconfigure(line_buffering=True)
    except AttributeError:
        pass
    return proto_in, proto_out


def die_with_parent():
    """A run stuck in C code or time.sleep never reads the EOF that says the consumer is gone: ask the
    kernel to kill this process when its parent dies (Linux), rather than linger as an orphan."""
    parent = int(os.environ.get('SCORER_PARENT_PID', '0') or 0)
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    if parent and os.getppid() != parent:
        os._exit(0)  # the parent died before prctl took effect


def write_frame(out, frame_type, payload):
    out.write(HEAD.pack(len(payload) + 1, frame_type))
    out.write(payload)
    out.flush()


def read_frame(inp):
    head = inp.read(HEAD.size)
    if len(head) < HEAD.size:
        return None, None  # EOF: the consumer closed our stdin or is gone
    length, frame_type = HEAD.unpack(head)
    payload = inp.read(length - 1)
    if len(payload) < length - 1:
        return None, None
    return frame_type, payload


def one_line(text):
    line = ' '.join(str(text).split())
    return line if len(line) <= 1000 else line[:997] + '...'


def error_message(err):
    """The reply text of an exception: its message, as a TypeScript script's Error.message; the type
    name when the message is empty (`raise ValueError()`), so the reply still says something."""
    try:
        text = one_line(err)
    except Exception:
        text = ''
    return text or type(err).__name__


def described(err):
    """For boot errors: the type and the message in one line ("ModuleNotFoundError: No module named 'sklearn'")."""
    text = error_message(err)
    name = type(err).__name__
    return text if text == name else '%s: %s' % (name, text)


BYTES_LIKE = (bytes, bytearray, memoryview)


def binary_reply(result):
    """(status, bytes, content type) for a result that is a binary reply, {'content_type': str, 'body':
    bytes} (the TypeScript contract's {contentType, body}); None for any other result."""
    if not isinstance(result, dict) or not isinstance(result.get('body'), BYTES_LIKE):
        return None
    content_type = result.get('content_type')
    if not isinstance(content_type, str) or not content_type.strip():
        return BAD_RESULT, b"run returned a binary reply {'body': bytes} without a 'content_type' str", None
    return BINARY, bytes(result['body']), content_type


def encode_result(result):
    """(status, bytes, content type): the reply JSON of a result (content type None), the bytes of a
    binary reply with its content type, or why it cannot be either."""
    if isinstance(result, BaseException):
        return RUN_FAILED, error_message(result).encode('utf-8', 'replace'), None
    binary = binary_reply(result)
    if binary is not None:
        return binary
    try:
        text = json.dumps(result, ensure_ascii=False, separators=(',', ':'), allow_nan=False)
    except Exception as err:  # TypeError (an ndarray), ValueError (NaN, a cycle), RecursionError
        hint = ''
        if isinstance(result, BYTES_LIKE):
            hint = "; return {'content_type': ..., 'body': bytes} for a binary reply"
        return BAD_RESULT, ('run returned a value JSON cannot carry: %s%s' % (error_message(err), hint)).encode('utf-8', 'replace'), None
    try:
        return OK, text.encode('utf-8'), None
    except UnicodeEncodeError:
        # A lone surrogate in a str: escaped, as JSON.stringify does.
        return OK, json.dumps(result, separators=(',', ':'), allow_nan=False).encode('ascii'), None


# The loop every awaitable runs on, kept here too: an init that calls asyncio.run() leaves no loop set.
_loop = asyncio.new_event_loop()


def settled(value):
    """value, or what it resolves to when it is awaitable (an `async def` init, run or run_batch), run on
    the process's one event loop (main() sets it before the script is imported): a coroutine of run may
    use what init made on it (an aiohttp session, a database pool), which a loop per call (asyncio.run)
    would have closed."""
    if not inspect.isawaitable(value):
        return value
    return _loop.run_until_complete(value)


def takes_meta(fn):
    """Whether fn names a second positional parameter (`def run(data, meta)`, `meta=None` too). Asked
    once, at load. A seed-style run(data) gets data alone, and so does a bare (*args) wrapper: the
    function it wraps may well take one argument (functools.wraps lets the signature be seen through)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2


def header_value(obj):
    """json.loads object_hook: the {'!': type, 'value': v} values (python-protocol.ts) as Python's own
    types, as pika gives them: bytes, datetime (UTC) for AMQP timestamps, Decimal for decimals."""
    if len(obj) == 2 and '!' in obj and 'value' in obj:
        kind, value = obj['!'], obj['value']
        try:
            if kind == 'bytes':
                return base64.b64decode(value)
            if kind == 'timestamp':
                return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
            if kind == 'decimal':
                return decimal.Decimal(value['digits']).scaleb(-value['places'])
        except Exception:
            pass
    return obj


def read_metas(section, n):
    """One Meta per item, from the call's metadata section (empty: every item is plain JSON)."""
    entries = json.loads(section.decode('utf-8'), object_hook=header_value) if section else [None] * n
    metas = []
    for entry in entries:
        entry = entry or {}
        metas.append(Meta(entry.get('contentType') or JSON_CONTENT_TYPE, entry.get('headers') or {}))
    return metas


class Script:
    """The user's module, checked at load: init and run must be functions; run_batch, input_schema,
    output_schema and model_name are optional and checked when present."""

    def __init__(self, path):
        folder = os.path.dirname(path)
        # The runtime's own folder is sys.path[0]; the script's folder takes its place, so it imports its
        # helpers; it is also the working directory, so `open('./models/x')` finds its local model, as in
        # Azure ML's source directory.
        sys.path[0] = folder
        os.chdir(folder)
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as err:
            raise LoadError('entry script %s failed to load: %s' % (path, described(err)))
        for fn in ('init', 'run'):
            if not callable(getattr(module, fn, None)):
                raise LoadError('entry script %s must define a function %s(), found %s' % (path, fn, found(module, fn)))
        run_batch = getattr(module, 'run_batch', None)
        if run_batch is not None and not callable(run_batch):
            raise LoadError('entry script %s: run_batch must be a function, found %s' % (path, found(module, 'run_batch')))
        for attr in ('input_schema', 'output_schema'):
            value = getattr(module, attr, None)
            if value is not None and not isinstance(value, dict):
                raise LoadError('entry script %s: %s must be a dict (a JSON Schema), found %s' % (path, attr, found(module, attr)))
        self.path = path
        self.module = module
        self.run = module.run
        self.run_batch = run_batch
        self.run_takes_meta = takes_meta(module.run)
        self.batch_takes_meta = run_batch is not None and takes_meta(run_batch)

    def info(self):
        m = self.module
        name = getattr(m, 'model_name', None)
        info = {
            'modelName': name if isinstance(name, str) and name else 'entry-script',
            'hasRunBatch': self.run_batch is not None,
            'takesMeta': self.run_takes_meta or self.batch_takes_meta,
            'python': {'executable': sys.executable, 'version': sys.version.split()[0]},
        }
        for attr, key in (('input_schema', 'inputSchema'), ('output_schema', 'outputSchema')):
            if getattr(m, attr, None) is not None:
                info[key] = getattr(m, attr)
        return info

    def run_one(self, data, meta):
        try:
            return encode_result(settled(self.run(data, meta) if self.run_takes_meta else self.run(data)))
        except Exception as err:
            return RUN_FAILED, error_message(err).encode('utf-8', 'replace'), None

    def score(self, method, items, metas):
        """metas: a function giving the items' Meta list, called only if the script takes one."""
        wanted = metas() if self.run_takes_meta or self.batch_takes_meta else [None] * len(items)
        if method == METHOD_BATCH and self.run_batch is not None:
            batched = self.try_run_batch(items, wanted)
            if batched is not None:
                return [encode_result(r) for r in batched]
        return [self.run_one(data, meta) for data, meta in zip(items, wanted)]

    def try_run_batch(self, items, metas):
        """None when run_batch raised or broke its contract: the caller then runs item by item, so only
        the culprit gets an error."""
        try:
            results = settled(self.run_batch(items, metas) if self.batch_takes_meta else self.run_batch(items))
        except Exception:
            return None
        try:
            results = list(results)
        except Exception:
            return None
        return results if len(results) == len(items) else None


class LoadError(Exception):
    pass


def found(module, attr):
    return type(getattr(module, attr)).__name__ if hasattr(module, attr) else 'nothing'


def decode_call(payload):
    """(id, method, items, metas): items are str (a data text) or bytes (a binary body); metas a
    function reading the metadata section into one Meta per item, for scripts that take one."""
    call_id, method, n = CALL_HEAD.unpack_from(payload, 0)
    at = CALL_HEAD.size
    kinds = payload[at:at + n]
    at += n
    ends = struct.unpack_from('<%dI' % n, payload, at)
    at += 4 * n
    (meta_len,) = struct.unpack_from('<I', payload, at)
    at += 4
    section = payload[at:at + meta_len]
    at += meta_len
    items = []
    start = at
    for i in range(n):
        end = at + ends[i]
        if kinds[i] == KIND_DATA_TEXT:
            items.append(payload[start:end].decode('utf-8'))
        elif kinds[i] == KIND_BYTES:
            items.append(payload[start:end])
        else:
            raise ValueError('item kind %d is not known to this runtime' % kinds[i])
        start = end
    return call_id, method, items, lambda: read_metas(section, n)


def encode_result_frame(call_id, scored):
    n = len(scored)
    statuses = bytearray(n)
    ends = [0] * n
    bodies = [None] * n
    content_types = []
    at = 0
    for i, (status, body, content_type) in enumerate(scored):
        statuses[i] = status
        bodies[i] = body
        at += len(body)
        ends[i] = at
        if status == BINARY:
            content_types.append(content_type)
    meta = json.dumps(content_types, ensure_ascii=False, separators=(',', ':')).encode('utf-8', 'replace') if content_types else b''
    head = [struct.pack('<II', call_id, n), bytes(statuses), struct.pack('<%dI' % n, *ends), struct.pack('<I', len(meta)), meta]
    return b''.join(head + bodies)


def main():
    proto_in, proto_out = take_protocol_fds()
    die_with_parent()
    # Ctrl-C in a terminal reaches the whole process group: the consumer finishes what is in flight and
    # then stops this process; dying here first would leave those messages unanswered.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    frame_type, payload = read_frame(proto_in)
    if frame_type != INIT:
        return
    init = json.loads(payload.decode('utf-8'))
    # The loop every awaitable runs on, set before the script is imported: a plain init (or the module
    # itself) that takes asyncio.get_event_loop() to open a pool on gets the loop its coroutines run on.
    asyncio.set_event_loop(_loop)
    try:
        loaded = Script(os.path.abspath(init['entryScript']))
        try:
            ready = json.dumps(loaded.info()).encode('utf-8')
        except Exception as err:
            raise LoadError('entry script %s: input_schema and output_schema must be JSON: %s' % (loaded.path, error_message(err)))
        settled(loaded.module.init())
    except LoadError as err:
        write_frame(proto_out, INIT_FAILED, str(err).encode('utf-8', 'replace'))
        return
    except BaseException as err:
        # A script that cannot load says so itself (LoadError); this is init() raising, or calling sys.exit().
        write_frame(proto_out, INIT_FAILED, ('entry script init() failed: %s' % described(err)).encode('utf-8', 'replace'))
        return
    write_frame(proto_out, READY, ready)

    while True:
        frame_type, payload = read_frame(proto_in)
        if frame_type is None:
            return
        if frame_type != CALL:
            continue
        call_id, method, items, metas = decode_call(payload)
        write_frame(proto_out, RESULT, encode_result_frame(call_id, loaded.score(method, items, metas)))


if __name__ == '__main__':
    main()
