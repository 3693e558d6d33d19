import assert from 'node:assert/strict';
import type { EventLoopUtilization } from 'node:perf_hooks';
import { test } from 'node:test';
import { LoopLoad } from '../../src/loop-load.js';

/** A loop whose active and idle milliseconds the test advances, read as performance.eventLoopUtilization reads them. */
function fakeLoop() {
  let clock = 0;
  let active = 0;
  const read = (now?: EventLoopUtilization, before?: EventLoopUtilization): EventLoopUtilization => {
    if (now && before) {
      const a = now.active - before.active;
      const total = a + now.idle - before.idle;
      return { active: a, idle: now.idle - before.idle, utilization: total > 0 ? a / total : 0 };
    }
    return { active, idle: clock - active, utilization: clock > 0 ? active / clock : 0 };
  };
  return {
    load: new LoopLoad(100, read, () => clock),
    work: (ms: number) => {
      clock += ms;
      active += ms;
    },
    idle: (ms: number) => {
      clock += ms;
    },
  };
}

test('the load is the share of the last complete window the loop worked, read once a window', () => {
  const loop = fakeLoop();
  loop.work(5_000); // boot: before the first read, never counted
  assert.equal(loop.load.utilization, 0, 'no window has passed yet');
  loop.work(70);
  loop.idle(30);
  assert.equal(loop.load.utilization, 0.7);
  loop.work(50);
  assert.equal(loop.load.utilization, 0.7, 'the window in progress does not count yet');
  loop.idle(50);
  assert.equal(loop.load.utilization, 0.5);
});

test('a window read long after it began covers the whole stretch: an idle consumer reads as idle', () => {
  const loop = fakeLoop();
  void loop.load.utilization;
  loop.work(100);
  assert.equal(loop.load.utilization, 1);
  loop.work(10);
  loop.idle(9_990);
  assert.equal(loop.load.utilization, 0.001);
});
