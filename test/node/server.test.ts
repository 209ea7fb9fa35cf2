// The OpenAI-compatible server against the library itself: the same greedy text through
// /v1/completions (plain and streamed) and generateIds, chat as a completion of its transcript,
// stop strings, one clear error per bad request, and a client that leaves mid-stream.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { CpuBackend } from '../../src/backends/cpu/cpu.js';
import { generateIds } from '../../src/generate/generate.js';
import { CHAT_STOPS, StopFilter, chatPrompt, createSambaServer } from '../../src/node/server.js';
import { ByteTokenizer } from '../../src/tokenizer/bytes.js';
import { randomModel, tinyConfig } from '../helpers/models.js';

const be = new CpuBackend();
const model = randomModel(be, tinyConfig('samba', { vocabSize: 257 }), 3);
const tokenizer = new ByteTokenizer({ eos: true });
const LIMIT = 1_000_000; // far more than a test could wait for: a generation that is not stopped hangs
const server = createSambaServer({ model, tokenizer, modelId: 'tiny', maxTokensLimit: LIMIT });
await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
after(() => { server.closeAllConnections(); server.close(); model.dispose(); });

const post = (path: string, body: unknown) => fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Greedy text the library itself generates for `prompt`, and whether it ended at EOS. */
async function reference(prompt: string, maxTokens: number): Promise<{ text: string; ids: number[] }> {
  const ids: number[] = [];
  for await (const id of generateIds(model, tokenizer.encode(prompt), { temperature: 0, maxTokens, stopTokens: [256] })) ids.push(id);
  return { text: tokenizer.decode(ids), ids };
}

/** The data lines of a server-sent event stream, parsed ([DONE] as the string). */
function events(text: string): (Json | string)[] {
  return text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6)).map((d) => (d === '[DONE]' ? d : JSON.parse(d)));
}

test('GET /v1/models and /health', async () => {
  const m = await (await fetch(`${base}/v1/models`)).json() as Json;
  assert.equal(m.object, 'list');
  assert.deepEqual(m.data.map((d: Json) => d.id), ['tiny']);
  assert.deepEqual(await (await fetch(`${base}/health`)).json(), { status: 'ok' });
});

test('POST /v1/completions: the greedy text generateIds gives, with usage; streamed the same', async () => {
  const ref = await reference('Hello, Samba', 12);
  const r = await post('/v1/completions', { model: 'tiny', prompt: 'Hello, Samba', max_tokens: 12, temperature: 0 });
  assert.equal(r.status, 200);
  const j = await r.json() as Json;
  assert.equal(j.object, 'text_completion');
  assert.equal(j.choices[0].text, ref.text);
  assert.equal(j.choices[0].finish_reason, ref.ids.at(-1) === 256 ? 'stop' : 'length');
  assert.deepEqual(j.usage, { prompt_tokens: 12, completion_tokens: ref.ids.length, total_tokens: 12 + ref.ids.length });

  const s = await post('/v1/completions', { prompt: 'Hello, Samba', max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
  assert.match(s.headers.get('content-type') ?? '', /text\/event-stream/);
  const ev = events(await s.text());
  assert.equal(ev.at(-1), '[DONE]');
  const chunks = ev.filter((e): e is Json => typeof e !== 'string' && e.choices.length > 0);
  assert.equal(chunks.map((c) => c.choices[0].text).join(''), ref.text);
  assert.equal(chunks.at(-1)!.choices[0].finish_reason, j.choices[0].finish_reason);
  assert.deepEqual((ev.at(-2) as Json).usage, j.usage);
  assert.ok(chunks.every((c) => c.usage === null), 'with include_usage every other chunk has "usage": null');

  // token ids as the prompt give the same
  const t = await (await post('/v1/completions', { prompt: tokenizer.encode('Hello, Samba'), max_tokens: 12, temperature: 0 })).json() as Json;
  assert.equal(t.choices[0].text, ref.text);
});

test('stop strings end the text before them, also when streamed', async () => {
  const ref = await reference('abc', 24);
  assert.ok(ref.text.length >= 6, `the reference text is too short to cut: ${JSON.stringify(ref.text)}`);
  const stop = ref.text.slice(3, 5), want = ref.text.slice(0, ref.text.indexOf(stop));
  const j = await (await post('/v1/completions', { prompt: 'abc', max_tokens: 24, temperature: 0, stop: [stop] })).json() as Json;
  assert.equal(j.choices[0].text, want);
  assert.equal(j.choices[0].finish_reason, 'stop');
  const ev = events(await (await post('/v1/completions', { prompt: 'abc', max_tokens: 24, temperature: 0, stop, stream: true })).text());
  const chunks = ev.filter((e): e is Json => typeof e !== 'string');
  assert.equal(chunks.map((c) => c.choices[0].text).join(''), want);
  assert.equal(chunks.at(-1)!.choices[0].finish_reason, 'stop');
});

test('POST /v1/chat/completions continues the chat transcript, stopping at the next turn', async () => {
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hi' }] }];
  const prompt = chatPrompt([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]);
  assert.equal(prompt, 'System: Be brief.\nUser: Hi\nAssistant:');
  const viaCompletion = await (await post('/v1/completions', { prompt, max_tokens: 20, temperature: 0, stop: CHAT_STOPS })).json() as Json;
  const r = await post('/v1/chat/completions', { messages, max_tokens: 20, temperature: 0 });
  assert.equal(r.status, 200);
  const j = await r.json() as Json;
  assert.equal(j.object, 'chat.completion');
  // the reply is the completion without the space after "Assistant:"
  assert.deepEqual(j.choices[0].message, { role: 'assistant', content: viaCompletion.choices[0].text.replace(/^ /, '') });
  const ev = events(await (await post('/v1/chat/completions', { messages, max_tokens: 20, temperature: 0, stream: true })).text());
  const chunks = ev.filter((e): e is Json => typeof e !== 'string');
  assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
  assert.equal(chunks.map((c) => c.choices[0].delta.content ?? '').join(''), j.choices[0].message.content);
  assert.equal(chunks.at(-1)!.object, 'chat.completion.chunk');
});

test('bad requests get one clear error each', async () => {
  const cases: [string, unknown, number, RegExp][] = [
    ['/v1/completions', '{not json', 400, /not valid JSON/],
    ['/v1/completions', {}, 400, /"prompt" must be/],
    ['/v1/completions', { prompt: 'x', n: 2 }, 400, /"n" must be 1/],
    ['/v1/completions', { prompt: 'x', max_tokens: LIMIT + 1 }, 400, /at most 1000000/],
    ['/v1/completions', { prompt: 'x', stop: Array.from({ length: 17 }, (_, i) => `s${i}`) }, 400, /"stop" takes at most 16 strings/],
    ['/v1/completions', { prompt: 'x', temperature: -1 }, 400, /"temperature" must be a number ≥ 0/],
    ['/v1/completions', { prompt: [1, 999] }, 400, /token 999 is outside the vocabulary/],
    ['/v1/completions', { prompt: 'x', presence_penalty: 0.5 }, 400, /not supported/],
    ['/v1/chat/completions', { messages: [] }, 400, /"messages" must be a non-empty array/],
    ['/v1/chat/completions', { messages: [{ role: 'user', content: 3 }] }, 400, /messages\[0\]\.content must be text/],
    ['/v1/nothing', {}, 404, /no such endpoint/],
  ];
  for (const [path, body, status, message] of cases) {
    const r = await fetch(base + path, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
    assert.equal(r.status, status, `${path} ${JSON.stringify(body)}`);
    const j = await r.json() as Json;
    assert.match(j.error.message, message);
  }
  assert.equal((await fetch(`${base}/v1/completions`)).status, 405);
  // any model name is taken: there is one model, and clients often send a fixed one
  const named = await (await post('/v1/completions', { prompt: 'x', model: 'gpt-4', max_tokens: 2 })).json() as Json;
  assert.equal(named.model, 'tiny');
});

test('stop filter: holds back only a possible start of a stop string, never half a surrogate pair', () => {
  const f = new StopFilter(['xyz']);
  assert.equal(f.push('abcx'), 'abc');
  assert.equal(f.push('q'), 'xq');
  assert.equal(f.push('xy'), '');
  assert.equal(f.push('zrest'), '');
  assert.ok(f.done);
  const g = new StopFilter(['\nUser:']);
  const pieces = ['Hi ', '😀', 'abcdef', 'g', '\nUs', 'er: more'].map((p) => g.push(p));
  for (const p of pieces) {
    const c = p.charCodeAt(p.length - 1);
    assert.ok(!(c >= 0xd800 && c <= 0xdbff), `a piece ends inside a surrogate pair: ${JSON.stringify(p)}`);
  }
  assert.equal(pieces.join(''), 'Hi 😀abcdefg');
  assert.ok(g.done);
  // a stop string that begins inside a surrogate pair (artificial): the pair is held back whole
  const s = new StopFilter(['\ude00x']);
  assert.equal(s.push('a😀'), 'a');
  assert.equal(s.push('b'), '😀b');
  const h = new StopFilter(['ab', 'b']);
  assert.equal(h.push('xab'), 'x', 'the earliest stop wins');
});

test('a client that leaves mid-stream frees the model for the next request', { timeout: 120_000 }, async () => {
  const ctrl = new AbortController();
  const r = await fetch(`${base}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'long', max_tokens: LIMIT, stream: true }), signal: ctrl.signal });
  const reader = r.body!.getReader();
  await reader.read(); // the first event
  ctrl.abort();
  const ref = await reference('next', 5);
  const j = await (await post('/v1/completions', { prompt: 'next', max_tokens: 5, temperature: 0 })).json() as Json;
  assert.equal(j.choices[0].text, ref.text);
});
