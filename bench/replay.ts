// Timing recorded work on the GPU alone: a recording's compute-pass calls are captured once and
// replayed back to back, timed by the pass's timestamps, so the host's recording stays out.
import type { WebGpuBackend } from '../src/backends/webgpu/backend.js';
import { Params } from '../src/backends/webgpu/context.js';
import { bind, type GpuTensor } from '../src/backends/webgpu/tensor.js';
import { capturePassCalls } from './recorded.js';
import { COPY_VEC4 } from './roofline.js';

/** One recorded dispatch; kind: its kernel's name without shape suffixes, and its workgroups. */
export interface Dispatch { pipeline: GPUComputePipeline; group: GPUBindGroup; offsets: number[]; gx: number; gy: number; kind: string }

export class Replay {
  private readonly dev: GPUDevice;
  private readonly querySet: GPUQuerySet;
  private readonly resolved: GPUBuffer;
  private readonly readable: GPUBuffer;

  /** reps: repetitions of a list per timing. Needs the adapter's timestamp queries. */
  constructor(private readonly be: WebGpuBackend, readonly reps: number) {
    this.dev = be.device;
    if (!this.dev.features.has('timestamp-query')) throw new Error('this adapter has no timestamp queries, which the GPU is timed with');
    this.querySet = this.dev.createQuerySet({ type: 'timestamp', count: 2 });
    this.resolved = this.dev.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    this.readable = this.dev.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  /** The dispatches record() makes (it runs too), to be replayed. */
  capture(record: () => void): Dispatch[] {
    const calls = capturePassCalls(this.dev, record);
    if (!calls) throw new Error('the recording copied or cleared buffers: its pass calls alone would not replay it');
    const label = new Map<GPUComputePipeline, string>();
    for (const [key, v] of (this.be.ctx as unknown as { pipelines: Map<string, { pipeline: GPUComputePipeline }> }).pipelines) label.set(v.pipeline, key);
    const dispatches: Dispatch[] = [];
    let pipeline: GPUComputePipeline | null = null, bound: unknown[] = [];
    for (const [n, a] of calls) {
      if (n === 'setPipeline') pipeline = a[0] as GPUComputePipeline;
      else if (n === 'setBindGroup') bound = a;
      else {
        const gx = a[0] as number, gy = (a[1] as number | undefined) ?? 1;
        const kind = `${label.get(pipeline!)!.replace(/_\d+x\d+.*$/, '')} ×${gx * gy}`;
        dispatches.push({ pipeline: pipeline!, group: bound[1] as GPUBindGroup, offsets: bound[2] as number[], gx, gy, kind });
      }
    }
    return dispatches;
  }

  /** GPU ms per repetition of `list`, replayed `reps` times back to back in one pass. */
  passTime = async (list: Dispatch[]): Promise<number> => {
    const enc = this.dev.createCommandEncoder();
    const pass = enc.beginComputePass({ timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    for (let r = 0; r < this.reps; r++) replayInto(pass, list);
    pass.end();
    return this.finish(enc);
  };

  /**
   * GPU ms per repetition of `list` where each repetition is its own command buffer and submit, as
   * generate() submits a token: what the pass and submit boundaries cost on the GPU's side.
   */
  submitsTime = async (list: Dispatch[]): Promise<number> => {
    const R = this.reps;
    for (let r = 0; r < R; r++) {
      const enc = this.dev.createCommandEncoder();
      const timestampWrites = { querySet: this.querySet, ...(r === 0 ? { beginningOfPassWriteIndex: 0 } : {}), ...(r === R - 1 ? { endOfPassWriteIndex: 1 } : {}) };
      const pass = enc.beginComputePass(r === 0 || r === R - 1 ? { timestampWrites } : {});
      replayInto(pass, list);
      pass.end();
      this.dev.queue.submit([enc.finish()]);
    }
    return this.finish(this.dev.createCommandEncoder());
  };

  /** The best of five: the GPU's clocks and neighbours only ever slow a run down. */
  async best(list: Dispatch[], time = this.passTime): Promise<number> {
    let m = Infinity;
    for (let i = 0; i < 5; i++) m = Math.min(m, await time(list));
    return m;
  }

  /** Keeps the GPU busy with `list` for a second: its clocks rise under load, and the first timings would pay for that. */
  async warm(list: Dispatch[]): Promise<void> {
    const t0 = performance.now();
    while (performance.now() - t0 < 1000) await this.passTime(list);
  }

  /**
   * Bytes a second of the copy kernel (16-byte loads and stores, as the f16 gemv reads weights) over
   * 256 MiB, or what the device binds, timed on the GPU after a second's warm-up: the rooflines'
   * bandwidth. Timed by the wall clock instead, a few copies' submit and wait count too.
   */
  async copyBandwidth(): Promise<number> {
    const be = this.be, n = Math.min(64 * 2 ** 20, Math.floor(this.dev.limits.maxStorageBufferBindingSize / 4 / 2 ** 20) * 2 ** 20);
    const x = be.zeros([n]) as GpuTensor, y = be.zeros([n]) as GpuTensor;
    try {
      const copy = this.capture(() => be.inOneSubmit(() => { be.ctx.dispatch(COPY_VEC4, new Params().u32(n / 4), [bind(x), bind(y)], Math.ceil(n / 4 / 256)); }));
      await this.warm(copy);
      return ((2 * n * 4) / (await this.best(copy))) * 1e3;
    } finally { be.dispose(x); be.dispose(y); }
  }

  /** A dispatch's timestamps, read back: ms per repetition. */
  private async finish(enc: GPUCommandEncoder): Promise<number> {
    enc.resolveQuerySet(this.querySet, 0, 2, this.resolved, 0);
    enc.copyBufferToBuffer(this.resolved, 0, this.readable, 0, 16);
    this.dev.queue.submit([enc.finish()]);
    await this.readable.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(this.readable.getMappedRange().slice(0));
    this.readable.unmap();
    return Number(t[1] - t[0]) / 1e6 / this.reps;
  }
}

function replayInto(pass: GPUComputePassEncoder, list: Dispatch[]): void {
  for (const d of list) { pass.setPipeline(d.pipeline); pass.setBindGroup(0, d.group, d.offsets); pass.dispatchWorkgroups(d.gx, d.gy); }
}
