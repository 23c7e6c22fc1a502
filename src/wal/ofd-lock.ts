/**
 * Byte-range locks owned by an open file description (Linux `F_OFD_SETLK`), called through koffi because Node has
 * no fcntl. They conflict with the classic POSIX locks SQLite takes, in other processes and in this one, so they
 * take part in SQLite's locking protocol like any SQLite connection. Unlike POSIX locks they belong to the
 * descriptor, not the process: closing some other descriptor of the same file (a short-lived better-sqlite3
 * connection, say) does not drop them. The engine's only importer of koffi (the file replica binds syncfs with it too).
 * @module
 */
import koffi from 'koffi'
import { ReplicaError } from '../errors.js'

const F_OFD_GETLK = 36
const F_OFD_SETLK = 37
const F_RDLCK = 0
const F_WRLCK = 1
const F_UNLCK = 2
const EAGAIN = 11
const EACCES = 13

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

/** probeLock reports the strongest lock another owner holds that would conflict with a write lock on the range. */
export function probeLock(fd: number, start: number, len: number): LockKind {
  const f = bind()
  const lk: Flock = { l_type: F_WRLCK, l_whence: 0, l_start: start, l_len: len, l_pid: 0 }
  if (f(fd, F_OFD_GETLK, koffi.inout('lsm_flock *'), lk) !== 0) {
    throw new ReplicaError('LOCK_FAILED', `fcntl(F_OFD_GETLK, ${start}+${len}) failed with errno ${koffi.errno()}`)
  }
  return lk.l_type === F_UNLCK ? 'none' : lk.l_type === F_RDLCK ? 'read' : 'write'
}
