/**
 * The dashboard in a real browser (Debian Chromium driven by playwright-core).
 *
 * 1. Over a fake, event-emitting StatusSource: rows appear and change without a reload, search, sort, the
 *    detail view, an action button, no CSP violation, no markup from data. Takes a screenshot (into docs/img/dashboard.png
 *    with UPDATE_SCREENSHOT=1).
 * 2. Against the real service process: a database file created in the watched directory appears as a row,
 *    deleting it changes the row.
 */
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { test, type TestContext } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { createApp } from '../../src/dashboard/app.js'
import { startDashboard } from '../../src/dashboard/server.js'
import type { ClientInfo } from '../../src/types.js'
import { ensureChromium, launchChromium } from '../helpers/chromium.js'
import { startCli } from '../helpers/cli.js'
import { insertRows, openApp, tmpDir } from '../helpers/db.js'
import { FakeSource, makeClient, makeReplicator } from '../helpers/fake-source.js'

/** UPDATE_SCREENSHOT=1 refreshes the committed docs/img/dashboard.png; otherwise the screenshot goes to a temp dir. */
const UPDATE_SCREENSHOT = process.env.UPDATE_SCREENSHOT === '1'
const XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'

/** browserOrSkip launches Chromium, installing it when missing; it skips the test only if that fails. */
async function browserOrSkip(t: TestContext): Promise<Browser | undefined> {
  let exe: string
  try {
    exe = ensureChromium()
  } catch (err) {
    t.skip(`no browser: ${(err as Error).message}`)
    return undefined
  }
  const browser = await launchChromium(exe)
  t.after(() => browser.close())
  return browser
}

/** watchPage collects page errors and CSP violations, and fails on any dialog (an executed XSS payload). */
function watchPage(page: Page): string[] {
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`))
  page.on('console', (msg) => {
    if (msg.type() === 'error' || /Content Security Policy/i.test(msg.text())) problems.push(`console ${msg.type()}: ${msg.text()}`)
  })
  page.on('dialog', (d) => {
    problems.push(`dialog: ${d.message()}`)
    void d.dismiss()
  })
  return problems
}

/** until polls an async condition (the page's CSP forbids the string predicates of waitForFunction). */
async function until(cond: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const gen = () => crypto.randomBytes(8).toString('hex')
const MiB = 1 << 20

/** seedFleet fills the source with clients in every state, as a small production fleet looks. */
function seedFleet(src: FakeSource, now: number): { busy: string; erroring: string } {
  const dirs = ['/srv/tenants/eu-west-1', '/srv/tenants/us-east-1']
  const ids = Array.from({ length: 16 }, () => crypto.randomUUID()).sort()
  const sizes = [48.2, 3.1, 0.8, 12.6, 211.4, 5.5, 0.2, 27.9, 1.4, 96.3, 7.7, 0.6, 15.0, 2.2, 64.1, 0.4]
  ids.forEach((id, i) => {
    const dir = dirs[i % 2]!
    const db = Math.round(sizes[i]! * MiB)
    src.map.set(
      id,
      makeClient(id, {
        dir,
        path: `${dir}/${id}.db`,
        state: i % 5 === 0 ? 'replicating' : 'idle',
        dbSizeBytes: db,
        walSizeBytes: i % 3 === 0 ? 4152 + 4120 * (i + 3) : 0,
        detectedAt: now - 3600_000 * (i + 1),
        replica: `s3://acme-backups/databases/${id}`,
        drill: i % 4 === 0 ? { at: now - 1800_000, ok: true, skipped: false, position: { generation: gen(), index: 3, offset: 4152 }, durationMs: 412, error: null, compared: true } : null,
        replicator: makeReplicator({
          state: i % 5 === 0 ? 'replicating' : 'idle',
          generation: gen(),
          index: i + 1,
          offset: 4152 + 4120 * ((i * 7) % 40),
          lastSyncAt: now - 1000 * ((i * 13) % 50),
          lastSnapshotAt: now - 3600_000 * ((i % 6) + 1),
          lagMs: i % 5 === 0 ? 120 + i * 11 : 0,
          bytesShipped: Math.round(db * 0.37),
          objectsWritten: 4 + i * 9,
        }),
      }),
    )
  })
  const waiting = crypto.randomUUID()
  src.map.set(waiting, makeClient(waiting, { dir: dirs[0], path: `${dirs[0]}/${waiting}.db`, state: 'waiting', dbSizeBytes: 0, walSizeBytes: 0, replicator: null, replica: '' }))
  const starting = crypto.randomUUID()
  src.map.set(starting, makeClient(starting, { dir: dirs[1], path: `${dirs[1]}/${starting}.db`, state: 'starting', dbSizeBytes: 9 * MiB, replicator: null }))
  const bad = crypto.randomUUID()
  src.map.set(bad, makeClient(bad, { dir: dirs[1], path: `${dirs[1]}/${bad}.db`, state: 'error', dbSizeBytes: 2048, walSizeBytes: 0, replicator: null, lastError: `not a database: file is not a database ${XSS}` }))
  const retrying = ids[4]!
  src.map.set(
    retrying,
    makeClient(retrying, {
      ...src.map.get(retrying)!,
      state: 'replicating',
      replicator: makeReplicator({ ...src.map.get(retrying)!.replicator!, state: 'replicating', lagMs: 7400, lastError: 'upload wal segment: SlowDown: Please reduce your request rate.' }),
    } as ClientInfo),
  )
  return { busy: ids[0]!, erroring: bad }
}

test('dashboard over a fake source: live rows, search, sort, details; screenshot', async (t) => {
  const browser = await browserOrSkip(t)
  if (!browser) return
  const src = new FakeSource()
  const now = Date.now()
  const { busy, erroring } = seedFleet(src, now)
  const total = src.map.size
  const server = await startDashboard(createApp(src, { allowedHosts: ['127.0.0.1'], collectProcessMetrics: false }), { host: '127.0.0.1', port: 0 })
  t.after(() => server.close())

  // Keep the busy client shipping, as a writing application would, so its chart fills.
  let shipped = src.client(busy)!.replicator!.bytesShipped
  let tick = 0
  const live = setInterval(() => {
    tick++
    shipped += 20_000 + ((tick * 7919) % 90_000)
    const r = src.client(busy)!.replicator!
    src.setReplicator(busy, { lastSyncAt: Date.now(), lagMs: 80 + ((tick * 37) % 900), bytesShipped: shipped, objectsWritten: r.objectsWritten + 1, offset: r.offset + 4120 })
  }, 250)
  t.after(() => clearInterval(live))

  const page = await browser.newPage({ viewport: { width: 1720, height: 940 }, colorScheme: 'light' })
  const problems = watchPage(page)
  await page.goto(server.url)
  await page.waitForSelector('#conn.conn-live')
  await until(async () => (await page.locator('#rows tr').count()) === total, `${total} rows`)
  assert.equal(await page.locator('#t-clients').textContent(), String(total))
  await page.evaluate('window.__noReload = 1')

  // A client added to the source appears without a reload, and a state change patches its row.
  const fresh = '00000000-0000-4000-8000-00000000f00d'
  src.set({ id: fresh, dir: '/srv/tenants/eu-west-1', path: `/srv/tenants/eu-west-1/${fresh}.db`, state: 'replicating', dbSizeBytes: 3 * MiB })
  const row = page.locator(`tr[data-id="${fresh}"]`)
  await row.waitFor()
  assert.equal(await row.getAttribute('data-state'), 'replicating')
  assert.equal(await page.locator('#t-clients').textContent(), String(total + 1))
  src.set({ id: fresh, state: 'stopped', replicator: null })
  await page.waitForSelector(`tr[data-id="${fresh}"][data-state="stopped"]`)
  assert.equal(await row.locator('.badge').textContent(), 'stopped')
  assert.equal(await row.locator('td').nth(5).textContent(), '—', 'generation cleared with the replicator')
  assert.equal(await page.evaluate('window.__noReload'), 1, 'no reload happened')

  // Data is text: the XSS payload in an error is shown literally and never executed.
  const errCell = page.locator(`tr[data-id="${erroring}"] td.err`)
  assert.match((await errCell.textContent()) ?? '', /<script>window.__xss=2<\/script>/)
  assert.equal(await page.locator('#rows img, #rows script').count(), 0)
  assert.equal(await page.evaluate('window.__xss === undefined'), true)

  // Search filters rows; sorting by a column reorders them.
  await page.fill('#search', fresh.slice(0, 13))
  await until(async () => (await page.locator('#rows tr:not([hidden])').count()) === 1, 'one row left by the filter')
  assert.equal(await row.isVisible(), true)
  await page.fill('#search', '')
  await until(async () => (await page.locator('#rows tr:not([hidden])').count()) === total + 1, 'every row back')
  await page.click('th:has-text("DB size")')
  const firstSize = await page.locator('#rows tr').first().locator('td').nth(3).textContent()
  assert.equal(firstSize, '211 MiB', 'largest first after sorting by DB size')
  assert.equal(await page.locator('th[aria-sort="descending"]').textContent(), 'DB size')
  await page.click('th:has-text("GUID")')

  // Details: the restore command, an action through the acknowledgement barrier, the chart.
  await page.click(`tr[data-id="${busy}"]`)
  await page.waitForSelector('#detail:not([hidden])')
  assert.equal(await page.locator('#d-cmd').textContent(), `litestream restore -o ${busy}.db s3://acme-backups/databases/${busy}`)
  await page.click('#d-sync')
  await until(async () => (await page.locator('#d-action').textContent()) === 'durable at 0123456789abcdef/00000001:4152', 'the sync acknowledgement')
  assert.deepEqual(src.syncCalls, [busy])
  await page.locator('#d-charts path.line-tp').waitFor()
  // Only for the committed picture: let the chart gather some seconds of samples.
  if (UPDATE_SCREENSHOT) await page.waitForTimeout(6000)

  assert.deepEqual(problems, [], 'no page error, CSP violation or dialog')
  const shot = UPDATE_SCREENSHOT ? 'docs/img/dashboard.png' : path.join(tmpDir(t), 'dashboard.png')
  fs.mkdirSync(path.dirname(shot), { recursive: true })
  await page.screenshot({ path: shot })
  assert.ok(fs.statSync(shot).size > 10_000, 'a screenshot with content')
})

test('dashboard shows clients live over SSE (real service, real browser)', async (t) => {
  const browser = await browserOrSkip(t)
  if (!browser) return
  const dir = tmpDir(t)
  const watch = path.join(dir, 'clients')
  fs.mkdirSync(watch)
  const seed = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]
  const apps = seed.map((id, i) => {
    const db = openApp(path.join(watch, `${id}.db`))
    insertRows(db, 20 + 30 * i, 2000)
    return db
  })
  t.after(() => {
    for (const db of apps) if (db.open) db.close()
  })
  fs.writeFileSync(path.join(watch, `${crypto.randomUUID()}.db`), '') // waiting
  fs.writeFileSync(path.join(watch, `${crypto.randomUUID()}.db`), 'not a database at all, <b>escaped</b>'.repeat(20)) // error
  const p = startCli(['-watch-dir', watch, '-bucket', `file://${path.join(dir, 'replica')}`, '-port', '0'], { LOG_LEVEL: 'info' })
  t.after(() => p.stop('SIGKILL'))
  const started = JSON.parse(await p.waitFor(/"msg":"service started"/)) as { dashboard: string }
  const page = await browser.newPage({ viewport: { width: 1500, height: 700 } })
  const problems = watchPage(page)
  await page.goto(started.dashboard)
  await page
    .waitForSelector(`tr[data-id="${seed[2]}"][data-state="idle"], tr[data-id="${seed[2]}"][data-state="replicating"]`, { timeout: 20_000 })
    .catch(async (err: unknown) => {
      const states = await page.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => `${tr.getAttribute('data-id')}=${tr.getAttribute('data-state')}`))
      throw new Error(`${String(err)}\nrows: ${states.join(' ')}\nservice output:\n${p.output().slice(-4000)}`)
    })

  // A new file appears as a row without a reload.
  const fresh = crypto.randomUUID()
  const freshDb = openApp(path.join(watch, `${fresh}.db`))
  insertRows(freshDb, 5)
  await page.waitForSelector(`tr[data-id="${fresh}"]`, { timeout: 10_000 })
  const rowStates = async (): Promise<string> =>
    (await page.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => `${tr.getAttribute('data-id')}=${tr.getAttribute('data-state')} ${tr.querySelector('td.err')?.textContent ?? ''}`))).join('\n')
  assert.equal(await page.locator('#t-clients').textContent(), '6')
  assert.equal(await page.locator('#t-errors').textContent(), '1', `rows:\n${await rowStates()}\nservice output:\n${p.output().slice(-3000)}`)
  const errText = await page.locator('td.err').filter({ hasText: 'SQLite' }).first().textContent()
  assert.match(errText ?? '', /SQLite/)
  assert.equal(await page.locator('td b').count(), 0, 'file contents or errors never become markup')

  // Deleting the file changes the row.
  freshDb.close()
  for (const s of ['', '-wal', '-shm']) fs.rmSync(path.join(watch, `${fresh}.db${s}`), { force: true })
  await page.waitForSelector(`tr[data-id="${fresh}"][data-state="stopped"]`, { timeout: 10_000 })

  // Detail view with the restore command.
  await page.click(`tr[data-id="${seed[1]}"]`)
  assert.match((await page.locator('#d-cmd').textContent()) ?? '', new RegExp(`litestream restore -o ${seed[1]}\\.db file://`))
  assert.deepEqual(problems, [], 'no page error, CSP violation or dialog')
})
