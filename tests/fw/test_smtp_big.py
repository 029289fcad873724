"""A 50 MB message through the SMTP session in constant RAM (run at 128K heap on MicroPython)."""

import smtpfakes
from smtpfakes import LAN

from dialgate import compat
from dialgate.proto import Framer

MB = 1024 * 1024
# The 2 KB block sent over and over, made at import while the 128K heap is in one piece.
_BLOCK = bytearray(2048)


def _feed(fr, out, data):
    """Push `data` through the Framer in reads of whatever space it offers."""
    mv = memoryview(data)
    i = 0
    n = len(data)
    while i < n:
        sp = fr.space()
        k = min(len(sp), n - i)
        sp[:k] = mv[i : i + k]
        fr.received(k)
        i += k
        fr.process(out.append)


def test_50mb_message_flat_heap():
    total = 50 * MB
    sp = smtpfakes.FakeSpool(keep=False)
    svc = smtpfakes.service({"smtp.max_size": 64 * MB}, spool=sp)
    s = svc.session(LAN)
    fr = Framer(s, 1024)
    out = []
    _feed(fr, out, b"EHLO pc\r\nMAIL FROM:<a@office.test> SIZE=52428800\r\nRCPT TO:<alice@office.test>\r\nDATA\r\n")
    assert out[-1].startswith(b"354"), out
    del out[:]
    # one 2 KB block of 64-octet text lines, the last one dot-stuffed, sent over and over
    line = b"The quick brown fox jumps over the lazy dog 0123456789 .......\r\n"
    block = _BLOCK
    for i in range(0, 2048, 64):
        block[i : i + 64] = line
    block[2048 - 64] = 46  # "." at a line start: stuffed, removed by the decoder
    _feed(fr, out, b"Subject: big\r\n\r\n")
    compat.gc_collect()
    base = compat.mem_alloc()
    peak = 0
    sent = 0
    while sent < total:
        _feed(fr, out, block)
        sent += 2048
        if sent % (5 * MB) == 0:
            compat.gc_collect()
            used = compat.mem_alloc() - base
            if used > peak:
                peak = used
    _feed(fr, out, b".\r\nQUIT\r\n")
    assert out[0].startswith(b"250 2.0.0 Ok: queued as M1"), out
    _, sender, routes, _, size = sp.committed[0]
    assert sp.open == 0 and sender == "a@office.test" and len(routes) == 1
    assert total * 99 // 100 < size < total, size
    free = compat.mem_free()
    print(
        "# SMTP 50 MB message: %d octets stored; heap in use %d, free %d; growth at 5 MB steps: peak %d octets"
        % (size, base, free, peak)
    )
    if compat.mem_free() >= 0:  # MicroPython: the GC heap stayed flat
        assert peak < 4096, peak
