// Naming a synthetic task by a small JSON-able spec (what the CLI's --task makes, what a training
// checkpoint records so that --resume and `eval task` rebuild the same task). Browser-safe.
import type { TextTokenizer } from '../tokenizer/types.js';
import { TextPasskeyTask } from '../eval/passkey.js';
import { InductionHeadsTask, PasskeyTask, SelectiveCopyTask, type SyntheticTask } from './tasks.js';

export const TASK_NAMES = ['passkey', 'passkey-synthetic', 'selective-copy', 'induction-heads'] as const;
export type TaskName = (typeof TASK_NAMES)[number];

export interface TaskSpec {
  name: TaskName;
  /** selective-copy / induction-heads: the task's vocabulary (default 16). */
  vocabSize?: number;
  /** selective-copy: data tokens to copy (default 16). */
  dataTokens?: number;
}

export function isTaskName(s: string): s is TaskName {
  return (TASK_NAMES as readonly string[]).includes(s);
}

/** The task of a spec; text passkey needs the model's tokenizer. */
export function createTask(spec: TaskSpec, tokenizer?: TextTokenizer | null): SyntheticTask {
  switch (spec.name) {
    case 'passkey':
      if (!tokenizer) throw new Error('the passkey task needs a tokenizer (--tokenizer tokenizer.json|bytes)');
      return new TextPasskeyTask(tokenizer);
    case 'passkey-synthetic': return new PasskeyTask();
    case 'selective-copy': return new SelectiveCopyTask({ ...(spec.vocabSize !== undefined ? { vocabSize: spec.vocabSize } : {}), ...(spec.dataTokens !== undefined ? { dataTokens: spec.dataTokens } : {}) });
    case 'induction-heads': return new InductionHeadsTask(spec.vocabSize !== undefined ? { vocabSize: spec.vocabSize } : {});
    default: throw new Error(`unknown task "${(spec as { name: string }).name}" (tasks: ${TASK_NAMES.join(', ')})`);
  }
}
