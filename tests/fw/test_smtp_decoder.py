"""smtp_data.DotDecoder on its own: every split point, latches, header insertion, dates."""

from dialgate.smtp_data import ERR_IO, ERR_LINE, ERR_SIZE, DotDecoder, rfc5322_date


class Sink:
    def __init__(self, fail_after=None):
        self.data = bytearray()
        self.fail_after = fail_after

    def write(self, mv):
        if self.fail_after is not None and len(self.data) + len(mv) > self.fail_after:
            raise OSError(5, "EIO")
        self.data.extend(mv)


def fix(need_date, need_id):
    return (b"Date: D\r\n" if need_date else b"") + (b"Message-ID: <M>\r\n" if need_id else b"")


def decode(data, piece, max_size=100000, head_fix=None, sink=None, scratch=16):
    """Feed `data` in reads of `piece` octets -> (stored, consumed, error)."""
    sink = sink or Sink()
    d = DotDecoder(sink, max_size, 998, bytearray(scratch), head_fix)
    i = 0
    mv = memoryview(data)
    while i < len(data) and not d.done:
        k = d.feed(mv[i : i + piece])
        i += k
        if d.done:
            break
    return bytes(sink.data), i if d.done else -1, d.error


def every(data, expect_stored, expect_used=None, **kw):
    for piece in range(1, len(data) + 2):
        got = decode(data, piece, **kw)
        assert got[0] == expect_stored, (piece, got, expect_stored)
        assert got[1] == (len(data) if expect_used is None else expect_used), (piece, got)
    return got


def test_end_marker_and_dot_unstuffing_at_every_split():
    every(b".\r\n", b"")
    every(b"a\r\n.\r\n", b"a\r\n")
    every(b"..\r\n...x\r\n.\r\n", b".\r\n..x\r\n")  # RFC 5321 §4.5.2
    every(b"a\r\n.\r\nNOOP\r\n", b"a\r\n", 6)  # the rest is the next command
    every(b"\r\n\r\n.\r\n", b"\r\n\r\n")


def test_bare_lf_and_cr_never_end_data_and_are_stored_as_crlf():
    every(b"a\n.\r\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n")
    every(b"a\r.\rb\r\n.\r\n", b"a\r\n.\r\nb\r\n")
    every(b"a\n.\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n")
    every(b"a\r\n.\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n")  # "." then bare LF after a real line start
    every(b"a\r\n.\rb\r\n.\r\n", b"a\r\n.\r\nb\r\n")
    every(b"a\n..\r\n.\r\n", b"a\r\n..\r\n")  # no unstuffing after a bare LF either
    every(b"a\r\r\n.\r\n", b"a\r\n\r\n")


def test_text_line_limit_latches_and_keeps_scanning():
    ok = b"x" * 998 + b"\r\n"
    assert decode(ok + b".\r\n", 7, scratch=64) == (ok, len(ok) + 3, None)
    for extra in (1, 2):
        long = b"x" * (998 + extra) + b"\r\n"
        stored, used, err = decode(long + b"more\r\n.\r\n", 13, scratch=64)
        assert err == ERR_LINE and used == len(long) + 9


def test_the_transparency_dot_is_not_part_of_the_text_line():
    # RFC 5321 §4.5.2 / §4.5.3.1.6: a 998-octet line that begins with "." goes on
    # the wire as 999 octets ("." added); it must be stored as its 998 octets
    line = b"." + b"d" * 997
    stored, used, err = decode(b"head\r\n." + line + b"\r\n.\r\n", 11, scratch=64)
    assert err is None and stored == b"head\r\n" + line + b"\r\n", (err, len(stored))
    stored, used, err = decode(b".." + b"d" * 998 + b"\r\n.\r\n", 11, scratch=64)
    assert err == ERR_LINE  # 999 octets after unstuffing: one over


def test_size_latch_stops_writing():
    data = b"y" * 50 + b"\r\n" + b"z" * 50 + b"\r\n.\r\n"
    for piece in (1, 5, 200):
        stored, used, err = decode(data, piece, max_size=60)
        assert err == ERR_SIZE and used == len(data) and len(stored) <= 60


def test_sink_error_latches_io_reply():
    data = b"q" * 40 + b"\r\n.\r\n"
    stored, used, err = decode(data, 3, sink=Sink(fail_after=10))
    assert err == ERR_IO and used == len(data)


def test_missing_headers_inserted_at_end_of_header_section():
    every(b"Subject: s\r\n\r\nbody\r\n.\r\n", b"Subject: s\r\nDate: D\r\nMessage-ID: <M>\r\n\r\nbody\r\n", head_fix=fix)
    every(b"DATE: x\r\nmessage-ID: <y>\r\n\r\n.\r\n", b"DATE: x\r\nmessage-ID: <y>\r\n\r\n", head_fix=fix)
    every(b"Subject: s\r\n .folded\r\n.\r\n", b"Subject: s\r\n .folded\r\nDate: D\r\nMessage-ID: <M>\r\n", head_fix=fix)
    every(
        b"Subject: a\r\n\r\nDate: in body\r\n.\r\n",
        b"Subject: a\r\nDate: D\r\nMessage-ID: <M>\r\n\r\nDate: in body\r\n",
        head_fix=fix,
    )


def test_rfc5322_dates():
    assert rfc5322_date(0) == "Thu, 1 Jan 1970 00:00:00 +0000"
    assert rfc5322_date(951782400) == "Tue, 29 Feb 2000 00:00:00 +0000"
    assert rfc5322_date(1795234495) == "Sat, 21 Nov 2026 04:14:55 +0000"
    assert rfc5322_date(4102444799) == "Thu, 31 Dec 2099 23:59:59 +0000"


class LineByLine(DotDecoder):
    """The decoder with its bulk step turned off: every line through the per-line scan."""

    def _bulk(self, i, n):
        return -1 - n


_CLEAN = (b"\r\n", b"\r\n", b"\r\n", b".", b"..", b"\r\n.", b"\r\n..", b"x", b"y" * 7)
_BARE = (b"\n", b"\r", b"\n.", b"\r.")


def _message(rng, T, bare):
    """CRLF text, dots and lines around the limit; with `bare`, bare CR/LF late
    in the message (the decoder goes line by line once it has seen one)."""
    parts = []
    count = rng.below(24) + 1
    for k in range(count):
        if rng.below(6) == 0:
            parts.append(b"L" * (T - 2 + rng.below(5)))  # lines around the text line limit
        elif bare and k > count // 2 and rng.below(3) == 0:
            parts.append(rng.pick(_BARE))
        else:
            parts.append(rng.pick(_CLEAN))
    parts.append(b"\r\n.\r\n")
    return b"".join(parts)


def test_bulk_step_matches_the_line_by_line_scan():
    # The bulk step (counts and windowed rfind over the chunk) must store, consume
    # and latch exactly what the per-line scan does, for any split and any scratch
    # size, and hand over to it when a bare CR or LF turns up mid-message.
    from fuzzgen import Rng

    rng = Rng(11)
    T = 20  # a small text line limit, so long lines cross chunks and windows often
    for case in range(150):
        data = _message(rng, T, case % 2 == 1)
        piece = rng.below(40) + 1
        scratch = rng.pick((3, 7, 16, 64))
        head = fix if case % 3 == 0 else None
        out = []
        for cls in (DotDecoder, LineByLine):
            sink = Sink()
            d = cls(sink, 100000, T, bytearray(scratch), head)
            mv = memoryview(data)
            i = 0
            while i < len(data) and not d.done:
                i += d.feed(mv[i : i + piece])
            out.append((bytes(sink.data) if d.error is None else b"", i, d.done, d.error, d.size if d.error is None else 0))
        assert out[0] == out[1], (case, piece, scratch, data, out)
