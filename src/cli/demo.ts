/**
 * `litestream-manager demo`: the service on its embedded default (watch data/clients, replicate to the local
 * file replica data/replica), plus a few synthetic clients that keep writing, so the dashboard comes alive.
 * Clients come and go: every minute one is added, and the demo never deletes anything it did not create.
 * @module
 */
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import type { CliIo } from './replicate.js'
import { serveCommand } from './serve.js'
import { parseFlags, type FlagSpec } from '../flags.js'

const FLAGS: readonly FlagSpec[] = [
  { name: 'clients', type: 'string', usage: 'synthetic clients to create', default: '5' },
  { name: 'dir', type: 'string', usage: 'watched directory', default: 'data/clients' },
  { name: 'bucket', type: 'string', usage: 'replica root', default: 'file://data/replica' },
  { name: 'port', type: 'string', usage: 'dashboard port', default: '8080' },
]

/** demoCommand runs the demo until SIGINT/SIGTERM. */
export async function demoCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const f = parseFlags(argv, FLAGS)
  const n = Number(f.values.clients)
  if (f.errors.length > 0 || !Number.isInteger(n) || n < 1 || n > 1000) {
    io.stderr(`error: ${[...f.errors, 'usage: litestream-manager demo [-clients N] [-dir DIR] [-bucket ROOT] [-port P]'].join('\n')}\n`)
    return 2
  }
  const dir = path.resolve(String(f.values.dir))
  fs.mkdirSync(dir, { recursive: true })
  const writers: Database.Database[] = []
  const addClient = (): void => {
    const file = path.join(dir, `${crypto.randomUUID()}.db`)
    const db = new Database(file)
    db.pragma('journal_mode = wal')
    db.exec('CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, at TEXT NOT NULL, payload BLOB NOT NULL)')
    writers.push(db)
  }
  for (let i = 0; i < n; i++) addClient()
  const tick = setInterval(() => {
    for (const db of writers) {
      if (Math.random() < 0.6) {
        db.prepare('INSERT INTO events (at, payload) VALUES (?, ?)').run(new Date().toISOString(), crypto.randomBytes(200 + Math.floor(Math.random() * 4000)))
      }
    }
  }, 500)
  const grow = setInterval(addClient, 60_000)
  io.stdout(`demo: ${n} clients writing in ${dir}; dashboard on http://127.0.0.1:${String(f.values.port)}\n`)
  try {
    return await serveCommand(['-watch-dir', dir, '-bucket', String(f.values.bucket), '-port', String(f.values.port)], io)
  } finally {
    clearInterval(tick)
    clearInterval(grow)
    for (const db of writers) db.close()
  }
}
