export { WebGpuBackend, type WebGpuBackendOptions, GpuTensor } from './backend.js';
export { type ContextOptions } from './context.js';
