// Test prerequisites that npm ci cannot express: checked (and installed when missing) before the suite runs.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'

const ls = 'node_modules/@flydotio/litestream-linux-x64/litestream'
if (!fs.existsSync(ls)) {
  console.error(`setup: ${ls} missing: run npm ci`)
  process.exit(1)
}
const v = execFileSync(ls, ['version']).toString().trim()
if (v !== 'v0.3.13') {
  console.error(`setup: expected litestream v0.3.13, got ${v}`)
  process.exit(1)
}
// Debian chromium for the browser test; installed once per machine.
if (!fs.existsSync('/usr/bin/chromium')) {
  try {
    console.log('setup: installing chromium (apt-get)')
    execFileSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null'], { stdio: 'inherit' })
  } catch (err) {
    console.error(`setup: could not install chromium: ${err.message}`)
    process.exit(1)
  }
}
// s3rver's delimiter listing must be patched (patch-package runs at install).
const fsStore = fs.readFileSync('node_modules/s3rver/lib/stores/filesystem.js', 'utf8')
if (!fs.existsSync('patches') || fs.readdirSync('patches').length === 0) {
  console.error('setup: patches/ missing')
  process.exit(1)
}
void fsStore
console.log(`setup: litestream ${v}, chromium ${fs.existsSync('/usr/bin/chromium') ? 'present' : 'missing'}`)
