"""CPython's side of the asyncio stream differences (part of the compat family).

compat imports this only on CPython, so a board never loads its code. CPython
hands out a (reader, writer) pair where MicroPython has one Stream; `Stream`
gives the pair the MicroPython subset the firmware uses.
"""

import asyncio
import os
import sys

from . import compat

# asyncio's selector transport recv()s up to max_size (256 KiB) into a new bytes
# object per read: above glibc's mmap threshold (128 KiB) that is an mmap, an
# mremap and a munmap for every command a client sends. A connection buffer
# (compat.io_buffer, 64 KiB) is all one read can use anyway.
_RECV_MAX = 65536


def hold_nothing(transport):
    """Make drain() wait until the transport has queued nothing (pause_writing as
    soon as one octet is left over, resume when none is).

    The firmware writes a view of a buffer it fills again after drain() (a
    RETR's or a relayed message's next chunk, net._flush). Python 3.12's
    transports queue what a send() left over as a view of the caller's buffer,
    not a copy (3.11 copied it), and drain() waits only above the high-water
    mark (64 KiB): a client or an ISP reading slower than we write got the
    next chunk's octets in place of the rest of this one. With the mark at
    zero, drain() returns only when the buffer is free again."""
    transport.set_write_buffer_limits(0)


class Stream:
    """CPython's (reader, writer) as a MicroPython Stream: readinto, read, write,
    drain, close, wait_closed, get_extra_info. A buffer written is free for
    reuse once drain() returns (hold_nothing)."""

    def __init__(self, reader, writer):
        self._r = reader
        self._w = writer
        t = writer.transport
        if getattr(t, "max_size", 0) > _RECV_MAX:  # a plain socket transport (TLS reads through its own buffer)
            t.max_size = _RECV_MAX
        hold_nothing(t)

    async def readinto(self, buf):
        data = await self._r.read(len(buf))
        n = len(data)
        buf[:n] = data
        return n

    async def read(self, n):
        return await self._r.read(n)

    def write(self, data):
        self._w.write(data)

    async def drain(self):
        t = self._w.transport
        # Nothing queued and the line up: nothing to wait for (a RETR drains after
        # every chunk). Anything queued has paused writing (hold_nothing), so
        # asyncio's drain waits until it has all gone. A lost connection still
        # raises through drain().
        if t.get_write_buffer_size() or t.is_closing():
            await self._w.drain()

    def close(self):
        self._w.close()

    async def wait_closed(self):
        try:
            await self._w.wait_closed()
        except (OSError, asyncio.CancelledError):
            pass

    def get_extra_info(self, name):
        return self._w.get_extra_info(name)


class Body:
    """A stored message opened for reading (compat.open_rb): the file descriptor
    alone. open(path, "rb", buffering=0) costs an openat and an fstat and builds
    a FileIO; a RETR of a small message is one open, one read and one close, so
    the fstat was one syscall in six (docs/performance.md, POP3)."""

    __slots__ = ("fd",)

    def __init__(self, path):
        self.fd = -1
        self.fd = os.open(path, os.O_RDONLY)  # type: ignore  # CPython only (board stubs lack it)

    def readinto(self, buf):
        return os.readv(self.fd, (buf,))

    def read(self, n=-1):
        if n >= 0:
            return os.read(self.fd, n)
        parts = []
        while True:
            b = os.read(self.fd, 65536)
            if not b:
                return b"".join(parts)
            parts.append(b)

    def close(self):
        fd = self.fd
        if fd >= 0:
            self.fd = -1
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # a reader dropped unclosed (a bug elsewhere) does not leak its descriptor
        self.close()


async def start_server(cb, host, port, backlog=5):
    async def wrap(reader, writer):
        await cb(Stream(reader, writer))

    return await asyncio.start_server(wrap, host, port, backlog=backlog, reuse_address=True)  # pyright: ignore[reportCallIssue]


async def open_connection(host, port):
    r, w = await asyncio.open_connection(host, port)
    return Stream(r, w)


async def start_tls_server(stream, ctx):
    """Server side of STARTTLS: TLS over the same transport, read through a fresh
    StreamReader so bytes the client sent before the handshake, already in the
    old reader's buffer, are dropped (RFC 3207 §4.2)."""
    loop = asyncio.get_running_loop()  # type: ignore  # CPython only (board stubs lack it)
    w = stream._w
    await w.drain()
    reader = asyncio.StreamReader()  # type: ignore
    protocol = asyncio.StreamReaderProtocol(reader)  # type: ignore
    transport = await loop.start_tls(w.transport, protocol, ctx, server_side=True)
    protocol.connection_made(transport)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)  # type: ignore
    return Stream(reader, writer)


# ---- group commit: the spool's fsyncs in worker threads (docs/storage.md "Commit") ----

_POOL = []  # the syncer, made on first use: a gateway that never commits starts no thread
_WORKERS = 4  # fsyncs in flight at once; the kernel's journal joins concurrent ones anyway


class _Syncer:
    """Worker threads that run a round's syncs (spool.sync) in parallel and wake
    the loop once, when the round's last one is done. A ThreadPoolExecutor with
    run_in_executor and gather costs each fsync a concurrent Future, a chained
    asyncio future, a wake-up of the loop and the workers' Python around them,
    all under the GIL the loop needs for its sessions."""

    def __init__(self, n):
        import queue
        import threading

        self.q = queue.SimpleQueue()
        self.lock = threading.Lock()
        for i in range(n):
            # daemon: an exit never waits for a disk; a commit cut there was not
            # acknowledged, and recovery at the next start finishes or drops it
            threading.Thread(target=self._work, name="dialgate-fsync-%d" % i, daemon=True).start()

    def _work(self):
        from .spool import sync

        get = self.q.get
        while True:
            rnd, i = get()
            try:
                sync(rnd[1][i])
            except BaseException as e:  # reported to the round's jobs, as an OSError
                rnd[2][i] = e
            with self.lock:
                rnd[3] -= 1
                last = not rnd[3]
            if last:
                try:
                    rnd[0].call_soon_threadsafe(_round_done, rnd)
                except RuntimeError:  # its loop closed meanwhile: no one to tell, and the worker lives on
                    pass

    async def run(self, items):
        """Sync `items`, each in a worker -> their errors (None where it succeeded)."""
        loop = asyncio.get_running_loop()  # type: ignore  # CPython only (board stubs lack it)
        fut = loop.create_future()
        rnd = [loop, items, [None] * len(items), len(items), fut]
        put = self.q.put
        for i in range(len(items)):
            put((rnd, i))
        return await fut


def _round_done(rnd):
    if not rnd[4].done():
        rnd[4].set_result(rnd[2])


def _syncer():
    if not _POOL:
        _POOL.append(_Syncer(_WORKERS))
    return _POOL[0]


class CommitGroup:
    """Finishes spool commit jobs (SpoolWriter.start_commit) for net without blocking the event loop.

    One task drives every unfinished job in rounds. A round takes the jobs that
    arrived since the last one, fsyncs every file in the jobs' requests (each its
    own, in parallel worker threads), steps the jobs those were for (their renames
    run here, on the loop), then fsyncs every directory the requests name once,
    for all the jobs that want it, and steps those. Sessions that finish DATA
    while a round's fsyncs are in flight join the next round, so under load one
    directory fsync covers several messages, and a lone message waits for no
    timer. A job's session gets its reply only once its job has finished.
    """

    def __init__(self):
        self._new = []  # (job, future) not yet in a round
        self._task = None
        self.rounds = 0  # (tests, benchmarks)

    async def complete(self, job):
        """Return once `job` has finished (job.error says how)."""
        fut = asyncio.get_running_loop().create_future()  # type: ignore
        self._new.append((job, fut))
        if self._task is None:
            self._task = asyncio.create_task(self._drive())
        await asyncio.shield(fut)  # a session cut meanwhile leaves its commit to finish here

    async def _drive(self):
        live = []  # [job, future, request, error]
        try:
            while self._new or live:
                new = [[job, fut, (), None] for job, fut in self._new]
                self._new = []
                live = _step(live + new, new)
                self.rounds += 1
                for files in (True, False):
                    live = _step(live, await _sync(live, files))
        finally:
            self._task = None
            for e in live + [[j, f] for j, f in self._new]:
                if not e[1].done():
                    e[1].cancel()  # (the loop is going down): no reply, recovery at the next start
            self._new = []


def _step(live, ready):
    """Step the jobs in `ready` (their requests done) -> the jobs still unfinished."""
    for e in ready:
        req = e[0].step(e[3])
        e[3] = None
        while req is not None and not req:
            req = e[0].step()
        if req is None:
            if not e[1].done():
                e[1].set_result(None)
        e[2] = req
    return [e for e in live if e[2] is not None]


async def _sync(live, files):
    """Sync the file items (files=True) or the directory items of every request,
    each distinct item once -> the entries whose requests are now done."""
    want = {}
    for e in live:
        for x in e[2]:
            if isinstance(x, str) != files:
                want.setdefault(x if isinstance(x, str) else id(x), (x, []))[1].append(e)
    if not want:
        return []
    items = list(want.values())
    res = await _syncer().run([x for x, _es in items])
    touched = {}
    for (x, es), r in zip(items, res):
        if isinstance(r, BaseException):
            if not isinstance(r, OSError):
                r = OSError(5, "sync failed: %s" % compat.exc_text(r))
        elif isinstance(x, str):
            es[0][0].spool.flash.syncs += 1  # (spool.Flash's wear counter: one fsync, however many jobs)
        for e in es:
            e[2] = tuple([y for y in e[2] if y != x])  # (equal paths: one fsync for all)
            if r is not None and e[3] is None:
                e[3] = r
            touched[id(e)] = e
    return [e for e in touched.values() if not e[2]]


def reexec():
    """compat.restart on CPython: the same command line again in this process
    (same pid: a service manager sees no exit; new code and config)."""
    sys.stdout.flush()
    sys.stderr.flush()
    exe = getattr(sys, "executable")  # (the board stubs, which this file is checked against too, have none)
    os.execv(exe, getattr(sys, "orig_argv", None) or [exe] + sys.argv)  # orig_argv: 3.10+
