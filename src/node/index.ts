// samba-lm/node: what needs Node (files, Dawn's WebGPU adapter).
export { openBackend, loadModel, describeModelFolder, type BackendChoice, type LoadedModel } from './load.js';
export { createNodeWebGpuBackend, type NodeWebGpuOptions } from './webgpu.js';
export {
  openModelFolder, describeFolder, loadModelFolder, saveModelFolder, loadFolderTokenizer, loadTokenizerJson,
  type ModelFolder, type SaveOptions,
} from './checkpoint.js';
export { SafetensorsFile, readSafetensorsFile, writeSafetensorsFile, writeFileAtomic, writeJsonAtomic } from './files.js';
export { createSambaServer, chatPrompt, CHAT_STOPS, type ServeOptions, type ChatMessage } from './server.js';
