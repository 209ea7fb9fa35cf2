// A WebGPU backend on an adapter, in a browser (navigator.gpu) or in Node (Dawn: src/node/webgpu.ts).
import { WebGpuBackend, type WebGpuBackendOptions, wantsSubgroupMatrix } from './backend.js';

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

/** Used where the adapter has them; every kernel also has a path without. */
const OPTIONAL_FEATURES: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];
/** Tensor cores (Dawn, behind allow_unsafe_apis); requested for the f16-matmul precision only. */
const SUBGROUP_MATRIX = 'chromium-experimental-subgroup-matrix' as GPUFeatureName;

/**
 * A device on `adapter` with its largest limits and the optional features it has, and a backend
 * that owns it (WebGpuBackend.create's checks included).
 */
export async function webGpuBackendOn(adapter: GPUAdapter, opts: Omit<WebGpuBackendOptions, 'ownsDevice' | 'adapterInfo'> = {}): Promise<WebGpuBackend> {
  const requiredLimits: Record<string, number> = {};
  for (const name of MAX_LIMITS) {
    const v = adapter.limits[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  // subgroup matrices only when they may be used: an experimental feature changes how Dawn builds pipelines
  const wanted = wantsSubgroupMatrix(opts) ? [...OPTIONAL_FEATURES, SUBGROUP_MATRIX] : OPTIONAL_FEATURES;
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  return WebGpuBackend.create(device, { adapterInfo: adapter.info, ...opts, ownsDevice: true });
}
