"""The one module that knows which runtime it is on (CPython or MicroPython).

Every other firmware module imports runtime differences from here; lint fails
if any other module tests `sys.implementation` or catches `ImportError`.
"""

import binascii
import gc
import hashlib
import os
import sys
import time

MICROPYTHON = sys.implementation.name == "micropython"
# Octets of each per-session I/O buffer under CPython where the profile's
# board.buffer is smaller: a connection's reads and a producer's sends, the
# DATA decoder's scan, RETR's and the relay's file reads, the spool writer's
# gathered writes. A 100 KB DATA is then two reads, two decoder steps and two
# file writes, not 32 of each, and a 1 MB RETR 16 sends (docs/performance.md).
# A board keeps its connection buffer size: constant, small RAM per session.
BIG_BUFFER = 0 if MICROPYTHON else 65536


def io_buffer(n):
    """The size of a per-session I/O buffer for the profile's board.buffer `n`."""
    return n if n > BIG_BUFFER else BIG_BUFFER


try:
    from micropython import const  # type: ignore
except ImportError:  # CPython

    def const(x):
        return x


# ---- clocks: ticks for intervals, wall time only for calendars ----------

if hasattr(time, "ticks_ms"):
    ticks_ms = time.ticks_ms  # type: ignore
    ticks_diff = time.ticks_diff  # type: ignore
    ticks_add = time.ticks_add  # type: ignore
else:
    _t0 = time.monotonic()  # type: ignore

    def ticks_ms():
        return int((time.monotonic() - _t0) * 1000)  # type: ignore

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, delta):
        return a + delta


def sleep_ms(ms):
    if hasattr(time, "sleep_ms"):
        time.sleep_ms(ms)  # type: ignore
    else:
        time.sleep(ms / 1000)


def _raw_time():
    t = time.time()
    if MICROPYTHON and t < 946684800:
        # MicroPython ports with a 2000 epoch: report Unix seconds everywhere.
        t += 946684800
    return int(t)


# [offset added to the runtime's clock, trusted?]: set_wall() sets both.
_wall = [0, False]


def wall_time():
    """Seconds since the Unix epoch (may be wrong on a board before the clock is set)."""
    return _raw_time() + _wall[0]


_CLOCK_SANE = const(1577836800)  # 2020-01-01: a wall clock before this has not been set yet


def clock_ok(t):
    """True if wall time `t` is from a clock that has been set (ticks for intervals, always)."""
    return t >= _CLOCK_SANE


try:
    import machine as _machine  # type: ignore

    _BOARD_CLOCK = hasattr(_machine, "RTC")  # a board: its RTC starts at an arbitrary time
except ImportError:  # CPython, or a MicroPython port without `machine`
    _BOARD_CLOCK = False


def clock_trusted():
    """Is wall_time() right? An operating system keeps its own clock (CPython, the
    unix port); a board's RTC is trusted only once set_wall() set it (NTP, or the
    ISP's Date when the link came up; docs/sessions.md "Clock")."""
    if _wall[1]:
        return True
    return not _BOARD_CLOCK and clock_ok(_raw_time())


def set_wall(t):
    """The right time is Unix seconds `t` (from NTP or the ISP): wall_time() follows
    from now on and clock_trusted() says so. Returns the step in seconds."""
    step = t - wall_time()
    _wall[0] += step
    _wall[1] = True
    return step


# ---- files ----------------------------------------------------------------

_os_fsync = getattr(os, "fsync", None)
_os_replace = getattr(os, "replace", None)


def fsync(f):
    """Flush a file object and, where the runtime can, force it to stable storage.

    MicroPython has no os.fsync: littlefs/FAT commit on flush/close.
    """
    f.flush()
    if _os_fsync is not None:
        _os_fsync(f.fileno())


def sync_dir(path):
    """Make a rename/creation in directory `path` durable (POSIX only; a no-op elsewhere)."""
    if _os_fsync is None:
        return
    fd = os.open(path, getattr(os, "O_RDONLY", 0))
    try:
        _os_fsync(fd)
    finally:
        os.close(fd)


def replace(src, dst):
    """Atomically rename src over dst.

    CPython: os.replace. MicroPython: littlefs rename replaces atomically; on a
    VFS that refuses to rename over an existing file we remove first (the caller's
    recovery must tolerate a missing dst with src still present).
    """
    if _os_replace is not None:
        _os_replace(src, dst)
        return
    try:
        os.rename(src, dst)
    except OSError:
        try:
            os.remove(dst)
        except OSError:
            pass
        os.rename(src, dst)


def settle(path):
    """Before reading a small file put through `path + ".tmp"` (spool.Flash.put):
    a put cut inside replace() on a VFS that removes first (FAT) left only the
    tmp, complete (renamed only after its fsync): put it in place."""
    if not exists(path) and exists(path + ".tmp"):
        replace(path + ".tmp", path)


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def makedirs(path):
    """mkdir -p (MicroPython's os has no makedirs)."""
    if not path or is_dir(path):
        return
    parent = path.rsplit("/", 1)[0] if "/" in path.rstrip("/") else ""
    if parent and parent != path:
        makedirs(parent)
    try:
        os.mkdir(path)
    except OSError:
        if not is_dir(path):
            raise


def listdir(path):
    return os.listdir(path)


def files_in(path):
    """Iterate (name, size) over the files (not directories) in `path`, one at a time.

    MicroPython: os.ilistdir, no list of every name; size is -1 where the VFS
    does not give it (littlefs and FAT do). CPython: os.scandir, size -1.
    """
    il = getattr(os, "ilistdir", None)
    if il is not None:
        for e in il(path):
            if e[1] != 0x4000:
                yield e[0], (e[3] if len(e) > 3 else -1)
        return
    with os.scandir(path) as it:  # type: ignore
        for e in it:
            if not e.is_dir():
                yield e.name, -1


if MICROPYTHON:

    def open_rb(path):
        """A stored message opened for reading (read, readinto, close)."""
        return open(path, "rb")

else:

    # A stored message opened for reading, as a bare descriptor: an open is one
    # openat(2), with no fstat and no file object, and each readinto one read(2)
    # into the caller's buffer (a RETR's 64 KB).
    from .compat_cpython import Body as open_rb  # noqa: F401 - compat.open_rb, as the MicroPython branch defines it


def file_size(path):
    return os.stat(path)[6]


# How long a spool may reuse a free-space reading (Spool.free), less what it has
# written since: statvfs walks the whole filesystem on littlefs, more block reads
# than writing a message (docs/storage.md "Free-space guard"). Only on a board, where
# the flash is the gateway's alone; a PC's disk is shared, and statvfs is cheap.
FREE_REUSE_MS = 10000 if MICROPYTHON else 0


def disk_free(path):
    """Free bytes available to us on the filesystem holding `path`, or -1 if unknown."""
    st = getattr(os, "statvfs", None)
    if st is None:
        return -1
    try:
        s = st(path)
    except OSError:
        return -1
    if s[4] > s[2]:
        # littlefs counts blocks in use past the block count when nearly full, and
        # MicroPython reports (blocks - used) unsigned: a huge number means none free.
        return 0
    return s[0] * s[4]


def urandom(n):
    return os.urandom(n)


# ---- storage: hard links, process locks, private files, PBKDF2 (spool/mailbox/users) ----

_os_link = getattr(os, "link", None)
HAS_LINK = _os_link is not None  # POSIX hard links (CPython); MicroPython VFSes have none


def link(src, dst):
    """Hard-link `dst` to `src` (same inode). Raises OSError where the runtime has no links."""
    if _os_link is None:
        raise OSError(95, "hard links not supported")
    _os_link(src, dst)


def lock_exclusive(path):
    """An OS lock on `path` (created if missing) that the kernel drops when the process dies.

    Returns a handle for unlock(), or None where the runtime has no file locks (a
    board runs one process; the caller's in-RAM lock is enough and a reset clears
    it). Raises OSError if another process holds the lock.
    """
    if MICROPYTHON:
        return None
    import fcntl

    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise
    return f


def unlock(handle):
    if handle is not None:
        handle.close()  # closing the descriptor releases flock


def chmod_private(path):
    """Owner-only permissions (0600) where the filesystem has permissions."""
    ch = getattr(os, "chmod", None)
    if ch is not None:
        ch(path, 0o600)


def b64encode(data):
    """bytes -> base64 str without newline."""
    return binascii.b2a_base64(data).decode().strip()


def b64decode(text):
    return binascii.a2b_base64(text)


_pbkdf2_hmac = getattr(hashlib, "pbkdf2_hmac", None)


def pbkdf2_sha256(password, salt, iterations, dklen=32):
    """PBKDF2-HMAC-SHA256 (RFC 8018 §5.2) of bytes `password` and `salt` -> bytes.

    CPython: hashlib.pbkdf2_hmac. MicroPython: HMAC (RFC 2104) built on
    hashlib.sha256 here; both give identical output (tests check across runtimes).
    """
    if _pbkdf2_hmac is not None:
        return _pbkdf2_hmac("sha256", password, salt, iterations, dklen)
    sha = hashlib.sha256
    if len(password) > 64:
        password = sha(password).digest()
    key = password + bytes(64 - len(password))
    ipad = bytes([b ^ 0x36 for b in key])
    opad = bytes([b ^ 0x5C for b in key])
    out = []
    block = 1
    have = 0
    while have < dklen:
        h = sha(ipad)
        h.update(salt)
        h.update(block.to_bytes(4, "big"))
        o = sha(opad)
        o.update(h.digest())
        u = o.digest()
        acc = int.from_bytes(u, "big")
        for _ in range(iterations - 1):
            h = sha(ipad)
            h.update(u)
            o = sha(opad)
            o.update(h.digest())
            u = o.digest()
            acc ^= int.from_bytes(u, "big")
        out.append(acc.to_bytes(32, "big"))
        have += 32
        block += 1
    return b"".join(out)[:dklen]


# ---- memory and errors -----------------------------------------------------


def gc_collect():
    gc.collect()


def gc_threshold(octets):
    """Collect once `octets` have been allocated since the last collection
    (MicroPython's gc.threshold; 0 leaves its default: only when an allocation
    fails). Frequent collections free each burst of garbage before the next
    long-lived block is placed, so code and state pack low in the heap instead
    of between dead strings. CPython frees by reference count: nothing to do."""
    if MICROPYTHON and octets > 0:
        gc.threshold(octets)


def gc_for_block():
    """Before allocating a connection-sized block: on a board a collection
    first finds it a hole; CPython frees by reference count, and a full
    collection there costs milliseconds per new connection (a burst of 50
    PCs would wait behind 40 of them for their greetings)."""
    if MICROPYTHON:
        gc.collect()


def forget(d, key):
    """Delete `key` from dict `d` for good. MicroPython's map keeps a deleted
    slot's value (for the caller), so the collector would still see it until
    the slot is reused: overwrite it first."""
    if key in d:
        d[key] = None
        del d[key]


def drop_attr(obj, name):
    """delattr(), with the same care as forget() (instances and modules are maps too)."""
    if name in obj.__dict__:  # never dir(): MicroPython's probes every name (and __getattr__)
        setattr(obj, name, None)
        delattr(obj, name)


def intern(name):
    """Intern the text `name` (MicroPython: as a qstr, the table of names that
    is never freed). A string made from the same text afterwards (json keys,
    `%` formatting, a loaded `.mpy`'s string constants) is then that name, a
    word with no heap of its own, instead of a new 40-60 octet string object.
    For text that lives as long as the gateway: the config's keys
    (config_load.load). MicroPython interns an attribute name it is asked
    for, so a lookup that finds nothing does it; CPython: sys.intern."""
    if MICROPYTHON:
        getattr(intern, name, None)
    else:
        sys.intern(name)


def intern_module_names(folder):
    """Import and forget, one at a time, each firmware module in `folder` not
    yet loaded, so that every name the firmware interns is in MicroPython's
    name pools now: app.main does it at start on a board that unloads idle
    features. The pools, one block each (the seventh 14 KB on the unix port),
    are then allocated while the heap is still empty, not at the first call,
    where no hole that big was left; and the names' text (none from ROMFS,
    where it stays in flash) is packed at the bottom of the heap instead of
    between the code of modules that come and go (docs/architecture.md,
    "Memory"). Best effort: it stops at the first MemoryError (the names left
    come when their modules load). Returns how many modules it went through."""
    n = 0
    try:
        names = sorted(os.listdir(folder))
    except (OSError, MemoryError):  # frozen into the firmware: no folder, and its names are in it already
        return 0
    had = [k for k in sys.modules if k.startswith("dialgate.")]
    for fn in names:
        m, _, ext = fn.rpartition(".")
        name = "dialgate." + m
        if ext not in ("mpy", "py") or m in ("__init__", "__main__", "compat_cpython") or name in sys.modules:
            continue
        full = False
        try:
            __import__(name)
        except ImportError:
            pass  # not on this board: its names never come
        except MemoryError:
            full = True
        for k in [k for k in sys.modules if k.startswith("dialgate.") and k not in had]:
            unload(k)  # the runtime's own (ssl, ...) stay
        gc.collect()
        if full:
            break
        n += 1
    return n


def unload(name):
    """Forget module `name` ("dialgate.x") so the collector can free its code
    once nothing else refers to it; the next import loads it afresh."""
    forget(sys.modules, name)
    pkg, _, leaf = name.rpartition(".")
    p = sys.modules.get(pkg)
    if p is not None:
        drop_attr(p, leaf)


def mem_alloc():
    """Heap bytes in use: the GC heap on MicroPython, resident set size on CPython."""
    f = getattr(gc, "mem_alloc", None)
    if f is not None:
        return f()
    return _rss()


def mem_free():
    """Heap bytes free on MicroPython; -1 on CPython (no fixed heap)."""
    f = getattr(gc, "mem_free", None)
    if f is not None:
        return f()
    return -1


def _rss():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    except (OSError, ValueError):
        return -1


def print_exc(exc, file=None):
    out = file or sys.stderr
    pe = getattr(sys, "print_exception", None)
    if pe is not None:
        pe(exc, out)
        return
    import traceback

    traceback.print_exception(type(exc), exc, exc.__traceback__, file=out)


def exc_text(exc):
    """One line naming an exception, for logs and `451` replies."""
    return "%s: %s" % (type(exc).__name__, exc)


# ---- asyncio streams ---------------------------------------------------------

import asyncio  # noqa: E402  (both runtimes have it; only net.py drives it)


def peer_of(stream):
    """(ip, port) of a stream's remote end on either runtime."""
    try:
        pn = stream.get_extra_info("peername")
    except (AttributeError, OSError):
        return ("?", 0)
    if isinstance(pn, tuple):
        return (pn[0], pn[1])
    # MicroPython unix port: raw struct sockaddr_in
    if pn and len(pn) >= 8 and pn[0] == 2:
        return ("%d.%d.%d.%d" % (pn[4], pn[5], pn[6], pn[7]), (pn[2] << 8) | pn[3])
    return ("?", 0)


if MICROPYTHON:

    async def start_server(cb, host, port, backlog=5):
        async def wrap(reader, _writer):  # MicroPython: one Stream object, passed twice
            await cb(reader)

        return await asyncio.start_server(wrap, host, port, backlog)

    async def open_connection(host, port):
        r, _w = await asyncio.open_connection(host, port)
        return r

    async def wait_closed(stream):
        try:
            await stream.wait_closed()
        except OSError:
            pass

    def commit_group():
        """A group committer for net, or None: run spool commits inline. MicroPython's
        asyncio has no threads for fsyncs (and littlefs commits on close)."""
        return None

else:  # CPython's (reader, writer) pairs: the adapter lives in compat_cpython, never loaded on a board

    async def start_server(cb, host, port, backlog=5):
        from .compat_cpython import start_server as f

        return await f(cb, host, port, backlog)

    async def open_connection(host, port):
        from .compat_cpython import open_connection as f

        return await f(host, port)

    async def wait_closed(stream):
        await stream.wait_closed()

    def commit_group():
        """net's group committer: spool commits' fsyncs in worker threads, shared
        between sessions, while the loop serves the others (compat_cpython.CommitGroup)."""
        from .compat_cpython import CommitGroup

        return CommitGroup()


def stdin_stream():
    """An asyncio stream over the console UART / stdin, or None where the runtime cannot."""
    if MICROPYTHON:
        return asyncio.StreamReader(sys.stdin)  # type: ignore
    return None


def install_stop(callback):
    """Call `callback()` on SIGTERM/SIGINT where the runtime has signals (CPython)."""
    if MICROPYTHON:
        return False
    import signal

    loop = asyncio.get_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # pyright: ignore[reportAttributeAccessIssue]
        loop.add_signal_handler(sig, callback)
    return True


def restart():
    """Start the process afresh where the runtime can: a board resets, CPython
    executes itself again (compat_cpython.reexec). Returns where neither can
    (the unix port): the caller starts again in this process."""
    if _BOARD_CLOCK:  # a board (machine.RTC): the unix port's machine has none
        _machine.reset()
    if not MICROPYTHON:
        from .compat_cpython import reexec

        reexec()


def exit(code):
    sys.exit(code)
