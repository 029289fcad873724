"""The only module that drives asyncio: listeners, outbound connections,
framing, TLS upgrades, deadlines, closes, for every session in both directions.

Each connection gets one preallocated buffer filled with `readinto`; lines are
framed in place and bounded by the session's `max_line`, so a peer that sends
megabytes without CRLF costs no memory beyond the buffer. One watchdog task
checks every session's idle deadline (`session.timeout_ms`) and marks a
session `expired` once it has lived `session.lifetime_ms`, whether we
accepted the connection (SMTP, POP3, console) or opened it (the relay's SMTP
client, the ODMR client, the POP3 collector: `net_out.connect()`).

One TLS hook for both sides (proto.Session.tls): a session sets `tls` to an
ssl context; net drains, upgrades the stream (server side on a connection we
accepted, client side with the server's name on one we opened) and calls
`on_tls()`. One handover (proto.Session.handover): the live stream, its TLS
and its unread input pass to a new session (ATRN's role reversal, RFC 2645 §4).
"""

import asyncio

from . import compat, log
from .compat import const
from .proto import Framer

_WATCHDOG_MS = const(1000)
_CLOSE_COMMITS_MS = const(5000)  # at a stop: the longest it waits for commits in flight to answer
# Octets of closed sessions' buffers kept for reuse. A board (1 KB buffers, a few
# slots) keeps all 2 x max_connections of them; CPython's 64 KiB ones would hold
# 8 MiB after a burst of 64 connections, for nothing: its allocator does not fragment.
_POOL_MAX = const(1048576)


class Conn:
    __slots__ = ("stream", "session", "task", "last", "start", "kind", "obuf", "tls_name", "outbound")

    def __init__(self, stream, session, kind, tls_name=None, outbound=False):
        self.stream = stream
        self.session = session
        self.kind = kind
        self.task = asyncio.current_task()
        self.obuf = None  # send buffer while a producer streams (RETR, relay)
        self.last = self.start = compat.ticks_ms()
        self.tls_name = tls_name  # the server's name a client-side TLS handshake checks
        self.outbound = outbound  # we opened it: TLS client side, OSError to the caller


class Net:
    """Listeners and sessions for the whole gateway.

    `buffer_size`: octets per connection (board profile `board.buffer`; under CPython
    `compat.io_buffer` makes it 64 KB): its reads, and a producer's sends.
    `max_connections`: total sessions across all listeners (`net.max_connections`).
    `backlog`: connections the kernel queues per listener before we accept them
    (`net.backlog`: a few on a microcontroller's lwIP, 128 on a Pi: a burst of
    PCs checking mail at 9 am must not overflow it and lose SYNs).
    """

    def __init__(self, buffer_size=1024, max_connections=8, backlog=5):
        self.buffer_size = buffer_size
        self.max_connections = max_connections
        self.backlog = backlog
        self.conns = []
        self.admitting = 0  # accepted, waiting in `admit` for their session (they count to the cap)
        self.servers = []
        self.listening = []  # "kind host:port" strings for status
        self._pool = []  # buffers of closed sessions, reused
        self._watchdog = None
        # Sessions' jobs (proto.Session.job: the spool commit behind SMTP's 250):
        # CPython finishes them in compat's group committer (fsyncs in worker
        # threads, shared); a board runs each inline in the Framer, as before.
        self._commits = compat.commit_group()

    async def listen(self, kind, host, port, factory, admit=None):
        """Accept connections on host:port; `factory(peer)` makes a proto.Session.
        `admit`: a coroutine function awaited before the factory (app's: wait
        for a queue run's code to go before the SMTP server loads)."""

        async def accept(stream):
            await self.serve(stream, factory, kind, admit)

        srv = await compat.start_server(accept, host, port, self.backlog)
        self.servers.append(srv)
        self.listening.append("%s %s:%d" % (kind, host, port))
        self.watch_start()
        return srv

    def watch_start(self):
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch())

    def count(self, kind=None):
        if kind is None:
            return len(self.conns)
        return len([c for c in self.conns if c.kind == kind])

    async def close(self):
        for s in self.servers:
            s.close()
        for s in self.servers:
            try:
                await s.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass
        self.servers = []
        # A commit in flight (CPython's group committer: s.job) finishes and its
        # reply goes out first: cut, its message would be on flash but not
        # acknowledged, and the client would send it again (a duplicate).
        t = compat.ticks_ms()
        while [c for c in self.conns if c.session.job is not None] and compat.ticks_diff(
                compat.ticks_ms(), t) < _CLOSE_COMMITS_MS:
            await asyncio.sleep(0.01)
        for c in list(self.conns):
            if c.task is not None:
                c.task.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    async def _watch(self):
        while True:
            await asyncio.sleep(_WATCHDOG_MS / 1000)
            try:
                self.sweep(compat.ticks_ms())
            except Exception:  # (a MemoryError in a timeout's reply or log line) the next round tries again
                compat.gc_collect()

    def sweep(self, now):
        """One watchdog round at ticks `now`: close idle sessions, mark old ones
        `expired` (the session decides when to end politely: SMTP at its next
        command outside a transaction, RFC 5321 §3.8)."""
        for c in list(self.conns):
            s = c.session
            life = s.lifetime_ms  # 0: no bound on the session's age
            if life and not s.expired and compat.ticks_diff(now, c.start) > life:
                s.expired = True
            t = s.timeout_ms  # 0: never (the board's UART console)
            if t and compat.ticks_diff(now, c.last) > t:
                log.info("%s %s:%d idle timeout", c.kind, s.peer[0], s.peer[1])
                msg = s.on_timeout()
                try:
                    if msg:
                        c.stream.write(msg)
                except OSError:
                    pass
                s.closing = True
                if c.task is not None:
                    c.task.cancel()

    async def serve(self, stream, factory, kind, admit=None):
        peer = compat.peer_of(stream)
        held = len(self.conns) + self.admitting
        if held >= self.max_connections:
            log.warn("%s %s:%d refused: %d connections open", kind, peer[0], peer[1], held)
            await _refuse(stream, kind, True)
            return
        if admit is not None:
            self.admitting += 1  # a slot is this connection's while it waits, not only once it has a session
            try:
                await admit()
            finally:
                self.admitting -= 1
        try:
            session = factory(peer)
        except (OSError, ValueError, MemoryError) as e:
            # The feature could not be built (unreadable users file, flash
            # error, no heap): say so and close; the client retries later.
            log.exception("%s: cannot start a session" % kind, e)
            await _refuse(stream, kind, False)
            return
        await self.drive(stream, session, kind, None, False)

    async def drive(self, stream, session, kind, tls_name, outbound):
        """Run one session (and whoever it hands over to) over `stream` to its
        end, whatever ends it; always calls on_close() and closes the stream.
        `outbound`: a connection we opened, whose OSError (a reset, a failed TLS
        handshake) goes to the caller of connect(), who says why the session failed."""
        peer = session.peer
        conn = Conn(stream, session, kind, tls_name, outbound)
        self.conns.append(conn)
        log.debug("%s %s:%d connected", kind, peer[0], peer[1])
        try:
            await self._run(conn)
        except asyncio.CancelledError:
            pass
        except OSError as e:
            log.debug("%s %s:%d %s", conn.kind, peer[0], peer[1], compat.exc_text(e))
            if outbound:
                raise
        except MemoryError:  # a board's heap, full or in pieces: a local error, not a bug
            try:
                from .net_out import out_of_memory

                out_of_memory(conn, outbound)
            except MemoryError:
                pass
        except Exception as e:  # a bug in one session must not stop the gateway
            log.exception("%s session crashed" % conn.kind, e)
        finally:
            self.conns.remove(conn)
            try:
                conn.session.on_close()
            except Exception as e:
                log.exception("%s on_close" % conn.kind, e)
            stream = conn.stream  # the TLS stream after STARTTLS
            try:
                await stream.drain()
            except (OSError, asyncio.CancelledError):
                pass
            try:
                stream.close()
                await compat.wait_closed(stream)
            except (OSError, asyncio.CancelledError):
                pass

    async def _flush(self, conn, obuf):
        """Drain output, stream the session's producer if any, honour pause_ms."""
        s = conn.session
        st = conn.stream
        await st.drain()
        j = s.job
        if j is not None:  # nothing more for this session until it has finished
            await self._commits.complete(j)
            s.job = None
            r = s.on_job(j)
            if r:
                st.write(r)
                await st.drain()
        p = s.producer
        while p is not None:  # take_reply() may start the next one (a client's BDAT pipeline)
            omv = memoryview(obuf)
            while True:
                n = p.fill(obuf)
                if not n:
                    break
                st.write(omv[:n])
                await st.drain()
                conn.last = compat.ticks_ms()
                if getattr(p, "done", False):
                    break  # that was its last: no call that returns 0 (a RETR is one fill)
            s.producer = None
            r = s.take_reply()
            if r:
                st.write(r)
                await st.drain()
            p = s.producer
        if s.pause_ms:
            ms = s.pause_ms
            s.pause_ms = 0
            await asyncio.sleep(ms / 1000)

    def buffers(self):
        """(buffers held by open connections, buffers kept for reuse, octets each):
        a read buffer per connection and a send buffer per producer (console `memory`)."""
        held = len(self.conns) + len([c for c in self.conns if c.obuf is not None])
        return held, len(self._pool), self.buffer_size

    def _buffer(self):
        """A connection buffer: reused from a closed session when there is one.

        Reuse keeps a board's heap from fragmenting into holes smaller than a
        buffer as connections come and go."""
        if self._pool:
            return self._pool.pop()
        compat.gc_for_block()
        return bytearray(self.buffer_size)

    def _release(self, buf):
        n = len(self._pool)
        if (buf is not None and len(buf) == self.buffer_size and n < 2 * self.max_connections
                and (n + 1) * self.buffer_size <= _POOL_MAX):
            self._pool.append(buf)

    async def _run(self, conn):
        fr = Framer(conn.session, self.buffer_size, self._buffer())
        fr.defer = self._commits is not None
        try:
            await self._serve_buffered(conn, fr)
        finally:
            self._release(fr.buf)
            self._release(conn.obuf)

    async def _serve_buffered(self, conn, fr):
        s = conn.session
        st = conn.stream
        obuf = None
        g = s.greeting()
        if g:
            st.write(g)
            await st.drain()
        while not s.closing:
            n = await st.readinto(fr.space())
            if not n:
                s.on_eof()
                break
            fr.received(n)
            s0 = fr.start
            while True:
                while fr.process(st.write):
                    if obuf is None and s.producer is not None:
                        obuf = conn.obuf = self._buffer()  # a producer's sends
                    await self._flush(conn, obuf)
                await st.drain()
                if s.tls is not None and not s.closing:  # STARTTLS / STLS, either side
                    from .net_out import start_tls

                    st = await start_tls(conn, fr)
                if s.handover is None:
                    break
                from .net_out import hand_over

                s = hand_over(conn, fr)  # and frame what is already buffered for it
            # The idle deadline restarts on a DATA block (raw), or on a command
            # once its line is complete (RFC 5321 §4.5.3.2.7: the server times out
            # awaiting the next command): a client trickling a byte a second, or
            # an endless line being discarded, is still cut at the deadline.
            if s.raw or (fr.start != s0 and not fr.discarding):
                conn.last = compat.ticks_ms()


async def _refuse(stream, kind, busy):
    try:
        from .net_out import refuse  # the rare path's code, off the heap until needed

        await refuse(stream, kind, busy)
    except MemoryError:  # no heap even for that: just close
        stream.close()
