"""Cost log: records, the size bound and trim, torn lines, crash states, day sums, CSV, stats commands."""

import json
import os

import fwtest
from dialgate import compat, stats_console
from dialgate.console import Commands
from dialgate.costlog import CostLog, _encode
from dialgate.spool import Flash

DEC1_2330 = 1796167800  # 2026-12-01 23:30 UTC
DEC2_0900 = 1796202000  # 2026-12-02 09:00 UTC
DAY = 86400


def _log(d, max_bytes=16384, flash=None):
    return CostLog(d + "/calls.log", d + "/calls.log.tmp", max_bytes, flash or Flash())


def _rec(n, start=DEC2_0900, ok=True, **kw):
    r = {"n": n, "start": start, "trigger": "window", "why": "window 09:00-09:15", "dials": ["BUSY", "CONNECT 33600"],
         "speed": 33600, "online": 95, "bytes_in": 48213, "bytes_out": 10240, "msgs_out": 3, "msgs_in": 5,
         "ask": "ETRN 250", "end": "idle", "ok": ok, "queued": 2}
    for k in kw:
        r[k] = kw[k]
    return r


def _lines_of(path):
    with open(path, "rb") as f:
        return f.read(compat.file_size(path)).split(b"\n")  # read(n) allocates n on MicroPython


def test_append_and_read_back():
    d = fwtest.tempdir("cl1")
    try:
        cl = _log(d)
        assert cl.records() == [] and cl.last_number() == 0
        assert cl.append(_rec(1))
        assert cl.append(_rec(2, ok=False, end="carrier lost"))
        assert cl.append({"n": 3})  # the session may leave fields out: they read as 0 / "" / False
        recs = cl.records()
        assert [r["n"] for r in recs] == [1, 2, 3]
        assert recs[0] == _rec(1), recs[0]
        assert recs[1]["end"] == "carrier lost" and recs[1]["ok"] is False
        r = recs[2]
        assert r["start"] == 0 and r["trigger"] == "" and r["dials"] == [] and r["ok"] is False and r["bytes_in"] == 0
        assert [x["n"] for x in cl.records(2)] == [2, 3]
        assert [x["n"] for x in cl.each()] == [1, 2, 3]
        lines = _lines_of(d + "/calls.log")
        assert lines[-1] == b"" and len(lines) == 4
        assert json.loads(lines[0])["n"] == 1  # one JSON object per line
        # a second instance (next boot) reads the same
        cl2 = _log(d)
        assert cl2.last_number() == 3 and [x["n"] for x in cl2.records()] == [1, 2, 3]
        assert cl.flash.bytes == compat.file_size(d + "/calls.log")
    finally:
        fwtest.rmtree(d)


def test_bound_kept_oldest_dropped_newest_kept():
    d = fwtest.tempdir("cl2")
    try:
        cl = _log(d, 1024)
        size1 = 0
        for n in range(1, 41):
            assert cl.append(_rec(n, why="call %d" % n))
            size = compat.file_size(d + "/calls.log")
            assert size <= 1024, (n, size)
            if n == 1:
                size1 = size
            recs = cl.records()
            assert recs[-1]["n"] == n and recs[-1]["why"] == "call %d" % n
            ns = [r["n"] for r in recs]
            assert ns == list(range(ns[0], n + 1)), ns  # only the oldest went, in order
        assert ns[0] > 1
        assert cl.last_number() == 40
        assert not compat.exists(d + "/calls.log.tmp")
        assert cl.flash.renames > 0  # trims commit by rename
        # right after a trim: the newest that fit in half the bound
        cl3 = _log(d, 1024)
        cl3._trim(b'{"n":41}\n')
        assert compat.file_size(d + "/calls.log") <= 512
        assert compat.file_size(d + "/calls.log") > 512 - size1 - 10
        assert cl3.last_number() == 41 and cl3.records()[-1]["n"] == 41
        # a bound below the schema minimum is raised to it
        assert _log(d, 10).max_bytes == 1024
    finally:
        fwtest.rmtree(d)


def test_torn_and_foreign_lines_are_skipped():
    d = fwtest.tempdir("cl3")
    try:
        p = d + "/calls.log"
        good = json.dumps(_rec(7))
        with open(p, "w") as f:
            f.write(good + "\n")
            f.write("not json at all\n")
            f.write("[1, 2]\n")  # JSON, but not a record
            f.write('{"n": 8, "why": "' + "x" * 600 + '"}\n')  # longer than a record line may be
            f.write("\n")
            f.write(json.dumps(_rec(9)) + "\n")
            f.write('{"n": 10, "start": 17961')  # power cut mid-append
        cl = _log(d)
        assert [r["n"] for r in cl.records()] == [7, 9]
        assert cl.last_number() == 9
        assert cl.append(_rec(11))
        # the torn line was closed first, so the new record is a line of its own
        assert [r["n"] for r in _log(d).records()] == [7, 9, 11]
        assert _lines_of(p)[-3] == b'{"n": 10, "start": 17961'
    finally:
        fwtest.rmtree(d)


def test_trim_drops_foreign_lines():
    d = fwtest.tempdir("cl4")
    try:
        p = d + "/calls.log"
        with open(p, "w") as f:
            f.write("junk\n" + json.dumps(_rec(1)) + "\n")
        cl = _log(d, 1024)
        n = 2
        while cl.flash.renames == 0:
            assert cl.append(_rec(n))
            n += 1
        data = b"\n".join(_lines_of(p))
        assert b"junk" not in data
    finally:
        fwtest.rmtree(d)


class _FullFlash(Flash):
    """Flash that fails every write after `room` octets (ENOSPC), writing what fits first."""

    def __init__(self, room):
        Flash.__init__(self)
        self.room = room

    def write(self, f, data):
        if len(data) > self.room:
            f.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(28, "no space")
        self.room -= len(data)
        Flash.write(self, f, data)


def test_full_flash_returns_false_and_never_raises():
    d = fwtest.tempdir("cl5")
    try:
        cl = _log(d)
        assert cl.append(_rec(1))
        cl.flash = _FullFlash(10)
        assert cl.append(_rec(2)) is False  # half a line reached the file
        assert cl.append(_rec(3)) is False
        cl.flash = Flash()  # space again
        assert cl.append(_rec(4))
        assert [r["n"] for r in cl.records()] == [1, 4]
        # a trim that cannot be written keeps the old log, and no tmp file
        small = CostLog(d + "/b.log", d + "/b.log.tmp", 1024, Flash())
        n = 1
        while small._size < 0 or small._size + len(_encode(_rec(n))) <= 1024:
            assert small.append(_rec(n))
            n += 1
        before = small.records()
        small.flash = _FullFlash(100)
        assert small.append(_rec(n)) is False
        assert not compat.exists(d + "/b.log.tmp")
        assert small.records() == before
        small.flash = Flash()
        assert small.append(_rec(n)) and small.records()[-1]["n"] == n and small.flash.renames == 1
        assert small.append("not a dict") is False
    finally:
        fwtest.rmtree(d)


def test_a_cut_inside_a_trim_leaves_old_or_new():
    d = fwtest.tempdir("cl6")
    try:
        p = d + "/calls.log"
        t = d + "/calls.log.tmp"
        cl = _log(d)
        assert cl.append(_rec(1)) and cl.append(_rec(2))
        # cut while writing the tmp file: the old log stands, the tmp goes
        with open(t, "w") as f:
            f.write('{"n": 2}\n{"n": 3')
        cl = _log(d)
        assert [r["n"] for r in cl.records()] == [1, 2]
        assert not compat.exists(t)
        # cut inside compat.replace on FAT (old removed, tmp complete): tmp is put in place
        os.rename(p, t)
        cl = _log(d)
        assert cl.last_number() == 2 and compat.exists(p) and not compat.exists(t)
        assert cl.append(_rec(3)) and [r["n"] for r in _log(d).records()] == [1, 2, 3]
    finally:
        fwtest.rmtree(d)


def test_long_fields_are_cut_to_fit_one_line():
    d = fwtest.tempdir("cl7")
    try:
        cl = _log(d)
        big = _rec(1, why="w" * 2000, ask="ETRN 250 " + "a" * 300, end="e\r\nRSET", dials=["NO CARRIER"] * 30)
        assert cl.append(big)
        r = cl.records()[0]
        assert len(r["dials"]) == 8 and len(r["ask"]) == 64 and r["end"] == "e  RSET"
        for line in _lines_of(d + "/calls.log"):
            assert len(line) < 512
        # text is kept as printable ASCII: the same line length on both runtimes
        assert cl.append(_rec(2, why="caf\u00e9", trigger="op\x7f"))
        assert cl.records()[-1]["why"] == "caf?" and cl.records()[-1]["trigger"] == "op?"
        # quotes double in JSON: the free text goes first, then the rest is cut harder
        q = '"\\' * 200
        assert cl.append(_rec(3, why=q, ask=q, end=q, trigger=q, dials=[q] * 20))
        r = cl.records()[-1]
        assert r["n"] == 3 and r["why"] == "" and len(r["dials"]) == 3 and len(r["ask"]) == 24
        for line in _lines_of(d + "/calls.log"):
            assert len(line) < 512
    finally:
        fwtest.rmtree(d)


def test_day_totals_two_days_offset_and_clock_unset():
    d = fwtest.tempdir("cl8")
    try:
        cl = _log(d)
        assert cl.day_totals(0) == []
        cl.append(_rec(1, start=0, online=30, ok=False))
        cl.append(_rec(2, start=DEC1_2330, online=100))
        cl.append(_rec(3, start=DEC2_0900, online=60, ok=False))
        cl.append(_rec(4, start=DEC2_0900 + 3600, online=40))
        t = cl.day_totals(0)
        assert [x[0] for x in t] == ["clock unset", "2026-12-01", "2026-12-02"], t
        assert t[0] == ("clock unset", 1, 1, 30, 48213, 10240, 5, 3)
        assert t[1] == ("2026-12-01", 1, 0, 100, 48213, 10240, 5, 3)
        assert t[2] == ("2026-12-02", 2, 1, 100, 2 * 48213, 2 * 10240, 10, 6)
        # UTC+1: the 23:30 call is after midnight, local time
        t = cl.day_totals(60)
        assert [x[:3] for x in t] == [("clock unset", 1, 1), ("2026-12-02", 3, 1)], t
        # UTC-11: the morning calls fall on the evening before
        t = cl.day_totals(-660)
        assert [x[:3] for x in t] == [("clock unset", 1, 1), ("2026-12-01", 3, 1)], t
        # leap day and year end
        cl.append(_rec(5, start=1835395200))  # 2028-02-29 00:00 UTC
        cl.append(_rec(6, start=1861919999))  # 2028-12-31 23:59:59 UTC
        assert [x[0] for x in cl.day_totals(0)][-2:] == ["2028-02-29", "2028-12-31"]
        assert cl.day_totals(1)[-1][0] == "2029-01-01"
    finally:
        fwtest.rmtree(d)


def test_csv_header_quoting_and_dates():
    d = fwtest.tempdir("cl9")
    try:
        cl = _log(d)
        cl.append(_rec(1, ask='ETRN 250 OK, "queued"', end="idle"))
        cl.append(_rec(2, start=0, dials=[], ok=False, trigger="operator", end="BUSY", ask=""))
        lines = list(cl.csv_lines(60))
        assert lines[0] == "n,start,date,trigger,dials,speed,online_s,bytes_in,bytes_out,msgs_in,msgs_out,ask,end,ok,queued"
        assert lines[1] == ('1,1796202000,2026-12-02 10:00,window,BUSY; CONNECT 33600,33600,95,48213,10240,5,3,'
                            '"ETRN 250 OK, ""queued""",idle,1,2'), lines[1]
        assert lines[2] == "2,0,,operator,,33600,95,48213,10240,5,3,,BUSY,0,2", lines[2]
        assert len(lines) == 3
    finally:
        fwtest.rmtree(d)


def test_csv_text_a_spreadsheet_would_run_is_defused():
    # An ISP's reply text reaches `ask` and `end`: "=HYPERLINK(...)" must open as text.
    d = fwtest.tempdir("cl9b")
    try:
        cl = _log(d)
        cl.append(_rec(1, ask='=HYPERLINK("http://x.example","y")', end="@SUM(1)", trigger="+1", dials=["-2"]))
        line = list(cl.csv_lines(0))[1]
        f = line.split(",")
        assert f[3] == "'+1" and f[4] == "'-2", line
        assert line.endswith(',"\'=HYPERLINK(""http://x.example"",""y"")",\'@SUM(1),1,2'), line
    finally:
        fwtest.rmtree(d)


class _State:
    delivered = 12
    deferred = 2
    bounced = 1
    warned = []


class _Relay:
    def __init__(self):
        self.state = _State()
        self.last_run = "3 delivered, 0 deferred, 0 bounced; 1 connection(s), 9 round trips"
        self.running = False


class _Outq:
    def ids(self):
        return ["a", "b"]


class _Gw:
    def __init__(self, d, offset=0):
        self.costlog = _log(d)
        self.cfg = {"schedule.utc_offset": offset}
        self.relay = _Relay()
        self.outq = _Outq()


def _console():
    c = Commands()
    stats_console.add_commands(c)
    return c


def test_stats_days_then_relay_counters():
    d = fwtest.tempdir("cla")
    try:
        gw = _Gw(d)
        c = _console()
        out = c.run(gw, "stats")
        assert out[0] == "no calls logged yet" and "online sessions: 0" in out and out[-1] == "OK"
        gw.costlog.append(_rec(1, start=0, online=30))
        gw.costlog.append(_rec(2, start=DEC1_2330, online=845, ok=False))
        gw.costlog.append(_rec(3, start=DEC2_0900, online=65))
        out = c.run(gw, "stats")
        assert out[0].startswith("day ") and "calls" in out[0] and "msgs out" in out[0]
        assert out[1].split() == ["clock", "unset", "1", "0", "0m30s", "48213", "10240", "5", "3"], out[1]
        assert out[2].split() == ["2026-12-01", "1", "1", "14m05s", "48213", "10240", "5", "3"], out[2]
        assert out[3].split()[:4] == ["2026-12-02", "1", "0", "1m05s"]
        assert out[4:] == ["delivered: 12", "deferred: 2", "bounced: 1", "queued: 2", "online sessions: 3",
                           "last run: 3 delivered, 0 deferred, 0 bounced; 1 connection(s), 9 round trips", "OK"], out
        gw.relay.running = True
        assert c.run(gw, "stats")[-2].endswith(" (running now)")
        gw.cfg["schedule.utc_offset"] = 60
        assert c.run(gw, "stats")[2].split()[:3] == ["2026-12-02", "2", "1"]
        assert c.run(gw, "stats bogus") == ["ERR usage: stats [calls [N] | csv]"]
    finally:
        fwtest.rmtree(d)


def test_stats_shows_the_last_14_days():
    d = fwtest.tempdir("clb")
    try:
        gw = _Gw(d)
        for n in range(1, 21):
            gw.costlog.append(_rec(n, start=DEC2_0900 + n * DAY))
        out = _console().run(gw, "stats")
        assert out[1] == "(6 earlier day(s) not shown: stats csv has every call)"
        days = [x.split()[0] for x in out[2:16]]
        assert days[0] == "2026-12-09" and days[-1] == "2026-12-22", days
        assert out[16] == "delivered: 12"
    finally:
        fwtest.rmtree(d)


def test_stats_calls():
    d = fwtest.tempdir("clc")
    try:
        gw = _Gw(d, 60)
        c = _console()
        assert c.run(gw, "stats calls") == ["no calls logged yet", "OK"]
        for n in range(1, 13):
            gw.costlog.append(_rec(n))
        gw.costlog.append(_rec(13, start=0, dials=["NO CARRIER"], ok=False, end="NO CARRIER", ask="", speed=0,
                               online=0, trigger="operator"))
        out = c.run(gw, "stats calls")
        assert len(out) == 11 and out[-1] == "OK"
        assert out[0].startswith("#4 ")
        assert out[-3] == ("#12 2026-12-02 10:00 window: BUSY; CONNECT 33600, 33600 bps, online 95s, "
                           "in 48213 B/5 msgs, out 10240 B/3 msgs, ask ETRN 250, end idle, ok"), out[-3]
        assert out[-2] == ("#13 clock unset operator: NO CARRIER, 0 bps, online 0s, in 48213 B/5 msgs, "
                           "out 10240 B/3 msgs, ask -, end NO CARRIER, FAILED"), out[-2]
        assert [x.split()[0] for x in c.run(gw, "stats calls 2")] == ["#12", "#13", "OK"]
        assert len(c.run(gw, "stats calls 500")) == 14
        for bad in ("0", "501", "x", "-1", "1.5", "0x10", "99999999999999999999"):
            assert c.run(gw, "stats calls " + bad) == ["ERR N must be a number from 1 to 500"], bad
        assert c.run(gw, "stats calls 1 2") == ["ERR usage: stats calls [N]"]
    finally:
        fwtest.rmtree(d)


def test_stats_csv():
    d = fwtest.tempdir("cld")
    try:
        gw = _Gw(d)
        c = _console()
        assert c.run(gw, "stats csv") == ["n,start,date,trigger,dials,speed,online_s,bytes_in,bytes_out,msgs_in,"
                                          "msgs_out,ask,end,ok,queued", "OK"]
        gw.costlog.append(_rec(1))
        out = c.run(gw, "stats csv")
        assert len(out) == 3 and out[1].startswith("1,1796202000,2026-12-02 09:00,window,") and out[2] == "OK"
        assert c.run(gw, "stats csv x") == ["ERR usage: stats csv"]
    finally:
        fwtest.rmtree(d)


def test_a_full_default_log_fits_the_heap():
    """A log at the default bound (16 KiB): append through a trim, then every command."""
    d = fwtest.tempdir("cle")
    try:
        gw = _Gw(d)
        cl = gw.costlog
        n = 1
        while cl.flash.renames == 0 or compat.file_size(d + "/calls.log") < 15000:
            assert cl.append(_rec(n, start=DEC2_0900 + n * 7200, why="scheduled window number %d" % n))
            n += 1
        compat.gc_collect()
        c = _console()
        assert c.run(gw, "stats")[-1] == "OK"
        kept = 0
        for _r in cl.each():
            kept += 1
        out = c.run(gw, "stats csv")
        assert out[-1] == "OK" and len(out) == kept + 2
        out = None
        out = c.run(gw, "stats calls 500")
        assert len(out) == kept + 1 and out[-2].startswith("#%d " % (n - 1))
        assert compat.file_size(d + "/calls.log") <= 16384
    finally:
        fwtest.rmtree(d)
