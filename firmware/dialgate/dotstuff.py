"""Stream a stored message to the wire, dot-stuffed, in bounded chunks (POP3 RETR/TOP, SMTP relay).

RFC 1939 §3 / RFC 5321 §4.5.2: a line that starts with "." gets one more "."
and the data ends with CRLF "." CRLF. State is carried across chunks, so a
"." at the start of a chunk whose line began in the previous chunk is right.
"""

from .compat import const

_DOT = const(46)
_LF = const(10)
_CR = const(13)
_TAIL = const(b".\r\n")
_CRLF_TAIL = const(b"\r\n.\r\n")


class DotStuffer:
    """Copies message bytes into an output buffer, stuffing leading dots.

    `top`: None copies everything; an integer n stops after the header, the
    blank line and n body lines (RFC 1939 §7 TOP). `done` turns True once a
    TOP limit is reached. `bol` says the last byte copied ended a line.
    """

    def __init__(self, top=None):
        self.bol = True
        self.top = top
        self.done = False
        self.in_header = True
        self.line_len = 0  # octets of the current line so far, without LF (TOP only)
        self.first = 0  # first octet of the current line (TOP only)

    def stuff(self, src, start, end, dst, dpos):
        """Copy src[start:end] into dst from dpos until one of them runs out.

        `src`/`dst` are bytearrays. Returns (start, dpos) after the copy.
        Allocates nothing but short-lived memoryview slices.
        """
        smv = memoryview(src)
        dmv = memoryview(dst)
        dlen = len(dst)
        counting = self.top is not None
        pat = b"\n" if counting else b"\n."
        while start < end and dpos < dlen and not self.done:
            if self.bol and src[start] == _DOT:
                if dlen - dpos < 2:
                    break
                dst[dpos] = _DOT  # the extra dot; the original follows with the line
                dpos += 1
                self.bol = False
            i = src.find(pat, start, end)
            stop = end if i < 0 else i + 1
            n = stop - start
            room = dlen - dpos
            if n > room:
                n = room
            dmv[dpos : dpos + n] = smv[start : start + n]
            if counting:
                self._count(src, start, n)
            start += n
            dpos += n
            self.bol = src[start - 1] == _LF
        return start, dpos

    def _count(self, src, start, n):
        """TOP bookkeeping for a run that ends at or before the next LF."""
        ended = src[start + n - 1] == _LF
        k = n - 1 if ended else n
        if k and not self.line_len:
            self.first = src[start]
        self.line_len += k
        if not ended:
            return
        if self.in_header:
            ll = self.line_len
            if ll == 0 or (ll == 1 and self.first == _CR):  # RFC 5322 §2.1: blank line ends the header
                self.in_header = False
                self.done = self.top == 0
        else:
            self.top -= 1
            self.done = self.top <= 0
        self.line_len = 0


class MessageProducer:
    """proto producer for RETR/TOP: file -> DotStuffer -> net's buffer, then CRLF.CRLF.

    `f` is a binary file opened by the maildrop (closed here when done or on
    close()); `rbuf` a preallocated bytearray the session reuses for reads.
    `head`: the status line, sent in the same buffer as the first octets of the
    body (one send per small message, not two). `size`: the file's size where
    the caller knows it (the maildrop's listing): a short read that reaches it
    is the end, so a message that fits the read buffer costs one read, not two.
    """

    def __init__(self, f, rbuf, top=None, head=None, size=-1):
        self.head = memoryview(head) if head else None
        self.f = f
        self.rbuf = rbuf
        self.rpos = 0
        self.rend = 0
        self.st = DotStuffer(top)
        self.eof = False
        self.left = size  # octets still to read, if known
        self.last = False  # the last read has been made
        self.tail = None  # terminator still to send (memoryview), after the body
        self.done = False  # the terminator has been returned

    def fill(self, buf):
        """Fill `buf` with the next wire octets; returns how many, 0 when finished."""
        dpos = 0
        dlen = len(buf)
        if self.head is not None:
            dpos, self.head = _copy(buf, 0, self.head)
        st = self.st
        while not self.eof and dpos < dlen:
            if self.rpos == self.rend:
                n = 0 if self.last else self.f.readinto(self.rbuf)
                if not n:
                    self._finish()
                    break
                self.rpos = 0
                self.rend = n
                self.left -= n
                # both, so a file that is not what the listing said still reads to its end
                self.last = self.left == 0 and n < len(self.rbuf)
            before = dpos
            self.rpos, dpos = st.stuff(self.rbuf, self.rpos, self.rend, buf, dpos)
            if st.done:
                self._finish()
            elif dpos == before:
                return dpos  # no room for a stuffed dot (and its dot) in this buffer
        t = self.tail
        if t is not None and dpos < dlen:
            dpos, self.tail = _copy(buf, dpos, t)
            self.done = self.tail is None  # (proto.Session.producer: no call that returns 0)
        return dpos

    def _finish(self):
        self.eof = True
        self.close()
        # RFC 1939 §3: the terminator starts a line of its own.
        self.tail = memoryview(_TAIL if self.st.bol else _CRLF_TAIL)

    def close(self):
        f = self.f
        if f is not None:
            self.f = None
            f.close()


def _copy(buf, dpos, p):
    """Copy what fits of `p` into `buf` at `dpos` -> (new dpos, the rest of `p` or None)."""
    room = len(buf) - dpos
    if len(p) > room:
        buf[dpos:] = p[:room]
        return len(buf), p[room:]
    buf[dpos : dpos + len(p)] = p
    return dpos + len(p), None


class LinesProducer:
    """proto producer for a multi-line listing (LIST, UIDL) built one line at a
    time by `line(i) -> bytes or None` for i = 0, 1, ... so RAM does not grow
    with the maildrop; ends with ".\\r\\n"."""

    def __init__(self, line, count):
        self.line = line
        self.count = count
        self.i = 0
        self.pending = None
        self.ended = False
        self.done = False

    def fill(self, buf):
        dpos = 0
        dlen = len(buf)
        while dpos < dlen:
            p = self.pending
            if p is None:
                if self.i < self.count:
                    p = self.line(self.i)
                    self.i += 1
                    if p is None:
                        continue
                elif not self.ended:
                    self.ended = True
                    p = _TAIL
                else:
                    break
            dpos, self.pending = _copy(buf, dpos, p)
        self.done = self.ended and self.pending is None
        return dpos

    def close(self):
        pass
