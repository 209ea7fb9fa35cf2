// WebGPU in Node through Dawn (the `webgpu` npm package). Browsers pass their own GPUDevice to
// WebGpuBackend; this is the Node-only way to get one.
import { create, globals } from 'webgpu';
import type { WebGpuBackend, WebGpuBackendOptions } from '../backends/webgpu/index.js';
import { webGpuBackendOn } from '../backends/webgpu/open.js';

export interface NodeWebGpuOptions extends Omit<WebGpuBackendOptions, 'ownsDevice'> {
  powerPreference?: GPUPowerPreference;
  /** Throw instead of returning null when there is no adapter. */
  requireAdapter?: boolean;
}

/**
 * Dawn instances to try in turn: unsafe APIs let f16 appear on more drivers (NVIDIA via Vulkan);
 * unquantized timestamps make profiles (ContextOptions.profile) exact. SAMBA_DAWN_FEATURES adds
 * Dawn toggles (comma-separated, e.g. skip_validation,disable_robustness) for measuring them.
 */
function dawnOptions(): string[][] {
  const extra = process.env.SAMBA_DAWN_FEATURES;
  const features = ['allow_unsafe_apis', 'vulkan_enable_f16_on_nvidia', ...(extra ? extra.split(',').filter(Boolean) : [])];
  return [[`enable-dawn-features=${features.join(',')}`, 'disable-dawn-features=timestamp_quantization'], []];
}

/**
 * The Dawn instance in use, made once. Dawn tears an instance down when its GPU object is
 * collected, even while its devices still run, so it is held for good.
 */
let instance: GPU | null = null;

async function requestAdapter(powerPreference: GPUPowerPreference): Promise<GPUAdapter | null> {
  if (instance) return instance.requestAdapter({ powerPreference });
  Object.assign(globalThis, globals);
  for (const options of dawnOptions()) {
    try {
      const gpu = create(options);
      const adapter = await gpu.requestAdapter({ powerPreference });
      if (adapter) {
        instance = gpu;
        return adapter;
      }
    } catch {
      // an instance that rejects these options: try the next
    }
  }
  return null;
}

/** A WebGPU backend on the best adapter Dawn finds, or null (see requireAdapter) when there is none. */
export async function createNodeWebGpuBackend(opts: NodeWebGpuOptions = {}): Promise<WebGpuBackend | null> {
  const { powerPreference = 'high-performance', requireAdapter = false, ...backendOpts } = opts;
  const adapter = await requestAdapter(powerPreference);
  if (!adapter) {
    if (requireAdapter) throw new Error('no WebGPU adapter found');
    return null;
  }
  return webGpuBackendOn(adapter, backendOpts);
}
