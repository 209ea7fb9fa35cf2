// A size-bucketed pool of storage buffers. Tensors come and go on every op (a forward pass makes
// hundreds), and creating GPU buffers is slow, so disposed buffers wait here to be handed out again.

/** A storage buffer and the batch (command encoder) that last used it. */
export interface PooledBuffer {
  readonly buffer: GPUBuffer;
  /** Bytes the buffer really has (its bucket size). */
  readonly capacity: number;
  /** Id of the last batch of commands that referenced the buffer; see GpuContext. */
  lastUse: number;
  /** Unique per buffer, for cache keys. */
  readonly id: number;
}

let nextId = 1;

const MIN_BUCKET = 256;

/**
 * Rounds a byte count up to its bucket: powers of two split in four steps (2^k · {1, 1.25, 1.5,
 * 1.75}), so a pooled buffer wastes at most a quarter of its size.
 */
export function bucketSize(bytes: number): number {
  if (bytes <= MIN_BUCKET) return MIN_BUCKET;
  const p = 2 ** Math.floor(Math.log2(bytes));
  const step = p / 4;
  return Math.ceil(bytes / step) * step;
}

export class BufferPool {
  private free = new Map<number, PooledBuffer[]>();
  private freeBytes = 0;
  /** Bytes held by live (handed out) buffers. */
  liveBytes = 0;
  /** The most bytes ever live at once: the working set of the heaviest step so far. */
  peakLiveBytes = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly usage: GPUBufferUsageFlags,
    /** Buffers larger than this are never rounded up past it (the device's largest buffer). */
    private readonly maxBytes: number,
    /**
     * Free bytes always kept. Beyond that, free buffers are kept while live plus free stays within
     * the peak live bytes: a training step frees and re-acquires gigabytes of activations, and
     * destroying them between steps would make every step allocate (and Dawn zero) them again.
     */
    private readonly keepBytes: number,
    /** Called with the ids of destroyed buffers (caches that name them must forget them). */
    private readonly onDestroy: (ids: Set<number>) => void = () => {},
  ) {}

  /** A buffer of at least `bytes`: a bucket's size, or with `exact` just those bytes (rounded to 4). */
  acquire(bytes: number, exact = false): PooledBuffer {
    const want = Math.ceil(bytes / 4) * 4;
    const size = exact ? want : Math.max(want, Math.min(bucketSize(want), this.maxBytes - (this.maxBytes % 4)));
    const list = this.free.get(size);
    const hit = list?.pop();
    if (hit) {
      this.freeBytes -= size;
      this.liveBytes += size;
      return hit;
    }
    const buffer = this.device.createBuffer({ size, usage: this.usage });
    this.liveBytes += size;
    this.peakLiveBytes = Math.max(this.peakLiveBytes, this.liveBytes);
    return { buffer, capacity: size, lastUse: -1, id: nextId++ };
  }

  /**
   * Free buffers of a size are handed out lowest id first (each list is kept in descending id
   * order and popped), so the same sequence of ops gets the same buffers whenever the same buffers
   * are free: a decoding step then binds what the step before bound, and its bind groups come from
   * the cache from the second token on (handing out the last released instead rotated buffers
   * through the steps, and samba-1.3b made new bind groups for its first 20 tokens).
   */
  release(b: PooledBuffer): void {
    this.liveBytes -= b.capacity;
    let list = this.free.get(b.capacity);
    if (!list) this.free.set(b.capacity, (list = []));
    let i = list.length;
    while (i > 0 && list[i - 1].id < b.id) i--;
    list.splice(i, 0, b);
    this.freeBytes += b.capacity;
  }

  /**
   * Destroys free buffers until at most keepBytes remain. Only call this when no unsubmitted
   * command references them (a destroyed buffer makes a later submit fail).
   */
  trim(keepBytes = Math.max(this.keepBytes, this.peakLiveBytes - this.liveBytes)): void {
    if (this.freeBytes <= keepBytes) return;
    // largest first: they free the most memory for the fewest future allocations
    const sizes = [...this.free.keys()].sort((a, b) => b - a), gone = new Set<number>();
    for (const size of sizes) {
      const list = this.free.get(size)!;
      while (list.length && this.freeBytes > keepBytes) {
        const b = list.pop()!;
        b.buffer.destroy();
        gone.add(b.id);
        this.freeBytes -= size;
      }
      if (!list.length) this.free.delete(size);
    }
    this.onDestroy(gone);
  }

  /** Destroys every free buffer and forgets the peak: memory goes back to the device. */
  releaseCached(): void {
    this.peakLiveBytes = this.liveBytes;
    this.trim(0);
  }

  get pooledBytes(): number {
    return this.freeBytes;
  }
}
