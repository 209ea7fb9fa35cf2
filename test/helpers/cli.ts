// Runs the built CLI as a user would, returning its exit code and output.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
/**
 * The golden cases: SAMBA_GOLDEN_DIR if set, else ../shared/golden beside the checkout (where new
 * cases appear first), else the copy in test/fixtures/golden (so a lone clone still tests them).
 */
export const GOLDEN = process.env.SAMBA_GOLDEN_DIR ?? [
  fileURLToPath(new URL('../../../../shared/golden/', import.meta.url)),
  fileURLToPath(new URL('../../../test/fixtures/golden/', import.meta.url)),
].find((d) => existsSync(d))!;

export function runCli(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`samba-lm ${args.join(' ')} timed out`)); }, opts.timeoutMs ?? 120_000);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
  });
}

/**
 * Starts the CLI and kills it with SIGKILL as soon as its progress line ("step N/…") reaches
 * `step`: a crash in the middle of a training run. Rejects if the run ends any other way.
 */
export function runCliKilledAt(args: string[], step: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
      const m = [...err.matchAll(/step (\d+)\//g)].pop();
      if (m && Number(m[1]) >= step) child.kill('SIGKILL');
    });
    child.on('close', (code, sig) => (sig === 'SIGKILL' ? resolve() : reject(new Error(`not killed: ${code} ${err}`))));
  });
}

/**
 * Starts a CLI server (serve, web) and waits for the line that gives its address: `address`
 * captures it from stdout. stop() sends SIGINT (Ctrl-C) and resolves to the exit code.
 */
export async function startCliServer(args: string[], address: RegExp): Promise<{ url: string; stop: () => Promise<number | null>; stderr: () => string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = address.exec(stdout);
      if (m) resolve(m[1]);
    });
    void exited.then(() => reject(new Error(`samba-lm ${args[0]} ended early: ${stderr}`)));
  });
  return { url, stop: () => { child.kill('SIGINT'); return exited; }, stderr: () => stderr };
}

/** stderr without Dawn's informational start-up warnings. */
export function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l && !l.startsWith('Warning: maxDynamic'));
}

let adapter: Promise<boolean> | null = null;

/**
 * For CLI tests on --backend webgpu: true when an adapter exists; otherwise skips the test, or fails
 * it where SAMBA_REQUIRE_WEBGPU=1 (CI), since a skipped WebGPU test would hide what CI is for.
 */
export async function cliWebGpuOrSkip(t: TestContext): Promise<boolean> {
  adapter ??= import('../../src/node/webgpu.js').then(async ({ createNodeWebGpuBackend }) => {
    const be = await createNodeWebGpuBackend();
    be?.destroy();
    return be !== null;
  });
  if (await adapter) return true;
  if (process.env.SAMBA_REQUIRE_WEBGPU === '1') throw new Error('no WebGPU adapter, and SAMBA_REQUIRE_WEBGPU=1');
  t.skip('no WebGPU adapter');
  return false;
}
