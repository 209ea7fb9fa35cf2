import { test } from 'node:test';
import assert from 'node:assert/strict';
import { countParams, layout, validateConfig, type SublayerKind } from '../../src/model/config.js';
import { PRESETS, PRESET_NAMES, describePreset, getPreset, hasPreset } from '../../src/model/presets.js';

const M = 1e6, B = 1e9;
const repeat = (pattern: SublayerKind[], n: number): SublayerKind[] => Array.from({ length: n }, () => pattern).flat();

// Exact totals. Code-defined configs: the numbers follow from microsoft/Samba lit_gpt/config.py shapes
// (the four that samba.md states are marked). Paper-only configs: pins of this package's reading of
// Tables 11/12 (tying chosen to match the size label).
const EXACT: Record<string, number> = {
  'samba-421m': 421_793_280, // samba.md §1.9
  'samba-421m-nope': 421_793_280,
  'samba-1.3b': 1_330_207_488, // samba.md §1.9
  'samba-1.3b-nope': 1_330_207_488,
  'samba-421m-gqa2': 426_511_872,
  'samba-421m-gqa4': 431_230_464,
  'samba-421m-mqa': 424_152_576,
  'samba-421m-mqa6': 426_511_872,
  'samba-421m-w1024': 421_793_280,
  'samba-421m-w512': 421_793_280,
  'samba-1.7b': 1_741_604_864, // samba.md: 1,741.6M
  'samba-3.8b': 3_864_275_712, // samba.md: 3,864.3M tied
  'llama-438m': 438_081_024, // samba.md §1.9
  'llama-438m-swa': 438_081_024,
  'llama-438m-swa-full': 438_081_024,
  'llama-438m-swa-gqa2': 419_206_656,
  'llama-438m-swa-gqa4': 428_643_840,
  'llama-438m-swa-mqa': 414_488_064,
  'llama-438m-swa-mqa6': 419_206_656,
  'llama-1.3b': 1_347_842_304,
  'llama-1.3b-swa': 1_347_842_304,
  'mamba-370m': 352_797_696,
  'mamba-430m': 432_804_864, // samba.md §1.9
  'mamba-1.3b': 1_334_740_992,
  'mamba-swa-mlp-400m': 394_999_296, // samba.md: ≈395.0M
  'mamba-swa-mlp-1.3b': 1_239_397_632,
  'mamba-mlp-421m': 420_865_536,
  'mamba-mlp-1.3b': 1_288_177_920,
  'mamba-mlp-449m-full0': 449_180_160,
  'mamba-mlp-449m-full5': 449_180_160,
  'mamba-mlp-449m-full11': 449_180_160,
  'mamba-mlp-443m-full1-5': 443_702_784,
  'llama3-1.6b': 1_640_597_504,
  'mistral-1.6b': 1_640_597_504,
  'mamba-1.8b': 1_795_295_232,
  'mamba-swa-mlp-1.6b': 1_654_888_448,
  'mamba-mlp-1.9b': 1_945_634_816,
  'samba-tiny': 241_984,
  'samba-nope-tiny': 250_176,
  'mamba-swa-mlp-tiny': 151_744,
  'mamba-mlp-tiny': 188_480,
  'mamba-tiny': 147_264,
  'llama-tiny': 117_056,
  'swa-tiny': 90_432,
};

// The paper's size labels. Almost all are the exact count truncated to the label's last digit
// (421.79M → "421M", 432.80M → "432M", 1.65B → "1.6B"); three are looser and get a relative bound.
const STATED: [name: string, label: number, unit: number, loose?: number][] = [
  ['samba-421m', 421 * M, M], ['samba-421m-nope', 421 * M, M],
  ['samba-1.3b', 1.3 * B, 0.1 * B], ['samba-1.3b-nope', 1.3 * B, 0.1 * B],
  ['samba-1.7b', 1.7 * B, 0.1 * B], ['samba-3.8b', 3.8 * B, 0.1 * B],
  ['llama-438m', 438 * M, M], ['llama-438m-swa', 438 * M, M],
  ['llama-1.3b', 1.3 * B, 0.1 * B], ['llama-1.3b-swa', 1.3 * B, 0.1 * B],
  ['mamba-430m', 432 * M, M], ['mamba-1.3b', 1.3 * B, 0.1 * B],
  ['mamba-mlp-449m-full0', 449 * M, M], ['mamba-mlp-449m-full5', 449 * M, M], ['mamba-mlp-449m-full11', 449 * M, M],
  ['mamba-mlp-443m-full1-5', 443 * M, M],
  ['llama3-1.6b', 1.6 * B, 0.1 * B], ['mistral-1.6b', 1.6 * B, 0.1 * B],
  ['mamba-swa-mlp-1.6b', 1.6 * B, 0.1 * B], ['mamba-mlp-1.9b', 1.9 * B, 0.1 * B],
  ['mamba-swa-mlp-400m', 400 * M, M, 0.015], // 395.0M
  ['mamba-swa-mlp-1.3b', 1.3 * B, 0.1 * B, 0.05], // 1.24B
  ['mamba-1.8b', 1.8 * B, 0.1 * B, 0.005], // 1.795B, rounded up
];

test('presets: exact parameter counts', () => {
  for (const [name, n] of Object.entries(EXACT)) assert.equal(countParams(getPreset(name)), n, name);
  // every preset is pinned
  assert.deepEqual([...PRESET_NAMES].sort(), Object.keys(EXACT).sort());
});

test('presets: counts agree with the paper\'s size labels', () => {
  for (const [name, label, unit, loose] of STATED) {
    const n = countParams(PRESETS[name]);
    if (loose === undefined) {
      assert.ok(n >= label && n < label + unit, `${name}: ${n} is not "${label}" truncated`);
    } else {
      assert.ok(Math.abs(n - label) / label <= loose, `${name}: ${n} vs ${label}`);
    }
    assert.equal(describePreset(name).statedParams, label, name);
  }
});

test('presets: layouts', () => {
  const samba = repeat(['mamba', 'mlp', 'swa', 'mlp'], 6);
  assert.deepEqual(layout(PRESETS['samba-421m']), samba);
  assert.deepEqual(layout(PRESETS['samba-421m-nope']), samba);
  assert.deepEqual(layout(PRESETS['samba-1.3b']), repeat(['mamba', 'mlp', 'swa', 'mlp'], 9));
  assert.deepEqual(layout(PRESETS['samba-1.7b']), repeat(['mamba', 'mlp', 'swa', 'mlp'], 12));
  assert.deepEqual(layout(PRESETS['samba-3.8b']), repeat(['mamba', 'mlp', 'swa', 'mlp'], 16));
  assert.deepEqual(layout(PRESETS['llama-438m']), repeat(['attn', 'mlp'], 12));
  assert.deepEqual(layout(PRESETS['llama-438m-swa']), repeat(['swa', 'mlp'], 12));
  assert.deepEqual(layout(PRESETS['llama-438m-swa-full']), repeat(['swa', 'mlp', 'attn', 'mlp'], 6));
  assert.deepEqual(layout(PRESETS['llama-1.3b']), repeat(['attn', 'mlp'], 20));
  assert.deepEqual(layout(PRESETS['llama3-1.6b']), repeat(['attn', 'mlp'], 24));
  assert.deepEqual(layout(PRESETS['mistral-1.6b']), repeat(['swa', 'mlp'], 24));
  assert.deepEqual(layout(PRESETS['mamba-430m']), repeat(['mamba'], 60));
  assert.deepEqual(layout(PRESETS['mamba-1.8b']), repeat(['mamba'], 64));
  assert.deepEqual(layout(PRESETS['mamba-swa-mlp-400m']), repeat(['mamba', 'swa', 'mlp'], 8));
  assert.deepEqual(layout(PRESETS['mamba-swa-mlp-1.6b']), repeat(['mamba', 'swa', 'mlp'], 18));
  assert.deepEqual(layout(PRESETS['mamba-mlp-421m']), repeat(['mamba', 'mlp'], 11));
  assert.deepEqual(layout(PRESETS['mamba-mlp-1.9b']), repeat(['mamba', 'mlp'], 24));

  const hybrid = (attnAt: number[]) => Array.from({ length: 12 }, (_, b): SublayerKind[] => [attnAt.includes(b) ? 'attn' : 'mamba', 'mlp']).flat();
  assert.deepEqual(layout(PRESETS['mamba-mlp-449m-full0']), hybrid([0]));
  assert.deepEqual(layout(PRESETS['mamba-mlp-449m-full5']), hybrid([5]));
  assert.deepEqual(layout(PRESETS['mamba-mlp-449m-full11']), hybrid([11]));
  assert.deepEqual(layout(PRESETS['mamba-mlp-443m-full1-5']), hybrid([1, 5]));
  assert.equal(layout(PRESETS['mamba-mlp-449m-full0'])[0], 'attn');
  assert.equal(layout(PRESETS['mamba-mlp-449m-full11'])[22], 'attn');

  assert.deepEqual(layout(PRESETS['samba-tiny']), repeat(['mamba', 'mlp', 'swa', 'mlp'], 2));
  assert.deepEqual(layout(PRESETS['mamba-swa-mlp-tiny']), repeat(['mamba', 'swa', 'mlp'], 2));
  assert.deepEqual(layout(PRESETS['mamba-mlp-tiny']), repeat(['mamba', 'mlp'], 3));
  assert.deepEqual(layout(PRESETS['mamba-tiny']), repeat(['mamba'], 4));
  assert.deepEqual(layout(PRESETS['llama-tiny']), repeat(['attn', 'mlp'], 2));
  assert.deepEqual(layout(PRESETS['swa-tiny']), repeat(['swa', 'mlp'], 2));
});

test('presets: shapes of the reference configs', () => {
  const s = PRESETS['samba-421m'];
  assert.equal(s.architecture, 'samba');
  assert.deepEqual(
    [s.vocabSize, s.dModel, s.nBlocks, s.nHeads, s.nKvHeads, s.headDim, s.mlpHidden, s.window, s.rope, s.tieEmbeddings],
    [32000, 1536, 12, 12, 12, 128, 4096, 2048, true, true],
  );
  assert.deepEqual(s.mamba, { dState: 16, dConv: 4, expand: 2, dtRank: 96 });
  assert.equal(s.ropeBase, 10000);
  assert.equal(s.normEps, 1e-5);
  assert.equal(PRESETS['samba-421m-nope'].rope, false);
  assert.equal(PRESETS['samba-1.3b-nope'].rope, false);
  assert.equal(PRESETS['samba-1.3b'].mamba.dtRank, 144);
  const p17 = PRESETS['samba-1.7b'];
  assert.deepEqual([p17.dModel, p17.nHeads, p17.nKvHeads, p17.headDim, p17.mlpHidden, p17.vocabSize, p17.mamba.dtRank], [2048, 32, 4, 64, 8192, 50304, 128]);
  const p38 = PRESETS['samba-3.8b'];
  assert.deepEqual([p38.dModel, p38.nBlocks, p38.nHeads, p38.nKvHeads, p38.headDim, p38.mlpHidden, p38.vocabSize, p38.mamba.dtRank], [2816, 32, 11, 1, 256, 9984, 32064, 176]);
  // tying: untied exactly for the configs without mamba_init (and the Llama-3/Mistral reading)
  const untied = PRESET_NAMES.filter((n) => !PRESETS[n].tieEmbeddings).sort();
  assert.deepEqual(untied, ['llama-438m', 'llama-438m-swa', 'llama-438m-swa-full', 'llama-438m-swa-gqa2', 'llama-438m-swa-gqa4', 'llama-438m-swa-mqa', 'llama-438m-swa-mqa6', 'llama3-1.6b', 'mistral-1.6b']);
  // Table 6 head ablations: widened MLP, fewer KV heads
  assert.deepEqual(['samba-421m-gqa2', 'samba-421m-gqa4', 'samba-421m-mqa', 'samba-421m-mqa6'].map((n) => [PRESETS[n].nHeads, PRESETS[n].nKvHeads, PRESETS[n].headDim, PRESETS[n].mlpHidden]),
    [[12, 2, 128, 4608], [12, 4, 128, 4608], [12, 1, 128, 4608], [6, 1, 256, 4608]]);
});

test('presets: tiny presets are small and cover every architecture', () => {
  const tiny = PRESET_NAMES.filter((n) => n.endsWith('-tiny'));
  assert.deepEqual(tiny.sort(), ['llama-tiny', 'mamba-mlp-tiny', 'mamba-swa-mlp-tiny', 'mamba-tiny', 'samba-nope-tiny', 'samba-tiny', 'swa-tiny']);
  assert.deepEqual(new Set(tiny.map((n) => PRESETS[n].architecture)), new Set(['samba', 'mamba-swa-mlp', 'mamba-mlp', 'mamba', 'llama', 'swa']));
  for (const n of tiny) {
    const c = PRESETS[n];
    assert.equal(c.dModel, 64, n);
    assert.equal(c.vocabSize, 256, n);
    assert.equal(c.nHeads * c.headDim, 64, n);
    assert.ok(c.nBlocks >= 2 && c.nBlocks <= 4, n);
    assert.ok(c.mlpHidden >= 128 && c.mlpHidden <= 176, n);
    assert.ok(c.window >= 8 && c.window <= 16, n);
    assert.equal(describePreset(n).source.kind, 'test');
  }
  assert.equal(PRESETS['samba-nope-tiny'].rope, false);
  assert.ok(tiny.some((n) => PRESETS[n].nKvHeads === 1), 'an MQA tiny preset');
  assert.ok(tiny.some((n) => PRESETS[n].nKvHeads > 1 && PRESETS[n].nKvHeads < PRESETS[n].nHeads), 'a GQA tiny preset');
});

test('presets: all valid; getPreset copies; unknown names', () => {
  for (const n of PRESET_NAMES) validateConfig(PRESETS[n]);
  const c = getPreset('samba-tiny');
  c.window = 4;
  c.mamba.dState = 8;
  assert.equal(PRESETS['samba-tiny'].window, 16);
  assert.equal(PRESETS['samba-tiny'].mamba.dState, 16);
  assert.ok(Object.isFrozen(PRESETS['samba-tiny']) && Object.isFrozen(PRESETS['samba-tiny'].mamba));
  assert.equal(getPreset('Samba-421M').dModel, 1536);
  assert.ok(hasPreset('samba-421m') && !hasPreset('samba-9b'));
  assert.throws(() => getPreset('samba-9b'), (e: Error) => {
    assert.match(e.message, /unknown model preset "samba-9b"/);
    assert.match(e.message, /samba-421m, /);
    assert.match(e.message, /swa-tiny/);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });
  assert.throws(() => describePreset('nope'), /known: /);
});

test('presets: metadata', () => {
  assert.deepEqual(describePreset('samba-421m'), {
    name: 'samba-421m', paperName: 'Samba 421M', source: { kind: 'code', config: 'Samba_421M' }, statedParams: 421e6, params: 421_793_280,
  });
  assert.deepEqual(describePreset('samba-1.7b').source, { kind: 'paper', table: 'Table 12' });
  assert.equal(describePreset('mamba-mlp-421m').source.kind, 'derived');
  assert.equal(describePreset('mamba-430m').paperName, 'Mamba 432M');
  for (const n of PRESET_NAMES) {
    const d = describePreset(n);
    assert.equal(d.name, n);
    assert.equal(d.params, EXACT[n]);
  }
});
