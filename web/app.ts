// The browser page (web/index.html): loads a model folder into a backend of this page (WebGPU
// through navigator.gpu, else the CPU) and streams generated text. `samba-lm web` serves it; it
// imports only the library's browser-safe core. A web page cannot set Dawn's toggles, so WebGPU
// runs the f32 kernels, with f16 weights where the adapter has shader-f16 (feature detection).
import {
  ByteTokenizer, CpuBackend, HfTokenizer, WebGpuBackend, bufferSource, countParams, generateText, modelFromCheckpoint, openCheckpoint, webGpuBackendOn,
  type Backend, type SambaModel, type TextTokenizer,
} from '../src/index.js';

interface Loaded { backend: Backend; model: SambaModel; tokenizer: TextTokenizer; name: string }
/** A model folder's files by name. */
type Files = Map<string, Uint8Array>;

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
};
const status = $('status'), output = $('output');

let loaded: Loaded | null = null;
let running: AbortController | null = null;
/** The page's state, for the console and for tests (test/web/page.test.ts). */
(globalThis as { sambaPage?: unknown }).sambaPage = { get loaded() { return loaded; } };

function setStatus(state: 'idle' | 'loading' | 'ready' | 'generating' | 'done' | 'stopped' | 'error', text: string): void {
  status.dataset.state = state;
  status.textContent = text;
}

function buttons(): void {
  $<HTMLButtonElement>('generate').disabled = !loaded || !!running;
  $<HTMLButtonElement>('stop').disabled = !running;
}

async function openPageBackend(choice: string): Promise<Backend> {
  if (choice === 'cpu') return new CpuBackend();
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) throw new Error('this browser has no WebGPU (navigator.gpu): pick the CPU backend');
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('WebGPU found no adapter: pick the CPU backend');
  return webGpuBackendOn(adapter);
}

/** Gives a backend's device memory back (WebGPU; the CPU backend has nothing to free). */
const freeBackend = (be: Backend): void => { if (be instanceof WebGpuBackend) be.destroy(); };

async function filesFromServer(): Promise<{ name: string; files: Files }> {
  const r = await fetch('/model/');
  if (!r.ok) throw new Error('the server has no model folder (start it with samba-lm web --model DIR)');
  const list = await r.json() as { name: string; files: string[] };
  const files: Files = new Map();
  for (const f of list.files) {
    setStatus('loading', `downloading ${f} …`);
    const got = await fetch(`/model/${encodeURIComponent(f)}`);
    if (!got.ok) throw new Error(`downloading ${f}: HTTP ${got.status}`);
    files.set(f, new Uint8Array(await got.arrayBuffer()));
  }
  return { name: list.name, files };
}

async function filesFromPicker(list: FileList): Promise<{ name: string; files: Files }> {
  const files: Files = new Map();
  for (const f of Array.from(list)) files.set(f.name, new Uint8Array(await f.arrayBuffer()));
  return { name: 'local files', files };
}

/** The model's tokenizer: a byte tokenizer its config names, else tokenizer.json. */
function tokenizerOf(spec: { type: string; eos?: boolean } | undefined, files: Files): TextTokenizer {
  const text = (f: string) => new TextDecoder().decode(files.get(f));
  if (spec?.type === 'bytes') return new ByteTokenizer({ eos: spec.eos === true });
  if (files.has('tokenizer.json')) return new HfTokenizer(text('tokenizer.json'), files.has('tokenizer_config.json') ? text('tokenizer_config.json') : undefined);
  throw new Error('no tokenizer: add the model\'s tokenizer.json to the files');
}

async function load(source: () => Promise<{ name: string; files: Files }>): Promise<void> {
  if (running) return;
  try {
    setStatus('loading', 'loading …');
    if (loaded) { // one model at a time: free the last one's memory first
      loaded.model.dispose();
      freeBackend(loaded.backend);
      loaded = null;
      buttons();
    }
    const { name, files } = await source();
    const config = files.get('config.json');
    if (!config) throw new Error('no config.json among the model files');
    const shards = [...files.keys()].filter((f) => f.endsWith('.safetensors'));
    if (shards.length === 0) throw new Error('no .safetensors file among the model files');
    const ck = openCheckpoint(JSON.parse(new TextDecoder().decode(config)), bufferSource(...shards.map((f) => files.get(f)!)));
    const tokenizer = tokenizerOf(ck.tokenizer, files);
    if (tokenizer.vocabSize > ck.config.vocabSize) throw new Error(`the tokenizer has ${tokenizer.vocabSize} ids but the model only ${ck.config.vocabSize} embedding rows`);
    const backend = await openPageBackend($<HTMLSelectElement>('backend').value);
    const f16 = $<HTMLInputElement>('f16').checked, t0 = performance.now();
    let model: SambaModel;
    try {
      if (f16 && !(backend instanceof WebGpuBackend)) throw new Error('f16 weights need the WebGPU backend');
      // without shader-f16 a prompt of more than 32 tokens could not be prefilled over f16 weights
      if (f16 && !(backend as WebGpuBackend).f16Caps.shaderF16) throw new Error('f16 weights need an adapter with shader-f16, which this one lacks: leave them off');
      model = await modelFromCheckpoint(ck, backend, {
        weights: f16 ? 'f16' : 'f32',
        onTensor: (_, done, total) => {
          setStatus('loading', `uploading the parameters: ${done} of ${total} …`);
          return done % 16 === 0 ? new Promise((r) => setTimeout(r, 0)) : undefined; // let the page paint
        },
      });
    } catch (e) {
      freeBackend(backend);
      throw e;
    }
    loaded = { backend, model, tokenizer, name };
    const c = ck.config, adapter = backend instanceof WebGpuBackend ? backend.device.adapterInfo : null;
    $('model-info').textContent = `${name}: ${c.architecture}, ${c.nBlocks} blocks, d ${c.dModel}, ${(countParams(c) / 1e6).toFixed(1)}M parameters `
      + `(${ck.format} checkpoint), on ${backend.name}${adapter ? ` (${adapter.vendor || 'adapter'} ${adapter.architecture || ''})` : ''}, `
      + `${f16 ? 'f16' : 'f32'} weights, loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    setStatus('ready', 'Ready.');
  } catch (e) {
    setStatus('error', (e as Error).message);
  } finally {
    buttons();
  }
}

function num(id: string): number {
  const v = Number($<HTMLInputElement>(id).value);
  if (!Number.isFinite(v)) throw new Error(`${id.replace('-', ' ')} is not a number`);
  return v;
}

async function generate(): Promise<void> {
  if (!loaded || running) return;
  const { model, tokenizer } = loaded;
  running = new AbortController();
  buttons();
  output.textContent = '';
  const ids: number[] = [];
  try {
    const prompt = tokenizer.encode($<HTMLTextAreaElement>('prompt').value);
    if (prompt.length === 0) throw new Error('the prompt is empty');
    const opts = { maxTokens: num('max-tokens'), temperature: num('temperature'), topP: num('top-p'), seed: num('seed') };
    const shown = document.createElement('span');
    shown.className = 'prompt';
    shown.textContent = $<HTMLTextAreaElement>('prompt').value;
    output.append(shown);
    setStatus('generating', `prefilling ${prompt.length} tokens …`);
    const t0 = performance.now();
    let tFirst = t0;
    const stopTokens = tokenizer.eosId !== undefined ? [tokenizer.eosId] : [];
    for await (const tok of generateText(model, tokenizer, prompt, { ...opts, stopTokens, signal: running.signal })) {
      if (tok.id >= 0) {
        ids.push(tok.id);
        if (ids.length === 1) tFirst = performance.now();
      }
      if (tok.text) output.append(tok.text);
      output.dataset.ids = ids.join(',');
      setStatus('generating', `${ids.length} tokens …`);
    }
    const t1 = performance.now();
    const decode = ids.length > 1 ? `, then ${((ids.length - 1) / ((t1 - tFirst) / 1000)).toFixed(1)} tokens/s` : '';
    setStatus('done', `${ids.length} tokens: the prompt's ${prompt.length} in ${((tFirst - t0) / 1000).toFixed(2)} s to the first token${decode}.`);
  } catch (e) {
    if (running.signal.aborted) setStatus('stopped', `stopped after ${ids.length} tokens.`);
    else setStatus('error', (e as Error).message);
  } finally {
    running = null;
    buttons();
  }
}

$('generate').addEventListener('click', () => { void generate(); });
$('stop').addEventListener('click', () => running?.abort());
$('files').addEventListener('change', (e) => {
  const list = (e.target as HTMLInputElement).files;
  if (list && list.length) void load(() => filesFromPicker(list));
});
const fromServer = $<HTMLButtonElement>('load-server');
fromServer.addEventListener('click', () => { void load(filesFromServer); });
// offer the server's model when it has one
void fetch('/model/').then(async (r) => {
  if (!r.ok) return;
  const { name } = await r.json() as { name: string };
  fromServer.textContent = `Load the server's model (${name})`;
  fromServer.hidden = false;
}).catch(() => undefined);
