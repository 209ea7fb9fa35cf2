export type { TextTokenizer, StreamDecoder } from './types.js';
export { ByteTokenizer, type ByteTokenizerOptions } from './bytes.js';
export { HfTokenizer, type HfTokenizerOptions } from './hf.js';
export { GenericStreamDecoder, createStreamDecoder } from './stream.js';
