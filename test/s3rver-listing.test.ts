// Self-test of the s3rver harness: delimiter listings must report common prefixes whose keys sit
// several levels deeper, and ListObjectsV2 must paginate (patches/s3rver+3.7.1.patch). Stock s3rver 3.7.1
// returns no common prefixes, so `litestream restore` finds no generations; and its v2 continuation tokens
// use DES, which OpenSSL 3 lacks, so page 2 of any truncated v2 listing is a 500 InternalError.
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { ListObjectsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { s3rverCredentials, startS3rver, type S3rverInstance } from './helpers/s3rver.js'

let s3: S3rverInstance
let client: S3Client

before(async () => {
  s3 = await startS3rver()
  client = new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: s3rverCredentials(),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
  const keys = [
    'a/generations/0123456789abcdef/wal/00000000_00000000.wal.lz4',
    'a/generations/0123456789abcdef/snapshots/00000000.snapshot.lz4',
    'a/generations/fedcba9876543210/snapshots/00000000.snapshot.lz4',
    'a/generations/top-level-object',
    'b/generations/1111111111111111/wal/00000000_00000000.wal.lz4',
  ]
  for (const Key of keys) await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key, Body: Buffer.from(Key) }))
})

after(async () => {
  client?.destroy()
  await s3?.stop()
})

const WANT_PREFIXES = ['a/generations/0123456789abcdef/', 'a/generations/fedcba9876543210/']

test('ListObjects v1 with Delimiter reports deep common prefixes', async () => {
  const out = await client.send(new ListObjectsCommand({ Bucket: s3.bucket, Prefix: 'a/generations/', Delimiter: '/' }))
  const got = (out.CommonPrefixes ?? []).map((p) => p.Prefix)
  assert.deepEqual(got, WANT_PREFIXES, 'common prefixes (is patches/s3rver+3.7.1.patch applied? run `npx patch-package`)')
  assert.deepEqual((out.Contents ?? []).map((o) => o.Key), ['a/generations/top-level-object'], 'contents')
})

test('ListObjectsV2 with Delimiter reports deep common prefixes', async () => {
  const out = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'a/generations/', Delimiter: '/' }))
  const got = (out.CommonPrefixes ?? []).map((p) => p.Prefix)
  assert.deepEqual(got, WANT_PREFIXES, 'common prefixes (is patches/s3rver+3.7.1.patch applied? run `npx patch-package`)')
  assert.deepEqual((out.Contents ?? []).map((o) => o.Key), ['a/generations/top-level-object'], 'contents')
})

test('ListObjectsV2 with Delimiter at the bucket root', async () => {
  const out = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Delimiter: '/' }))
  assert.deepEqual((out.CommonPrefixes ?? []).map((p) => p.Prefix), ['a/', 'b/'], 'root common prefixes')
})

test('ListObjectsV2 without Delimiter still lists every key under the prefix', async () => {
  const out = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'a/generations/0123456789abcdef/' }))
  assert.deepEqual(
    (out.Contents ?? []).map((o) => o.Key).sort(),
    [
      'a/generations/0123456789abcdef/snapshots/00000000.snapshot.lz4',
      'a/generations/0123456789abcdef/wal/00000000_00000000.wal.lz4',
    ],
    'keys',
  )
})

test('ListObjectsV2 paginates with continuation tokens', async () => {
  const prefix = 'pages/'
  const keys = Array.from({ length: 5 }, (_, i) => `${prefix}k${i}`)
  for (const Key of keys) await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key, Body: Buffer.from(Key) }))
  const got: string[] = []
  let token: string | undefined
  let pages = 0
  do {
    const out = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix, MaxKeys: 2, ContinuationToken: token }))
    got.push(...(out.Contents ?? []).map((o) => o.Key!))
    token = out.IsTruncated ? out.NextContinuationToken : undefined
    pages++
  } while (token && pages < 10)
  assert.deepEqual(got, keys, 'keys across pages')
  assert.equal(pages, 3, 'pages')
})
