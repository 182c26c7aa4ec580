/**
 * The few assertions the tests use (`jsr:@std/assert` is unreachable here).
 *
 * @module
 */
import { isDeepStrictEqual } from "node:util";

/** A failed assertion. */
export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/** Asserts `value` is truthy. */
export function assert(value: unknown, message = "expected a truthy value"): asserts value {
  if (!value) throw new AssertionError(message);
}

/** Asserts deep equality. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new AssertionError(
      `${message ? message + ": " : ""}values differ\n  actual:   ${Deno.inspect(actual)}\n  expected: ${
        Deno.inspect(expected)
      }`,
    );
  }
}

/** Asserts `actual < limit`. */
export function assertLess(actual: number, limit: number, message?: string): void {
  if (!(actual < limit)) throw new AssertionError(message ?? `expected ${actual} < ${limit}`);
}

/** Asserts `actual > limit`. */
export function assertGreater(actual: number, limit: number, message?: string): void {
  if (!(actual > limit)) throw new AssertionError(message ?? `expected ${actual} > ${limit}`);
}

/** Asserts `text` matches `pattern`. */
export function assertMatch(text: string, pattern: RegExp, message?: string): void {
  if (!pattern.test(text)) {
    throw new AssertionError(message ?? `expected ${Deno.inspect(text)} to match ${pattern}`);
  }
}

/** Asserts that `fn` throws, optionally an error whose message matches `pattern`; returns it. */
export function assertThrows(fn: () => unknown, pattern?: RegExp): Error {
  let error: Error | undefined;
  try {
    fn();
  } catch (e) {
    error = e as Error;
  }
  if (!error) throw new AssertionError("expected a throw");
  if (pattern) assertMatch(error.message, pattern);
  return error;
}
