// `npx samba-lm` runs the package's bin file directly (through its #! line), so the built file must
// be executable; `npm run build` (and `prepare`, which npm install runs) marks it so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CLI } from '../helpers/cli.js';

test('the built CLI is executable on its own, as npx runs it', { skip: process.platform === 'win32' }, async () => {
  const { stdout } = await promisify(execFile)(CLI, ['presets']);
  assert.match(stdout, /samba-421m/);
});
