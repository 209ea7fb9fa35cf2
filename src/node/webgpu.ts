// WebGPU in Node through Dawn (the `webgpu` npm package). Browsers pass their own GPUDevice to
// WebGpuBackend; this is the Node-only way to get one.
import { create, globals } from 'webgpu';
import { WebGpuBackend, type WebGpuBackendOptions, wantsSubgroupMatrix } from '../backends/webgpu/index.js';

export interface NodeWebGpuOptions extends Omit<WebGpuBackendOptions, 'ownsDevice'> {
  powerPreference?: GPUPowerPreference;
  /** Throw instead of returning null when there is no adapter. */
  requireAdapter?: boolean;
}

/** Limits asked for at their adapter maximum: big models need big bindings and workgroups. */
const MAX_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxUniformBufferBindingSize',
] as const;

const OPTIONAL_FEATURES: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];
/** Tensor cores (Dawn, behind allow_unsafe_apis); requested for the f16-matmul precision only. */
const SUBGROUP_MATRIX = 'chromium-experimental-subgroup-matrix' as GPUFeatureName;

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
  const requiredLimits: Record<string, number> = {};
  for (const name of MAX_LIMITS) {
    const v = adapter.limits[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  // subgroup matrices only when they may be used: an experimental feature changes how Dawn builds pipelines
  const wanted = wantsSubgroupMatrix(backendOpts) ? [...OPTIONAL_FEATURES, SUBGROUP_MATRIX] : OPTIONAL_FEATURES;
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  return WebGpuBackend.create(device, { adapterInfo: adapter.info, ...backendOpts, ownsDevice: true });
}
