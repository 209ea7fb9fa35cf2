// The safetensors format (https://github.com/huggingface/safetensors), browser-safe:
//   [8 bytes: header length N, little-endian u64] [N bytes: JSON header] [data section]
// The header maps each tensor name to { dtype, shape, data_offsets: [begin, end] } (byte offsets into
// the data section) and may hold "__metadata__", a string-to-string map. All data is little-endian.
//
// Decoding gives Float32Array for float dtypes (F64/F32/F16/BF16) and Int32Array for integer and
// bool dtypes (I64/U32 values must fit in int32). Encoding writes F32, F16, BF16 (from Float32Array)
// and I32, I64 (from Int32Array).

import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from './half.js';

export class SafetensorsError extends Error {
  constructor(message: string) {
    super(`safetensors: ${message}`);
    this.name = 'SafetensorsError';
  }
}

/** Bytes per element of every dtype the format defines. */
export const DTYPE_SIZES: Readonly<Record<string, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};

export type FloatDtype = 'F32' | 'F16' | 'BF16';
export type WriteDtype = FloatDtype | 'I32' | 'I64';
export type TensorData = Float32Array | Int32Array;

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte range inside the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Tensors in header order. */
  tensors: TensorInfo[];
  byName: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Absolute file offset of the data section (8 + header length). */
  dataOffset: number;
  /** Size of the data section in bytes, when known. */
  dataSize: number;
}

/** Largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_SIZE = 100_000_000;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Reads the 8-byte header length; `fileSize` bounds it. */
export function readHeaderLength(bytes: Uint8Array, fileSize: number = bytes.length): number {
  if (fileSize < 8 || bytes.length < 8) throw new SafetensorsError(`file too small (${fileSize} bytes) to hold the 8-byte header length`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 8);
  const lo = dv.getUint32(0, true), hi = dv.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (n > MAX_HEADER_SIZE) throw new SafetensorsError(`header length ${n} exceeds the ${MAX_HEADER_SIZE}-byte limit (corrupt file?)`);
  if (8 + n > fileSize) throw new SafetensorsError(`header length ${n} runs past the end of the file (${fileSize} bytes)`);
  return n;
}

/**
 * Parses the header. `bytes` must hold at least the first 8 + N bytes of the file; `fileSize` (default
 * bytes.length) is the whole file's size, used to check the data offsets.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, fileSize: number = bytes.length): SafetensorsHeader {
  const n = readHeaderLength(bytes, fileSize);
  if (bytes.length < 8 + n) throw new SafetensorsError(`need ${8 + n} bytes to read the header, got ${bytes.length}`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw new SafetensorsError('header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(`header is not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new SafetensorsError('header JSON is not an object');
  const dataOffset = 8 + n, dataSize = fileSize - dataOffset;
  const metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new SafetensorsError('__metadata__ is not an object');
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
        if (typeof s !== 'string') throw new SafetensorsError(`__metadata__ value "${k}" is not a string`);
        metadata[k] = s;
      }
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (t === null || typeof t !== 'object') throw new SafetensorsError(`tensor "${name}": entry is not an object`);
    if (typeof t.dtype !== 'string') throw new SafetensorsError(`tensor "${name}": missing dtype`);
    const size = DTYPE_SIZES[t.dtype];
    if (size === undefined) throw new SafetensorsError(`tensor "${name}": unknown dtype "${t.dtype}"`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`tensor "${name}": bad shape ${JSON.stringify(t.shape)}`);
    }
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0) || off[0] > off[1]) {
      throw new SafetensorsError(`tensor "${name}": bad data_offsets ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as [number, number];
    if (end > dataSize) {
      throw new SafetensorsError(`tensor "${name}": data_offsets [${begin}, ${end}] out of range (data section holds ${dataSize} bytes)`);
    }
    const shape = t.shape as number[];
    const want = numel(shape) * size;
    if (want !== end - begin) {
      throw new SafetensorsError(`tensor "${name}": shape [${shape.join(', ')}] of ${t.dtype} needs ${want} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`);
    }
    tensors.push({ name, dtype: t.dtype, shape: shape.slice(), begin, end });
  }
  const sorted = tensors.filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1], b = sorted[i];
    if (b.begin < a.end) {
      throw new SafetensorsError(`tensors "${a.name}" [${a.begin}, ${a.end}] and "${b.name}" [${b.begin}, ${b.end}] overlap`);
    }
  }
  return { tensors, byName: new Map(tensors.map((t) => [t.name, t])), metadata, dataOffset, dataSize };
}

/** A view of `bytes` as `T`, copying only when the bytes are misaligned. */
function typed<T>(bytes: Uint8Array, size: number, make: (buf: ArrayBufferLike, off: number, n: number) => T): T {
  const n = bytes.length / size;
  if (bytes.byteOffset % size === 0) return make(bytes.buffer, bytes.byteOffset, n);
  const copy = bytes.slice();
  return make(copy.buffer, 0, n);
}

export interface DecodeOptions {
  /**
   * Allow the result to share memory with `bytes` (F32/I32 only, aligned, little-endian host). Use it
   * when `bytes` was read for this tensor alone and is not reused. Default false: always a fresh array.
   */
  view?: boolean;
}

/** Decodes one tensor's raw little-endian bytes. Float dtypes give Float32Array, the others Int32Array. */
export function decodeTensorBytes(dtype: string, shape: readonly number[], bytes: Uint8Array, opts: DecodeOptions = {}, name = '?'): TensorData {
  const size = DTYPE_SIZES[dtype];
  if (size === undefined) throw new SafetensorsError(`tensor "${name}": unknown dtype "${dtype}"`);
  const n = numel(shape);
  if (bytes.length !== n * size) {
    throw new SafetensorsError(`tensor "${name}": shape [${shape.join(', ')}] of ${dtype} needs ${n * size} bytes, got ${bytes.length}`);
  }
  const dv = () => new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  switch (dtype) {
    case 'F32': {
      if (!LITTLE_ENDIAN) { const d = dv(), o = new Float32Array(n); for (let i = 0; i < n; i++) o[i] = d.getFloat32(4 * i, true); return o; }
      const v = typed(bytes, 4, (b, o, k) => new Float32Array(b, o, k));
      return opts.view && v.buffer === bytes.buffer ? v : v.buffer === bytes.buffer ? v.slice() : v;
    }
    case 'I32': {
      if (!LITTLE_ENDIAN) { const d = dv(), o = new Int32Array(n); for (let i = 0; i < n; i++) o[i] = d.getInt32(4 * i, true); return o; }
      const v = typed(bytes, 4, (b, o, k) => new Int32Array(b, o, k));
      return opts.view && v.buffer === bytes.buffer ? v : v.buffer === bytes.buffer ? v.slice() : v;
    }
    case 'F16':
    case 'BF16': {
      const src = LITTLE_ENDIAN ? typed(bytes, 2, (b, o, k) => new Uint16Array(b, o, k)) : (() => { const d = dv(), o = new Uint16Array(n); for (let i = 0; i < n; i++) o[i] = d.getUint16(2 * i, true); return o; })();
      return dtype === 'F16' ? f16ArrayToF32(src) : bf16ArrayToF32(src);
    }
    case 'F64': {
      const d = dv(), o = new Float32Array(n);
      for (let i = 0; i < n; i++) o[i] = d.getFloat64(8 * i, true);
      return o;
    }
    case 'I64':
    case 'U64':
    case 'U32': {
      const d = dv(), o = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = dtype === 'U32' ? d.getUint32(4 * i, true) : dtype === 'I64' ? d.getBigInt64(8 * i, true) : d.getBigUint64(8 * i, true);
        if (v > 2147483647 || v < -2147483648) throw new SafetensorsError(`tensor "${name}": ${dtype} value ${v} at index ${i} does not fit in int32`);
        o[i] = Number(v);
      }
      return o;
    }
    case 'I16': { const d = dv(), o = new Int32Array(n); for (let i = 0; i < n; i++) o[i] = d.getInt16(2 * i, true); return o; }
    case 'U16': { const d = dv(), o = new Int32Array(n); for (let i = 0; i < n; i++) o[i] = d.getUint16(2 * i, true); return o; }
    case 'I8': return Int32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, n));
    case 'U8':
    case 'BOOL': return Int32Array.from(bytes);
    default:
      throw new SafetensorsError(`tensor "${name}": decoding dtype ${dtype} is not supported`);
  }
}

/** Decodes a float tensor to Float32Array; integer tensors are an error naming the tensor. */
export function decodeFloatTensor(info: Pick<TensorInfo, 'name' | 'dtype' | 'shape'>, bytes: Uint8Array, opts: DecodeOptions = {}): Float32Array {
  if (!['F32', 'F16', 'BF16', 'F64'].includes(info.dtype)) {
    throw new SafetensorsError(`tensor "${info.name}": expected a float dtype, got ${info.dtype}`);
  }
  return decodeTensorBytes(info.dtype, info.shape, bytes, opts, info.name) as Float32Array;
}

/** Encodes tensor data as little-endian bytes of `dtype` (may share memory with `data` for F32/I32). */
export function encodeTensorData(data: TensorData, dtype: WriteDtype, name = '?'): Uint8Array {
  const isFloat = data instanceof Float32Array;
  if ((dtype === 'F32' || dtype === 'F16' || dtype === 'BF16') !== isFloat) {
    throw new SafetensorsError(`tensor "${name}": cannot write ${isFloat ? 'Float32Array' : 'Int32Array'} as ${dtype}`);
  }
  const n = data.length;
  switch (dtype) {
    case 'F32':
    case 'I32': {
      if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      const out = new Uint8Array(4 * n), d = new DataView(out.buffer);
      for (let i = 0; i < n; i++) dtype === 'F32' ? d.setFloat32(4 * i, data[i], true) : d.setInt32(4 * i, data[i], true);
      return out;
    }
    case 'F16':
    case 'BF16': {
      const h = dtype === 'F16' ? f32ArrayToF16(data as Float32Array) : f32ArrayToBf16(data as Float32Array);
      if (LITTLE_ENDIAN) return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
      const out = new Uint8Array(2 * n), d = new DataView(out.buffer);
      for (let i = 0; i < n; i++) d.setUint16(2 * i, h[i], true);
      return out;
    }
    case 'I64': {
      const out = new Uint8Array(8 * n), d = new DataView(out.buffer);
      for (let i = 0; i < n; i++) d.setBigInt64(8 * i, BigInt(data[i]), true);
      return out;
    }
    default:
      throw new SafetensorsError(`tensor "${name}": unknown dtype "${dtype as string}" for writing`);
  }
}

export interface TensorEntrySpec {
  name: string;
  shape: readonly number[];
  dtype: WriteDtype;
}

export interface SafetensorsLayout {
  /** The 8 length bytes and the JSON header, padded with spaces so the data starts 8-byte aligned. */
  headerBytes: Uint8Array;
  /** [begin, end) inside the data section, in the order given. */
  offsets: Array<[number, number]>;
  totalSize: number;
}

/** Lays out a file: the header bytes and each tensor's byte range, in the order given. */
export function planSafetensors(specs: readonly TensorEntrySpec[], metadata?: Record<string, string>): SafetensorsLayout {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(`__metadata__ value "${k}" is not a string`);
    }
    header.__metadata__ = metadata;
  }
  const offsets: Array<[number, number]> = [];
  const seen = new Set<string>();
  let pos = 0;
  for (const s of specs) {
    if (s.name === '__metadata__') throw new SafetensorsError('"__metadata__" cannot be a tensor name');
    if (seen.has(s.name)) throw new SafetensorsError(`duplicate tensor name "${s.name}"`);
    seen.add(s.name);
    const size = DTYPE_SIZES[s.dtype];
    if (size === undefined || !['F32', 'F16', 'BF16', 'I32', 'I64'].includes(s.dtype)) {
      throw new SafetensorsError(`tensor "${s.name}": unknown dtype "${s.dtype}" for writing (F32, F16, BF16, I32, I64)`);
    }
    if (!s.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new SafetensorsError(`tensor "${s.name}": bad shape ${JSON.stringify(s.shape)}`);
    const bytes = numel(s.shape) * size;
    header[s.name] = { dtype: s.dtype, shape: [...s.shape], data_offsets: [pos, pos + bytes] };
    offsets.push([pos, pos + bytes]);
    pos += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const headerBytes = new Uint8Array(8 + padded);
  headerBytes.fill(0x20, 8);
  headerBytes.set(json, 8);
  const dv = new DataView(headerBytes.buffer);
  dv.setUint32(0, padded % 2 ** 32, true);
  dv.setUint32(4, Math.floor(padded / 2 ** 32), true);
  return { headerBytes, offsets, totalSize: headerBytes.length + pos };
}

export interface TensorToWrite {
  name: string;
  shape: readonly number[];
  data: TensorData;
  /** Default: F32 for Float32Array, I32 for Int32Array. */
  dtype?: WriteDtype;
}

function checkLength(t: { name: string; shape: readonly number[] }, data: TensorData): void {
  if (data.length !== numel(t.shape)) {
    throw new SafetensorsError(`tensor "${t.name}": shape [${t.shape.join(', ')}] has ${numel(t.shape)} elements but the data has ${data.length}`);
  }
}

export function defaultDtype(data: TensorData): WriteDtype {
  return data instanceof Float32Array ? 'F32' : 'I32';
}

/** Serializes tensors (in the order given) and optional string metadata into one buffer. */
export function serializeSafetensors(tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const specs = tensors.map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype ?? defaultDtype(t.data) }));
  const plan = planSafetensors(specs, metadata);
  const out = new Uint8Array(plan.totalSize);
  out.set(plan.headerBytes, 0);
  tensors.forEach((t, i) => {
    checkLength(t, t.data);
    out.set(encodeTensorData(t.data, specs[i].dtype, t.name), plan.headerBytes.length + plan.offsets[i][0]);
  });
  return out;
}

/** Encodes one tensor for a streamed write, checking its length against the shape. */
export function encodeForWrite(spec: TensorEntrySpec, data: TensorData): Uint8Array {
  checkLength(spec, data);
  return encodeTensorData(data, spec.dtype, spec.name);
}

export interface DecodedTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: TensorData;
}

/** Parses a whole safetensors file held in memory. Tensors are fresh copies unless `view` is set. */
export function readSafetensors(bytes: Uint8Array, opts: DecodeOptions = {}): { metadata: Record<string, string>; tensors: Map<string, DecodedTensor> } {
  const h = parseSafetensorsHeader(bytes);
  const tensors = new Map<string, DecodedTensor>();
  for (const t of h.tensors) {
    const raw = bytes.subarray(h.dataOffset + t.begin, h.dataOffset + t.end);
    tensors.set(t.name, { name: t.name, dtype: t.dtype, shape: t.shape, data: decodeTensorBytes(t.dtype, t.shape, raw, opts, t.name) });
  }
  return { metadata: h.metadata, tensors };
}

/** Random access to the tensors of an in-memory safetensors buffer (e.g. a fetched file in a browser). */
export class SafetensorsBuffer {
  readonly header: SafetensorsHeader;
  constructor(readonly bytes: Uint8Array) {
    this.header = parseSafetensorsHeader(bytes);
  }
  get names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }
  info(name: string): TensorInfo {
    const t = this.header.byName.get(name);
    if (!t) throw new SafetensorsError(`no tensor named "${name}"`);
    return t;
  }
  raw(name: string): Uint8Array {
    const t = this.info(name);
    return this.bytes.subarray(this.header.dataOffset + t.begin, this.header.dataOffset + t.end);
  }
  tensor(name: string): TensorData {
    const t = this.info(name);
    return decodeTensorBytes(t.dtype, t.shape, this.raw(name), {}, name);
  }
  float32(name: string): Float32Array {
    return decodeFloatTensor(this.info(name), this.raw(name));
  }
}
