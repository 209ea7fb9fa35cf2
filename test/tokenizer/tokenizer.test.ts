import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { ByteTokenizer, HfTokenizer, GenericStreamDecoder, createStreamDecoder, type TextTokenizer } from '../../src/tokenizer/index.js';
import { makeConfig, paramSpecs } from '../../src/model/config.js';
import { saveModelFolder, loadFolderTokenizer, openModelFolder, loadTokenizerJson } from '../../src/node/checkpoint.js';
import { llama2Tokenizer, neoxTokenizer } from './fixtures.js';
import { withTmp } from '../io/paths.js';

const TEXTS = [
  'hello world', 'Hello the cat!', ' x  y', 'héllo 世界 🙂\n\nend', '    indented   three', 'tabs\tand\r\nCRLF',
  'Ελληνικά, русский, עברית, 日本語のテキスト, 한국어', '🏳️‍🌈👩‍👩‍👧 combining e\u0301', '', ' ', 'a',
];

/** Streams ids one at a time; checks that the pieces join to the text and never hold a half character. */
function streamPieces(tok: TextTokenizer, ids: number[]): string[] {
  const dec = createStreamDecoder(tok);
  const pieces = ids.map((id) => dec.push(id));
  pieces.push(dec.flush());
  return pieces;
}

function checkStream(tok: TextTokenizer, text: string, ids = tok.encode(text)) {
  const pieces = streamPieces(tok, ids);
  assert.equal(pieces.join(''), tok.decode(ids), `stream of ${JSON.stringify(text)}`);
  for (const p of pieces) assert.ok(!p.includes('\uFFFD'), `piece ${JSON.stringify(p)} of ${JSON.stringify(text)} holds U+FFFD`);
  return pieces;
}

test('byte tokenizer: UTF-8 bytes, EOS, invalid ids, round trips', () => {
  const t = new ByteTokenizer();
  assert.equal(t.vocabSize, 256);
  assert.equal(t.eosId, undefined);
  assert.deepEqual(t.encode('aé'), [0x61, 0xc3, 0xa9]);
  for (const s of TEXTS) assert.equal(t.decode(t.encode(s)), s);
  const e = new ByteTokenizer({ eos: true });
  assert.equal(e.vocabSize, 257);
  assert.equal(e.eosId, 256);
  assert.equal(e.decode([0x68, 0x69, 256]), 'hi');
  assert.equal(t.decode([0x68, 300, 0x69]), 'h\uFFFDi'); // a padded vocabulary row is not a byte
  assert.equal(t.decode([0xc3]), '\uFFFD'); // incomplete character
});

test('byte tokenizer stream decoder emits whole characters only', () => {
  const t = new ByteTokenizer({ eos: true });
  const pieces = checkStream(t, '🙂é!');
  assert.deepEqual(pieces, ['', '', '', '🙂', '', 'é', '!', '']);
  for (const s of TEXTS) checkStream(t, s);
  const d = t.streamDecoder();
  assert.equal(d.push(0xe4, 0xb8), '');
  assert.equal(d.flush(), '\uFFFD'); // the stream ended mid-character
  assert.equal(d.push(0x41), 'A'); // and the decoder is reset
  assert.equal(d.push(0xff), '\uFFFD'); // invalid bytes are not held back
});

test('Llama-2 style SentencePiece BPE with byte fallback: encode, decode, special tokens', () => {
  const { json, config } = llama2Tokenizer();
  const t = new HfTokenizer(json, config);
  assert.equal(t.bosId, 1);
  assert.equal(t.eosId, 2);
  assert.equal(t.vocabSize, Object.keys(json.model as object).length > 0 ? Object.keys((json.model as { vocab: object }).vocab).length : 0);
  const id = (s: string) => t.tokenToId(s)!;
  assert.deepEqual(t.encode('hello world'), [1, id('▁hello'), id('▁world')]);
  assert.deepEqual(t.encode('hello world', { addSpecialTokens: false }), [id('▁hello'), id('▁world')]);
  // byte fallback: 'é' is not in the vocabulary -> <0xC3> <0xA9> (ids 3 + byte)
  assert.deepEqual(t.encode('é', { addSpecialTokens: false }), [id('▁'), 3 + 0xc3, 3 + 0xa9]);
  assert.deepEqual(t.tokenize('Hello'), ['▁', '<0x48>', 'e', 'llo']);
  for (const s of TEXTS) assert.equal(t.decode(t.encode(s)), s, JSON.stringify(s));
  assert.equal(t.decode([1, id('▁hello'), 2]), 'hello');
  assert.equal(t.decode([1, id('▁hello'), 2], { skipSpecialTokens: false }), '<s> hello</s>');
  assert.equal(t.decode([]), '');
  // the same from raw JSON text, and without tokenizer_config.json (BOS/EOS found among the special tokens)
  const bare = new HfTokenizer(JSON.stringify(json));
  assert.equal(bare.bosId, 1);
  assert.equal(bare.eosId, 2);
});

test('Llama-2 style: streaming decode keeps spaces and joins byte-fallback characters', () => {
  const { json, config } = llama2Tokenizer();
  const t = new HfTokenizer(json, config);
  const pieces = checkStream(t, 'hello world é!');
  assert.deepEqual(pieces.filter((p) => p !== ''), ['hello', ' world', ' ', 'é', '!']);
  for (const s of TEXTS) checkStream(t, s);
  // a stray continuation byte is emitted (as U+FFFD) instead of being held forever
  const d = new GenericStreamDecoder(t);
  let out = d.push(3 + 0xc3);
  assert.equal(out, '');
  out += d.push(t.tokenToId('▁cat')!);
  assert.equal(out, '\uFFFD cat');
});

test('GPT-NeoX style byte-level BPE: encode, decode, added tokens, EOS', () => {
  const { json, config } = neoxTokenizer();
  const t = new HfTokenizer(json, config);
  assert.equal(t.eosId, 0);
  assert.equal(t.bosId, 0);
  const id = (s: string) => t.tokenToId(s)!;
  assert.deepEqual(t.encode('hello world'), [id('hello'), id('Ġworld')]); // no BOS added
  assert.deepEqual(t.tokenize('the cat'), ['t', 'he', 'Ġcat']);
  assert.deepEqual(t.tokenize(' the'), ['Ġthe']);
  assert.equal(t.encode('    x')[0], id('    ')); // GPT-NeoX's added whitespace-run tokens
  // the NFC normalizer composes e + U+0301 into é, as GPT-NeoX's tokenizer does
  for (const s of TEXTS) assert.equal(t.decode(t.encode(s)), s.normalize('NFC'), JSON.stringify(s));
  assert.equal(t.decode([id('hello'), 0]), 'hello');
  assert.equal(t.decode([id('hello'), 0], { skipSpecialTokens: false }), 'hello<|endoftext|>');
  const bare = new HfTokenizer(json);
  assert.equal(bare.eosId, 0);
  assert.equal(bare.padId, 1);
  assert.equal(bare.vocabSize, t.vocabSize);
});

test('GPT-NeoX style: streaming decode never splits a character', () => {
  const { json, config } = neoxTokenizer();
  const t = new HfTokenizer(json, config);
  const pieces = checkStream(t, 'a🙂 world');
  assert.deepEqual(pieces.filter((p) => p !== ''), ['a', '🙂', ' world']);
  for (const s of TEXTS) checkStream(t, s);
});

test('tokenizer.json errors are clear', () => {
  assert.throws(() => new HfTokenizer('{not json'), /tokenizer\.json: not valid JSON/);
  assert.throws(() => new HfTokenizer({ version: '1.0' }), /no "model" section/);
  const { json } = neoxTokenizer();
  assert.throws(() => new HfTokenizer(json, '{'), /tokenizer_config\.json: not valid JSON/);
});

test('model folders carry tokenizers: tokenizer.json (+ config) copied on save, "bytes" in samba-lm config.json', async () => {
  const config = makeConfig({ architecture: 'mamba', vocabSize: 320, dModel: 16, nBlocks: 1 });
  const zeros = (n: string) => new Float32Array(paramSpecs(config).find((s) => s.name === n)!.shape.reduce((a, b) => a * b, 1));
  await withTmp(async (src) => {
    const { json, config: tc } = llama2Tokenizer();
    await writeFile(path.join(src, 'tokenizer.json'), JSON.stringify(json));
    await writeFile(path.join(src, 'tokenizer_config.json'), JSON.stringify(tc));
    for (const format of ['samba-lm', 'hf-mamba'] as const) {
      await withTmp(async (dir) => {
        await saveModelFolder(dir, config, zeros, { format, tokenizerJsonPath: path.join(src, 'tokenizer.json') });
        const f = await openModelFolder(dir);
        await f.close();
        assert.deepEqual(f.tokenizerRef, { type: 'tokenizer.json', path: path.join(dir, 'tokenizer.json'), configPath: path.join(dir, 'tokenizer_config.json') });
        if (format === 'samba-lm') assert.equal(JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')).tokenizer, 'tokenizer.json');
        const tok = await loadFolderTokenizer(dir);
        assert.ok(tok instanceof HfTokenizer);
        assert.equal(tok.eosId, 2);
        assert.equal(tok.decode(tok.encode('hello world')), 'hello world');
        const again = await loadFolderTokenizer(f.tokenizerRef);
        assert.deepEqual(again!.encode('the cat'), tok.encode('the cat'));
      });
    }
  });
  await withTmp(async (dir) => {
    await saveModelFolder(dir, config, zeros, { tokenizer: { type: 'bytes', eos: false } });
    assert.equal(JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')).tokenizer, 'bytes');
    const tok = await loadFolderTokenizer(dir);
    assert.ok(tok instanceof ByteTokenizer);
    assert.equal(tok.vocabSize, 256);
    await saveModelFolder(dir, config, zeros, { tokenizer: { type: 'bytes', eos: true } });
    assert.equal((await loadFolderTokenizer(dir))!.eosId, 256);
    await saveModelFolder(dir, config, zeros, {});
    assert.equal(await loadFolderTokenizer(dir), undefined);
  });
  await withTmp(async (dir) => {
    await writeFile(path.join(dir, 'tokenizer.json'), '{"model": 1');
    await assert.rejects(loadTokenizerJson(path.join(dir, 'tokenizer.json')), (e: Error) => e.message.includes(dir) && /not valid JSON/.test(e.message));
  });
});
