/** A mistake in how the command was called (exit code 2); other errors exit with 1. */
export class UsageError extends Error {}
