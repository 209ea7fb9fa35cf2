import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  f32ToF16Bits, f16BitsToF32, f32ToBf16Bits, bf16BitsToF32, f16ArrayToF32, bf16ArrayToF32, f32ArrayToF16, f32ArrayToBf16,
} from '../../src/io/half.js';

const fromBits = (b: number) => new Float32Array(new Uint32Array([b >>> 0]).buffer)[0];
const hex = (x: number) => '0x' + x.toString(16).padStart(4, '0');

test('f16 encode: known bit patterns, round to nearest even, subnormals, overflow, inf, nan', () => {
  const cases: Array<[number, number]> = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [65504, 0x7bff],
    [65519, 0x7bff], // just below the midpoint to 65536: rounds down
    [65520, 0x7c00], // midpoint between 65504 (odd mantissa) and 65536: ties to even -> Infinity
    [1e6, 0x7c00], [-1e6, 0xfc00], [Infinity, 0x7c00], [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [1023 * 2 ** -24, 0x03ff], // largest subnormal
    [2 ** -25, 0x0000], // half the smallest subnormal: tie to even (0)
    [1.5 * 2 ** -25, 0x0001], // above the tie
    [3 * 2 ** -25, 0x0002], // tie between 1 and 2 units: even (2)
    [5 * 2 ** -25, 0x0002], // tie between 2 and 3 units: even (2)
    [2 ** -26, 0x0000], [-(2 ** -24), 0x8001],
    [1023.5 * 2 ** -24, 0x0400], // subnormal rounding carries into the smallest normal
    [1 + 2 ** -11, 0x3c00], // tie, even mantissa stays
    [1 + 3 * 2 ** -11, 0x3c02], // tie, odd mantissa rounds up
    [1 + 2 ** -11 + 2 ** -20, 0x3c01], // above the tie
    [0.1, 0x2e66], [1 / 3, 0x3555], [Math.PI, 0x4248],
  ];
  for (const [x, bits] of cases) assert.equal(hex(f32ToF16Bits(x)), hex(bits), `f16(${x})`);
  const nan = f32ToF16Bits(NaN);
  assert.equal(nan & 0x7c00, 0x7c00);
  assert.notEqual(nan & 0x03ff, 0);
  // a NaN whose payload sits only in the low bits must stay NaN (not become Infinity)
  const lowNan = f32ToF16Bits(fromBits(0x7f800001));
  assert.equal(lowNan & 0x7c00, 0x7c00);
  assert.notEqual(lowNan & 0x03ff, 0);
});

test('f16 decode: known bit patterns (exact)', () => {
  assert.equal(f16BitsToF32(0x3c00), 1);
  assert.equal(f16BitsToF32(0xc000), -2);
  assert.equal(f16BitsToF32(0x0001), 2 ** -24);
  assert.equal(f16BitsToF32(0x03ff), 1023 * 2 ** -24);
  assert.equal(f16BitsToF32(0x0400), 2 ** -14);
  assert.equal(f16BitsToF32(0x7bff), 65504);
  assert.equal(f16BitsToF32(0x3555), 0.333251953125);
  assert.equal(f16BitsToF32(0x7c00), Infinity);
  assert.equal(f16BitsToF32(0xfc00), -Infinity);
  assert.ok(Number.isNaN(f16BitsToF32(0x7e00)));
  assert.ok(Number.isNaN(f16BitsToF32(0xfc01)));
  assert.ok(Object.is(f16BitsToF32(0x8000), -0));
});

test('f16: every non-NaN pattern survives decode -> encode; the array versions agree', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const f = f16ArrayToF32(all);
  for (let i = 0; i < 65536; i++) {
    if (Number.isNaN(f[i])) continue;
    assert.equal(f32ToF16Bits(f[i]), i, `pattern ${hex(i)}`);
    assert.ok(Object.is(f[i], f16BitsToF32(i)));
  }
  const back = f32ArrayToF16(f);
  for (let i = 0; i < 65536; i++) if (!Number.isNaN(f[i])) assert.equal(back[i], i);
});

test('f16 encode: random values round to the nearest representable (ties to even)', () => {
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < 20000; i++) {
    const x = Math.fround((rnd() - 0.5) * 2 ** (rnd() * 40 - 28));
    const h = f32ToF16Bits(x);
    const y = f16BitsToF32(h);
    // neighbours of h in magnitude
    const mag = h & 0x7fff, sign = h & 0x8000;
    for (const m of [mag - 1, mag + 1]) {
      if (m < 0 || m > 0x7c00) continue;
      const z = f16BitsToF32(sign | m);
      const dy = Math.abs(x - y), dz = Math.abs(x - z);
      assert.ok(dy < dz || (dy === dz && (mag & 1) === 0), `x=${x} -> ${hex(h)} but ${hex(sign | m)} is closer`);
    }
  }
});

test('bf16 encode/decode: known bit patterns, ties to even, nan, inf, subnormals', () => {
  const cases: Array<[number, number]> = [
    [0x3f800000, 0x3f80], // 1
    [0x3f808000, 0x3f80], // tie, even stays
    [0x3f818000, 0x3f82], // tie, odd rounds up
    [0x3f808001, 0x3f81], // above the tie
    [0x3f807fff, 0x3f80], // below the tie
    [0x7f7fffff, 0x7f80], // max float rounds to Infinity
    [0x7f800000, 0x7f80], [0xff800000, 0xff80], // ±Infinity
    [0x80000000, 0x8000], // -0
    [0x00000001, 0x0000], // tiny subnormal -> 0
    [0x00008000, 0x0000], // subnormal tie -> even (0)
    [0x00018000, 0x0002], // subnormal tie -> even (2)
    [0x00010000, 0x0001], // exact bf16 subnormal
    [0xc0490fdb, 0xc049], // -pi
  ];
  for (const [f, b] of cases) assert.equal(hex(f32ToBf16Bits(fromBits(f))), hex(b), `bits 0x${f.toString(16)}`);
  assert.equal(f32ToBf16Bits(NaN) & 0x7f80, 0x7f80);
  assert.notEqual(f32ToBf16Bits(NaN) & 0x7f, 0);
  const lowNan = f32ToBf16Bits(fromBits(0x7f800001));
  assert.equal(hex(lowNan), hex(0x7fc0));
  assert.equal(bf16BitsToF32(0x3f80), 1);
  assert.equal(bf16BitsToF32(0x0001), 2 ** -133);
  assert.equal(bf16BitsToF32(0x7f80), Infinity);
  assert.ok(Number.isNaN(bf16BitsToF32(0x7fc1)));
  // array versions agree with the scalar ones
  const xs = new Float32Array([1, -1.5, 3.14159, 1e-40, 6.5e4, NaN, -Infinity, fromBits(0x3f818000)]);
  const b = f32ArrayToBf16(xs);
  xs.forEach((x, i) => assert.equal(b[i], f32ToBf16Bits(x)));
  const back = bf16ArrayToF32(b);
  b.forEach((h, i) => assert.ok(Object.is(back[i], bf16BitsToF32(h))));
});
