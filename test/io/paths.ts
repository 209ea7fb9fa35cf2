// Paths for the io tests (compiled to dist/test/io/): the golden cases live in ../shared/golden
// next to the repository root.
import { fileURLToPath } from 'node:url';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

export const GOLDEN_DIR = fileURLToPath(new URL('../../../../shared/golden/', import.meta.url));
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
