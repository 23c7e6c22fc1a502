/**
 * An application that keeps the database locked against the replicator (SQLITE_BUSY on every pass). A moment of it
 * is normal (an application creating its database holds the lock while it does), so the status stays as it was for
 * busyErrorAfterMs and only then says error; it never claims the database replicated while the lock is held. This is
 * the status rule of matrix row B8 (`locking_mode=EXCLUSIVE`) at the engine level.
 */
import assert from 'node:assert/strict'
import path from 'node:path'
import { test } from 'node:test'
import { FileReplicaClient } from '../../src/file/replica-client.js'
import { Replicator } from '../../src/replicator.js'
import type { ReplicatorStatus } from '../../src/types.js'
import { digest, insertRows, integrity, openApp, tmpDir } from '../helpers/db.js'
import { fileReplica } from '../helpers/replicas.js'

const GRACE_MS = 1500

test('BUSY is an error only after busyErrorAfterMs, never "replicated" while locked, and recovers once released', { timeout: 60_000 }, async (t) => {
  const dir = tmpDir(t)
  const db = path.join(dir, 'app.db')
  const app = openApp(db)
  insertRows(app, 20)
  // EXCLUSIVE locking mode keeps the file locked from the next write until the connection closes.
  app.pragma('locking_mode = EXCLUSIVE')
  insertRows(app, 1)

  const seen: { at: number; status: ReplicatorStatus }[] = []
  let onError!: () => void
  const errored = new Promise<void>((resolve) => (onError = resolve))
  let onIdle!: () => void
  const idle = new Promise<void>((resolve) => (onIdle = resolve))
  const r = new Replicator({
    dbPath: db,
    client: new FileReplicaClient(path.join(dir, 'replica')),
    busyErrorAfterMs: GRACE_MS,
    onStatus: (status) => {
      seen.push({ at: performance.now(), status })
      if (status.state === 'error') onError()
      if (status.state === 'idle') onIdle()
    },
  })
  t.after(() => r.close().catch(() => {}))
  const startedAt = performance.now()
  r.start()
  await errored

  const errors = seen.filter((s) => s.status.state === 'error')
  assert.ok(errors[0]!.at - startedAt >= GRACE_MS, `first error ${Math.round(errors[0]!.at - startedAt)} ms after start, before the ${GRACE_MS} ms grace`)
  assert.match(errors[0]!.status.lastError ?? '', /^database busy for \d+ s: /)
  assert.deepEqual(
    seen.filter((s) => s.status.state === 'idle' || s.status.state === 'replicating'),
    [],
    'no status claims the database replicated while the application holds its lock',
  )

  // The application lets go: the next retry replicates, and stock restore gets the database back.
  const want = digest(app)
  app.close()
  r.notify()
  await idle
  await r.close()
  const out = path.join(dir, 'restored.db')
  const res = await fileReplica(dir).stockRestore(out)
  assert.equal(res.code, 0, res.output)
  assert.equal(integrity(out), 'ok')
  assert.deepEqual(digest(out), want)
})
