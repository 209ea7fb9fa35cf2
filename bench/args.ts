// Command-line values the benchmarks share.

/** An `on|off` option's value as a boolean; anything else is refused, naming the option. */
export function onOff(name: string, value: string | undefined): boolean {
  if (value !== 'on' && value !== 'off') throw new Error(`--${name} must be on or off, got ${value}`);
  return value === 'on';
}
