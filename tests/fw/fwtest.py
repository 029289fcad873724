"""Helpers for the firmware tests, which run on CPython (pytest) and on the
MicroPython unix port (host_tools/upy_test.py). No pytest imports here."""

import os
import sys

from dialgate import compat, config
from dialgate.proto import Framer


class Skip(Exception):
    pass


def skip(reason):
    """Skip this test on this runtime, saying why."""
    if "pytest" in sys.modules:
        import pytest

        pytest.skip(reason)
    raise Skip(reason)


def tempdir(tag="t"):
    base = os.getenv("TMPDIR") or "/tmp"
    path = "%s/dgtest-%s-%s" % (base, tag, "".join(["%02x" % b for b in compat.urandom(6)]))
    os.mkdir(path)
    return path


def rmtree(path):
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for name in entries:
        p = path + "/" + name
        if compat.is_dir(p):
            rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


_last_config = [None, None]  # (overrides as text, Config): every_split asks for the same one again and again


def host_config(over=None):
    """A checked Config like the `host` profile; `over` maps dotted keys to values.

    The last one is reused when asked for again with equal overrides (Config is
    read-only), which spares the 128K test heap a schema parse per split."""
    key = repr(sorted((over or {}).items()))
    if _last_config[0] == key:
        return _last_config[1]
    flat = {
        "board.name": "host",
        "hostname": "gw.office.test",
        "domains": ["office.test"],
        "lan": ["127.0.0.1/32"],
        "spool.path": "/tmp",
    }
    for k in over or {}:
        flat[k] = over[k]
    _last_config[0] = _last_config[1] = None  # dropped first (heap); a failed build caches nothing
    compat.gc_collect()  # the schema's dict wants one ~2 KB block: give it the holes garbage left
    cfg = config.build(flat)
    compat.unload("dialgate.config_load")  # as the gateway does once its config is checked (app.main)
    _last_config[0] = key
    _last_config[1] = cfg
    return cfg


_scratch = {}  # size -> (input buffer, output buffer), reused by every_split()


def _buffers(size):
    """every_split's two buffers, allocated once per size: it drives a session
    per read size, and two fresh 1 KB blocks each time fragmented a 128K
    MicroPython heap (it does not compact) until a block no longer fitted
    (test_smtp_auth in CI). A lone drive() keeps fresh ones: the holes they
    leave are what a growing list in the session fits into (100 RCPTs)."""
    b = _scratch.get(size)
    if b is None:
        b = _scratch[size] = (bytearray(size), bytearray(size))
    return b


def drive(session, data, piece=1, size=1024, bufs=None):
    """Feed `data` to a proto.Session through a Framer, `piece` octets per read
    (`bufs`: its input and output buffers, else fresh ones).

    Returns everything the session wrote, greeting included, as bytes.
    """
    out = []
    g = session.greeting()
    if g:
        out.append(g)
    ibuf, obuf = bufs or (bytearray(size), bytearray(size))
    fr = Framer(session, size, ibuf)
    i = 0
    n = len(data)
    while i < n and not session.closing:
        sp = fr.space()
        k = min(piece, len(sp), n - i)
        sp[:k] = data[i : i + k]
        fr.received(k)
        i += k
        while fr.process(out.append):
            p = session.producer
            while p is not None:  # as net does: take_reply() may start the next producer
                while True:
                    m = p.fill(obuf)
                    if not m:
                        break
                    out.append(bytes(obuf[:m]))
                session.producer = None
                r = session.take_reply()
                if r:
                    out.append(r)
                p = session.producer
            session.pause_ms = 0
    return b"".join(out)


def drive_net(session, data, piece=1, size=1024, buf=None):
    """drive(), plus what net does between reads: the TLS upgrade a session asks
    for (on_tls() at once, its reply written; unread input goes to
    early_data()), and the handover of the connection, with its unread input,
    to another session (proto.Session.handover), which then greets. Returns
    (everything written, the session holding the connection at the end)."""
    out = []
    g = session.greeting()
    if g:
        out.append(g)
    fr = Framer(session, size, buf)
    i = 0
    n = len(data)
    while i < n and not session.closing:
        sp = fr.space()
        k = min(piece, len(sp), n - i)
        sp[:k] = data[i : i + k]
        fr.received(k)
        i += k
        while True:
            while fr.process(out.append):
                session.pause_ms = 0
            if session.tls is not None and not session.closing:
                if fr.start != fr.end and not session.early_data():
                    session.closing = True
                    break
                fr.reset()
                r = session.on_tls()
                if r:
                    out.append(r)
            if session.handover is None:
                break
            kind, new = session.handover
            session.handover = None
            session.on_close()
            session = fr.s = new
            g = new.greeting()
            if g:
                out.append(g)
    return b"".join(out), session


def every_split(make_session, data, expect=None, pieces=None):
    """Drive a fresh session with every read size in `pieces` (default 1..len+1)
    and check all give the same output (equal to `expect` if given). Returns it."""
    first = None
    for piece in pieces or range(1, len(data) + 2):
        got = drive(make_session(), data, piece, 1024, _buffers(1024))
        if first is None:
            first = got
            if expect is not None and got != expect:
                raise AssertionError("piece %d:\n%r\n!=\n%r" % (piece, got, expect))
        elif got != first:
            raise AssertionError("piece %d differs:\n%r\n!=\n%r" % (piece, got, first))
    return first
