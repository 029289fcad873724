"""A 10 MB held message through an ODMR call's reversed session into the real
spool, in flat heap: the ODMR client hands the connection to the SMTP server
session, which streams the DATA to flash as it comes (issue 14).

Runs at 160K under MicroPython: the ODMR client, the SMTP server core and the
real spool with its queue and maildrop modules at once, as a call that asks by
ODMR holds them."""

import fwtest
from dialgate import compat

MB = 1024 * 1024
UPY_HEAP = "160K"


class LocalRouter:
    """Everything to alice's maildrop (smtpfakes is not imported: heap)."""

    def route(self, address):
        from dialgate.delivery import Route

        return Route("local", address, ["alice"])


def _feed(fr, s, out, data):
    """Like net: frame, and follow a handover to the session taking over."""
    mv = memoryview(data)
    i = 0
    while i < len(data):
        sp = fr.space()
        k = min(len(sp), len(data) - i)
        sp[:k] = mv[i : i + k]
        fr.received(k)
        i += k
        while True:
            while fr.process(out.append):
                s.pause_ms = 0  # (net would wait; the transcript need not)
            if s.handover is None:
                break
            new = s.handover[1]
            s.handover = None
            s = fr.s = new
            out.append(new.greeting())
    return s


def test_ten_megabytes_through_the_reversed_session_flat_heap():
    from dialgate import mailbox, outq  # what Spool() builds, loaded while the heap is in one piece
    from dialgate.odmr_client import REVERSED, OdmrClient
    from dialgate.proto import Framer
    from dialgate.smtp_server import SmtpService
    from dialgate.spool import Spool

    assert mailbox and outq
    root = fwtest.tempdir("odmr10")
    try:
        cfg = fwtest.host_config({"smtp.max_size": 16 * MB})
        spool = Spool(root, 0)
        spool.recover()
        svc = SmtpService(cfg, spool, LocalRouter())

        def make_server(peer, tls_active):
            return svc.session(peer)

        c = OdmrClient(b"gw.office.test", "tim", "secret", ["office.test"], "none", None, make_server,
                       ("192.0.2.9", 366))
        fr = Framer(c, 1024)
        out = []
        s = _feed(fr, c, out, b"220 odmr ready\r\n250-odmr\r\n250-AUTH CRAM-MD5\r\n250 ATRN\r\n"
                  b"334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n235 ok\r\n"
                  b"250 OK now reversing the connection\r\n"
                  b"EHLO odmr\r\nMAIL FROM:<carol@example.net>\r\nRCPT TO:<alice@office.test>\r\nDATA\r\n"
                  b"Subject: big held\r\n\r\n")
        assert c.result[0] == REVERSED and s is c.server, c.result
        assert out[-1].startswith(b"354"), out
        del out[:]
        block = bytearray(2048)
        for i in range(0, 2048, 64):
            block[i : i + 64] = b".a held line, dot-stuffed, ten megabytes of them .............\r\n"
        compat.gc_collect()
        base = compat.mem_alloc()
        peak = 0
        for n in range(1, 10 * MB // 2048 + 1):
            s = _feed(fr, s, out, block)
            if n % 1024 == 0:  # every 2 MB
                compat.gc_collect()
                peak = max(peak, compat.mem_alloc() - base)
        s = _feed(fr, s, out, b".\r\nQUIT\r\n")
        assert out[0].startswith(b"250 2.0.0 Ok: queued as ") and out[1].startswith(b"221"), out
        md = spool.maildrops.open("alice")
        msgs = md.messages()
        assert len(msgs) == 1 and spool.delivered_local == 1
        print("# ODMR 10 MB held message: delivered to alice; heap in use %d, free %d; growth at 2 MB steps: peak %d"
              % (base, compat.mem_free(), peak))
        if compat.mem_free() >= 0:  # MicroPython's GC heap; CPython's RSS says nothing here
            assert peak < 4096, peak
    finally:
        fwtest.rmtree(root)
