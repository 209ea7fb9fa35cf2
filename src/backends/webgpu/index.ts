export { WebGpuBackend, type WebGpuBackendOptions, GpuTensor, wantsSubgroupMatrix } from './backend.js';
export { type ContextOptions } from './context.js';
export { webGpuBackendOn } from './open.js';
