// The plumbing under every kernel: a pipeline cache, the buffer pool, and a batch of commands that
// grows until something needs results (read, flush) or it grows too long.
//
// Every kernel has the same binding scheme: binding 0 is a uniform block of scalar parameters, the
// rest are storage buffers in the order the kernel lists them. Host-side integers (sizes, pos0 per
// sequence, row lists) are written to one "arena" buffer that the whole batch shares and that is
// uploaded once, just before the batch is submitted.
//
// Reusing pooled buffers inside a batch is safe because commands of one encoder run in order. The
// one hazard is queue.writeBuffer, which runs before the pending batch: an upload into a buffer that
// the pending batch still reads goes through a staging copy inside the batch instead.
//
// WebGPU reports validation errors asynchronously, and an invalid command voids its whole batch;
// the first such error is thrown by the next read() or flush().
import { BufferPool, type PooledBuffer } from './pool.js';

/** read/write: a tensor's buffer; ints: host integers (read-only), passed as an Int32Array. */
export type Access = 'read' | 'write' | 'ints';

export interface Kernel {
  /** Cache key; equal keys must mean equal WGSL. */
  readonly key: string;
  /** WGSL source, generated on first use. */
  readonly code: () => string;
  /** Access of storage bindings 1, 2, … (binding 0 is the uniform parameter block). */
  readonly bindings: readonly Access[];
}

/**
 * A memo of kernel descriptors: `cached(key, make)` builds each once. Builders do work in JS before
 * any WGSL is needed, and ops look their kernel up on every call; the context itself caches the
 * compiled pipelines by Kernel.key.
 */
export function kernelCache(): (key: string | number, make: () => Kernel) => Kernel {
  const kernels = new Map<string | number, Kernel>();
  return (key, make) => {
    let k = kernels.get(key);
    if (!k) kernels.set(key, (k = make()));
    return k;
  };
}

/** A storage binding: a byte range of a pooled buffer, or host ints placed in the arena. */
export type Binding = { buf: PooledBuffer; offset?: number; size: number } | Int32Array;

/** Scalars of a uniform parameter block, in the order of the WGSL struct's fields. */
export class Params {
  readonly kinds: ('u' | 'i' | 'f')[] = [];
  readonly values: number[] = [];
  u32(...v: number[]): this {
    for (const x of v) {
      if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new Error(`kernel parameter ${x} is not a u32`);
      this.kinds.push('u'); this.values.push(x);
    }
    return this;
  }
  i32(...v: number[]): this {
    for (const x of v) {
      if (!Number.isInteger(x) || x < -(2 ** 31) || x >= 2 ** 31) throw new Error(`kernel parameter ${x} is not an i32`);
      this.kinds.push('i'); this.values.push(x);
    }
    return this;
  }
  f32(...v: number[]): this {
    for (const x of v) { this.kinds.push('f'); this.values.push(x); }
    return this;
  }
}

/** Reads up to this many bytes go through reused mappable buffers (see readBytes). */
const READ_REUSE_BYTES = 64 << 10;
/** Mappable buffers kept for reuse: enough for a few reads in flight at once. */
const READ_REUSE_COUNT = 4;
/**
 * Dispatches per command buffer by default. A decode step is a few hundred small dispatches:
 * submitting every 32 lets the GPU start on the first layers while the host records the rest,
 * which doubled samba-1.7b's batch-1 decode rate on an H100 (docs/PERFORMANCE.md).
 */
export const DEFAULT_DISPATCHES_PER_SUBMIT = 32;

export interface ContextOptions {
  /** Dispatches per command buffer before it is submitted anyway. */
  maxDispatchesPerSubmit?: number;
  /** Workgroups per grid dimension (default: the device's limit); tests lower it to exercise 2D grids. */
  maxWorkgroupsPerDim?: number;
  /**
   * Free pooled bytes always kept for reuse after a submit (more are kept while the pool stays
   * within its peak working set: BufferPool); the rest are destroyed.
   */
  poolKeepBytes?: number;
  /**
   * Time every dispatch on the GPU with timestamp queries (each in its own compute pass, so the
   * host cost per dispatch rises; GPU times stay true). Needs the 'timestamp-query' feature;
   * GpuContext.profile() reports the times per kernel. 'passes': time whole compute passes instead
   * (one entry, 'pass'), which leaves the host's cost and the GPU's work as they are unprofiled: a
   * decoding step's GPU time, to compare with the host's time to record it.
   */
  profile?: boolean | 'passes';
  /** The width of every subgroup where the device has the 'subgroups' feature and one width only (0: none, or widths vary). */
  subgroupSize?: number;
}

/** GPU time of one kernel, summed over its dispatches since profiling started. */
export interface KernelTime { kernel: string; dispatches: number; ms: number }

const ARENA_BYTES = 1 << 20;
/** A kernel's pipeline on this device, its bind group layout, and a number naming it in signatures. */
interface CompiledKernel { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout; id: number }
/** One step of FNV-1a over 32-bit words: hashes a dispatch's bindings without building a string. */
const mix = (h: number, v: number): number => Math.imul(h ^ v, 0x01000193);
const sameNumbers = (a: readonly number[], b: readonly number[]): boolean => {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
};
/**
 * Int arrays above this get a buffer of their own instead of arena space. Arena int bindings are
 * this long whatever the array's length (the kernel reads only its own), so that one bind group
 * serves every dispatch through dynamic offsets.
 */
const ARENA_MAX_ARRAY = 64 << 10;
/** Bind groups kept for reuse; creating one is the costliest part of a dispatch. */
const MAX_BIND_GROUPS = 4096;

export class GpuContext {
  readonly pool: BufferPool;
  readonly maxBinding: number;
  readonly maxBuffer: number;
  readonly maxWorkgroupsPerDim: number;
  /** Byte offsets of storage bindings must be multiples of this (views: GpuTensor.offset). */
  readonly storageAlign: number;
  /** ContextOptions.subgroupSize: kernels that sum with subgroupAdd need their groups exactly this wide. */
  readonly subgroupSize: number;
  private readonly maxDispatches: number;
  private readonly pipelines = new Map<string, CompiledKernel>();
  /**
   * Bind groups for reuse, by a hash of what they bind; each entry keeps its signature
   * ([pipeline id, parameter bytes, then buffer id, offset, size per binding]) to tell collisions
   * apart. Numbers, not a string key: building and hashing a string per dispatch cost more than
   * the rest of the dispatch's JavaScript.
   */
  private readonly bindGroups = new Map<number, { sig: number[]; group: GPUBindGroup }[]>();
  private bindGroupCount = 0;
  /** The signature of the dispatch being recorded (reused: no array per dispatch). */
  private readonly sig: number[] = [];

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private passPipeline: GPUComputePipeline | null = null;
  private dispatches = 0;
  /**
   * Work recorded since the context was made: kernel dispatches, compute passes (a copy or clear
   * between two dispatches ends a pass, and each pass costs several µs on the host), buffer copies
   * and clears, and command-buffer submits. bench/dispatches.ts reports them per token.
   */
  readonly counts = { dispatches: 0, passes: 0, copies: 0, submits: 0 };
  /** Id of the batch being recorded; PooledBuffer.lastUse compares against it. */
  private batch = 0;
  private readonly arena: GPUBuffer;
  private readonly arenaCpu = new ArrayBuffer(ARENA_BYTES);
  private readonly arenaView = new DataView(this.arenaCpu);
  private arenaUsed = 0;
  private readonly align: number;
  /** Temporary buffers of the pending batch, destroyed once it is submitted. */
  private temps: GPUBuffer[] = [];
  /** Mappable buffers of READ_REUSE_BYTES kept for small reads. */
  private readBuffers: GPUBuffer[] = [];
  private destroyed = false;
  private error: Error | null = null;
  private readonly profiler: Profiler | null;
  /** Profiling whole passes rather than each dispatch (ContextOptions.profile = 'passes'). */
  private readonly profilePasses: boolean;
  /** Whether this context times its work (ContextOptions.profile). */
  get profiling(): boolean {
    return this.profiler !== null;
  }

  constructor(readonly device: GPUDevice, opts: ContextOptions = {}) {
    const lim = device.limits;
    this.maxBinding = lim.maxStorageBufferBindingSize;
    this.storageAlign = lim.minStorageBufferOffsetAlignment;
    this.maxBuffer = lim.maxBufferSize;
    this.subgroupSize = device.features.has('subgroups' as GPUFeatureName) ? opts.subgroupSize ?? 0 : 0;
    this.maxWorkgroupsPerDim = Math.min(opts.maxWorkgroupsPerDim ?? Infinity, lim.maxComputeWorkgroupsPerDimension);
    this.profiler = opts.profile ? new Profiler(device) : null;
    this.profilePasses = opts.profile === 'passes';
    // each profiled dispatch takes two timestamp slots of one query set
    this.maxDispatches = Math.min(opts.maxDispatchesPerSubmit ?? DEFAULT_DISPATCHES_PER_SUBMIT, this.profiler ? PROFILE_SLOTS / 2 : Infinity);
    this.align = Math.max(lim.minUniformBufferOffsetAlignment, lim.minStorageBufferOffsetAlignment, 16);
    this.pool = new BufferPool(
      device,
      GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      this.maxBuffer,
      opts.poolKeepBytes ?? 512 << 20,
      (gone) => {
        // forget the bind groups that name a destroyed buffer (signatures hold id, offset, size from index 2)
        for (const [h, entries] of this.bindGroups) {
          const kept = entries.filter(({ sig }) => !sig.some((v, i) => i >= 2 && (i - 2) % 3 === 0 && gone.has(v)));
          this.bindGroupCount -= entries.length - kept.length;
          if (kept.length) this.bindGroups.set(h, kept);
          else this.bindGroups.delete(h);
        }
      },
    );
    this.arena = device.createBuffer({
      size: ARENA_BYTES + ARENA_MAX_ARRAY,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    // Validation errors arrive asynchronously; keep the first and report it at the next read/flush.
    device.addEventListener?.('uncapturederror', this.onError);
  }

  private readonly onError = (e: Event): void => {
    this.error ??= new Error(`webgpu: ${(e as GPUUncapturedErrorEvent).error.message}`);
  };

  /** Throws the first asynchronous device error, if any. */
  checkError(): void {
    if (this.error) {
      const e = this.error;
      this.error = null;
      throw e;
    }
  }

  // ---- buffers ----

  /** A pooled buffer for `bytes` bytes, with a readable error when the device cannot bind it. */
  alloc(bytes: number, what: () => string): PooledBuffer {
    if (bytes > this.maxBinding) {
      throw new Error(
        `webgpu: ${what()} needs ${mib(bytes)} MiB, more than this device can bind at once ` +
        `(maxStorageBufferBindingSize = ${mib(this.maxBinding)} MiB)`,
      );
    }
    return this.pool.acquire(Math.max(bytes, 4));
  }

  release(b: PooledBuffer): void {
    this.pool.release(b);
  }

  /** Writes host data to the start of a buffer, ordered after every command recorded so far. */
  upload(dst: PooledBuffer, data: Float32Array | Int32Array): void {
    if (data.byteLength === 0) return;
    if (dst.lastUse === this.batch && this.encoder) {
      // the pending batch still uses this buffer: stage the data and copy it in batch order
      const staging = this.device.createBuffer({ size: align4(data.byteLength), usage: GPUBufferUsage.COPY_SRC, mappedAtCreation: true });
      new Uint8Array(staging.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      staging.unmap();
      this.copy(staging, 0, dst, 0, data.byteLength);
      this.temps.push(staging);
    } else {
      this.device.queue.writeBuffer(dst.buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    }
  }

  // ---- commands ----

  private enc(): GPUCommandEncoder {
    return (this.encoder ??= this.device.createCommandEncoder());
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
    this.passPipeline = null;
  }

  /** Copies bytes between buffers, in batch order. */
  copy(src: GPUBuffer | PooledBuffer, srcOffset: number, dst: GPUBuffer | PooledBuffer, dstOffset: number, bytes: number): void {
    if (bytes === 0) return;
    const enc = this.enc();
    this.endPass();
    this.counts.copies++;
    enc.copyBufferToBuffer(this.use(src), srcOffset, this.use(dst), dstOffset, align4(bytes));
  }

  /** Zeroes bytes of a buffer, in batch order. */
  clear(dst: PooledBuffer, offset: number, bytes: number): void {
    if (bytes === 0) return;
    const enc = this.enc();
    this.endPass();
    this.counts.copies++;
    enc.clearBuffer(this.use(dst), offset, align4(bytes));
  }

  private use(b: GPUBuffer | PooledBuffer): GPUBuffer {
    if ('capacity' in b) {
      b.lastUse = this.batch;
      return b.buffer;
    }
    return b;
  }

  /**
   * Records one dispatch of `workgroups` workgroups, numbered linearly; grids too long for one
   * dimension fold into two, and kernels rebuild the index as wid.x + wid.y · nwg.x.
   */
  dispatch(kernel: Kernel, params: Params, bindings: readonly Binding[], workgroups: number): void {
    if (workgroups === 0) return;
    if (bindings.length !== kernel.bindings.length) {
      throw new Error(`webgpu: kernel ${kernel.key} takes ${kernel.bindings.length} buffers, got ${bindings.length}`);
    }
    const [gx, gy] = this.grid(workgroups);
    const { pipeline, layout, id: pipelineId } = this.pipeline(kernel);

    // Arena space for the parameters and any int arrays; all of it must land in this batch.
    const paramBytes = Math.max(16, align16(params.values.length * 4));
    let need = this.alignUp(paramBytes);
    for (const b of bindings) {
      if (b instanceof Int32Array && b.byteLength <= ARENA_MAX_ARRAY) need += this.alignUp(Math.max(16, b.byteLength));
    }
    if (this.arenaUsed + need > ARENA_BYTES) this.submit();

    const paramOffset = this.arenaAlloc(paramBytes);
    for (let i = 0; i < params.values.length; i++) {
      const o = paramOffset + 4 * i, k = params.kinds[i], v = params.values[i];
      if (k === 'f') this.arenaView.setFloat32(o, v, true);
      else if (k === 'i') this.arenaView.setInt32(o, v, true);
      else this.arenaView.setUint32(o, v, true);
    }

    // The bind group names buffers and ranges only; the arena offsets of this dispatch's
    // parameters and ints are dynamic, so equal bindings reuse one bind group. Its entries are
    // only built when the cache misses: recording cost per dispatch is what bounds decoding.
    const offsets = [paramOffset];
    const sig = this.sig;
    sig.length = 0;
    sig.push(pipelineId, paramBytes);
    let hash = mix(mix(0x811c9dc5, pipelineId), paramBytes), cacheable = true;
    let oneOff: GPUBuffer[] | null = null; // int arrays too long for the arena, in binding order
    for (let i = 0; i < bindings.length; i++) {
      const b = bindings[i];
      if ((kernel.bindings[i] === 'ints') !== (b instanceof Int32Array)) {
        throw new Error(`webgpu: kernel ${kernel.key} binding ${i + 1} takes ${kernel.bindings[i] === 'ints' ? 'host ints' : 'a tensor'}`);
      }
      if (b instanceof Int32Array) {
        if (b.byteLength <= ARENA_MAX_ARRAY) {
          const offset = this.arenaAlloc(Math.max(16, b.byteLength));
          new Int32Array(this.arenaCpu, offset, b.length).set(b);
          offsets.push(offset);
          sig.push(-1, 0, 0); // the arena, whose offset is dynamic
        } else {
          const buffer = this.device.createBuffer({ size: align16(b.byteLength), usage: GPUBufferUsage.STORAGE, mappedAtCreation: true });
          new Int32Array(buffer.getMappedRange()).set(b);
          buffer.unmap();
          this.temps.push(buffer);
          (oneOff ??= []).push(buffer);
          offsets.push(0);
          cacheable = false; // a one-off buffer: not worth caching
        }
      } else {
        this.use(b.buf);
        const offset = b.offset ?? 0, size = Math.max(4, align4(b.size));
        sig.push(b.buf.id, offset, size);
        hash = mix(mix(mix(hash, b.buf.id), offset), size);
      }
    }

    const cached = cacheable ? this.bindGroups.get(hash) : undefined;
    let group = cached?.find((e) => sameNumbers(e.sig, sig))?.group;
    if (!group) {
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.arena, offset: 0, size: paramBytes } }];
      let next = 0;
      bindings.forEach((b, i) => {
        let resource: GPUBufferBinding;
        if (!(b instanceof Int32Array)) resource = { buffer: b.buf.buffer, offset: b.offset ?? 0, size: Math.max(4, align4(b.size)) };
        else if (b.byteLength <= ARENA_MAX_ARRAY) resource = { buffer: this.arena, offset: 0, size: ARENA_MAX_ARRAY };
        else resource = { buffer: oneOff![next++], offset: 0, size: align16(b.byteLength) };
        entries.push({ binding: i + 1, resource });
      });
      group = this.device.createBindGroup({ layout, entries });
      if (cacheable) {
        if (this.bindGroupCount >= MAX_BIND_GROUPS) { this.bindGroups.clear(); this.bindGroupCount = 0; }
        const entry = { sig: sig.slice(), group };
        const same = this.bindGroups.get(hash);
        if (same) same.push(entry);
        else this.bindGroups.set(hash, [entry]);
        this.bindGroupCount++;
      }
    }
    if (this.profiler && !this.profilePasses) {
      this.endPass();
      this.pass = this.enc().beginComputePass({ timestampWrites: this.profiler.slot(kernel.key, gx * gy) });
      this.counts.passes++;
    } else if (!this.pass) {
      this.pass = this.enc().beginComputePass(this.profiler ? { timestampWrites: this.profiler.slot('pass', 0) } : undefined);
      this.counts.passes++;
    }
    this.counts.dispatches++;
    if (this.passPipeline !== pipeline) this.pass.setPipeline(pipeline); // a pass keeps its pipeline (endPass forgets it)
    this.passPipeline = pipeline;
    this.pass.setBindGroup(0, group, offsets);
    this.pass.dispatchWorkgroups(gx, gy);
    if (this.profiler && !this.profilePasses) this.endPass();
    if (++this.dispatches >= this.maxDispatches && (this.holding === 0 || this.profileFull())) this.submit();
  }

  /**
   * Whether the profile's query set must be resolved before more commands: per dispatch it fills
   * in maxDispatches; whole passes take a slot pair each.
   */
  private profileFull(): boolean {
    if (!this.profiler) return false;
    return this.profilePasses ? this.profiler.slotsLeft() < 2 : true;
  }

  /** Nesting depth of inOneSubmit: while above 0, the every-N-dispatches submits wait. */
  private holding = 0;

  /**
   * Runs fn, its commands going to the device in one submit at its end instead of every
   * maxDispatchesPerSubmit (a full arena, a read or a profile still submit early). Decoding, which
   * records the next token while the device runs the last one, measured fastest this way on an
   * H100: the submits within a token only cost host time.
   */
  inOneSubmit<T>(fn: () => T): T {
    this.holding++;
    try {
      return fn();
    } finally {
      if (--this.holding === 0) this.submit();
    }
  }

  private grid(n: number): [number, number] {
    const max = this.maxWorkgroupsPerDim;
    if (n <= max) return [n, 1];
    const gy = Math.ceil(n / max);
    if (gy > max) throw new Error(`webgpu: ${n} workgroups do not fit in a ${max}×${max} grid`);
    // gy rows of gx: the kernels' bounds checks idle the fewer than gy surplus workgroups
    return [Math.ceil(n / gy), gy];
  }

  private alignUp(n: number): number {
    return Math.ceil(n / this.align) * this.align;
  }

  private arenaAlloc(bytes: number): number {
    const o = this.arenaUsed;
    this.arenaUsed += this.alignUp(bytes);
    return o;
  }

  /** The pipelines by kernel object too: one identity lookup per dispatch instead of a string's. */
  private readonly pipelineOf = new WeakMap<Kernel, CompiledKernel>();

  private pipeline(k: Kernel): CompiledKernel {
    let p = this.pipelineOf.get(k);
    if (p) return p;
    p = this.pipelines.get(k.key); // an equal kernel made elsewhere
    if (p) {
      this.pipelineOf.set(k, p);
      return p;
    }
    const layout = this.device.createBindGroupLayout({
      label: k.key,
      entries: [
        { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } },
        ...k.bindings.map((a, i) => ({
          binding: i + 1,
          visibility: GPUShaderStage.COMPUTE,
          buffer: a === 'write'
            ? { type: 'storage' as const }
            : { type: 'read-only-storage' as const, hasDynamicOffset: a === 'ints' },
        })),
      ],
    });
    const module = this.device.createShaderModule({ label: k.key, code: k.code() });
    const pipeline = this.device.createComputePipeline({
      label: k.key,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    p = { pipeline, layout, id: this.pipelines.size };
    this.pipelines.set(k.key, p);
    this.pipelineOf.set(k, p);
    return p;
  }

  /** Submits the pending batch (if any); later commands start a new one. */
  submit(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.arenaUsed) this.device.queue.writeBuffer(this.arena, 0, this.arenaCpu, 0, this.arenaUsed);
    const collect = this.profiler?.resolve(this.encoder);
    this.device.queue.submit([this.encoder.finish()]);
    collect?.();
    this.counts.submits++;
    this.encoder = null;
    this.dispatches = 0;
    this.arenaUsed = 0;
    this.batch++;
    // destroying after submit is fine: the memory goes once the submitted work is done with it
    for (const b of this.temps) b.destroy();
    this.temps = [];
    this.pool.trim();
  }

  /** Submits pending work and gives every free pooled buffer back to the device. */
  releaseCached(): void {
    this.submit();
    this.pool.releaseCached();
  }

  /** Copies a buffer's first bytes to the host once every recorded command has run. */
  async readBytes(src: PooledBuffer, bytes: number, srcOffset = 0): Promise<ArrayBuffer> {
    const size = Math.max(4, align4(bytes));
    // small reads (a decoded token's ids, a loss) reuse mappable buffers: creating one maps new
    // host-visible memory each time, which may cost more than the read itself
    const reuse = size <= READ_REUSE_BYTES;
    const staging = (reuse && this.readBuffers.pop()) || this.device.createBuffer({
      size: reuse ? READ_REUSE_BYTES : size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    let mapped = false;
    try {
      this.copy(src, srcOffset, staging, 0, size);
      this.submit();
      await staging.mapAsync(GPUMapMode.READ, 0, size);
      mapped = true;
      this.checkError();
      return staging.getMappedRange(0, size).slice(0, bytes);
    } finally {
      if (reuse && mapped && !this.destroyed && this.readBuffers.length < READ_REUSE_COUNT) {
        staging.unmap();
        this.readBuffers.push(staging);
      } else {
        staging.destroy();
      }
    }
  }

  /**
   * GPU time per kernel since profiling started (or the last reset), slowest first, once the work
   * submitted so far has run; byGrid: one entry per kernel and workgroup count ("key ×n").
   * Throws when the context was made without `profile: true`.
   */
  async profile(reset = false, byGrid = false): Promise<KernelTime[]> {
    if (!this.profiler) throw new Error('webgpu: this context does not profile (ContextOptions.profile)');
    await this.flush();
    return this.profiler.report(reset, byGrid);
  }

  async flush(): Promise<void> {
    this.submit();
    await this.device.queue.onSubmittedWorkDone();
    this.checkError();
  }

  destroy(): void {
    this.destroyed = true;
    this.endPass();
    this.encoder = null;
    this.bindGroups.clear();
    this.bindGroupCount = 0;
    this.device.removeEventListener?.('uncapturederror', this.onError);
    this.pool.trim(0);
    this.arena.destroy();
    for (const b of this.temps) b.destroy();
    this.temps = [];
    for (const b of this.readBuffers) b.destroy();
    this.readBuffers = [];
  }
}

/** Timestamp slots per command buffer (a query set holds at most 4096). */
const PROFILE_SLOTS = 4096;

/**
 * Timestamps around every dispatch of a command buffer, resolved at its end into a buffer that is
 * read back asynchronously and summed per kernel key.
 */
class Profiler {
  private readonly querySet: GPUQuerySet;
  private readonly resolved: GPUBuffer;
  private keys: string[] = [];
  private readonly totals = new Map<string, { dispatches: number; ns: number }>();
  private pending: Promise<void>[] = [];

  constructor(private readonly device: GPUDevice) {
    if (!device.features.has('timestamp-query')) throw new Error('webgpu: profiling needs the timestamp-query feature, which this device lacks');
    this.querySet = device.createQuerySet({ type: 'timestamp', count: PROFILE_SLOTS });
    this.resolved = device.createBuffer({ size: PROFILE_SLOTS * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  }

  /** Slot pairs left in this command buffer's query set. */
  slotsLeft(): number {
    return PROFILE_SLOTS / 2 - this.keys.length;
  }

  slot(key: string, workgroups: number): GPUComputePassTimestampWrites {
    const i = this.keys.push(`${key} ×${workgroups}`) - 1;
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Records the resolve into `enc`; the returned function, called after submit, starts the read-back. */
  resolve(enc: GPUCommandEncoder): (() => void) | undefined {
    const keys = this.keys;
    if (keys.length === 0) return undefined;
    this.keys = [];
    const bytes = keys.length * 16;
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    enc.resolveQuerySet(this.querySet, 0, 2 * keys.length, this.resolved, 0);
    enc.copyBufferToBuffer(this.resolved, 0, staging, 0, bytes);
    return () => {
      this.pending.push(staging.mapAsync(GPUMapMode.READ).then(() => {
        const t = new BigUint64Array(staging.getMappedRange());
        keys.forEach((k, i) => {
          const e = this.totals.get(k) ?? { dispatches: 0, ns: 0 };
          e.dispatches++;
          e.ns += Number(t[2 * i + 1] - t[2 * i]);
          this.totals.set(k, e);
        });
        staging.destroy();
      }));
    };
  }

  async report(reset: boolean, byGrid: boolean): Promise<KernelTime[]> {
    await Promise.all(this.pending);
    this.pending = [];
    const sums = new Map<string, { dispatches: number; ns: number }>();
    for (const [label, e] of this.totals) {
      const kernel = byGrid ? label : label.slice(0, label.lastIndexOf(' ×'));
      const t = sums.get(kernel) ?? { dispatches: 0, ns: 0 };
      t.dispatches += e.dispatches; t.ns += e.ns;
      sums.set(kernel, t);
    }
    const out = [...sums].map(([kernel, e]) => ({ kernel, dispatches: e.dispatches, ms: e.ns / 1e6 })).sort((a, b) => b.ms - a.ms);
    if (reset) this.totals.clear();
    return out;
  }
}

const align4 = (n: number) => Math.ceil(n / 4) * 4;
const align16 = (n: number) => Math.ceil(n / 16) * 16;
const mib = (n: number) => (n / 2 ** 20).toFixed(n < 2 ** 20 ? 3 : 1);
