// `samba-lm demo --quick` through the built CLI: it trains both models for a few steps, shows
// progress and prints the accuracy / state-size table at 1x, 4x, 16x and 64x the training length.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../helpers/cli.js';

test('samba-lm demo --quick prints progress and the table', async () => {
  const r = await runCli(['demo', '--quick', '--backend', 'cpu'], { timeoutMs: 90_000 });
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout;
  assert.match(out, /Training on the cpu backend/);
  assert.match(out, /samba\s+step\s+10\/10\s+loss \d+\.\d{3}/);
  assert.match(out, /llama\s+step\s+10\/10\s+loss \d+\.\d{3}/);
  assert.match(out, /context\s+x train\s+samba\s+keys\s+samba state\s+llama \(full attn\)\s+keys\s+llama KV cache/);
  const rows = [...out.matchAll(/^(\d+) tokens\s+(\d+)x\s+(\d+)%\s+(\d+)\s+([\d.]+ [KM]iB)\s+(\d+)%\s+(\d+)\s+([\d.]+ [KM]iB)$/gm)];
  assert.deepEqual(rows.map((m) => [Number(m[1]), Number(m[2])]), [[32, 1], [128, 4], [512, 16], [2048, 64]]);
  // Samba's decoding state is one size at every length; the full-attention cache grows
  assert.equal(new Set(rows.map((m) => m[5])).size, 1, 'samba state constant');
  const kib = (s: string) => parseFloat(s) * (s.endsWith('MiB') ? 1024 : 1);
  assert.ok(kib(rows[3][8]) > kib(rows[0][8]), 'llama KV cache grows');
  assert.match(out, /Accuracy >= 90%: samba at .*; llama at /);
});

test('samba-lm demo --help describes it', async () => {
  const r = await runCli(['demo', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /passkey retrieval/);
  assert.match(r.stdout, /--quick/);
});
