/**
 * Byte-range locks owned by an open file description (Linux `F_OFD_SETLK`), called through koffi because Node has
 * no fcntl. They conflict with the classic POSIX locks SQLite takes, in other processes and in this one, so they
 * take part in SQLite's locking protocol like any SQLite connection. Unlike POSIX locks they belong to the
 * descriptor, not the process: closing some other descriptor of the same file (a short-lived better-sqlite3
 * connection, say) does not drop them. The engine's only importer of koffi (the file replica binds syncfs with it too).
 *
 * Also what the WAL hand-off worker (handoff-worker.ts) needs: two waits, which block its thread, never the event
 * loop (`waitLock`, F_OFD_SETLKW; an inotify descriptor polled for the database file's IN_MODIFY), and `copyRange`
 * (copy_file_range) to copy unshipped frames out of the WAL without passing them through JavaScript.
 * @module
 */
import fs from 'node:fs'
import koffi from 'koffi'
import { ReplicaError } from '../errors.js'

const F_OFD_GETLK = 36
const F_OFD_SETLK = 37
const F_OFD_SETLKW = 38
const F_RDLCK = 0
const F_WRLCK = 1
const F_UNLCK = 2
const EAGAIN = 11
const EACCES = 13
const EINTR = 4

/** LockKind names the lock a call asks for or reports. */
export type LockKind = 'read' | 'write' | 'none'

const TYPE: Record<LockKind, number> = { read: F_RDLCK, write: F_WRLCK, none: F_UNLCK }

interface Flock {
  l_type: number
  l_whence: number
  l_start: number | bigint
  l_len: number | bigint
  l_pid: number
}

let fcntl: ((fd: number, cmd: number, ...args: unknown[]) => number) | undefined
let inotify:
  | {
      readonly init1: (flags: number) => number
      readonly addWatch: (fd: number, path: string, mask: number) => number
      readonly poll: (fds: unknown, nfds: number, timeout: number) => number
      readonly close: (fd: number) => number
      readonly copyFileRange: (fdIn: number, offIn: bigint[], fdOut: number, offOut: bigint[], len: number, flags: number) => number | bigint
    }
  | undefined

function bind(): NonNullable<typeof fcntl> {
  if (fcntl) return fcntl
  if (process.platform !== 'linux') throw new ReplicaError('UNSUPPORTED', `WAL pinning needs Linux open-file-description locks; ${process.platform} is not supported`)
  koffi.struct('lsm_flock', { l_type: 'short', l_whence: 'short', l_start: 'int64', l_len: 'int64', l_pid: 'int' })
  // The running process already links libc: no library path to guess (glibc and musl alike).
  const f = koffi.load(null).func('int fcntl(int fd, int cmd, ...)') as unknown as NonNullable<typeof fcntl>
  fcntl = f
  return f
}

/**
 * setLock takes (read or write) or releases (none) the lock on bytes [start, start+len) of fd without waiting.
 * Returns false when another owner holds a conflicting lock; throws on any other failure.
 */
export function setLock(fd: number, kind: LockKind, start: number, len: number): boolean {
  const f = bind()
  const lk: Flock = { l_type: TYPE[kind], l_whence: 0, l_start: start, l_len: len, l_pid: 0 }
  if (f(fd, F_OFD_SETLK, 'lsm_flock *', lk) === 0) return true
  const errno = koffi.errno()
  if (errno === EAGAIN || errno === EACCES) return false
  throw new ReplicaError('LOCK_FAILED', `fcntl(F_OFD_SETLK, ${kind}, ${start}+${len}) failed with errno ${errno}`)
}

/**
 * waitLock takes the lock on bytes [start, start+len) of fd, blocking the calling thread until no other owner holds
 * a conflicting one (F_OFD_SETLKW). Only for a worker thread: it would freeze the event loop.
 */
export function waitLock(fd: number, kind: Exclude<LockKind, 'none'>, start: number, len: number): void {
  const f = bind()
  const lk: Flock = { l_type: TYPE[kind], l_whence: 0, l_start: start, l_len: len, l_pid: 0 }
  for (;;) {
    if (f(fd, F_OFD_SETLKW, 'lsm_flock *', lk) === 0) return
    const errno = koffi.errno()
    if (errno !== EINTR) throw new ReplicaError('LOCK_FAILED', `fcntl(F_OFD_SETLKW, ${kind}, ${start}+${len}) failed with errno ${errno}`)
  }
}

const IN_MODIFY = 0x2
const IN_NONBLOCK = 0o4000
const IN_CLOEXEC = 0o2000000
const POLLIN = 0x1

function bindInotify(): NonNullable<typeof inotify> {
  if (inotify) return inotify
  bind()
  const lib = koffi.load(null)
  koffi.struct('lsm_pollfd', { fd: 'int', events: 'short', revents: 'short' })
  inotify = {
    init1: lib.func('int inotify_init1(int flags)') as unknown as (flags: number) => number,
    addWatch: lib.func('int inotify_add_watch(int fd, const char *path, uint32_t mask)') as unknown as (fd: number, path: string, mask: number) => number,
    poll: lib.func('int poll(_Inout_ lsm_pollfd *fds, unsigned long nfds, int timeout)') as unknown as (fds: unknown, nfds: number, timeout: number) => number,
    close: lib.func('int close(int fd)') as unknown as (fd: number) => number,
    copyFileRange: lib.func('intptr_t copy_file_range(int fd_in, _Inout_ int64_t *off_in, int fd_out, _Inout_ int64_t *off_out, size_t len, unsigned int flags)') as unknown as NonNullable<
      typeof inotify
    >['copyFileRange'],
  }
  return inotify
}

/**
 * watchModify returns a non-blocking inotify descriptor that becomes readable when path is written (IN_MODIFY).
 * The caller closes it with closeWatch (not fs.closeSync: Node did not open it, and says so in a worker).
 */
export function watchModify(path: string): number {
  const n = bindInotify()
  const fd = n.init1(IN_NONBLOCK | IN_CLOEXEC)
  if (fd < 0) throw new ReplicaError('LOCK_FAILED', `inotify_init1 failed with errno ${koffi.errno()}`)
  if (n.addWatch(fd, path, IN_MODIFY) < 0) {
    const errno = koffi.errno()
    n.close(fd)
    throw new ReplicaError('LOCK_FAILED', `inotify_add_watch(${path}) failed with errno ${errno}`)
  }
  return fd
}

/**
 * copyRange copies len bytes of fdIn at offIn to fdOut at offOut inside the kernel (copy_file_range: no user-space
 * buffer, a reflink where the file system can). Returns the bytes copied, fewer only at the end of fdIn.
 */
export function copyRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): number {
  const n = bindInotify()
  const inPos = [BigInt(offIn)]
  const outPos = [BigInt(offOut)]
  let done = 0
  while (done < len) {
    const r = Number(n.copyFileRange(fdIn, inPos, fdOut, outPos, len - done, 0))
    if (r < 0) {
      const errno = koffi.errno()
      if (errno === EINTR) continue
      throw new ReplicaError('LOCK_FAILED', `copy_file_range failed with errno ${errno}`)
    }
    if (r === 0) break
    done += r
  }
  return done
}

/** closeWatch closes a descriptor from watchModify. */
export function closeWatch(fd: number): void {
  bindInotify().close(fd)
}

/** waitReadable blocks the calling thread until fd is readable or timeoutMs passed; true if readable. */
export function waitReadable(fd: number, timeoutMs: number): boolean {
  const n = bindInotify()
  const pfd = { fd, events: POLLIN, revents: 0 }
  const r = n.poll(pfd, 1, Math.max(0, Math.ceil(timeoutMs)))
  if (r < 0) {
    const errno = koffi.errno()
    if (errno === EINTR) return false
    throw new ReplicaError('LOCK_FAILED', `poll failed with errno ${errno}`)
  }
  return r > 0 && (pfd.revents & POLLIN) !== 0
}

const drainBuf = Buffer.alloc(4096)

/** drain reads everything queued on a non-blocking descriptor (the events of watchModify). */
export function drain(fd: number): void {
  for (;;) {
    try {
      if (fs.readSync(fd, drainBuf, 0, drainBuf.length, null) <= 0) return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return
      throw err
    }
  }
}

/** probeLock reports the strongest lock another owner holds that would conflict with a write lock on the range. */
export function probeLock(fd: number, start: number, len: number): LockKind {
  const f = bind()
  const lk: Flock = { l_type: F_WRLCK, l_whence: 0, l_start: start, l_len: len, l_pid: 0 }
  if (f(fd, F_OFD_GETLK, koffi.inout('lsm_flock *'), lk) !== 0) {
    throw new ReplicaError('LOCK_FAILED', `fcntl(F_OFD_GETLK, ${start}+${len}) failed with errno ${koffi.errno()}`)
  }
  return lk.l_type === F_UNLCK ? 'none' : lk.l_type === F_RDLCK ? 'read' : 'write'
}
