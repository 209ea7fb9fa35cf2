// Small but real-format tokenizer.json files (the network is closed, so none are downloaded):
//   llama2Tokenizer()  SentencePiece BPE with byte fallback, structured like meta-llama/Llama-2's
//                      tokenizer.json (Prepend/Replace normalizer, TemplateProcessing adding <s>,
//                      Replace/ByteFallback/Fuse/Strip decoder, <0x00>..<0xFF> byte tokens at 3..258).
//   neoxTokenizer()    byte-level BPE structured like EleutherAI/gpt-neox-20b's (ByteLevel pre-tokenizer,
//                      post-processor and decoder, <|endoftext|> = 0, <|padding|> = 1, added
//                      whitespace-run tokens).

type Json = Record<string, unknown>;

/** Vocabulary entries for merges, in merge order, after `base`. */
function mergedVocab(base: string[], merges: string[], startId: number): Map<string, number> {
  const vocab = new Map<string, number>();
  let id = startId;
  for (const t of base) if (!vocab.has(t)) vocab.set(t, id++);
  for (const m of merges) {
    const [a, b] = m.split(' ');
    if (!vocab.has(a) || !vocab.has(b)) throw new Error(`fixture: merge "${m}" uses an unknown token`);
    if (!vocab.has(a + b)) vocab.set(a + b, id++);
  }
  return vocab;
}

const addedToken = (id: number, content: string, special = true, normalized = false) => ({
  id, content, single_word: false, lstrip: false, rstrip: false, normalized, special,
});

export const LLAMA_MERGES = [
  '▁ t', '▁ h', 'h e', '▁ a', '▁ w', 'l l', 'o r', 'i n', '▁t he', 'll o', '▁h e', '▁he llo', '▁w or', 'l d', '▁wor ld',
  'i s', '▁ i', '▁i s', 'e r', '▁ s', 'in g', 'a t', '▁ c', 'o n', '▁c at',
];

export function llama2Tokenizer(): { json: Json; config: Json } {
  const specials = ['<unk>', '<s>', '</s>'];
  const bytes = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const chars = ['▁', ...'etaoinshrdlcumwfgypbvk,.!?'.split('')];
  const vocab = mergedVocab([...specials, ...bytes, ...chars], LLAMA_MERGES, 0);
  const json: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((s, i) => addedToken(i, s)),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab: Object.fromEntries(vocab), merges: LLAMA_MERGES,
    },
  };
  const tok = (content: string) => ({ __type: 'AddedToken', content, lstrip: false, normalized: false, rstrip: false, single_word: false });
  const config: Json = {
    add_bos_token: true, add_eos_token: false, bos_token: tok('<s>'), eos_token: tok('</s>'), unk_token: tok('<unk>'),
    clean_up_tokenization_spaces: false, legacy: false, model_max_length: 1000000000000000019884624838656, pad_token: null,
    sp_model_kwargs: {}, tokenizer_class: 'LlamaTokenizer',
  };
  return { json, config };
}

/** GPT-2's byte -> printable character table. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  const out: string[] = new Array(256);
  bs.forEach((b, i) => { out[b] = String.fromCharCode(cs[i]); });
  return out;
}

export const NEOX_MERGES = ['Ġ t', 'Ġ h', 'h e', 'Ġ a', 'Ġ w', 'l l', 'o r', 'i n', 'Ġt he', 'll o', 'Ġh e', 'Ġhe llo', 'he llo', 'Ġw or', 'l d', 'Ġwor ld', 'Ġ c', 'a t', 'Ġc at', 'Ċ Ċ'];

export function neoxTokenizer(): { json: Json; config: Json } {
  const table = bytesToUnicode();
  // byte characters in GPT-2 order (printable first), as in the GPT-NeoX vocabulary
  const order: number[] = [];
  for (let b = 33; b <= 126; b++) order.push(b);
  for (let b = 161; b <= 172; b++) order.push(b);
  for (let b = 174; b <= 255; b++) order.push(b);
  for (let b = 0; b < 256; b++) if (!order.includes(b)) order.push(b);
  const vocab = mergedVocab(['<|endoftext|>', '<|padding|>', ...order.map((b) => table[b])], NEOX_MERGES, 0);
  const next = vocab.size;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const json: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [addedToken(0, '<|endoftext|>'), addedToken(1, '<|padding|>'), addedToken(next, '    ', false, true), addedToken(next + 1, '   ', false, true)],
    normalizer: { type: 'NFC' },
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel },
    decoder: { ...byteLevel },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false,
      vocab: Object.fromEntries(vocab), merges: NEOX_MERGES,
    },
  };
  const config: Json = { add_prefix_space: false, bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', tokenizer_class: 'GPTNeoXTokenizer' };
  return { json, config };
}
