"""A 50 MB message retrieved through the POP3 session with a flat heap
(run under `micropython -X heapsize=128K` by host_tools.upy_test)."""

from pop3fake import LAN, FakeMaildrops, FileBody, service

import fwtest
from dialgate import compat
from dialgate.proto import Framer

SIZE = 50 * 1024 * 1024
LINE = b"x" * 62 + b"\r\n"  # 64 octets
DOTLINE = b"." + b"y" * 61 + b"\r\n"  # every 16th line starts with a dot


def write_message(path):
    head = b"Subject: big\r\n\r\n"  # 16 octets: the last line below is 48 octets

    chunk = (DOTLINE + LINE * 15) * 4  # 4096 octets
    dots = 0
    with open(path, "wb") as f:
        f.write(head)
        n = len(head)
        while n + len(chunk) <= SIZE:
            f.write(chunk)
            n += len(chunk)
            dots += 4
        while SIZE - n > 64:
            f.write(LINE)
            n += 64
        f.write(b"z" * (SIZE - n - 2) + b"\r\n")  # the head leaves 48 octets here
    return compat.file_size(path), dots


def test_retr_50mb_with_flat_heap():
    tmp = fwtest.tempdir("pop3big")
    try:
        path = tmp + "/msg"
        size, dots = write_message(path)
        assert size == SIZE, size
        drops = FakeMaildrops({"alice": [("big1", FileBody(path, size))]})
        s = service(drops).session(LAN)
        fr = Framer(s, 1024)
        obuf = bytearray(1024)
        omv = memoryview(obuf)
        tail = bytearray(8)
        sent = 0
        stuffed = 0
        replies = []

        def feed(data):
            sp = fr.space()
            sp[: len(data)] = data
            fr.received(len(data))

        s.greeting()
        feed(b"USER alice\r\nPASS wonder land\r\nRETR 1\r\n")
        compat.gc_collect()
        before = compat.mem_alloc()
        peak = before
        first = -1
        status = b""
        while fr.process(replies.append):
            p = s.producer
            k = 0
            while True:
                n = p.fill(obuf)
                if not n:
                    break
                if not sent:  # the status line leads the body in the same buffer
                    status = bytes(omv[:32])
                sent += n
                # stuffed lines: "..y" after a LF (ones split across fills are missed here)
                i = obuf.find(b"\n..y", 0, n)
                while i >= 0:
                    stuffed += 1
                    i = obuf.find(b"\n..y", i + 4, n)
                tail[:] = (tail + omv[:n])[-8:] if n < 8 else omv[n - 8 : n]
                k += 1
                if k % 5120 == 0:  # every ~5 MB: live heap after a collection
                    compat.gc_collect()
                    m = compat.mem_alloc()
                    if first < 0:
                        first = m  # RETR set up: producer, read buffer
                    if m > peak:
                        peak = m
            s.producer = None
        compat.gc_collect()
        after = compat.mem_alloc()
        ok = b"+OK %d octets\r\n" % size
        assert status.startswith(ok) and replies[-1].startswith(b"+OK alice has 1"), (status, replies)
        assert bytes(tail[-5:]) == b"\r\n.\r\n", tail
        # every dot line got one more dot; the wire is the status, the file plus those dots and ".\r\n"
        assert sent == len(ok) + size + dots + 3, (sent, size, dots)
        assert dots - 200 < stuffed <= dots, (stuffed, dots)
        growth = peak - first
        print("# pop3 RETR %d MB: %d octets sent, %d dot lines stuffed; heap used before RETR %d, at 5 MB %d, "
              "peak after GC %d, after %d (growth 5 MB..50 MB: %d octets; free %d)"
              % (size >> 20, sent, dots, before, first, peak, after, growth, compat.mem_free()))
        if compat.mem_free() >= 0:  # MicroPython: the GC heap holds steady
            assert first - before < 4096, first - before  # one read buffer + the producer
            assert growth < 512, growth
        s.on_close()
    finally:
        fwtest.rmtree(tmp)
