// The browser page's server: static files only. The page (web/index.html, dist/web/app.js) runs the
// model in the browser itself, on WebGPU or the CPU; this serves the page, the library's compiled
// modules, the tokenizer library they import, and optionally one model folder under /model/.
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import * as nodePath from 'node:path';
import { fileURLToPath } from 'node:url';

export interface WebServerOptions {
  /** A model folder the page offers to load (config.json, safetensors, tokenizer files). */
  modelDir?: string;
}

/** The package's root: this file is dist/src/node/web.js. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json', '.json': 'application/json', '.safetensors': 'application/octet-stream',
};
/** Files of a model folder the page may fetch, besides the shards an index names. */
const MODEL_FILES = ['config.json', 'model.safetensors', 'model.safetensors.index.json', 'tokenizer.json', 'tokenizer_config.json'];

/** The model folder's files the page may load, in the order it should read them. */
async function modelFiles(dir: string): Promise<string[]> {
  const present: string[] = [];
  for (const f of MODEL_FILES) {
    try {
      if ((await stat(nodePath.join(dir, f))).isFile()) present.push(f);
    } catch { /* absent */ }
  }
  if (present.includes('model.safetensors.index.json')) {
    const index = JSON.parse(await readFile(nodePath.join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map?: Record<string, string> };
    for (const shard of new Set(Object.values(index.weight_map ?? {}))) {
      if (nodePath.basename(shard) === shard && shard.endsWith('.safetensors') && !present.includes(shard)) present.push(shard);
    }
  }
  return present;
}

/** The file a request path names, or null: only the page, the compiled library and the model's files. */
async function resolve(path: string, modelDir: string | undefined): Promise<string | null> {
  if (path === '/' || path === '/index.html') return nodePath.join(ROOT, 'web', 'index.html');
  if (path === '/vendor/tokenizers.mjs') return fileURLToPath(import.meta.resolve('@huggingface/tokenizers'));
  if (path.startsWith('/dist/src/') || path.startsWith('/dist/web/')) {
    const file = nodePath.normalize(nodePath.join(ROOT, decodeURIComponent(path)));
    const under = nodePath.join(ROOT, 'dist') + nodePath.sep;
    return file.startsWith(under) && /\.(js|map)$/.test(file) ? file : null;
  }
  if (modelDir && path.startsWith('/model/')) {
    const name = decodeURIComponent(path.slice('/model/'.length));
    return (await modelFiles(modelDir)).includes(name) ? nodePath.join(modelDir, name) : null;
  }
  return null;
}

/** A server for the page; listen() it. GET /model/ lists the model folder's files (404 without one). */
export function createWebServer(opts: WebServerOptions = {}): Server {
  const modelDir = opts.modelDir && nodePath.resolve(opts.modelDir);
  return createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      if (path === '/model/') {
        if (!modelDir) { res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"no model folder (samba-lm web --model DIR)"}'); return; }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: nodePath.basename(modelDir), files: await modelFiles(modelDir) }));
        return;
      }
      const file = await resolve(path, modelDir);
      const info = file ? await stat(file).catch(() => null) : null;
      if (!file || !info?.isFile()) { res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}\n`); return; }
      res.writeHead(200, { 'content-type': TYPES[nodePath.extname(file)] ?? 'application/octet-stream', 'content-length': info.size, 'cache-control': 'no-cache' });
      if (req.method === 'HEAD') { res.end(); return; }
      createReadStream(file).on('error', () => res.destroy()).pipe(res);
    })().catch((e: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`${e.message}\n`);
    });
  });
}
