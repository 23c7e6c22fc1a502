/**
 * Go-style command-line flags: `-name value`, `-name=value`, `--name value`, `--name=value`; boolean flags take
 * no value (or `=true`/`=false`). Unknown flags and missing values are errors, reported all at once.
 * @module
 */

/** FlagSpec describes one flag. */
export interface FlagSpec {
  readonly name: string
  readonly type: 'string' | 'boolean'
  readonly usage: string
  readonly default?: string
}

/** ParsedFlags is the result: values by flag name, positional arguments, and every problem found. */
export interface ParsedFlags {
  readonly values: Readonly<Record<string, string | boolean | undefined>>
  readonly args: readonly string[]
  readonly errors: readonly string[]
  readonly help: boolean
}

/** parseFlags parses argv against specs. `-h`, `-help` and `--help` set help. A bare `--` ends the flags. */
export function parseFlags(argv: readonly string[], specs: readonly FlagSpec[]): ParsedFlags {
  const byName = new Map(specs.map((s) => [s.name, s]))
  const values: Record<string, string | boolean | undefined> = {}
  const args: string[] = []
  const errors: string[] = []
  let help = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--') {
      args.push(...argv.slice(i + 1))
      break
    }
    if (!a.startsWith('-') || a === '-') {
      args.push(a)
      continue
    }
    const body = a.replace(/^--?/, '')
    const eq = body.indexOf('=')
    const name = eq >= 0 ? body.slice(0, eq) : body
    if (name === 'h' || name === 'help') {
      help = true
      continue
    }
    const spec = byName.get(name)
    if (!spec) {
      errors.push(`flag provided but not defined: -${name}`)
      continue
    }
    if (spec.type === 'boolean') {
      const v = eq >= 0 ? body.slice(eq + 1) : 'true'
      if (v !== 'true' && v !== 'false') errors.push(`invalid boolean value ${JSON.stringify(v)} for -${name}`)
      values[name] = v === 'true'
      continue
    }
    if (eq >= 0) values[name] = body.slice(eq + 1)
    else if (i + 1 < argv.length) values[name] = argv[++i]!
    else errors.push(`flag needs an argument: -${name}`)
  }
  for (const s of specs) if (values[s.name] === undefined && s.default !== undefined) values[s.name] = s.default
  return { values, args, errors, help }
}

/** usage renders flag help the way Go's flag package does. */
export function usage(specs: readonly FlagSpec[]): string {
  return specs
    .map((s) => `  -${s.name}${s.type === 'string' ? ' string' : ''}\n    \t${s.usage}${s.default !== undefined && s.default !== '' ? ` (default ${JSON.stringify(s.default)})` : ''}`)
    .join('\n')
}

/** parseDuration parses Go-style durations ("1s", "500ms", "24h", "1h30m") into milliseconds. Bare numbers are seconds. */
export function parseDuration(s: string): number | undefined {
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/gy
  let total = 0
  let m: RegExpExecArray | null
  let pos = 0
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h']
    pos = re.lastIndex
  }
  return pos === s.length && s.length > 0 ? total : undefined
}
