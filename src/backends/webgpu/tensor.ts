import { type DType, type Tensor, numel, shapeStr, tensorBytes } from '../../core/backend.js';
import type { Binding } from './context.js';
import type { PooledBuffer } from './pool.js';
import type { F16Matrix } from './matmul-f16.js';

/** A buffer shared by a tensor and its reshaped views; back to the pool when the last goes. */
export class Storage {
  refs = 1;
  /**
   * A buffer derived from this one's contents and cached with it — the selective scan's packed
   * constant parameters, on A_log's storage — valid while the weights epoch and sources match;
   * released with this storage.
   */
  derived: { epoch: number; sources: readonly Storage[]; buf: PooledBuffer } | null = null;
  /**
   * A buffer written along with this one for a later op: a training attention forward's row
   * log-sum-exps, for its backward (WebGpuBackend.attention with forBackward), with the storages
   * of the q, k and v they belong to; released with this storage.
   */
  rowStats: { buf: PooledBuffer; inputs: readonly Storage[] } | null = null;
  constructor(readonly buf: PooledBuffer) {}
}

export class GpuTensor implements Tensor {
  readonly size: number;
  constructor(
    readonly shape: readonly number[],
    readonly dtype: DType,
    /** null once disposed. */
    public storage: Storage | null,
    /** Host copy of an ids tensor, kept so ops can validate ids without reading the GPU back. */
    readonly hostInts?: Int32Array,
    /**
     * Where the values start in the storage's buffer, in bytes: non-zero for a view of a part of
     * another tensor (WebGpuBackend.sliceCols of one row); a multiple of the device's storage
     * offset alignment.
     */
    readonly offset = 0,
  ) {
    this.size = numel(shape);
  }

  get buf(): PooledBuffer | null {
    return this.storage?.buf ?? null;
  }

  get bytes(): number {
    return tensorBytes(this.size, this.dtype);
  }
}

/** A weight [rows, cols] stored as zero-padded f16 for matmul (WebGpuBackend.compactWeight). */
export class F16WeightTensor extends GpuTensor {
  constructor(shape: readonly number[], storage: Storage, readonly packed: F16Matrix) {
    super(shape, 'f16w', storage, undefined, packed.offset ?? 0);
  }

  override get bytes(): number {
    return this.packed.rowsP * this.packed.colsP * 2;
  }
}

const DTYPE_NAMES: Record<DType, string> = { f32: 'float32', i32: 'int32', f16w: 'f16 weight', f16: 'f16 cache' };

/** The tensor as a GpuTensor, with a readable error for a foreign or disposed one. */
export function gpu(t: Tensor, op: string, dtype: DType = 'f32'): GpuTensor {
  if (!(t instanceof GpuTensor)) throw new Error(`${op}: tensor belongs to another backend`);
  if (!t.buf) throw new Error(`${op}: tensor ${shapeStr(t.shape)} was disposed`);
  if (t.dtype === 'f16w' && dtype !== 'f16w') throw new Error(`${op}: tensor ${shapeStr(t.shape)} is a weight stored as f16 for matmul only (load the model with f32 weights for this)`);
  if (t.dtype !== dtype) throw new Error(`${op}: expected a ${DTYPE_NAMES[dtype]} tensor, got ${DTYPE_NAMES[t.dtype]}`);
  return t;
}

/** A tensor of float values as a GpuTensor: float32, or an f16 decoding cache. */
export function gpuFloats(t: Tensor, op: string): GpuTensor {
  return gpu(t, op, t.dtype === 'f16' ? 'f16' : 'f32');
}

/** The whole tensor as a storage binding. */
export function bind(t: GpuTensor): Binding {
  if (!t.buf) throw new Error(`tensor ${shapeStr(t.shape)} was disposed`);
  return { buf: t.buf, offset: t.offset, size: t.bytes };
}
