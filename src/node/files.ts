// Node-only file helpers: safetensors read tensor by tensor through a file handle (the model is never
// held twice in memory), safetensors written tensor by tensor to `path.tmp` then fsync + rename, and
// atomic JSON writes.

import { open, rename, unlink, readFile, mkdir } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import * as nodePath from 'node:path';
import {
  SafetensorsError, parseSafetensorsHeader, readHeaderLength, decodeTensorBytes, decodeFloatTensor, planSafetensors,
  encodeForWrite, defaultDtype,
} from '../io/safetensors.js';
import type { SafetensorsHeader, TensorInfo, TensorData, DecodedTensor, WriteDtype } from '../io/safetensors.js';

const CHUNK = 1 << 30;

/** Reads exactly `length` bytes at `position` into a fresh (aligned) buffer. */
export async function readRange(fh: FileHandle, position: number, length: number, what = 'file'): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(out, done, Math.min(CHUNK, length - done), position + done);
    if (bytesRead === 0) throw new SafetensorsError(`${what}: unexpected end of file at byte ${position + done} (wanted ${length} bytes from ${position})`);
    done += bytesRead;
  }
  return out;
}

async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(CHUNK, bytes.length - done), position + done);
    done += bytesWritten;
  }
}

/** A safetensors file opened for random access: the header is parsed, tensors are read on demand. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private fh: FileHandle | undefined,
    readonly header: SafetensorsHeader,
    readonly fileSize: number,
  ) {}

  static async open(path: string): Promise<SafetensorsFile> {
    const fh = await open(path, 'r');
    try {
      const size = (await fh.stat()).size;
      let header: SafetensorsHeader;
      try {
        const first = await readRange(fh, 0, Math.min(8, size), path);
        const n = readHeaderLength(first, size);
        header = parseSafetensorsHeader(await readRange(fh, 0, 8 + n, path), size);
      } catch (e) {
        if (e instanceof SafetensorsError) throw new SafetensorsError(`${path}: ${e.message.replace(/^safetensors: /, '')}`);
        throw e;
      }
      return new SafetensorsFile(path, fh, header, size);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  get names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  has(name: string): boolean {
    return this.header.byName.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.header.byName.get(name);
    if (!t) throw new SafetensorsError(`${this.path}: no tensor named "${name}"`);
    return t;
  }

  private handle(): FileHandle {
    if (!this.fh) throw new Error(`${this.path}: file is closed`);
    return this.fh;
  }

  /** The tensor's raw little-endian bytes, in a buffer of its own. */
  async readRaw(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    return readRange(this.handle(), this.header.dataOffset + t.begin, t.end - t.begin, this.path);
  }

  /** Float dtypes decode to Float32Array, integer dtypes to Int32Array. */
  async read(name: string): Promise<TensorData> {
    const t = this.info(name);
    return decodeTensorBytes(t.dtype, t.shape, await this.readRaw(name), { view: true }, name);
  }

  async readFloat32(name: string): Promise<Float32Array> {
    return decodeFloatTensor(this.info(name), await this.readRaw(name), { view: true });
  }

  /** Every tensor, one at a time, in file order (sequential reads). */
  async *tensors(): AsyncGenerator<DecodedTensor> {
    const order = [...this.header.tensors].sort((a, b) => a.begin - b.begin);
    for (const t of order) yield { name: t.name, dtype: t.dtype, shape: t.shape, data: await this.read(t.name) };
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }
}

/** Opens a file, runs `fn`, always closes. */
export async function withSafetensorsFile<T>(path: string, fn: (f: SafetensorsFile) => Promise<T>): Promise<T> {
  const f = await SafetensorsFile.open(path);
  try {
    return await fn(f);
  } finally {
    await f.close();
  }
}

/** Reads a whole safetensors file (small files: tests, expected outputs). */
export async function readSafetensorsFile(path: string): Promise<{ metadata: Record<string, string>; tensors: Map<string, DecodedTensor> }> {
  return withSafetensorsFile(path, async (f) => {
    const tensors = new Map<string, DecodedTensor>();
    for await (const t of f.tensors()) tensors.set(t.name, t);
    return { metadata: f.metadata, tensors };
  });
}

export interface StreamedTensor {
  name: string;
  shape: readonly number[];
  /** Default: F32 (or I32 when `data` is an Int32Array given directly). */
  dtype?: WriteDtype;
  /** The data, or a function producing it when its turn comes (so only one tensor is live at a time). */
  data: TensorData | (() => TensorData | Promise<TensorData>);
}

/** Runs `write(tmpPath)`, fsyncs it, then renames it over `path` (and fsyncs the folder). */
async function atomically(path: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  await mkdir(nodePath.dirname(path), { recursive: true });
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await write(fh);
    await fh.sync();
    await fh.close();
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e;
  }
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
  try {
    const dir = await open(nodePath.dirname(path), 'r');
    try { await dir.sync(); } finally { await dir.close(); }
  } catch {
    // some platforms cannot fsync a directory; the rename itself is still atomic
  }
}

/**
 * Writes a safetensors file tensor by tensor: header first, then each tensor's data, produced (when
 * `data` is a function) and encoded only when its turn comes. Goes to `path.tmp`, then fsync + rename.
 */
export async function writeSafetensorsFile(path: string, tensors: readonly StreamedTensor[], opts: { metadata?: Record<string, string> } = {}): Promise<void> {
  const specs = tensors.map((t) => ({
    name: t.name,
    shape: t.shape,
    dtype: t.dtype ?? (typeof t.data === 'function' ? 'F32' : defaultDtype(t.data)),
  }));
  const plan = planSafetensors(specs, opts.metadata);
  await atomically(path, async (fh) => {
    await writeAll(fh, plan.headerBytes, 0);
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i];
      const data = typeof t.data === 'function' ? await t.data() : t.data;
      await writeAll(fh, encodeForWrite(specs[i], data), plan.headerBytes.length + plan.offsets[i][0]);
    }
  });
}

/** Writes a file atomically: `path.tmp`, fsync, rename. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  await atomically(path, (fh) => writeAll(fh, bytes, 0));
}

/** Writes JSON (2-space indent, trailing newline) atomically. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value, null, 2) + '\n');
}

/** Reads and parses a JSON file; errors name the file. */
export async function readJsonFile(path: string): Promise<unknown> {
  const text = await readFile(path, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`);
  }
}
