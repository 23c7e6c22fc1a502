/**
 * Child process for S3 benchmark runs: s3rver (test/helpers/s3rver.ts) plus the counting proxy in front of it,
 * kept out of the harness process so neither competes with the harness's sampling loop.
 * Prints one JSON line {s3Endpoint, proxyEndpoint, dir, bucket} on stdout, then serves until SIGTERM.
 * @module
 */
import { startS3rver } from '../test/helpers/s3rver.js'
import { startCountingProxy } from './proxy.js'

const s3 = await startS3rver({ bucket: 'bench' })
const proxy = await startCountingProxy(s3.endpoint)
process.stdout.write(`${JSON.stringify({ s3Endpoint: s3.endpoint, proxyEndpoint: proxy.endpoint, dir: s3.dir, bucket: s3.bucket })}\n`)
const stop = async (): Promise<void> => {
  await proxy.close()
  await s3.stop()
  process.exit(0)
}
process.on('SIGTERM', () => void stop())
process.on('SIGINT', () => void stop())
process.on('disconnect', () => void stop())
