/**
 * Logger is the subset of pino the library calls; main.ts passes a real pino logger, tests pass a capture.
 * @module
 */

/** LogFn logs an object of fields and a lowercase event message. */
export type LogFn = (obj: object, msg: string) => void

/** Logger is a structured logger with child bindings. */
export interface Logger {
  readonly debug: LogFn
  readonly info: LogFn
  readonly warn: LogFn
  readonly error: LogFn
  child(bindings: object): Logger
}

const noop: LogFn = () => {}

/** NOOP_LOGGER discards everything. */
export const NOOP_LOGGER: Logger = { debug: noop, info: noop, warn: noop, error: noop, child: () => NOOP_LOGGER }
