/** Debian Chromium for browser tests, launched headless with playwright-core (no downloaded browser builds). */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { chromium, type Browser } from 'playwright-core'

/** CHROMIUM is where Debian's chromium package installs the browser. */
export const CHROMIUM = '/usr/bin/chromium'

/** CHROMIUM_ARGS are the flags for a headless run on a closed network. */
export const CHROMIUM_ARGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/**
 * ensureChromium returns the path of the Chromium binary, installing Debian's package when it is missing
 * (`apt-get update && apt-get install -y chromium`). It throws, with apt's output, if installation fails;
 * browser tests turn that into a skip.
 */
export function ensureChromium(): string {
  if (fs.existsSync(CHROMIUM)) return CHROMIUM
  try {
    execFileSync('sh', ['-c', 'apt-get update -qq && apt-get install -y -qq chromium'], {
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 15 * 60_000,
    })
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string }
    throw new Error(`cannot install chromium with apt-get: ${e.stderr?.toString().trim().split('\n').slice(-3).join(' / ') || e.message}`)
  }
  if (!fs.existsSync(CHROMIUM)) throw new Error(`apt-get installed chromium but ${CHROMIUM} is missing`)
  return CHROMIUM
}

/** launchChromium starts headless Chromium (see ensureChromium) with CHROMIUM_ARGS. */
export async function launchChromium(executablePath: string = ensureChromium()): Promise<Browser> {
  return chromium.launch({ executablePath, args: [...CHROMIUM_ARGS] })
}
