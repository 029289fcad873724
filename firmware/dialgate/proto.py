"""The contract between a sans-IO protocol session and the transport (`net`).

A protocol module (SMTP, POP3, console) subclasses `Session` and never touches
sockets, asyncio or the clock: `net` reads into one preallocated buffer, frames
lines (bounded by `max_line`), calls the methods below, writes what they
return, and owns every timeout and close.
"""


class Session:
    # Longest line accepted in line mode, in octets including CRLF. Longer lines
    # get on_overflow()'s reply once and are discarded up to the next LF, so
    # the session stays in sync whatever the client sends.
    max_line = 512
    # Idle deadline in milliseconds; a protocol may change it per state.
    timeout_ms = 300000
    # Age in milliseconds after which net sets `expired` (0: no bound). The
    # session, not net, picks the moment to end: between transactions.
    lifetime_ms = 0
    expired = False
    # Work that must be finished before the session says more or reads on: the
    # spool commit behind SMTP's 250 (SpoolWriter.start_commit). The Framer runs it there
    # and then (`job.run()`), unless its driver defers jobs (`Framer.defer`: net
    # on CPython, whose group committer fsyncs in worker threads while other
    # sessions go on); either way on_job(job) then gives the reply (bytes), once
    # job.error says how it went. Only a session that sets a job needs on_job.
    job = None

    def __init__(self, peer):
        self.peer = peer  # (ip, port)
        self.raw = False  # True: bytes go to on_data() instead of on_line()
        self.closing = False  # close once pending output is written
        # object with fill(buf) -> n, 0 when done; net streams it. It may set
        # `done` once it has returned its last octets (net then stops asking).
        self.producer = None
        self.pause_ms = 0  # net drains, then waits this long before reading on
        # STARTTLS (RFC 3207) / STLS (RFC 2595), either side: set to an ssl context
        # once "ready" was said (a server: after replying it; a client: on reading
        # it). net drains, deals with unread input (early_data), upgrades the
        # stream (server side if we accepted the connection, client side if we
        # opened it) and calls on_tls(). While it is set, ignore lines.
        self.tls = None
        # Role reversal (ATRN, RFC 2645 §4): set to (kind, session) and net hands
        # this live connection (stream, TLS, buffer, unread input) to `session`,
        # which then greets; this one gets on_close().
        self.handover = None

    def greeting(self):
        """Bytes to send on connect, or None."""
        return None

    def on_line(self, line):
        """One line without its CRLF (bytes). Returns reply bytes or None."""
        return None

    def on_data(self, mv):
        """Raw mode: a memoryview of received bytes, valid only during the call.

        Returns the number of bytes consumed; anything not consumed (after the
        session left raw mode) is framed as lines again.
        """
        return len(mv)

    def take_reply(self):
        """Reply produced while in raw mode (e.g. after end of DATA), or None."""
        return None

    def on_overflow(self):
        """Reply to a line longer than max_line."""
        return b"-ERR line too long\r\n"

    def on_timeout(self):
        """Last words before an idle connection is closed, or None."""
        return None

    def on_eof(self):
        """The peer closed its side (or the link dropped)."""

    def on_close(self):
        """Always called once, whatever ended the session: release locks here."""

    def early_data(self):
        """Input arrived behind the "ready" and before the handshake. True: drop
        it and go on (a server, RFC 3207 §4.2); False: end the session without
        TLS (a client: RFC 3207 §5, the CVE-2011-0411 injection)."""
        return True

    def on_tls(self):
        """The TLS handshake asked for by `tls` is done: forget what the peer
        said before. Returns bytes to send first (a client's new EHLO), or None."""
        self.tls = None
        return None


class Framer:
    """Bounded line framing over one preallocated buffer (sans-IO; `net` drives it).

    Usage: read into `space()`, call `received(n)`, then call `process(write)`
    until it returns False. `process` hands each complete line (or raw chunk)
    to the session and passes replies to `write(bytes)`. It returns True when
    the session wants the transport to act first (stream `producer`, honour
    `pause_ms`, finish a deferred `job`) and must be called again after that. It stops, leaving the
    rest buffered, once the session asks for TLS or hands the connection over.
    """

    defer = False  # True: leave a session's job to the driver (see Session.job)

    def __init__(self, session, size, buf=None):
        self.s = session
        self.size = size
        self.buf = buf if buf is not None else bytearray(size)
        self.mv = memoryview(self.buf)
        self.start = 0
        self.end = 0
        self.discarding = False

    def space(self):
        """Writable view for the next read (never empty)."""
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == self.size and self.start:
            n = self.end - self.start
            self.mv[0:n] = self.mv[self.start : self.end]
            self.start = 0
            self.end = n
        return self.mv[self.end :]

    def received(self, n):
        self.end += n

    def reset(self):
        """Forget buffered input (RFC 3207 §4.2: nothing sent before TLS counts)."""
        self.start = self.end = 0
        self.discarding = False

    def process(self, write):
        s = self.s
        buf = self.buf
        mv = self.mv
        while self.start < self.end and not s.closing:
            start = self.start
            end = self.end
            if s.raw:
                self.start = start + s.on_data(mv[start:end])
                r = s.take_reply()
                if r:
                    write(r)
            else:
                i = buf.find(b"\n", start, end)
                if self.discarding:
                    self.start = end if i < 0 else i + 1
                    self.discarding = i < 0
                    continue
                if i < 0:
                    if end - start >= s.max_line or (start == 0 and end == self.size):
                        # RFC 5321 §4.5.3.1.4 / RFC 2449 §4: over-long command line.
                        r = s.on_overflow()
                        if r:  # a client has nothing to say to it (None): it just fails
                            write(r)
                        self.discarding = True
                        self.start = end
                    return False
                self.start = i + 1
                if i + 1 - start > s.max_line:
                    r = s.on_overflow()
                else:
                    stop = i - 1 if i > start and buf[i - 1] == 13 else i
                    r = s.on_line(bytes(mv[start:stop]))
                if r:
                    write(r)
            j = s.job
            if j is not None:
                if self.defer:
                    return True  # the driver finishes it, then writes on_job()'s reply
                s.job = None
                j.run()
                r = s.on_job(j)
                if r:
                    write(r)
            if s.producer is not None or s.pause_ms:
                return True
            if s.tls is not None or s.handover is not None:
                # what follows belongs to the TLS session (or to early_data()) or
                # to the session taking over: leave it buffered for the transport
                return False
        return False
