import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

/** A mistake in how the command was called: exit code 2, with the help hint. */
export class UsageError extends Error {
  constructor(message: string, readonly helpFor?: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Options every command accepts. */
export const GLOBAL_OPTIONS: ParseArgsOptionsConfig = {
  url: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

/** Parsed option values. */
export type Values = Record<string, string | boolean | string[] | undefined>;

/** Parses a command's arguments with node:util parseArgs (strict: unknown options are errors). */
export function parse(
  args: string[],
  options: ParseArgsOptionsConfig,
  helpFor: string,
): { values: Values; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...GLOBAL_OPTIONS, ...options },
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Values, positionals };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new UsageError(message.replace(/\. To specify a positional.*$/s, ""), helpFor);
  }
}

/** A string option, or undefined. */
export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** An integer option within bounds, or undefined when absent. */
export function int(
  values: Values,
  name: string,
  bounds: { min?: number; max?: number } = {},
): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  const min = bounds.min ?? 0;
  if (!/^-?\d+$/.test(v) || n < min || (bounds.max !== undefined && n > bounds.max)) {
    const range = bounds.max === undefined ? `at least ${min}` : `${min}-${bounds.max}`;
    throw new UsageError(`--${name} must be a whole number, ${range} (got '${v}')`);
  }
  return n;
}

/** A non-negative number of seconds (fractions allowed) within bounds, or undefined. */
export function seconds(values: Values, name: string, max: number): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < 0 || n > max) {
    throw new UsageError(`--${name} must be a number of seconds, 0-${max} (got '${v}')`);
  }
  return n;
}

/** `--attr name=value` options as an attributes object (undefined when none). */
export function attributes(values: Values): Record<string, string> | undefined {
  const list = values.attr;
  if (!Array.isArray(list) || list.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new UsageError(`--attr takes name=value (got '${item}')`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/** Exactly the positionals a command needs: throws a usage error naming what is missing. */
export function need(positionals: string[], names: string[], helpFor: string): string[] {
  if (positionals.length < names.length) {
    throw new UsageError(`missing ${names.slice(positionals.length).join(" and ")}`, helpFor);
  }
  if (positionals.length > names.length) {
    throw new UsageError(`unexpected argument '${positionals[names.length]}'`, helpFor);
  }
  return positionals;
}
