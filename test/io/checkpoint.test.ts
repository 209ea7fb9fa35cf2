import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, copyFile, readdir, mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import { makeConfig, paramSpecs, layout, type ModelConfig, type ConfigInput } from '../../src/model/config.js';
import {
  detectFormat, planImport, planExport, permuteQkv, parseAttnLayerPos, architectureFor, CheckpointError, openCheckpoint,
  bufferSource, serializeCheckpoint, type Shapes,
} from '../../src/io/checkpoint.js';
import { readSafetensors, SafetensorsBuffer } from '../../src/io/safetensors.js';
import { f32ToBf16Bits, bf16BitsToF32, f32ToF16Bits, f16BitsToF32 } from '../../src/io/half.js';
import { loadModelFolder, openModelFolder, saveModelFolder, describeFolder } from '../../src/node/checkpoint.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../../src/node/files.js';
import { GOLDEN_CASES, golden, withTmp } from './paths.js';

const goldenConfig = async (c: string) => JSON.parse(await readFile(golden(c, 'config.json'), 'utf8')) as Record<string, unknown>;
const goldenShapes = async (c: string): Promise<Map<string, number[]>> => {
  const { tensors } = await readSafetensorsFile(golden(c, 'model.safetensors'));
  return new Map([...tensors].map(([k, v]) => [k, v.shape]));
};

const EXPECTED: Record<string, { format: string; config: ConfigInput }> = {
  'hf-mamba-tiny': { format: 'hf-mamba', config: { architecture: 'mamba', vocabSize: 256, dModel: 64, nBlocks: 2, tieEmbeddings: true, normEps: 1e-5, mamba: { dState: 16, dConv: 4, expand: 2, dtRank: 4 } } },
  'samba-tiny': { format: 'samba-reference', config: { architecture: 'samba', vocabSize: 256, dModel: 64, nBlocks: 4, nHeads: 4, nKvHeads: 4, headDim: 16, mlpHidden: 176, window: 16, rope: true, tieEmbeddings: true } },
  'samba-gqa-tiny': { format: 'samba-reference', config: { architecture: 'samba', vocabSize: 256, dModel: 64, nBlocks: 2, nHeads: 4, nKvHeads: 2, headDim: 16, mlpHidden: 128, window: 8, rope: true, tieEmbeddings: true } },
  'llama-tiny': { format: 'samba-reference', config: { architecture: 'llama', vocabSize: 256, dModel: 64, nBlocks: 2, nHeads: 4, nKvHeads: 1, headDim: 16, mlpHidden: 128, rope: true, tieEmbeddings: true } },
  'mamba-swa-mlp-tiny': { format: 'samba-reference', config: { architecture: 'mamba-swa-mlp', vocabSize: 256, dModel: 64, nBlocks: 2, nHeads: 4, nKvHeads: 4, headDim: 16, mlpHidden: 128, window: 8, rope: true, tieEmbeddings: true } },
};

test('the five golden folders load with the right formats, configs and tensor shapes', async () => {
  for (const c of GOLDEN_CASES) {
    const m = await loadModelFolder(golden(c));
    const want = EXPECTED[c];
    assert.equal(m.format, want.format, c);
    for (const [k, v] of Object.entries(want.config)) assert.deepEqual((m.config as unknown as Record<string, unknown>)[k], v, `${c}: ${k}`);
    assert.equal(m.config.layout, undefined, `${c}: a named architecture, no explicit layout`);
    assert.deepEqual(m.config.mamba, { dState: 16, dConv: 4, expand: 2, dtRank: 4 }, c);
    const specs = paramSpecs(m.config);
    assert.deepEqual([...m.tensors.keys()], specs.map((s) => s.name), c);
    for (const s of specs) {
      const t = m.tensors.get(s.name)!;
      assert.deepEqual(t.shape, s.shape, `${c}: ${s.name}`);
      assert.equal(t.data.length, s.shape.reduce((a, b) => a * b, 1), `${c}: ${s.name}`);
    }
  }
});

test('describeFolder reads config and format without the data', async () => {
  const d = await describeFolder(golden('samba-tiny'));
  assert.equal(d.format, 'samba-reference');
  assert.deepEqual(layout(d.config), ['mamba', 'mlp', 'swa', 'mlp', 'mamba', 'mlp', 'swa', 'mlp']);
  assert.equal(d.tokenizerRef, undefined);
});

test('reference names map to samba-lm names; qkv rows regrouped, conv1d squeezed (samba-gqa-tiny)', async () => {
  const raw = (await readSafetensorsFile(golden('samba-gqa-tiny', 'model.safetensors'))).tensors;
  const m = await loadModelFolder(golden('samba-gqa-tiny'));
  const R = (k: string) => raw.get(k)!.data as Float32Array;
  const T = (k: string) => m.tensors.get(k)!.data;
  assert.deepEqual(T('embed.weight'), R('transformer.wte.weight'));
  assert.deepEqual(T('norm_f.weight'), R('transformer.ln_f.weight'));
  assert.deepEqual(T('layers.0.norm.weight'), R('transformer.h.0.norm_1.weight'));
  assert.deepEqual(T('layers.0.mamba.conv1d.weight'), R('transformer.h.0.attn.conv1d.weight'));
  assert.deepEqual(m.tensors.get('layers.0.mamba.conv1d.weight')!.shape, [128, 4]);
  assert.deepEqual(T('layers.0.mamba.A_log'), R('transformer.h.0.attn.A_log'));
  assert.deepEqual(T('layers.1.norm.weight'), R('transformer.h.0.norm_2.weight'));
  assert.deepEqual(T('layers.1.mlp.w3.weight'), R('transformer.h.0.mlp.swiglu.w3.weight'));
  assert.deepEqual(T('layers.2.norm.weight'), R('transformer.h.1.norm_1.weight'));
  assert.deepEqual(T('layers.2.attn.out.weight'), R('transformer.h.1.attn.proj.weight'));
  // grouped rows (hs 16): 0–15 q0, 16–31 q1, 32–47 k0, 48–63 v0, 64–79 q2, 80–95 q3, 96–111 k1, 112–127 v1
  const g = R('transformer.h.1.attn.attn.weight'), s = T('layers.2.attn.qkv.weight');
  const rows = (a: Float32Array, r0: number) => a.subarray(r0 * 64, (r0 + 16) * 64);
  const want: Array<[number, number]> = [[0, 0], [16, 16], [32, 64], [48, 80], [64, 32], [80, 96], [96, 48], [112, 112]]; // [split row, grouped row]
  for (const [sr, gr] of want) assert.deepEqual(rows(s, sr), rows(g, gr), `split rows ${sr}.. from grouped rows ${gr}..`);
});

test('qkv permutation: MHA and MQA layouts, and the inverse', () => {
  const hs = 2, d = 3;
  const mk = (H: number, Hkv: number) => Float32Array.from({ length: (H + 2 * Hkv) * hs * d }, (_, i) => i);
  // MHA (2 heads): grouped [q0 k0 v0 q1 k1 v1] -> [q0 q1 k0 k1 v0 v1]
  const mha = permuteQkv(mk(2, 2), 2, 2, hs, 'grouped-to-split');
  const head = (a: Float32Array, h: number) => [...a.subarray(h * hs * d, (h + 1) * hs * d)];
  const src = mk(2, 2);
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((h) => head(mha, h)), [0, 3, 1, 4, 2, 5].map((h) => head(src, h)));
  // MQA (3 heads, 1 kv): grouped [q0 q1 q2 k v] is already split order
  assert.deepEqual(permuteQkv(mk(3, 1), 3, 1, hs, 'grouped-to-split'), mk(3, 1));
  // inverse
  for (const [H, Hkv] of [[4, 2], [6, 3], [4, 4], [8, 1]]) {
    const x = mk(H, Hkv);
    assert.deepEqual(permuteQkv(permuteQkv(x, H, Hkv, hs, 'grouped-to-split'), H, Hkv, hs, 'split-to-grouped'), x);
  }
});

test('HF Mamba names map to samba-lm names (hf-mamba-tiny)', async () => {
  const raw = (await readSafetensorsFile(golden('hf-mamba-tiny', 'model.safetensors'))).tensors;
  const m = await loadModelFolder(golden('hf-mamba-tiny'));
  assert.deepEqual(m.tensors.get('embed.weight')!.data, raw.get('backbone.embeddings.weight')!.data);
  assert.deepEqual(m.tensors.get('layers.1.mamba.x_proj.weight')!.data, raw.get('backbone.layers.1.mixer.x_proj.weight')!.data);
  assert.deepEqual(m.tensors.get('layers.1.norm.weight')!.data, raw.get('backbone.layers.1.norm.weight')!.data);
  assert.deepEqual(m.tensors.get('norm_f.weight')!.data, raw.get('backbone.norm_f.weight')!.data);
  assert.equal(m.tensors.has('head.weight'), false);
});

async function expectSameTensors(a: Map<string, { shape: number[]; data: Float32Array }>, b: Map<string, { shape: number[]; data: Float32Array }>, what: string) {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort(), what);
  for (const [k, v] of a) {
    assert.deepEqual(b.get(k)!.shape, v.shape, `${what}: ${k}`);
    assert.deepEqual(b.get(k)!.data, v.data, `${what}: ${k}`);
  }
}

test('round trips: golden -> save in each format -> load gives identical tensors and config', async () => {
  for (const c of GOLDEN_CASES) {
    const m = await loadModelFolder(golden(c));
    const formats = (['samba-lm', 'samba-reference', 'hf-mamba'] as const).filter((f) => f !== 'hf-mamba' || c === 'hf-mamba-tiny');
    for (const format of formats) {
      await withTmp(async (dir) => {
        await saveModelFolder(dir, m.config, (n) => m.tensors.get(n)!.data, { format });
        assert.deepEqual((await readdir(dir)).sort(), ['config.json', 'model.safetensors']);
        const back = await loadModelFolder(dir);
        assert.equal(back.format, format);
        assert.deepEqual(back.config, m.config, `${c} via ${format}`);
        await expectSameTensors(m.tensors, back.tensors, `${c} via ${format}`);
      });
    }
  }
});

test('saving in the reference layout reproduces the golden reference files exactly (keys, shapes, values, config)', async () => {
  for (const c of GOLDEN_CASES.filter((x) => x !== 'hf-mamba-tiny')) {
    const m = await loadModelFolder(golden(c));
    const cfg = await goldenConfig(c);
    await withTmp(async (dir) => {
      await saveModelFolder(dir, m.config, (n) => m.tensors.get(n)!.data, { format: 'samba-reference', org: cfg.org as string, name: cfg.name as string });
      const written = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8'));
      assert.deepEqual(written, cfg, `${c}: config.json`);
      const a = (await readSafetensorsFile(golden(c, 'model.safetensors'))).tensors;
      const b = (await readSafetensorsFile(path.join(dir, 'model.safetensors'))).tensors;
      assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort(), `${c}: keys (incl. both lm_head.weight and transformer.wte.weight)`);
      for (const [k, v] of a) {
        assert.deepEqual(b.get(k)!.shape, v.shape, `${c}: ${k}`);
        assert.deepEqual(b.get(k)!.data, v.data, `${c}: ${k}`);
      }
    });
  }
});

test('saving in the HF Mamba layout reproduces the golden HF files (keys, values, config fields)', async () => {
  const m = await loadModelFolder(golden('hf-mamba-tiny'));
  const cfg = await goldenConfig('hf-mamba-tiny');
  await withTmp(async (dir) => {
    await saveModelFolder(dir, m.config, (n) => m.tensors.get(n)!.data, { format: 'hf-mamba' });
    const written = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8'));
    for (const k of ['architectures', 'model_type', 'vocab_size', 'hidden_size', 'state_size', 'num_hidden_layers', 'conv_kernel', 'expand', 'intermediate_size', 'time_step_rank', 'use_bias', 'use_conv_bias', 'hidden_act', 'layer_norm_epsilon', 'tie_word_embeddings']) {
      assert.deepEqual(written[k], cfg[k], k);
    }
    const a = (await readSafetensorsFile(golden('hf-mamba-tiny', 'model.safetensors'))).tensors;
    const b = (await readSafetensorsFile(path.join(dir, 'model.safetensors'))).tensors;
    assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
    for (const [k, v] of a) assert.deepEqual(b.get(k)!.data, v.data, k);
  });
});

test('samba-lm format in f16 / bf16: values are the rounded float32 values; metadata and dtype recorded', async () => {
  const m = await loadModelFolder(golden('samba-gqa-tiny'));
  for (const [dtype, round, st] of [['f16', (x: number) => f16BitsToF32(f32ToF16Bits(x)), 'F16'], ['bf16', (x: number) => bf16BitsToF32(f32ToBf16Bits(x)), 'BF16']] as const) {
    await withTmp(async (dir) => {
      await saveModelFolder(dir, m.config, (n) => m.tensors.get(n)!.data, { dtype, tokenizer: { type: 'bytes', eos: true } });
      const cfg = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8'));
      assert.equal(cfg.format, 'samba-lm');
      assert.equal(cfg.dtype, dtype);
      assert.deepEqual(cfg.tokenizer, { type: 'bytes', eos: true });
      const buf = new SafetensorsBuffer(new Uint8Array(await readFile(path.join(dir, 'model.safetensors'))));
      assert.equal(buf.info('embed.weight').dtype, st);
      assert.equal(buf.header.metadata.producer, 'samba-lm');
      const back = await openModelFolder(dir);
      try {
        assert.deepEqual(back.tokenizerRef, { type: 'bytes', eos: true });
        await back.forEachTensor((name, shape, data) => {
          const src = m.tensors.get(name)!.data;
          assert.deepEqual(shape, m.tensors.get(name)!.shape);
          assert.deepEqual(data, src.map(round), name);
        });
      } finally {
        await back.close();
      }
    });
  }
});

test('format detection', () => {
  assert.equal(detectFormat({ format: 'samba-lm', model: {} }), 'samba-lm');
  assert.equal(detectFormat({ model_type: 'mamba' }), 'hf-mamba');
  assert.equal(detectFormat({ architectures: ['MambaForCausalLM'] }), 'hf-mamba');
  assert.equal(detectFormat({ d_model: 768, n_layer: 24, vocab_size: 50277, ssm_cfg: {} }), 'hf-mamba');
  assert.equal(detectFormat({ n_layer: 2, n_embd: 64 }), 'samba-reference');
  assert.throws(() => detectFormat({ format: 'gguf' }), /unknown "format": "gguf"/);
  assert.throws(() => detectFormat({ model_type: 'llama' }), /model_type "llama" is not supported/);
  assert.throws(() => detectFormat({ hidden_size: 3 }), /cannot tell the checkpoint format/);
  assert.throws(() => detectFormat([1]), /does not hold a JSON object/);
});

test('HF Mamba variants: mamba_ssm embedding spelling + stored lm_head (tied), untied head, no conv bias, errors', async () => {
  const cfg = await goldenConfig('hf-mamba-tiny');
  const shapes = await goldenShapes('hf-mamba-tiny');
  const ssm = new Map(shapes);
  ssm.set('backbone.embedding.weight', ssm.get('backbone.embeddings.weight')!);
  ssm.delete('backbone.embeddings.weight');
  ssm.set('lm_head.weight', [256, 64]);
  const p = planImport({ d_model: 64, n_layer: 2, vocab_size: 256, ssm_cfg: {}, rms_norm: true, residual_in_fp32: true, fused_add_norm: true, pad_vocab_size_multiple: 8 }, ssm);
  assert.equal(p.format, 'hf-mamba');
  assert.equal(p.config.tieEmbeddings, true);
  assert.equal(p.tensors[0].source, 'backbone.embedding.weight');
  assert.deepEqual(p.ignored, ['lm_head.weight']);
  // padded vocabulary: 50277 declared, embedding rows are the model's vocabulary
  const padded = new Map(shapes);
  padded.set('backbone.embeddings.weight', [264, 64]);
  assert.equal(planImport({ ...cfg, vocab_size: 260 }, padded).config.vocabSize, 264);
  // untied
  const untied = new Map(shapes);
  untied.set('lm_head.weight', [256, 64]);
  const u = planImport({ ...cfg, tie_word_embeddings: false }, untied);
  assert.equal(u.config.tieEmbeddings, false);
  assert.equal(u.tensors.at(-1)!.name, 'head.weight');
  assert.equal(u.tensors.at(-1)!.source, 'lm_head.weight');
  assert.throws(() => planImport({ ...cfg, tie_word_embeddings: false }, shapes), /missing tensor lm_head\.weight/);
  // no conv bias: zeros
  const nob = new Map(shapes);
  nob.delete('backbone.layers.0.mixer.conv1d.bias');
  nob.delete('backbone.layers.1.mixer.conv1d.bias');
  const z = planImport({ ...cfg, use_conv_bias: false }, nob);
  const zb = z.tensors.find((t) => t.name === 'layers.0.mamba.conv1d.bias')!;
  assert.equal(zb.transform.kind, 'zeros');
  const ck = openCheckpoint({ ...cfg, use_conv_bias: false }, { shapes: nob, read: () => { throw new Error('not read'); } });
  assert.deepEqual(await ck.read('layers.1.mamba.conv1d.bias'), new Float32Array(128));
  assert.throws(() => planImport(cfg, nob), /missing tensors backbone\.layers\.0\.mixer\.conv1d\.bias \(\[128\], for layers\.0\.mamba\.conv1d\.bias\)/);
  // unsupported and inconsistent
  assert.throws(() => planImport({ ...cfg, use_bias: true }, shapes), /use_bias: true .* not supported/);
  assert.throws(() => planImport({ ...cfg, hidden_act: 'gelu' }, shapes), /hidden_act "gelu"/);
  assert.throws(() => planImport({ ...cfg, state_size: 8 }, shapes), /state_size is 8 but the tensors say 16/);
  assert.throws(() => planImport({ ...cfg, num_hidden_layers: 3 }, shapes), /missing tensors backbone\.layers\.2\.norm\.weight/);
  assert.throws(() => planImport({ ...cfg, num_hidden_layers: 1 }, shapes), /unexpected tensors backbone\.layers\.1\./);
  const badShape = new Map(shapes);
  badShape.set('backbone.layers.1.mixer.dt_proj.weight', [128, 5]);
  assert.throws(() => planImport(cfg, badShape), /tensor backbone\.layers\.1\.mixer\.dt_proj\.weight has shape \[128, 5\], expected \[128, 4\]/);
});

test('reference config errors name the field or tensor', async () => {
  const cfg = await goldenConfig('samba-tiny');
  const shapes = await goldenShapes('samba-tiny');
  assert.throws(() => planImport({ ...cfg, yoco: true }, shapes), /unknown field "yoco"/);
  assert.equal(planImport({ ...cfg, yoco: true }, shapes, { allowUnknownFields: true }).config.nBlocks, 4);
  assert.throws(() => planImport({ ...cfg, parallel_residual: true }, shapes), /parallel_residual: true is not supported/);
  assert.throws(() => planImport({ ...cfg, bias: true }, shapes), /bias: true is not supported/);
  assert.throws(() => planImport({ ...cfg, rotary_percentage: 0.25 }, shapes), /rotary_percentage 0\.25/);
  assert.throws(() => planImport({ ...cfg, _mlp_class: 'GptNeoxMLP' }, shapes), /_mlp_class "GptNeoxMLP"/);
  assert.throws(() => planImport({ ...cfg, _norm_class: 'LayerNorm' }, shapes), /_norm_class "LayerNorm"/);
  assert.throws(() => planImport({ ...cfg, gla_per_layer: 2, mb_per_layer: 4 }, shapes), /block 2 is a GLA layer/);
  assert.throws(() => planImport({ ...cfg, head_size: 32 }, shapes), /head_size 32 disagrees with n_embd \/ n_head = 16/);
  assert.throws(() => planImport({ ...cfg, n_query_groups: 2 }, shapes), /tensor transformer\.h\.1\.attn\.attn\.weight has shape \[192, 64\], expected \[128, 64\]/);
  assert.throws(() => planImport({ ...cfg, intermediate_size: 128 }, shapes), /tensor transformer\.h\.0\.mlp\.swiglu\.w1\.weight has shape \[176, 64\], expected \[128, 64\]/);
  assert.throws(() => planImport({ ...cfg, mb_per_layer: 1 }, shapes), /missing tensors transformer\.h\.1\.attn\.in_proj\.weight/);
  const missing = new Map(shapes);
  missing.delete('transformer.h.3.mlp.swiglu.w2.weight');
  assert.throws(() => planImport(cfg, missing), /missing tensor transformer\.h\.3\.mlp\.swiglu\.w2\.weight \(\[176, 64\], for layers\.7\.mlp\.w2\.weight\)/);
  const extra = new Map(shapes);
  extra.set('transformer.h.1.attn.q_conv1d.weight', [64, 1, 4]);
  assert.throws(() => planImport(cfg, extra), /unexpected tensor transformer\.h\.1\.attn\.q_conv1d\.weight \[64, 1, 4\]/);
  // tied: either name alone is enough; untied needs both
  const onlyWte = new Map(shapes);
  onlyWte.delete('lm_head.weight');
  assert.equal(planImport(cfg, onlyWte).tensors[0].source, 'transformer.wte.weight');
  const onlyHead = new Map(shapes);
  onlyHead.delete('transformer.wte.weight');
  assert.equal(planImport(cfg, onlyHead).tensors[0].source, 'lm_head.weight');
  const untied = planImport({ ...cfg, mamba_init: false }, shapes);
  assert.equal(untied.config.tieEmbeddings, false);
  assert.equal(untied.tensors.find((t) => t.name === 'head.weight')!.source, 'lm_head.weight');
  assert.throws(() => planImport({ ...cfg, mamba_init: false }, onlyWte), /missing tensor lm_head\.weight/);
  // nope, padded vocabulary, eps
  const nope = planImport({ ...cfg, nope: true, norm_eps: 1e-6 }, shapes).config;
  assert.equal(nope.rope, false);
  assert.equal(nope.normEps, 1e-6);
});

test('reference layouts: attn_layer_pos, full_per_layer, mlp false, mamba true, mamba-mlp', () => {
  assert.deepEqual(parseAttnLayerPos('[0,]'), [0]);
  assert.deepEqual(parseAttnLayerPos('[1,5]'), [1, 5]);
  assert.deepEqual(parseAttnLayerPos('(2, 3)'), [2, 3]);
  assert.deepEqual(parseAttnLayerPos('[]'), []);
  assert.deepEqual(parseAttnLayerPos([4]), [4]);
  assert.equal(parseAttnLayerPos(null), null);
  assert.throws(() => parseAttnLayerPos('range(3)'), /attn_layer_pos "range\(3\)" is not a Python list/);
  // build reference files for several configs through planExport and read them back
  const base = { vocabSize: 128, dModel: 32, nHeads: 2, mlpHidden: 64, window: 4 } as const;
  const configs: ModelConfig[] = [
    makeConfig({ ...base, architecture: 'mamba-mlp', nBlocks: 3 }),
    makeConfig({ ...base, architecture: 'mamba', nBlocks: 2 }),
    makeConfig({ ...base, architecture: 'swa', nBlocks: 2, nKvHeads: 1, tieEmbeddings: false }),
    makeConfig({ ...base, architecture: 'samba', nBlocks: 2, rope: false }),
    makeConfig({ ...base, architecture: 'mamba-mlp', nBlocks: 4, layout: ['mamba', 'mlp', 'attn', 'mlp', 'mamba', 'mlp', 'mamba', 'mlp'] }),
    makeConfig({ ...base, architecture: 'swa', nBlocks: 4, layout: ['swa', 'mlp', 'attn', 'mlp', 'swa', 'mlp', 'attn', 'mlp'] }),
    makeConfig({ ...base, architecture: 'samba', nBlocks: 3, layout: ['mamba', 'swa', 'attn'] }),
  ];
  const expectFields: Array<Record<string, unknown>> = [
    { mb_per_layer: 1, local_window: -1, n_layer: 3 },
    { mamba: true, n_layer: 2 },
    { mb_per_layer: -1, local_window: 4, n_query_groups: 1, mamba_init: false },
    { mb_per_layer: 2, nope: true },
    { attn_layer_pos: '[1]', local_window: -1 },
    { local_window: 4, full_per_layer: 2 },
    { mlp: false, attn_layer_pos: null, mb_per_layer: 3, local_window: 4, full_per_layer: 3 },
  ];
  configs.forEach((config, i) => {
    const plan = planExport(config, { format: 'samba-reference' });
    for (const [k, v] of Object.entries(expectFields[i])) assert.deepEqual(plan.configJson[k], v, `config ${i}: ${k}`);
    const shapes: Shapes = new Map(plan.tensors.map((t) => [t.name, t.shape]));
    const back = planImport(plan.configJson, shapes);
    assert.deepEqual(layout(back.config), layout(config), `config ${i}: layout`);
    assert.equal(back.config.tieEmbeddings, config.tieEmbeddings, `config ${i}: tie`);
    assert.equal(back.config.rope, config.rope, `config ${i}: rope`);
    if (layout(config).includes('swa')) assert.equal(back.config.window, config.window);
  });
});

test('export errors say why a model does not fit a format', () => {
  const samba = makeConfig({ architecture: 'samba', vocabSize: 64, dModel: 32, nBlocks: 2, nHeads: 2, mlpHidden: 64 });
  assert.throws(() => planExport(samba, { format: 'hf-mamba' }), /Hugging Face Mamba format holds only pure Mamba models/);
  assert.throws(() => planExport({ ...samba, ropeBase: 500000 }, { format: 'samba-reference' }), /RoPE base is fixed at 10000/);
  assert.throws(() => planExport({ ...samba, headDim: 8 }, { format: 'samba-reference' }), /headDim 8 × nHeads 2 ≠ dModel 32/);
  assert.throws(() => planExport({ ...samba, mamba: { ...samba.mamba, dState: 8 } }, { format: 'samba-reference' }), /mamba\.dState = 8/);
  assert.throws(() => planExport({ ...samba, layout: ['mlp', 'mamba'] }, { format: 'samba-reference' }), /neither \[mixer, mlp\] per block/);
  assert.throws(() => planExport(makeConfig({ architecture: 'mamba', vocabSize: 64, dModel: 32, nBlocks: 2, tieEmbeddings: false }), { format: 'samba-reference' }), /always tie/);
  assert.throws(() => planExport(samba, { format: 'gguf' as never }), /unknown checkpoint format "gguf"/);
  assert.throws(() => planExport(samba, { format: 'samba-lm', dtype: 'f8' as never }), /unknown dtype "f8"/);
});

test('architectureFor names known patterns and keeps odd ones as explicit layouts', () => {
  assert.deepEqual(architectureFor(['mamba', 'mlp', 'swa', 'mlp'], 2), { architecture: 'samba' });
  assert.deepEqual(architectureFor(['mamba', 'swa', 'mlp'], 1), { architecture: 'mamba-swa-mlp' });
  assert.deepEqual(architectureFor(['attn', 'mlp', 'mamba', 'mlp'], 2), { architecture: 'samba', layout: ['attn', 'mlp', 'mamba', 'mlp'] });
});

test('samba-lm folder errors: bad model config, missing and misshapen tensors, sharded index, pickle weights', async () => {
  await withTmp(async (dir) => {
    const config = makeConfig({ architecture: 'mamba-mlp', vocabSize: 16, dModel: 8, nBlocks: 1, nHeads: 1, mlpHidden: 8 });
    const specs = paramSpecs(config);
    const fill = (n: string) => Float32Array.from({ length: specs.find((s) => s.name === n)!.shape.reduce((a, b) => a * b, 1) }, (_, i) => i + n.length);
    await saveModelFolder(dir, config, fill);
    const ok = await loadModelFolder(dir);
    assert.deepEqual(ok.config, config);
    // sharded: split into two files + index
    const all = (await readSafetensorsFile(path.join(dir, 'model.safetensors'))).tensors;
    const names = [...all.keys()];
    const shard = async (file: string, ns: string[]) => writeSafetensorsFile(path.join(dir, file), ns.map((n) => ({ name: n, shape: all.get(n)!.shape, data: all.get(n)!.data })));
    await shard('model-00001-of-00002.safetensors', names.slice(0, 5));
    await shard('model-00002-of-00002.safetensors', names.slice(5));
    const weightMap = Object.fromEntries(names.map((n, i) => [n, i < 5 ? 'model-00001-of-00002.safetensors' : 'model-00002-of-00002.safetensors']));
    await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const { rm } = await import('node:fs/promises');
    await rm(path.join(dir, 'model.safetensors'));
    const sharded = await openModelFolder(dir);
    assert.equal(sharded.files.length, 2);
    await sharded.close();
    await expectSameTensors(ok.tensors, (await loadModelFolder(dir)).tensors, 'sharded');
    // bad config
    const cfgPath = path.join(dir, 'config.json');
    const good = JSON.parse(await readFile(cfgPath, 'utf8'));
    await writeFile(cfgPath, JSON.stringify({ ...good, model: { ...good.model, nKvHeads: 3 } }));
    await assert.rejects(loadModelFolder(dir), /samba-lm config\.json "model": invalid model config: nHeads \(1\) must be a multiple of nKvHeads \(3\)/);
    await writeFile(cfgPath, JSON.stringify({ ...good, model: { ...good.model, mlpHidden: 16 } }));
    await assert.rejects(loadModelFolder(dir), /tensor layers\.1\.mlp\.w1\.weight has shape \[8, 8\], expected \[16, 8\]/);
    await writeFile(cfgPath, JSON.stringify({ ...good, tokenizer: 'sentencepiece' }));
    await assert.rejects(loadModelFolder(dir), /unknown "tokenizer" "sentencepiece"/);
    await writeFile(cfgPath, JSON.stringify({ ...good, tokenizer: 'tokenizer.json' }));
    await assert.rejects(loadModelFolder(dir), /names tokenizer\.json, but the folder has none/);
  });
  await withTmp(async (dir) => {
    await assert.rejects(loadModelFolder(dir), /no config\.json/);
    await copyFile(golden('llama-tiny', 'config.json'), path.join(dir, 'config.json'));
    await assert.rejects(loadModelFolder(dir), /no model\.safetensors/);
    await writeFile(path.join(dir, 'pytorch_model.bin'), 'x');
    await assert.rejects(loadModelFolder(dir), /weights are in pytorch_model\.bin \(PyTorch pickle\)/);
  });
  await withTmp(async (dir) => {
    await mkdir(dir, { recursive: true });
    await copyFile(golden('llama-tiny', 'config.json'), path.join(dir, 'config.json'));
    await copyFile(golden('samba-tiny', 'model.safetensors'), path.join(dir, 'model.safetensors'));
    await assert.rejects(loadModelFolder(dir), (e: Error) => e instanceof CheckpointError && e.message.startsWith(dir) && /shape|missing|unexpected/.test(e.message));
  });
});

test('grads (reference names) map through the same plan', async () => {
  const shapes = await goldenShapes('samba-tiny');
  const plan = planImport(await goldenConfig('samba-tiny'), shapes);
  const grads = readSafetensors(new Uint8Array(await readFile(golden('samba-tiny', 'grads.safetensors')))).tensors;
  const ck = openCheckpoint(await goldenConfig('samba-tiny'), { shapes: new Map([...grads].filter(([k]) => k !== 'loss').map(([k, v]) => [k, v.shape])), read: (n) => grads.get(n)!.data as Float32Array });
  assert.equal(ck.tensors.length, plan.tensors.length);
  const g = await ck.read('layers.2.attn.qkv.weight');
  assert.equal(g.length, 192 * 64);
});

test('in memory (browser path): bufferSource + openCheckpoint, serializeCheckpoint round trip, version check', async () => {
  const cfg = await goldenConfig('samba-gqa-tiny');
  const bytes = new Uint8Array(await readFile(golden('samba-gqa-tiny', 'model.safetensors')));
  const ck = openCheckpoint(cfg, bufferSource(bytes));
  const m = await loadModelFolder(golden('samba-gqa-tiny'));
  const got = new Map<string, { shape: number[]; data: Float32Array }>();
  await ck.forEachTensor((name, shape, data) => { got.set(name, { shape, data }); });
  await expectSameTensors(m.tensors, got, 'bufferSource');
  for (const format of ['samba-lm', 'samba-reference'] as const) {
    const out = serializeCheckpoint(ck.config, (n) => got.get(n)!.data, { format, dtype: 'f32' });
    const back = openCheckpoint(JSON.parse(JSON.stringify(out.configJson)), bufferSource(out.safetensors));
    assert.deepEqual(back.config, ck.config);
    for (const [k, v] of got) assert.deepEqual(await back.read(k), v.data, `${format}: ${k}`);
    assert.equal(new SafetensorsBuffer(out.safetensors).header.metadata.checkpoint_format, format);
  }
  const lm = serializeCheckpoint(ck.config, (n) => got.get(n)!.data, { format: 'samba-lm' });
  assert.throws(() => openCheckpoint({ ...lm.configJson, version: 2 }, bufferSource(lm.safetensors)), /format version 2 is newer/);
  const half = serializeCheckpoint(ck.config, (n) => got.get(n)!.data, { format: 'samba-lm', dtype: 'bf16' });
  assert.equal(new SafetensorsBuffer(half.safetensors).info('embed.weight').dtype, 'BF16');
});
