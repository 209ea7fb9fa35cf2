// An OpenAI-compatible HTTP server for one model: GET /v1/models, POST /v1/completions and
// POST /v1/chat/completions, plain JSON or streamed as server-sent events. One model on one device
// decodes one request at a time; others wait their turn. Generation streams through the model's
// constant-size state, so prompts have no length limit beyond what the model's attention keeps.
//
// Chat: samba-lm models are base language models without a chat template, so messages become
// plain text, one "Role: content" line per message, then "Assistant:"; generation stops at the
// next "\nUser:" or "\nSystem:" line, besides the request's own stop strings. The "model" field of
// a request is not checked: there is one model, and clients often send a fixed name.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { SambaModel } from '../model/model.js';
import type { TextTokenizer } from '../tokenizer/types.js';
import { generateText } from '../generate/generate.js';
import { validateSampling, type SamplingOptions } from '../generate/sampling.js';

export interface ServeOptions {
  model: SambaModel;
  tokenizer: TextTokenizer;
  /** The id /v1/models lists and responses name. */
  modelId: string;
  /** Most tokens one request may generate, and the default of chat requests (default 4096). */
  maxTokensLimit?: number;
  /** Largest request body accepted, in bytes (default 4 MiB). */
  maxBodyBytes?: number;
}

/** A request the client got wrong: answered with its status and message. */
class RequestError extends Error {
  constructor(readonly status: number, message: string, readonly type = 'invalid_request_error') { super(message); }
}

export interface ChatMessage { role: string; content: string }

/** The plain-text transcript a chat request is continued from (see the header). */
export function chatPrompt(messages: ChatMessage[]): string {
  const name = (role: string) => role.charAt(0).toUpperCase() + role.slice(1);
  return messages.map((m) => `${name(m.role)}: ${m.content}\n`).join('') + 'Assistant:';
}
/** Where a chat reply ends if the model goes on to write the next turn itself. */
export const CHAT_STOPS = ['\nUser:', '\nSystem:'];

/** What one generation needs, parsed from a request body. */
interface Job {
  prompt: number[];
  maxTokens: number;
  sampling: SamplingOptions;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
}

type Body = Record<string, unknown>;
const MAX_STOPS = 16, MAX_STOP_CHARS = 256;

function optNumber(body: Body, key: string, check: (x: number) => boolean, what: string): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !check(v)) throw new RequestError(400, `"${key}" must be ${what}, got ${JSON.stringify(v)}`);
  return v;
}

function parseCommon(body: Body, defaultMaxTokens: number, limit: number): Omit<Job, 'prompt'> {
  const n = optNumber(body, 'n', (x) => Number.isInteger(x) && x >= 1, 'a positive integer');
  if (n !== undefined && n !== 1) throw new RequestError(400, `"n" must be 1: one completion per request is supported, got ${n}`);
  for (const k of ['frequency_penalty', 'presence_penalty']) {
    const v = optNumber(body, k, Number.isFinite, 'a number');
    if (v) throw new RequestError(400, `"${k}" is not supported (use "repetition_penalty", e.g. 1.1)`);
  }
  if (body.logprobs !== undefined && body.logprobs !== null && body.logprobs !== false) throw new RequestError(400, '"logprobs" is not supported');
  const maxTokens = optNumber(body, 'max_tokens', (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer')
    ?? optNumber(body, 'max_completion_tokens', (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer') ?? defaultMaxTokens;
  if (maxTokens > limit) throw new RequestError(400, `"max_tokens" is ${maxTokens}; this server allows at most ${limit}`);
  const sampling: SamplingOptions = {
    temperature: optNumber(body, 'temperature', (x) => Number.isFinite(x) && x >= 0, 'a number ≥ 0') ?? 1,
    topP: optNumber(body, 'top_p', (x) => x > 0 && x <= 1, 'in (0, 1]'),
    topK: optNumber(body, 'top_k', (x) => Number.isInteger(x) && x >= 0, 'a non-negative integer'),
    repetitionPenalty: optNumber(body, 'repetition_penalty', (x) => Number.isFinite(x) && x > 0, 'a number > 0'),
    seed: optNumber(body, 'seed', Number.isInteger, 'an integer'),
  };
  try { validateSampling(sampling); } catch (e) { throw new RequestError(400, (e as Error).message); }
  let stop: string[] = [];
  if (typeof body.stop === 'string') stop = [body.stop];
  else if (Array.isArray(body.stop) && body.stop.every((s) => typeof s === 'string')) stop = body.stop as string[];
  else if (body.stop !== undefined && body.stop !== null) throw new RequestError(400, '"stop" must be a string or an array of strings');
  stop = stop.filter((s) => s.length > 0);
  if (stop.length > MAX_STOPS || stop.some((s) => s.length > MAX_STOP_CHARS)) {
    throw new RequestError(400, `"stop" takes at most ${MAX_STOPS} strings of at most ${MAX_STOP_CHARS} characters`);
  }
  if (body.stream !== undefined && typeof body.stream !== 'boolean') throw new RequestError(400, '"stream" must be true or false');
  const so = body.stream_options as Body | undefined;
  return { maxTokens, sampling, stop, stream: body.stream === true, includeUsage: so?.include_usage === true };
}

function encodePrompt(tokenizer: TextTokenizer, text: string): number[] {
  const ids = tokenizer.encode(text);
  if (ids.length === 0) throw new RequestError(400, 'the prompt encodes to no tokens');
  return ids;
}

function completionJob(body: Body, o: Required<Pick<ServeOptions, 'maxTokensLimit'>> & ServeOptions): Job {
  let p = body.prompt;
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === 'string' || Array.isArray(p[0]))) p = p[0];
  let prompt: number[];
  if (typeof p === 'string') prompt = encodePrompt(o.tokenizer, p);
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => Number.isInteger(x))) {
    const V = o.model.config.vocabSize;
    const bad = (p as number[]).find((x) => x < 0 || x >= V);
    if (bad !== undefined) throw new RequestError(400, `prompt token ${bad} is outside the vocabulary (0..${V - 1})`);
    prompt = p as number[];
  } else if (Array.isArray(p) && p.length > 1) throw new RequestError(400, '"prompt" must be one prompt: batches of prompts are not supported');
  else throw new RequestError(400, '"prompt" must be a string or an array of token ids');
  return { prompt, ...parseCommon(body, 16, o.maxTokensLimit) };
}

function chatJob(body: Body, o: Required<Pick<ServeOptions, 'maxTokensLimit'>> & ServeOptions): Job {
  const ms = body.messages;
  if (!Array.isArray(ms) || ms.length === 0) throw new RequestError(400, '"messages" must be a non-empty array');
  const messages = ms.map((m, i): ChatMessage => {
    const role = (m as Body)?.role, content = (m as Body)?.content;
    if (typeof role !== 'string' || !/^[a-z_]+$/.test(role)) throw new RequestError(400, `messages[${i}].role must be a role such as "user"`);
    if (typeof content === 'string') return { role, content };
    if (Array.isArray(content) && content.every((c) => (c as Body)?.type === 'text' && typeof (c as Body).text === 'string')) {
      return { role, content: content.map((c) => (c as Body).text as string).join('') };
    }
    throw new RequestError(400, `messages[${i}].content must be text`);
  });
  const common = parseCommon(body, o.maxTokensLimit, o.maxTokensLimit);
  return { prompt: encodePrompt(o.tokenizer, chatPrompt(messages)), ...common, stop: [...common.stop, ...CHAT_STOPS] };
}

/**
 * Text as it is generated, held back where it could be the start of a stop string: `push` returns
 * what may be sent now, `done` is set once a stop string appeared (the text before it is final).
 */
export class StopFilter {
  private text = '';
  private sent = 0;
  done = false;
  constructor(private readonly stops: string[]) {}
  push(piece: string): string {
    if (this.done) return '';
    this.text += piece;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.text.indexOf(s, Math.max(0, this.sent - s.length + 1));
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.done = true;
      return this.take(cut);
    }
    // hold back the longest unsent tail that is the start of a stop string
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.text.length - this.sent); k > hold; k--) {
        if (this.text.endsWith(s.slice(0, k))) { hold = k; break; }
      }
    }
    let end = this.text.length - hold;
    // never split a surrogate pair between two pieces (clients decoding each piece would fail)
    const c = this.text.charCodeAt(end - 1);
    if (end > this.sent && c >= 0xd800 && c <= 0xdbff) end--;
    return this.take(end);
  }
  /** The rest, when generation ended without a stop string. */
  flush(): string {
    return this.done ? '' : this.take(this.text.length);
  }
  private take(end: number): string {
    const out = this.text.slice(this.sent, end);
    this.sent = end;
    return out;
  }
}

async function readBody(req: IncomingMessage, limit: number): Promise<Body> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) throw new RequestError(413, `the request body is larger than ${limit} bytes`);
    chunks.push(c as Buffer);
  }
  let body: unknown;
  try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (e) {
    throw new RequestError(400, `the request body is not valid JSON: ${(e as Error).message}`);
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new RequestError(400, 'the request body must be a JSON object');
  return body as Body;
}

const CORS = { 'access-control-allow-origin': '*', 'access-control-allow-headers': 'content-type, authorization', 'access-control-allow-methods': 'GET, POST, OPTIONS' };

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...CORS });
  res.end(text);
}

function sendError(res: ServerResponse, e: unknown): void {
  const re = e instanceof RequestError ? e : new RequestError(500, (e as Error)?.message ?? String(e), 'server_error');
  if (!res.headersSent) sendJson(res, re.status, { error: { message: re.message, type: re.type, code: null } });
  else if (!res.writableEnded) {
    res.write(`data: ${JSON.stringify({ error: { message: re.message, type: re.type } })}\n\n`);
    res.end();
  }
}

/** An OpenAI-compatible server for `opts.model` (not yet listening: call `listen`). */
export function createSambaServer(opts: ServeOptions): Server {
  const o = { maxTokensLimit: 4096, maxBodyBytes: 4 << 20, ...opts };
  const created = Math.floor(Date.now() / 1000);
  let turn: Promise<unknown> = Promise.resolve(); // one generation at a time
  let counter = 0;

  async function generate(kind: 'completion' | 'chat', job: Job, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${Date.now().toString(36)}${(counter++).toString(36)}`;
    const object = kind === 'chat' ? (job.stream ? 'chat.completion.chunk' : 'chat.completion') : 'text_completion';
    const now = Math.floor(Date.now() / 1000);
    const abort = new AbortController();
    res.on('close', () => { if (!res.writableFinished) abort.abort(new Error('the client went away')); });
    const event = (choice: Body) => {
      // with include_usage every chunk carries "usage": null, and the last one the counts
      res.write(`data: ${JSON.stringify({ id, object, created: now, model: o.modelId, choices: [{ index: 0, ...choice }], ...(job.includeUsage ? { usage: null } : {}) })}\n\n`);
    };
    const piece = (text: string, finish: string | null): Body => kind === 'chat'
      ? { delta: text ? { content: text } : {}, finish_reason: finish, logprobs: null }
      : { text, finish_reason: finish, logprobs: null };
    if (job.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', ...CORS });
      if (kind === 'chat') event({ delta: { role: 'assistant', content: '' }, finish_reason: null, logprobs: null });
    }
    const eos = o.tokenizer.eosId, filter = new StopFilter(job.stop);
    let text = '', generated = 0, finish = 'length';
    let started = false;
    const emit = (t: string) => {
      // a chat reply follows "Assistant:": the space the model writes after the colon is not content
      if (kind === 'chat' && !started) t = t.replace(/^ /, '');
      if (!t) return;
      started = true;
      if (job.stream) event(piece(t, null));
      else text += t;
    };
    if (job.maxTokens > 0) {
      // the generator ends after EOS (whose text is empty); the decoder's rest comes last, as id -1
      for await (const tok of generateText(o.model, o.tokenizer, job.prompt, {
        ...job.sampling, maxTokens: job.maxTokens, stopTokens: eos === undefined ? [] : [eos], signal: abort.signal,
      })) {
        if (tok.id >= 0) generated++;
        if (tok.id === eos) finish = 'stop';
        emit(filter.push(tok.text ?? ''));
        if (filter.done) { finish = 'stop'; break; } // leaving the loop ends the generator and frees its state
      }
    }
    emit(filter.flush());
    const usage = { prompt_tokens: job.prompt.length, completion_tokens: generated, total_tokens: job.prompt.length + generated };
    if (job.stream) {
      event(piece('', finish));
      if (job.includeUsage) res.write(`data: ${JSON.stringify({ id, object, created: now, model: o.modelId, choices: [], usage })}\n\n`);
      res.end('data: [DONE]\n\n');
      return;
    }
    const choice = kind === 'chat'
      ? { index: 0, message: { role: 'assistant', content: text }, finish_reason: finish, logprobs: null }
      : { index: 0, text, finish_reason: finish, logprobs: null };
    sendJson(res, 200, { id, object, created: now, model: o.modelId, choices: [choice], usage });
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0].replace(/\/+$/, '') || '/';
    if (req.method === 'OPTIONS') { res.writeHead(204, CORS); res.end(); return; }
    if (path === '/health') { sendJson(res, 200, { status: 'ok' }); return; }
    if (path === '/v1/models') {
      if (req.method !== 'GET') throw new RequestError(405, `${req.method} ${path}: use GET`);
      sendJson(res, 200, { object: 'list', data: [{ id: o.modelId, object: 'model', created, owned_by: 'samba-lm' }] });
      return;
    }
    const kind = path === '/v1/completions' ? 'completion' : path === '/v1/chat/completions' ? 'chat' : null;
    if (!kind) throw new RequestError(404, `no such endpoint: ${path} (see /v1/models, /v1/completions, /v1/chat/completions)`, 'not_found_error');
    if (req.method !== 'POST') throw new RequestError(405, `${req.method} ${path}: use POST`);
    const body = await readBody(req, o.maxBodyBytes);
    const job = kind === 'chat' ? chatJob(body, o) : completionJob(body, o);
    const mine = turn.then(() => (res.destroyed ? undefined : generate(kind, job, req, res))); // skipped if the client left while waiting
    turn = mine.catch(() => undefined);
    await mine;
  }

  return createServer((req, res) => {
    route(req, res).catch((e) => {
      if ((e as Error)?.message === 'the client went away') return;
      sendError(res, e);
    });
  });
}
