"""The UIDL journal of POP3 multidrop collection (SPOOL/pop3.uidl): which of the
ISP mailbox's messages the office already has, so a call that drops between our
commit and the ISP's deletion never fetches one twice. This module alone owns
the record format (docs/inbound.md, "The UIDL journal").

One line per message, oldest first, appended and fsync'd:

    P 1796202000 00000001590a1b2c 0bcf337f-00000001-00000007   taking: spool id named
    C 1796202000 00000001590a1b2c      collected: committed to the spool
    T 1796202000 00000002590a1b2c      too large: left at the ISP, postmaster told

KIND, wall-clock seconds when written (0: the clock was not set), the UIDL
(RFC 1939 §7: 1-70 octets 0x21-0x7E). A line that does not parse (a torn
append after a power cut) is dropped at the next rewrite.

"P" is written just before the spool commit, with the id the message gets, and
not fsync'd (a closed file survives a killed process; littlefs commits on
close): a kill between the commit and its "C" line leaves a "P" without a "C",
and the next listing asks the maildrops whether that id is there (then the
office has it: "C" now, DELE, no second RETR). `entries()` gives a "P" line's
UIDL as b"UIDL ID"; a rewrite drops "P" lines.
"""

from . import compat
from .compat import const

COLLECTED = 67  # "C"
TOO_LARGE = 84  # "T"
PENDING = 80  # "P": the commit of spool id ... is under way
_LINE_MAX = const(128)  # "P " + 10 digits + " " + 70-octet UIDL + " " + spool id (26) + LF = 111: longer is foreign
_UID_MAX = const(70)  # RFC 1939 §7


def valid_uid(uid):
    """RFC 1939 §7: a unique-id is 1 to 70 octets in 0x21..0x7E (bytes)."""
    if not uid or len(uid) > _UID_MAX:
        return False
    for c in uid:
        if c < 0x21 or c > 0x7E:
            return False
    return True


def _parse(line):
    """b"C 123 uid" (bytes) -> (kind, time, uid) or None; b"P 123 uid id" -> (PENDING, time, b"uid id")."""
    if len(line) < 5 or line[1] != 32 or line[0] not in (COLLECTED, TOO_LARGE, PENDING):
        return None
    sp = line.find(b" ", 2)
    if sp < 3 or not line[2:sp].isdigit():
        return None
    rest = line[sp + 1 :]
    if line[0] == PENDING:
        cut = rest.rfind(b" ")
        if cut < 1 or not valid_uid(rest[:cut]) or not valid_uid(rest[cut + 1 :]):
            return None
    elif not valid_uid(rest):
        return None
    return line[0], int(line[2:sp]), rest


class UidlJournal:
    """The journal at `path`; `tmp_path` beside it (not SPOOL/tmp/, which recovery
    empties) for rewrites; `flash` the spool's Flash (its primitives and wear
    counters); at most `max_entries` lines (limits.POP3_JOURNAL_ENTRIES).

    Reading takes one 128-octet line buffer and a 256-octet read buffer per pass.
    Iterate `entries()` to its end (MicroPython runs no `finally` of an
    abandoned generator)."""

    def __init__(self, path, tmp_path, flash, max_entries):
        self.path = path
        self.tmp_path = tmp_path
        self.flash = flash
        self.max_entries = max_entries
        self.count = 0  # entries after the last rewrite plus the appends since
        self._dir = path.rsplit("/", 1)[0] if "/" in path else "."
        self._recover()

    def _recover(self):
        """A rewrite cut by a crash: before the rename the old journal is whole;
        inside compat.replace (a VFS that cannot rename over a file) only the
        complete tmp file is left, and it goes in place."""
        fl = self.flash
        if compat.exists(self.tmp_path):
            if compat.exists(self.path):
                fl.remove(self.tmp_path)
            else:
                fl.rename(self.tmp_path, self.path)
                fl.sync_dir(self._dir)

    def entries(self):
        """Yield (kind, time, uid) for every well-formed line, oldest first.
        Lines that do not parse are counted in `self.torn` (reset per pass)."""
        self.torn = 0
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        buf = bytearray(256)
        mv = memoryview(buf)
        line = bytearray(_LINE_MAX)
        mv_line = memoryview(line)
        have = 0
        over = False
        try:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                i = 0
                while i < n:
                    j = buf.find(b"\n", i, n)
                    end = n if j < 0 else j
                    if not over:
                        if have + end - i > _LINE_MAX:
                            over = True
                        else:
                            line[have : have + end - i] = mv[i:end]
                            have += end - i
                    if j < 0:
                        break
                    e = None if over else _parse(bytes(mv_line[:have]))
                    if e is None:
                        self.torn += 1
                    else:
                        yield e
                    have = 0
                    over = False
                    i = j + 1
            if have or over:
                self.torn += 1  # a last line without its newline: a torn append
        finally:
            f.close()

    def add(self, kind, uid, now):
        """Append one entry durably (flushed, fsync'd where the runtime can).
        Raises OSError (flash) or ValueError (a UIDL we cannot record)."""
        if not valid_uid(uid):
            raise ValueError("bad UIDL")
        fl = self.flash
        new = not compat.exists(self.path)
        f = open(self.path, "ab")
        try:
            fl.write(f, b"%c %d %s\n" % (kind, now, uid))
        finally:
            fl.finish(f)
        if new:
            fl.sync_dir(self._dir)
        self.count += 1

    def pending(self, uid, sid, now):
        """Append "P": the commit of spool id `sid` (str) for `uid` starts now.
        Closed, not fsync'd (see the module's docstring). Raises OSError or ValueError."""
        if not valid_uid(uid):
            raise ValueError("bad UIDL")
        f = open(self.path, "ab")
        try:
            self.flash.write(f, b"%c %d %s %s\n" % (PENDING, now, uid, sid.encode()))
        finally:
            f.close()
        # (not counted against max_entries: the next listing's rewrite drops it, so a
        # call that collects 1,500 messages does not find the journal full at 1,000)

    def full(self):
        return self.count >= self.max_entries

    def rewrite(self, keep):
        """Replace the journal by the entries `keep(kind, time, uid)` says True to
        (torn lines go). Two files and a rename: a cut before the rename leaves
        the old journal, after it the new one. Returns the entries kept."""
        fl = self.flash
        kept = 0
        f = fl.create(self.tmp_path)
        try:
            for kind, t, uid in self.entries():
                if keep(kind, t, uid):
                    fl.write(f, b"%c %d %s\n" % (kind, t, uid))
                    kept += 1
        except OSError:
            try:
                f.close()
            except OSError:
                pass
            fl.remove(self.tmp_path)
            raise
        fl.finish(f)
        fl.rename(self.tmp_path, self.path)
        fl.sync_dir(self._dir)
        self.count = kept
        return kept
