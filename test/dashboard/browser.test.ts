/**
 * The dashboard in a real browser against the real service process: a database file created in the watched
 * directory appears as a row without a reload; deleting it changes the row. Saves docs/img/dashboard.png.
 */
import assert from 'node:assert/strict'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { launchChromium } from '../helpers/chromium.js'
import { startCli } from '../helpers/cli.js'
import { insertRows, openApp, tmpDir } from '../helpers/db.js'

test('dashboard shows clients live over SSE (real service, real browser)', async (t) => {
  const dir = tmpDir(t)
  const watch = path.join(dir, 'clients')
  fs.mkdirSync(watch)
  const seed = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]
  const apps = seed.map((id, i) => {
    const db = openApp(path.join(watch, `${id}.db`))
    insertRows(db, 20 + 30 * i, 2000)
    return db
  })
  fs.writeFileSync(path.join(watch, `${crypto.randomUUID()}.db`), '') // waiting
  fs.writeFileSync(path.join(watch, `${crypto.randomUUID()}.db`), 'not a database at all, <b>escaped</b>'.repeat(20)) // error
  const p = startCli(['-watch-dir', watch, '-bucket', `file://${path.join(dir, 'replica')}`, '-port', '0'], { LOG_LEVEL: 'info' })
  t.after(() => p.stop('SIGKILL'))
  const started = JSON.parse(await p.waitFor(/"msg":"service started"/)) as { dashboard: string }
  const browser = await launchChromium()
  t.after(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1500, height: 700 } })
  await page.goto(started.dashboard)
  await page.waitForSelector(`tr[data-id="${seed[2]}"][data-state="idle"], tr[data-id="${seed[2]}"][data-state="replicating"]`)

  // A new file appears as a row without a reload.
  const fresh = crypto.randomUUID()
  const freshDb = openApp(path.join(watch, `${fresh}.db`))
  insertRows(freshDb, 5)
  await page.waitForSelector(`tr[data-id="${fresh}"]`, { timeout: 10_000 })
  assert.equal(await page.locator('#t-clients').textContent(), '6')
  assert.equal(await page.locator('#t-errors').textContent(), '1')
  const errText = await page.locator('td.err').filter({ hasText: 'SQLite' }).first().textContent()
  assert.match(errText ?? '', /SQLite/)
  assert.equal(await page.locator('td b').count(), 0, 'file contents or errors never become markup')

  // Deleting the file changes the row.
  freshDb.close()
  for (const s of ['', '-wal', '-shm']) fs.rmSync(path.join(watch, `${fresh}.db${s}`), { force: true })
  await page.waitForSelector(`tr[data-id="${fresh}"][data-state="stopped"]`, { timeout: 10_000 })

  // Detail view with the restore command, then the screenshot the README shows.
  await page.click(`tr[data-id="${seed[1]}"]`)
  assert.match((await page.locator('#d-cmd').textContent()) ?? '', new RegExp(`litestream restore -o ${seed[1]}\\.db file://`))
  for (let i = 0; i < 3; i++) {
    insertRows(apps[1]!, 10, 3000)
    await new Promise((r) => setTimeout(r, 400))
  }
  fs.mkdirSync('docs/img', { recursive: true })
  await page.screenshot({ path: 'docs/img/dashboard.png' })
  for (const db of apps) db.close()
})
