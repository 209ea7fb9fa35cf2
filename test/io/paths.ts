// Paths for the io tests: the golden cases (see test/helpers/cli.ts for where they are found).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { GOLDEN } from '../helpers/cli.js';

export const GOLDEN_DIR = GOLDEN;
export const GOLDEN_CASES = ['hf-mamba-tiny', 'samba-tiny', 'samba-gqa-tiny', 'llama-tiny', 'mamba-swa-mlp-tiny'] as const;
export const golden = (name: string, file = '') => path.join(GOLDEN_DIR, name, file);

/** A fresh temporary folder, removed after `fn`. */
export async function withTmp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(tmpdir(), 'samba-lm-io-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
