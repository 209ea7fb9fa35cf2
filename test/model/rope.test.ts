import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ropeTables } from '../../src/model/rope.js';

test('RoPE angles stay exact past 2^24 positions', () => {
  const hs = 16, base = 10000;
  for (const p of [0, 5, 2 ** 24 + 1, 2 ** 24 + 3, 1_000_000_007, 2 ** 31 - 2]) {
    const { cos, sin } = ropeTables(Int32Array.of(p), 1, hs, base);
    for (let m = 0; m < hs / 2; m++) {
      const a = p * base ** ((-2 * m) / hs);
      assert.ok(Math.abs(cos[m] - Math.cos(a)) < 1e-6 && Math.abs(sin[m] - Math.sin(a)) < 1e-6, `p=${p} m=${m}`);
    }
  }
  // a float32 angle would have collapsed these two neighbouring positions onto one
  const a = ropeTables(Int32Array.of(2 ** 24 + 1), 1, hs, base), b = ropeTables(Int32Array.of(2 ** 24), 1, hs, base);
  assert.notEqual(a.cos[0], b.cos[0]);
  assert.equal(Math.fround(2 ** 24 + 1), 2 ** 24);
});

test('tables follow each sequence\'s own positions', () => {
  const { cos } = ropeTables(Int32Array.of(3, 100), 2, 4, 10000);
  assert.equal(cos.length, 2 * 2 * 2);
  assert.ok(Math.abs(cos[0] - Math.cos(3)) < 1e-7);
  assert.ok(Math.abs(cos[2] - Math.cos(4)) < 1e-7);
  assert.ok(Math.abs(cos[4] - Math.cos(100)) < 1e-6);
});
