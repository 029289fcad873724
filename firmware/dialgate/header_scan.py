"""Reading a message's envelope header as it streams past, for POP3 multidrop
(multidrop.Collection): which of the office's addresses a message that came
through one ISP mailbox was for (docs/inbound.md, "Sorting").
"""

from . import limits
from .compat import const

_LINE = const(1000)  # RFC 5322 §2.1.1: 998 octets + CRLF; a longer header line is read truncated
_VAL = const(1024)  # octets of one (unfolded) header field kept for the address scan
_ADDRS = const(8)  # addresses kept per message and kind


def _add(out, a):
    a = a.strip()
    at = a.rfind(b"@")
    if at < 1 or at == len(a) - 1 or len(a) > limits.SMTP_PATH or len(out) >= _ADDRS:
        return
    for c in a:
        if c <= 32 or c >= 127:
            return
    s = a.decode()
    if s not in out:
        out.append(s)


def _one(out, part):
    lt = part.rfind(b"<")
    if lt >= 0:
        gt = part.find(b">", lt)
        if gt > lt:
            _add(out, part[lt + 1 : gt])
        return
    for w in part.split():
        if b"@" in w:
            _add(out, w.strip(b"\"'()"))
            return


def addresses(v, received=False):
    """The addr-specs in a header field's value (bytes) -> list of str (at most 8).

    An address list (RFC 5322 §3.4: `Name <a@b>, c@d`), a bare address
    (X-Original-To, Delivered-To), or, with `received`, the `for <a@b>` clause
    of a Received field (RFC 5321 §4.4)."""
    out = []
    if received:
        k = v.lower().find(b"for ")
        if k < 0:
            return out
        rest = v[k + 4 :].strip()
        if rest.startswith(b"<"):
            rest = rest[1:]
        end = len(rest)
        for ch in (b">", b";", b" ", b"\t"):
            j = rest.find(ch)
            if 0 <= j < end:
                end = j
        _add(out, rest[:end])
        return out
    quoted = False
    angle = False
    start = 0
    for i in range(len(v)):
        c = v[i]
        if c == 34:  # '"'
            quoted = not quoted
        elif not quoted:
            if c == 60:
                angle = True
            elif c == 62:
                angle = False
            elif c == 44 and not angle:
                _one(out, v[start:i])
                start = i + 1
    _one(out, v[start:])
    return out


class HeaderScan:
    """Reads the header section of a message as it streams past (any split),
    keeping only what sorts it: the addresses at local domains of the first
    `envelope` field that has any (X-Original-To, Delivered-To, X-Envelope-To:
    so an ISP's own `Delivered-To: office@isp` line is passed over), with
    `guess` those of To:, Cc: and the Received `for` clauses, and Return-Path.
    `is_local(domain)` is Config.is_local_domain. Two fixed buffers; the body
    is not looked at."""

    def __init__(self, envelope, guess, is_local):
        self.envelope = envelope  # lowercase field name (bytes), or None
        self.guess = guess
        self.is_local = is_local
        self.line = bytearray(_LINE)
        self.val = bytearray(_VAL)
        self.reset()

    def reset(self):
        self.in_head = True
        self.n = 0
        self.field = None
        self.vn = 0
        self.env = []
        self.guessed = []
        self.sender = ""

    def feed(self, data):
        """Octets of the message (bytes or memoryview, any split). A line is
        copied into the line buffer a slice at a time and its LF found there
        (memoryviews have no find() on MicroPython): one step per line, not per
        octet. Past `_LINE` octets a line is read truncated, octet by octet."""
        if not self.in_head:
            return
        line = self.line
        size = len(line)
        n = self.n
        i = 0
        total = len(data)
        while i < total:
            if n < size:
                k = size - n
                if k > total - i:
                    k = total - i
                line[n : n + k] = data[i : i + k]
                j = line.find(b"\n", n, n + k)
                if j < 0:
                    n += k
                    i += k
                    continue
                i += j - n + 1
                n = j
            else:  # over-long line: keep its first _LINE octets, look for its end
                c = data[i]
                i += 1
                if c != 10:
                    continue
            self.n = n
            self._line()
            n = 0
            if not self.in_head:
                break
        self.n = n

    def _line(self):
        line = self.line
        n = self.n
        if n and line[n - 1] == 13:
            n -= 1
        if n == 0:  # RFC 5322 §2.1: the empty line ends the header section
            self._field_end()
            self.in_head = False
            return
        if line[0] == 32 or line[0] == 9:  # §2.2.3: a folded continuation
            if self.field is not None:
                self._keep(0, n)
            return
        self._field_end()
        colon = line.find(b":", 0, n)
        if colon <= 0:
            return
        name = bytes(line[:colon]).strip().lower()
        if name == self.envelope or name == b"return-path" or (
                self.guess and (name == b"to" or name == b"cc" or name == b"received")):
            self.field = name
            self.vn = 0
            self._keep(colon + 1, n)

    def _keep(self, a, b):
        vn = self.vn
        m = b - a
        if m > _VAL - vn:
            m = _VAL - vn
        self.val[vn : vn + m] = self.line[a : a + m]
        self.vn = vn + m

    def _field_end(self):
        name = self.field
        if name is None:
            return
        self.field = None
        v = bytes(self.val[: self.vn])
        if name == b"return-path":
            a = addresses(v)
            self.sender = a[0] if a else ""
            return
        local = [a for a in addresses(v, name == b"received") if self.is_local(a[a.rfind("@") + 1 :])]
        if name == self.envelope:
            if not self.env:
                self.env = local
        else:
            for a in local:
                if a not in self.guessed and len(self.guessed) < _ADDRS:
                    self.guessed.append(a)
