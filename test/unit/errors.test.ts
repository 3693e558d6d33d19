import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tsImport } from 'tsx/esm/api';
import { BootError, ScoringError, replyText } from '../../src/errors.js';

test('a ScoringError carries its code, its message and its cause', () => {
  const cause = new Error('inner');
  const err = new ScoringError('SHAPE', 'wrong shape', { cause });
  assert.ok(err instanceof Error);
  assert.equal(err.name, 'ScoringError');
  assert.equal(err.code, 'SHAPE');
  assert.equal(err.message, 'wrong shape');
  assert.equal(err.cause, cause);
});

test('a ScoringError made by another copy of errors.ts (the built-in script loaded in a module namespace of its own) is still a ScoringError', async () => {
  const copy = (await tsImport('../../src/errors.ts', import.meta.url)) as typeof import('../../src/errors.js');
  assert.notEqual(copy.ScoringError, ScoringError, 'tsImport loads a second copy');
  const err = new copy.ScoringError('SHAPE', 'wrong shape');
  assert.ok(err instanceof ScoringError);
  assert.ok(new ScoringError('TYPE', 'x') instanceof copy.ScoringError);
  assert.ok(!(new Error('plain') instanceof ScoringError));
  assert.ok(!(new BootError('boot') instanceof ScoringError));
  assert.ok(!((null as unknown as object) instanceof ScoringError));
});

test('a BootError is an Error named BootError', () => {
  const err = new BootError('config PREFETCH: expected an integer from 1 to 65535, got "0"');
  assert.ok(err instanceof Error);
  assert.equal(err.name, 'BootError');
});

test('replyText is the error message, on one line', () => {
  assert.equal(replyText(new Error('model says no')), 'model says no');
  assert.equal(replyText(new Error('first line\nsecond line\r\n   third')), 'first line second line third');
  assert.equal(replyText(new Error('  padded \n')), 'padded');
  assert.equal(replyText(new ScoringError('TYPE', 'expects float32')), 'expects float32');
});

test('replyText never carries a stack trace', () => {
  const err = new Error('boom');
  assert.equal(replyText(err), 'boom');
  assert.ok(!replyText(err).includes('    at '));
});

test('replyText truncates a long message to 1000 characters', () => {
  const text = replyText(new Error('x'.repeat(5000)));
  assert.equal(text.length, 1000);
  assert.ok(text.endsWith('...'));
  assert.equal(replyText(new Error('y'.repeat(1000))), 'y'.repeat(1000), 'exactly 1000 is kept whole');
});

test('replyText handles throws that are not Errors', () => {
  assert.equal(replyText('a thrown string'), 'a thrown string');
  assert.equal(replyText(42), '42');
  assert.equal(replyText(null), 'null');
  assert.equal(replyText(undefined), 'undefined');
  assert.equal(replyText({ reason: 'x' }), '[object Object]');
  assert.equal(replyText(Symbol('s')), 'Symbol(s)');
  assert.equal(replyText(Object.create(null)), 'run failed with an unprintable value');
  assert.equal(
    replyText({
      toString: () => {
        throw new Error('no');
      },
    }),
    'run failed with an unprintable value',
  );
});

test('replyText says something when the message is empty', () => {
  assert.equal(replyText(new Error('')), 'run failed without a message');
  assert.equal(replyText(''), 'run failed without a message');
  assert.equal(replyText(' \n '), 'run failed without a message');
});
