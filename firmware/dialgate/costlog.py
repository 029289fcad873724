"""The cost log: one JSON line per dial-up call in SPOOL/calls.log, bounded in size.

The session appends a record when a call ends; `stats` (stats_console) and
anything that budgets calls per day read it back. This module owns the format.
"""

import json

from . import compat, log
from .compat import const

_LINE_MAX = const(512)  # octets of a record line: written ones fit, newline included; a longer one read is skipped
_MIN_BYTES = const(1024)  # schema minimum of session.cost_log_bytes (two records of _LINE_MAX)
_MAX_DIALS = const(8)  # dial results kept per call (the last ones)

UNSET = "clock unset"  # the day label of calls made before the wall clock was set

_INTS = const(("n", "start", "speed", "online", "bytes_in", "bytes_out", "msgs_out", "msgs_in", "queued"))
_TEXTS = const((("trigger", 16), ("why", 120), ("ask", 64), ("end", 48)))
_CSV_HEADER = const("n,start,date,trigger,dials,speed,online_s,bytes_in,bytes_out,msgs_in,msgs_out,ask,end,ok,queued")


def _int(v):
    if isinstance(v, int):
        return int(v)  # bool -> 0/1
    if isinstance(v, float):
        return int(v)
    return 0


def _text(v, limit):
    """`v` as printable ASCII of at most `limit` characters: control characters
    become spaces, anything else outside ASCII "?" (so a line has the same
    length on both runtimes, and a console or CSV line stays one line)."""
    if not isinstance(v, str):
        v = "" if v is None else str(v)
    v = v[:limit]
    for c in v:
        if c < " " or c > "~":
            return "".join([ch if " " <= ch <= "~" else ("?" if ch > "~" else " ") for ch in v])
    return v


def normalize(rec, short=0):
    """Any dict -> a record with every field of the format and the right types.

    Missing or mistyped numbers read as 0, text as "", `ok` as False, so a record
    from an older or newer firmware (or edited by hand) never breaks a reader.
    `short` (writing only) cuts harder: 1 drops `why`, 2 also keeps 3 dials and
    24 characters of `ask` and `end`.
    """
    out = {}
    for k in _INTS:
        out[k] = _int(rec.get(k))
    for k, limit in _TEXTS:
        if short and (k == "why" or (short > 1 and k != "trigger")):
            limit = 0 if k == "why" else 24
        out[k] = _text(rec.get(k), limit)
    dials = rec.get("dials")
    if not isinstance(dials, list):
        dials = []
    keep = 3 if short > 1 else _MAX_DIALS
    out["dials"] = [_text(x, 24 if short else 40) for x in dials[-keep:]]  # a whole "CONNECT 33600/ARQ/V34/LAPM/V42BIS"
    ok = rec.get("ok")
    out["ok"] = ok is True or ok == 1
    return out


def _encode(rec):
    """A record dict -> its line (bytes, newline included), cut to fit _LINE_MAX.

    Only a record of pathological text (quotes and backslashes double in JSON)
    needs the shorter forms; None if even the shortest does not fit."""
    for short in (0, 1, 2):
        line = (json.dumps(normalize(rec, short), separators=(",", ":")) + "\n").encode()
        if len(line) <= _LINE_MAX:
            return line
    return None


# ---- calendar (by hand: MicroPython's time epoch differs between ports) ----


def _civil(t):
    from .retry import civil  # the one calendar (retry's RFC 5322 dates use it too)

    return civil(t)


def day_label(start, utc_offset_min=0):
    """A record's `start` -> local date "2026-12-02", or UNSET before the clock was set."""
    if not compat.clock_ok(start):
        return UNSET
    y, m, d, _ = _civil(start + utc_offset_min * 60)
    return "%04d-%02d-%02d" % (y, m, d)


def local_time(start, utc_offset_min=0):
    """A record's `start` -> local "2026-12-02 09:00", or "" before the clock was set."""
    if not compat.clock_ok(start):
        return ""
    y, m, d, s = _civil(start + utc_offset_min * 60)
    return "%04d-%02d-%02d %02d:%02d" % (y, m, d, s // 3600, s // 60 % 60)


def _csv(s):
    """One CSV text field (RFC 4180 §2: quote a field with a comma, quote or line
    break; double its quotes). A field a spreadsheet would run as a formula
    (=, +, -, @, tab or CR first: an ISP's reply text lands in `ask` and `end`)
    gets a leading "'" (OWASP's CSV injection advice), so opening the file runs nothing."""
    if s and s[0] in "=+-@\t\r":
        s = "'" + s
    for c in s:
        if c in ',"\r\n':
            return '"' + s.replace('"', '""') + '"'
    return s


# ---- reading: lines through one fixed buffer ----


def _lines(f):
    """Yield each line of file `f` (bytes, newline stripped) in constant RAM.

    A line longer than _LINE_MAX is skipped whole; the last line may lack its
    newline (a write cut by a power loss). Buffers live for the generator.
    """
    buf = bytearray(256)
    mv = memoryview(buf)
    line = bytearray(_LINE_MAX)
    lmv = memoryview(line)
    have = 0
    over = False
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
            if have and not over:
                yield bytes(lmv[:have])
            have = 0
            over = False
            i = j + 1
    if have and not over:
        yield bytes(lmv[:have])


def _parse(raw):
    """A line -> its dict, or None for a line that is not a JSON object (torn, foreign)."""
    try:
        d = json.loads(raw)
    except ValueError:  # also UnicodeError, a ValueError on both runtimes
        return None
    return d if isinstance(d, dict) else None


class CostLog:
    """The log of dial-up calls: `path` (SPOOL/calls.log), one JSON object per line, oldest first.

    tmp_path: where a trim is written before it replaces `path`; keep it beside
    the log (SPOOL/calls.log.tmp), not in SPOOL/tmp/, which spool recovery
    empties at boot: on a VFS that cannot rename over a file (FAT) a cut inside
    compat.replace leaves only the complete tmp file, which the first use here
    puts in place (as users.json does with users.json.tmp).
    max_bytes: the bound (session.cost_log_bytes, at least 1024). When an append
    would pass it the file is rewritten with the newest records that fit in half
    of it, so a trim happens about once per max_bytes/2 of records.
    flash: the spool's `Flash` (its primitives and wear counters); None makes one.

    Reads keep RAM bounded: one 256 + 512-octet buffer per pass, plus the
    records asked for. Iterate `each()` to its end (MicroPython runs no `finally`
    of an abandoned generator, so its file would stay open until collected).
    """

    def __init__(self, path, tmp_path, max_bytes, flash=None):
        self.path = path
        self.tmp_path = tmp_path
        self.max_bytes = max_bytes if max_bytes >= _MIN_BYTES else _MIN_BYTES
        if flash is None:
            from .spool import Flash

            flash = Flash()
        self.flash = flash
        self._dir = path.rsplit("/", 1)[0] if "/" in path else "."
        self._size = -1  # octets in the file once looked at (-1: not yet, or after a failed write)
        self._last = -1  # `n` of the newest record once known

    # ---- writing ----

    def append(self, rec):
        """Add one call's record (a dict, fields in docs) durably -> True.

        Never raises for the flash: a full or failing flash is logged (warn) and
        gives False; so does a record that is not a dict. Durable on True
        (flushed, fsync'd where the runtime can; a trim commits by rename).
        """
        if not isinstance(rec, dict):
            log.warn("costlog: not a record: %r", type(rec))
            return False
        line = _encode(rec)
        n = _int(rec.get("n"))
        if line is None:
            log.warn("costlog: record of call %d too large, not logged", n)
            return False
        try:
            if self._size < 0:
                self._recover()
            if self._size + len(line) > self.max_bytes:
                self._trim(line)
            else:
                self._add(line)
        except OSError as e:
            self._size = -1  # a cut write may have left a torn line: look again next time
            log.warn("costlog: call %d not logged: %s", n, compat.exc_text(e))
            return False
        self._last = n
        return True

    def _recover(self):
        """First use: finish or drop a trim cut by a crash, learn the size, close a torn last line."""
        fl = self.flash
        if compat.exists(self.tmp_path):
            if compat.exists(self.path):
                fl.remove(self.tmp_path)  # cut before the rename: the old log is whole
            else:
                fl.rename(self.tmp_path, self.path)  # cut inside compat.replace: tmp is complete
                fl.sync_dir(self._dir)
        try:
            size = compat.file_size(self.path)
        except OSError:
            size = 0
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                last = f.read(1)
            if last != b"\n":
                # a power cut mid-append: end that line, so it stays one (skipped) line
                f = open(self.path, "ab")
                try:
                    fl.write(f, b"\n")
                finally:
                    fl.finish(f)
                size += 1
        self._size = size

    def _add(self, line):
        fl = self.flash
        new = self._size == 0 and not compat.exists(self.path)
        f = open(self.path, "ab")
        try:
            fl.write(f, line)
        finally:
            fl.finish(f)
        self._size += len(line)
        if new:
            fl.sync_dir(self._dir)

    def _trim(self, line):
        """Rewrite the log as the newest records that fit in max_bytes/2, then `line`.

        Two passes over the file (sizes, then copy) so RAM does not grow with it;
        lines that are not records are dropped. The rename is the commit: a cut
        before it leaves the old log, after it the new one.
        """
        budget = self.max_bytes // 2 - len(line)
        total = 0
        for raw, _d in self._scan():
            total += len(raw) + 1
        skip = total - budget  # octets of the oldest records to leave out
        fl = self.flash
        kept = 0
        f = fl.create(self.tmp_path)
        try:
            for raw, _d in self._scan():
                if skip > 0:
                    skip -= len(raw) + 1
                    continue
                fl.write(f, raw)
                fl.write(f, b"\n")
                kept += len(raw) + 1
            fl.write(f, line)
        except OSError:
            try:
                f.close()
            except OSError:
                pass
            fl.remove(self.tmp_path)  # the old log is untouched
            raise
        fl.finish(f)
        fl.rename(self.tmp_path, self.path)
        fl.sync_dir(self._dir)
        self._size = kept + len(line)
        log.info("costlog: trimmed %s to %d octets", self.path, self._size)

    # ---- reading ----

    def _scan(self):
        """Yield (raw line, dict) for every record (a JSON object line), oldest first."""
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        try:
            for raw in _lines(f):
                d = _parse(raw)
                if d is not None:
                    yield raw, d
        finally:
            f.close()

    def _ready(self):
        if self._size < 0:
            try:
                self._recover()
            except OSError as e:  # reading still works; the next append tries again
                log.warn("costlog: %s", compat.exc_text(e))

    def each(self):
        """Yield every record (normalized dict) oldest first; a torn or foreign line is skipped."""
        self._ready()
        for _raw, d in self._scan():
            yield normalize(d)

    def records(self, n=0):
        """The last `n` records (all if 0), oldest first; RAM holds at most n + 1 of them."""
        out = []
        for d in self.each():
            out.append(d)
            if n and len(out) > n:
                out.pop(0)
        return out

    def last_number(self):
        """`n` of the newest record (the last session number), 0 if the log is empty."""
        if self._last < 0:
            last = 0
            for d in self.each():
                last = d["n"]
            self._last = last
        return self._last

    def day_totals(self, utc_offset_min=0):
        """Per-day sums -> list of tuples, oldest day first and newest last:

            (day, calls, failed, online_s, bytes_in, bytes_out, msgs_in, msgs_out)

        `day` is the local date "2026-12-02" of each call's start (UTC +
        utc_offset_min minutes); calls made before the clock was set are summed
        under UNSET ("clock unset"), placed first when there are any.
        """
        days = {}
        for d in self.each():
            label = day_label(d["start"], utc_offset_min)
            s = days.get(label)
            if s is None:
                s = days[label] = [0, 0, 0, 0, 0, 0, 0]
            s[0] += 1
            if not d["ok"]:
                s[1] += 1
            s[2] += d["online"]
            s[3] += d["bytes_in"]
            s[4] += d["bytes_out"]
            s[5] += d["msgs_in"]
            s[6] += d["msgs_out"]
        labels = sorted([k for k in days if k != UNSET])
        if UNSET in days:
            labels.insert(0, UNSET)
        return [(k,) + tuple(days[k]) for k in labels]

    def csv_lines(self, utc_offset_min=0):
        """Yield CSV_HEADER, then one RFC 4180 line (no line end) per record, oldest first."""
        yield _CSV_HEADER
        for d in self.each():
            yield ",".join([
                str(d["n"]), str(d["start"]), local_time(d["start"], utc_offset_min), _csv(d["trigger"]),
                _csv("; ".join(d["dials"])), str(d["speed"]), str(d["online"]), str(d["bytes_in"]),
                str(d["bytes_out"]), str(d["msgs_in"]), str(d["msgs_out"]), _csv(d["ask"]), _csv(d["end"]),
                "1" if d["ok"] else "0", str(d["queued"]),
            ])
