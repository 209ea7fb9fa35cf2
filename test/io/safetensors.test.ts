import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import {
  parseSafetensorsHeader, serializeSafetensors, readSafetensors, decodeTensorBytes, encodeTensorData, SafetensorsBuffer,
  SafetensorsError,
} from '../../src/io/safetensors.js';
import { f32ToBf16Bits, bf16BitsToF32, f32ToF16Bits, f16BitsToF32 } from '../../src/io/half.js';
import { SafetensorsFile, readSafetensorsFile, writeSafetensorsFile, writeFileAtomic, writeJsonAtomic, readJsonFile } from '../../src/node/files.js';
import { golden, withTmp } from './paths.js';

/** A file as Python's safetensors would write it: u64 length, JSON, data. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

const f32bytes = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);

test('parses a hand-made file (as Python writes it) and decodes F32', () => {
  const bytes = rawFile({ __metadata__: { format: 'pt' }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] }, a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, f32bytes([1, 2, 3]));
  const { metadata, tensors } = readSafetensors(bytes);
  assert.deepEqual(metadata, { format: 'pt' });
  assert.deepEqual([...tensors.keys()], ['b', 'a']);
  assert.deepEqual([...tensors.get('a')!.data], [1, 2]);
  assert.deepEqual([...tensors.get('b')!.data], [3]);
  assert.deepEqual(tensors.get('a')!.shape, [2]);
});

test('serialize -> parse round trip, all write dtypes, metadata, 8-byte aligned data section', () => {
  const a = new Float32Array([0, -1.5, 3.25, 1e-6, 65504, -Infinity]);
  const ids = new Int32Array([0, 1, -7, 2147483647, -2147483648]);
  const bytes = serializeSafetensors([
    { name: 'a32', shape: [2, 3], data: a },
    { name: 'a16', shape: [6], data: a, dtype: 'F16' },
    { name: 'abf', shape: [3, 2], data: a, dtype: 'BF16' },
    { name: 'ids', shape: [5], data: ids },
    { name: 'ids64', shape: [5], data: ids, dtype: 'I64' },
    { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
    { name: 'scalar', shape: [], data: new Float32Array([7]) },
  ], { note: 'hello', json: '{"x":1}' });
  const h = parseSafetensorsHeader(bytes);
  assert.equal(h.dataOffset % 8, 0);
  assert.deepEqual(h.metadata, { note: 'hello', json: '{"x":1}' });
  const { tensors } = readSafetensors(bytes);
  assert.deepEqual([...tensors.get('a32')!.data], [...a]);
  assert.deepEqual(tensors.get('a32')!.shape, [2, 3]);
  assert.equal(tensors.get('a16')!.dtype, 'F16');
  assert.deepEqual([...tensors.get('a16')!.data], [...a].map((x) => f16BitsToF32(f32ToF16Bits(x))));
  assert.deepEqual([...tensors.get('abf')!.data], [...a].map((x) => bf16BitsToF32(f32ToBf16Bits(x))));
  assert.ok(tensors.get('ids')!.data instanceof Int32Array);
  assert.deepEqual([...tensors.get('ids')!.data], [...ids]);
  assert.deepEqual([...tensors.get('ids64')!.data], [...ids]);
  assert.equal(tensors.get('empty')!.data.length, 0);
  assert.deepEqual([...tensors.get('scalar')!.data], [7]);
  // decoded arrays are copies: changing the file buffer does not change them
  bytes.fill(0, h.dataOffset);
  assert.equal(tensors.get('a32')!.data[1], -1.5);
});

test('decodes misaligned data, F64, I64, small integer dtypes', () => {
  const data = new Uint8Array(1 + 8 + 16 + 2 + 3);
  data.set(f32bytes([5, 6]), 1); // misaligned F32 at offset 1
  const dv = new DataView(data.buffer);
  dv.setFloat64(9, 0.1, true);
  dv.setBigInt64(17, -3n, true);
  dv.setInt16(25, -300, true);
  data.set([1, 0, 1], 27);
  const bytes = rawFile({
    pad: { dtype: 'U8', shape: [1], data_offsets: [0, 1] },
    f: { dtype: 'F32', shape: [2], data_offsets: [1, 9] },
    d: { dtype: 'F64', shape: [1], data_offsets: [9, 17] },
    l: { dtype: 'I64', shape: [1], data_offsets: [17, 25] },
    s: { dtype: 'I16', shape: [1], data_offsets: [25, 27] },
    b: { dtype: 'BOOL', shape: [3], data_offsets: [27, 30] },
  }, data);
  const buf = new SafetensorsBuffer(bytes);
  assert.deepEqual([...buf.float32('f')], [5, 6]);
  assert.equal(buf.float32('d')[0], Math.fround(0.1));
  assert.deepEqual([...buf.tensor('l')], [-3]);
  assert.deepEqual([...buf.tensor('s')], [-300]);
  assert.deepEqual([...buf.tensor('b')], [1, 0, 1]);
  assert.throws(() => buf.float32('l'), /tensor "l": expected a float dtype, got I64/);
  assert.throws(() => buf.info('nope'), /no tensor named "nope"/);
});

test('I64 values outside int32 are an error naming the tensor', () => {
  const raw = new Uint8Array(8);
  new DataView(raw.buffer).setBigInt64(0, 2n ** 40n, true);
  assert.throws(() => decodeTensorBytes('I64', [1], raw, {}, 'big'), /tensor "big": I64 value 1099511627776 at index 0 does not fit in int32/);
});

test('malformed files give errors naming the problem', () => {
  const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const E = (re: RegExp) => (e: unknown) => e instanceof SafetensorsError && re.test(e.message);
  assert.throws(() => parseSafetensorsHeader(new Uint8Array(5)), E(/file too small \(5 bytes\)/));
  const long = rawFile(ok, f32bytes([1, 2]));
  new DataView(long.buffer).setUint32(0, 1000, true);
  assert.throws(() => parseSafetensorsHeader(long), E(/header length 1000 runs past the end of the file \(\d+ bytes\)/));
  const huge = rawFile(ok, f32bytes([1, 2]));
  new DataView(huge.buffer).setUint32(4, 1, true);
  assert.throws(() => parseSafetensorsHeader(huge), E(/exceeds the 100000000-byte limit/));
  assert.throws(() => parseSafetensorsHeader(rawFile(null, f32bytes([1, 2]), '{"a": {"dtype": "F32",')), E(/header is not valid JSON/));
  assert.throws(() => parseSafetensorsHeader(rawFile(null, f32bytes([1, 2]), '[1,2]')), E(/header JSON is not an object/));
  assert.throws(() => parseSafetensorsHeader(rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, f32bytes([1]))),
    E(/tensor "a": data_offsets \[0, 8\] out of range \(data section holds 4 bytes\)/));
  assert.throws(() => parseSafetensorsHeader(rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32bytes([1, 2]))),
    E(/tensors "a" \[0, 8\] and "b" \[4, 8\] overlap/));
  assert.throws(() => parseSafetensorsHeader(rawFile({ a: { dtype: 'Q7', shape: [2], data_offsets: [0, 8] } }, f32bytes([1, 2]))),
    E(/tensor "a": unknown dtype "Q7"/));
  assert.throws(() => parseSafetensorsHeader(rawFile({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32bytes([1, 2]))),
    E(/tensor "a": shape \[3\] of F32 needs 12 bytes but data_offsets \[0, 8\] span 8/));
  assert.throws(() => parseSafetensorsHeader(rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, f32bytes([1, 2]))),
    E(/tensor "a": bad data_offsets \[8,0\]/));
  assert.throws(() => parseSafetensorsHeader(rawFile({ a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, f32bytes([1, 2]))),
    E(/tensor "a": bad shape \[-2\]/));
  assert.throws(() => parseSafetensorsHeader(rawFile({ __metadata__: { n: 1 }, ...ok }, f32bytes([1, 2]))),
    E(/__metadata__ value "n" is not a string/));
  // writing
  assert.throws(() => serializeSafetensors([{ name: 'a', shape: [3], data: new Float32Array(2) }]), E(/tensor "a": shape \[3\] has 3 elements but the data has 2/));
  assert.throws(() => serializeSafetensors([{ name: 'a', shape: [2], data: new Int32Array(2), dtype: 'F16' }]), E(/cannot write Int32Array as F16/));
  assert.throws(() => serializeSafetensors([{ name: 'a', shape: [1], data: new Float32Array(1) }, { name: 'a', shape: [1], data: new Float32Array(1) }]), E(/duplicate tensor name "a"/));
  assert.throws(() => encodeTensorData(new Float32Array(1), 'I32', 'x'), E(/tensor "x": cannot write Float32Array as I32/));
});

test('reads the golden expected.safetensors (int32 ids + float32 logits, written by Python)', async () => {
  const { tensors } = await readSafetensorsFile(golden('samba-gqa-tiny', 'expected.safetensors'));
  const ids = tensors.get('input_ids')!, logits = tensors.get('logits')!;
  assert.equal(ids.dtype, 'I32');
  assert.deepEqual(ids.shape, [2, 40]);
  assert.ok(ids.data instanceof Int32Array && ids.data.every((x) => x >= 0 && x < 256));
  assert.deepEqual(logits.shape, [2, 40, 256]);
  assert.ok(logits.data instanceof Float32Array && logits.data.every(Number.isFinite));
});

test('SafetensorsFile reads tensor by tensor; bytes match an in-memory parse', async () => {
  const file = golden('samba-tiny', 'model.safetensors');
  const whole = readSafetensors(new Uint8Array(await readFile(file)));
  const f = await SafetensorsFile.open(file);
  try {
    assert.equal(f.names.length, whole.tensors.size);
    for (const name of f.names.slice(0, 10)) {
      const t = await f.readFloat32(name);
      assert.deepEqual(t, whole.tensors.get(name)!.data);
    }
    let n = 0;
    for await (const t of f.tensors()) { n++; assert.deepEqual(t.shape, whole.tensors.get(t.name)!.shape); }
    assert.equal(n, whole.tensors.size);
    await assert.rejects(f.readFloat32('nope'), /no tensor named "nope"/);
  } finally {
    await f.close();
  }
});

test('writeSafetensorsFile streams lazily, atomically, and matches serializeSafetensors', async () => {
  await withTmp(async (dir) => {
    const p = path.join(dir, 'sub', 'w.safetensors');
    const a = new Float32Array([1, 2, 3, 4, 5, 6]).map((x) => x / 7);
    const order: string[] = [];
    await writeSafetensorsFile(p, [
      { name: 'x', shape: [2, 3], data: () => { order.push('x'); return a; } },
      { name: 'y', shape: [6], dtype: 'BF16', data: async () => { order.push('y'); return a; } },
      { name: 'ids', shape: [2], data: new Int32Array([3, 4]) },
    ], { metadata: { k: 'v' } });
    assert.deepEqual(order, ['x', 'y']);
    const disk = new Uint8Array(await readFile(p));
    const mem = serializeSafetensors([
      { name: 'x', shape: [2, 3], data: a }, { name: 'y', shape: [6], data: a, dtype: 'BF16' }, { name: 'ids', shape: [2], data: new Int32Array([3, 4]) },
    ], { k: 'v' });
    assert.deepEqual(disk, mem);
    assert.deepEqual(await readdir(path.dirname(p)), ['w.safetensors']);
    // a failure part-way leaves the old file untouched and no .tmp behind
    await assert.rejects(writeSafetensorsFile(p, [
      { name: 'x', shape: [2], data: new Float32Array(2) },
      { name: 'y', shape: [2], data: () => { throw new Error('producer failed'); } },
    ]), /producer failed/);
    assert.deepEqual(new Uint8Array(await readFile(p)), mem);
    assert.deepEqual(await readdir(path.dirname(p)), ['w.safetensors']);
    await assert.rejects(writeSafetensorsFile(p, [{ name: 'x', shape: [3], data: new Float32Array(2) }]), /shape \[3\] has 3 elements but the data has 2/);
    assert.deepEqual(await readdir(path.dirname(p)), ['w.safetensors']);
  });
});

test('SafetensorsFile.open names the file in header errors; truncated data is caught', async () => {
  await withTmp(async (dir) => {
    const p = path.join(dir, 'bad.safetensors');
    await writeFile(p, rawFile(null, new Uint8Array(0), '{"a": '));
    await assert.rejects(SafetensorsFile.open(p), (e: Error) => e.message.includes(p) && /header is not valid JSON/.test(e.message));
    const good = serializeSafetensors([{ name: 'a', shape: [4], data: new Float32Array(4) }]);
    await writeFile(p, good.subarray(0, good.length - 4));
    await assert.rejects(SafetensorsFile.open(p), /tensor "a": data_offsets \[0, 16\] out of range/);
  });
});

test('writeFileAtomic / writeJsonAtomic replace files whole', async () => {
  await withTmp(async (dir) => {
    const p = path.join(dir, 'c.json');
    await writeJsonAtomic(p, { a: 1 });
    await writeJsonAtomic(p, { b: [1, 2] });
    assert.deepEqual(await readJsonFile(p), { b: [1, 2] });
    assert.equal((await readFile(p, 'utf8')).endsWith('\n'), true);
    await writeFileAtomic(path.join(dir, 't.bin'), new Uint8Array([1, 2, 3]));
    assert.equal((await stat(path.join(dir, 't.bin'))).size, 3);
    assert.deepEqual((await readdir(dir)).sort(), ['c.json', 't.bin']);
    await writeFile(p, '{oops');
    await assert.rejects(readJsonFile(p), (e: Error) => e.message.startsWith(p) && /not valid JSON/.test(e.message));
  });
});
