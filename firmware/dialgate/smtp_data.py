"""SMTP DATA: a stateful dot-decoder that streams the message into a sink chunk by chunk.

Only <CRLF>.<CRLF> ends the data (RFC 5321 §4.1.1.4); a bare LF or bare CR
never starts a line for dot-unstuffing or for the end marker, and is stored
as CRLF, so no "SMTP smuggling" passes through us. Errors latch and are
answered after the end of data. Constant RAM: one scan buffer per decoder.
"""

from .compat import const

# Decoder states (position after the last octet seen).
_MID = const(0)  # inside a line (or after a bare LF/CR: not a line start on the wire)
_BOL = const(1)  # after a real CRLF (or at the start): "." here is special
_CR = const(2)  # a CR held back inside a line
_DOT = const(3)  # "." at a line start held back
_DOTCR = const(4)  # "." CR at a line start held back
_END = const(5)

CR = 13
_LF = const(10)

ERR_LINE = b"500 5.5.2 Text line longer than 1000 octets (RFC 5321 4.5.3.1.6)\r\n"
ERR_SIZE = b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
ERR_FULL = b"452 4.3.1 Insufficient system storage\r\n"
ERR_IO = b"451 4.3.0 Local error in processing\r\n"


class DotDecoder:
    """Turns the DATA byte stream into message octets for `sink.write(mv)`.

    feed(mv) takes a memoryview (valid only during the call) and returns how
    many octets it consumed; when `done` becomes True the rest of the input
    after the end marker belongs to the command stream again. `error` is None
    or the reply (bytes) latched by the first problem: line over
    `text_line` octets (RFC 5321 §4.5.3.1.6), size over `max_size`, or a sink
    failure (`sink_error(exc)` maps the exception to a reply). After an error
    nothing more is written; the decoder only looks for the end marker.

    `head_fix`: None, or a callable returning bytes (complete header lines)
    to insert at the end of the header section when `missing()` says the
    message lacks Date:/Message-ID: (RFC 6409 §8.2-8.3). The header scan keeps
    12 octets of the current line; nothing else is buffered.
    """

    def __init__(self, sink, max_size, text_line, buf, head_fix=None, sink_error=None):
        self.sink = sink
        self.max_size = max_size
        self.text_line = text_line
        # bytearray scratch (memoryview has no find()); its content does not
        # outlive one feed() call, so sessions may share it
        self.buf = buf
        self.mv = memoryview(buf)
        self.head_fix = head_fix
        self.sink_error = sink_error
        self.state = _BOL
        self.linelen = 0
        self.size = 0
        self.error = None
        self.done = False
        self.bare = False  # a bare CR or LF was seen: no more bulk steps (see _scan)
        # header scan
        self.in_head = head_fix is not None
        self.pfx = bytearray(12)
        self.pfx_n = 0
        self.seen_date = False
        self.seen_msgid = False

    # ---- output -----------------------------------------------------------

    def _out(self, data):
        if self.error is not None:
            return
        n = len(data)
        if not n:
            return
        if self.size + n > self.max_size:
            self._fail(ERR_SIZE)
            return
        self.size += n
        try:
            self.sink.write(data)
        except Exception as e:  # SpoolFull, OSError: latch, answer after end of data
            self._fail(self.sink_error(e) if self.sink_error else ERR_IO)

    def _fail(self, reply):
        if self.error is None:
            self.error = reply

    def _line_end(self):
        """A line ended (by CRLF, or a bare LF/CR). Checks length, scans headers."""
        if self.linelen > self.text_line:
            self._fail(ERR_LINE)
        if self.in_head:
            n = self.pfx_n
            if n == 0:
                # empty line: the header section ends here (RFC 5322 §2.1)
                self.in_head = False
                self._insert_headers()
            else:
                p = bytes(self.pfx[:n]).lower()
                if p.startswith(b"date:"):
                    self.seen_date = True
                elif p.startswith(b"message-id:"):
                    self.seen_msgid = True
        self.linelen = 0
        self.pfx_n = 0

    def _insert_headers(self):
        fix = self.head_fix
        if fix is not None:
            self.head_fix = None
            self._out(fix(not self.seen_date, not self.seen_msgid))

    def _note(self, mv, a, b):
        """Octets mv[a:b] are line text: count them, keep the line's first 12."""
        self.linelen += b - a
        if self.in_head and self.pfx_n < 12:
            k = self.pfx_n
            m = b - a
            if m > 12 - k:
                m = 12 - k
            self.pfx[k : k + m] = mv[a : a + m]
            self.pfx_n = k + m

    # ---- input ------------------------------------------------------------

    def feed(self, data):
        """Consume octets of `data` (memoryview); returns the count consumed."""
        total = len(data)
        done = 0
        size = len(self.buf)
        while done < total and not self.done:
            n = total - done
            if n > size:
                n = size
            self.buf[:n] = data[done : done + n]
            done += self._scan(n)
        return done

    def _scan(self, n):
        """Decode buf[0:n]; returns octets consumed (< n only at the end marker).

        Ordinary CRLF text passes through as one slice per chunk: the scan only
        cuts the run where it must drop a stuffed dot or add a CR/LF.
        """
        buf = self.buf
        mv = self.mv
        i = 0
        run = 0  # start of pending pass-through octets mv[run:i]
        ncr = -2  # cached positions of the next CR / LF at or after i (-2: unknown)
        nlf = -2
        st = self.state
        while i < n:
            if st == _MID:
                # line by line: the header section, and a message once it has shown a
                # bare CR or LF (such a message is seldom only one line's fault)
                # (e == i: only a CR at the chunk's end is left, held back below)
                if not self.in_head and not self.bare:
                    e = self._bulk(i, n)
                    if e > i:
                        i = e
                        if buf[e - 1] == _LF:
                            st = _BOL
                        continue
                    if e < i:
                        self.bare = True
                if ncr != -1 and ncr < i:
                    ncr = buf.find(b"\r", i, n)
                if nlf != -1 and nlf < i:
                    nlf = buf.find(b"\n", i, n)
                if ncr < 0 and nlf < 0:
                    self._note(mv, i, n)
                    i = n
                elif nlf < 0 or (0 <= ncr < nlf):
                    self._note(mv, i, ncr)
                    if ncr + 1 == nlf:  # CRLF inside this chunk: stays in the run
                        if self.in_head:
                            self._out(mv[run:ncr])  # headers may be inserted before it
                            run = ncr
                        self._line_end()
                        i = ncr + 2
                        st = _BOL
                    else:  # hold the CR back until we see what follows
                        self._out(mv[run:ncr])
                        i = ncr + 1
                        run = i
                        st = _CR
                else:
                    # a bare LF (a CR before it would have been found first):
                    # store CRLF, but it is no line start on the wire (no smuggling)
                    self._note(mv, i, nlf)
                    self._out(mv[run:nlf])
                    self._line_end()
                    self._out(b"\r\n")
                    i = nlf + 1
                    run = i
            elif st == _CR:
                self._line_end()
                self._out(b"\r\n")
                if buf[i] == _LF:
                    i += 1
                    st = _BOL
                else:  # bare CR: stored as a line break, scanning stays in-line
                    st = _MID
                run = i
            elif st == _BOL:
                if buf[i] == 46:  # "."
                    self._out(mv[run:i])
                    i += 1
                    run = i
                    st = _DOT
                else:
                    st = _MID
            elif st == _DOT:
                c = buf[i]
                if c == CR:
                    i += 1
                    run = i
                    st = _DOTCR
                elif c == _LF:  # "." then a bare LF: keep the dot, store CRLF
                    self._dot_line()
                    i += 1
                    run = i
                    st = _MID
                else:  # RFC 5321 §4.5.2: a leading dot on a longer line is removed,
                    # and it is no part of the text line (§4.5.3.1.6 counts what is stored)
                    self.linelen = 0
                    st = _MID
            else:  # _DOTCR
                if buf[i] == _LF:  # <CRLF>.<CRLF>: the end (RFC 5321 §4.1.1.4)
                    i += 1
                    st = _END
                    break
                # "." then a bare CR: keep the dot, store a line break
                self._dot_line()
                run = i
                st = _MID
        if st != _END and run < i:
            self._out(mv[run:i])
        self.state = st
        if st == _END:
            self._finish()
        return i

    def _bulk(self, i, n):
        """Plain CRLF body text from buf[i] (inside a line) in one step, no Python per line.

        The stretch runs to the next line that starts with "." (its dot is left
        for the caller) or to the end of the chunk (less a trailing CR, which
        waits for its LF). It is plain when every CR and LF in it is a CRLF pair:
        three counts decide that, and a line length check that looks for the last
        LF within each window of `text_line` + 2 octets (every line that ends in
        a window is short enough). Returns the end offset e > i with
        `linelen` updated (the stretch stays in the caller's pass-through run),
        i when there is nothing to take, or -1 - e when the stretch holds a bare
        CR or LF (the caller goes line by line from then on).
        """
        buf = self.buf
        k = buf.find(b"\r\n.", i, n)
        if k >= 0:
            e = k + 2
        elif buf[n - 1] == CR:
            e = n - 1
        else:
            e = n
        if e <= i:
            return i
        c = buf.count(b"\n", i, e)
        if buf.count(b"\r", i, e) != c or buf.count(b"\r\n", i, e) != c:
            return -1 - e
        # RFC 5321 §4.5.3.1.6: an LF at j ends a line of j - 1 - start octets
        reach = self.text_line + 2
        start = i - self.linelen  # where the current line began (maybe in an earlier chunk)
        p = i
        while p < e:
            w = start + reach
            if w > e:
                w = e
            j = buf.rfind(b"\n", p, w) if p < w else -1
            if j < 0:
                if w == e:
                    break
                self._fail(ERR_LINE)  # no line end within the limit
                j = buf.find(b"\n", w, e)
                if j < 0:
                    break
            p = start = j + 1
        self.linelen = e - start
        return e

    def _dot_line(self):
        """A line of just "." ended by a bare LF or CR: stored as ".\r\n"."""
        self.linelen = 1
        if self.in_head and self.pfx_n < 12:
            self.pfx[self.pfx_n] = 46
            self.pfx_n += 1
        self._out(b".")
        self._line_end()
        self._out(b"\r\n")

    def _finish(self):
        self.done = True
        if self.in_head:  # no empty line: the message is all header
            self.in_head = False
            self._insert_headers()


_DAYS = const(("Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"))
_MONTHS = const(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))


def rfc5322_date(secs):
    """Unix seconds -> RFC 5322 §3.3 date-time in UTC, e.g. `Sun, 22 Nov 2026 04:14:55 +0000`."""
    days, rem = divmod(int(secs), 86400)
    wd = _DAYS[days % 7]
    # civil-from-days (H. Hinnant), valid for the Gregorian calendar
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return "%s, %d %s %d %02d:%02d:%02d +0000" % (wd, d, _MONTHS[m - 1], y, rem // 3600, rem // 60 % 60, rem % 60)
