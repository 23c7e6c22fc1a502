/** Dependency rules of docs/architecture.md, checked by reading every import line in src/. */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'

/** Which project modules (by group) and packages each group may import. Node builtins are always allowed. */
const RULES: Record<string, { modules: string[]; packages: string[] }> = {
  types: { modules: [], packages: [] },
  errors: { modules: [], packages: [] },
  keys: { modules: [], packages: [] },
  log: { modules: [], packages: [] },
  flags: { modules: [], packages: [] },
  'replica-client': { modules: ['types'], packages: [] },
  lz4: { modules: ['errors'], packages: ['lz4-napi'] },
  wal: { modules: ['wal', 'errors'], packages: ['better-sqlite3', 'koffi'] },
  file: { modules: ['types', 'keys', 'errors', 'replica-client'], packages: ['koffi'] },
  s3: { modules: ['types', 'keys', 'errors', 'replica-client'], packages: ['@aws-sdk/client-s3', '@aws-sdk/lib-storage', '@smithy/node-http-handler', '@smithy/util-retry', '@smithy/types'] },
  'replica-url': { modules: ['file', 's3', 'errors', 'replica-client'], packages: [] },
  replicator: { modules: ['wal', 'lz4', 'keys', 'types', 'errors', 'log', 'replica-client'], packages: [] },
  watch: { modules: [], packages: [] },
  manager: { modules: ['replicator', 'watch', 'wal', 'types', 'errors', 'log', 'replica-client', 'restore'], packages: [] },
  dashboard: { modules: ['dashboard', 'types', 'errors'], packages: ['hono', '@hono/node-server', 'prom-client'] },
  restore: { modules: ['restore', 'wal', 'lz4', 'keys', 'types', 'errors', 'log', 'replica-client', 'replica-url'], packages: ['better-sqlite3'] },
  cli: { modules: ['*'], packages: ['*'] },
  main: { modules: ['*'], packages: ['*'] },
}

function group(file: string): string {
  const rel = path.relative('src', file).replace(/\\/g, '/')
  const first = rel.split('/')[0]!
  return first.endsWith('.ts') ? first.slice(0, -3) : first
}

function* sources(dir: string): Generator<string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) yield* sources(p)
    else if (e.name.endsWith('.ts')) yield p
  }
}

test('every src module imports only what docs/architecture.md allows', () => {
  const violations: string[] = []
  for (const file of sources('src')) {
    const g = group(file)
    const rule = RULES[g]
    assert.ok(rule, `no rule for module group ${g} (${file}): add it here and to docs/architecture.md`)
    const text = fs.readFileSync(file, 'utf8')
    for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm)) {
      const spec = (m[1] ?? m[2])!
      if (spec.startsWith('node:')) continue
      if (spec.startsWith('.')) {
        const target = group(path.join(path.dirname(file), spec).replace(/\.js$/, '.ts'))
        if (target !== g && !rule.modules.includes('*') && !rule.modules.includes(target)) violations.push(`${file} imports ${spec} (${g} -> ${target})`)
        if (target === g && g !== 'wal' && g !== 'dashboard' && g !== 'restore' && g !== 'cli' && g !== 's3' && g !== 'file') violations.push(`${file} imports itself?`)
      } else {
        const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!
        if (!rule.packages.includes('*') && !rule.packages.includes(pkg)) violations.push(`${file} imports package ${pkg}`)
      }
    }
  }
  assert.deepEqual(violations, [])
})
