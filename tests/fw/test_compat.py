"""compat: the shims behave the same on both runtimes."""

import fwtest
from dialgate import compat


def test_replace_is_atomic_over_existing():
    d = fwtest.tempdir("c")
    try:
        for name, text in (("a", "new"), ("b", "old")):
            with open(d + "/" + name, "w") as f:
                f.write(text)
                compat.fsync(f)
        compat.replace(d + "/a", d + "/b")
        compat.sync_dir(d)
        assert not compat.exists(d + "/a")
        with open(d + "/b") as f:
            assert f.read() == "new"
    finally:
        fwtest.rmtree(d)


def test_makedirs_and_sizes():
    d = fwtest.tempdir("c")
    try:
        compat.makedirs(d + "/x/y/z")
        compat.makedirs(d + "/x/y/z")
        assert compat.is_dir(d + "/x/y/z")
        with open(d + "/x/f", "wb") as f:
            f.write(b"12345")
        assert compat.file_size(d + "/x/f") == 5
        assert compat.disk_free(d) > 0
    finally:
        fwtest.rmtree(d)


def test_ticks_and_clock():
    a = compat.ticks_ms()
    compat.sleep_ms(20)
    b = compat.ticks_ms()
    assert 15 <= compat.ticks_diff(b, a) < 2000
    assert compat.ticks_diff(compat.ticks_add(a, 100), a) == 100
    assert compat.wall_time() > 1600000000


def test_memory_figures():
    compat.gc_collect()
    assert compat.mem_alloc() > 0
    if compat.MICROPYTHON:
        assert compat.mem_free() > 0
    else:
        assert compat.mem_free() == -1


def test_peer_of_decodes_both_forms():
    class T:
        def __init__(self, pn):
            self.pn = pn

        def get_extra_info(self, name):
            return self.pn

    assert compat.peer_of(T(("10.0.0.1", 25))) == ("10.0.0.1", 25)
    raw = bytearray(b"\x02\x00\x09\xc5\x7f\x00\x00\x02" + b"\x00" * 8)
    assert compat.peer_of(T(raw)) == ("127.0.0.2", 2501)


def test_pem_to_der_picks_blocks_by_kind():
    import binascii

    from dialgate.compat_tls import pem_to_der

    def block(kind, raw):
        b64 = binascii.b2a_base64(raw).strip()
        return b"-----BEGIN " + kind + b"-----\n" + b64[:8] + b"\n" + b64[8:] + b"\n-----END " + kind + b"-----\n"

    key = block(b"PRIVATE KEY", b"k" * 20)
    chain = block(b"CERTIFICATE", b"one-cert-der") + key + block(b"CERTIFICATE", b"two-cert-der")
    assert pem_to_der(chain) == b"one-cert-dertwo-cert-der"  # a CA file: every certificate
    assert pem_to_der(chain, b"CERTIFICATE", True) == b"one-cert-der"  # a server certificate: the first
    assert pem_to_der(chain, b"PRIVATE KEY", True) == b"k" * 20  # key and certificate in one file
    assert pem_to_der(block(b"EC PRIVATE KEY", b"ec"), b"PRIVATE KEY", True) == b"ec"
    assert pem_to_der(b"\x30\x82raw-der") == b"\x30\x82raw-der"  # no armour: DER already
    assert pem_to_der(key, b"CERTIFICATE") == b""  # nothing of that kind


def _copies(tail, n=40):
    """n strings made at run time from the same text (as json keys and % formatting make them)."""
    return ["dialgate.test.%s" % tail for _ in range(n)]


def test_intern_makes_later_strings_of_that_text_cost_nothing():
    # config_load interns the config's keys so the checked config, and every cfg["..."] of a module
    # loaded afterwards, holds the interned name rather than a string object of its own
    # (the texts are made at run time: a literal of the same text in this file could be interned already)
    name = "dialgate.test.%s" % "interned_key_name"
    assert _copies("interned_key_name")[0] == name
    if compat.mem_free() < 0:
        compat.intern(name)  # CPython: sys.intern; no heap figure to compare
        return
    compat.gc_collect()
    a = compat.mem_alloc()
    plain = _copies("plain_key_name_abc")
    compat.gc_collect()
    b = compat.mem_alloc()
    compat.intern(name)
    compat.gc_collect()
    c = compat.mem_alloc()
    interned = _copies("interned_key_name")
    compat.gc_collect()
    d = compat.mem_alloc()
    assert len(plain) == len(interned)
    # the list costs its 40 pointers (and room to grow) either way; 40 strings of their own cost 40 x 32 more
    assert d - c < 40 * 24 < b - a, (b - a, d - c)


def test_intern_module_names_loads_each_module_once_and_keeps_none():
    # app.main on a board that unloads: every firmware module's names in the pools at start, no module left in
    import sys

    folder = compat.__file__.rpartition("/")[0]
    before = sorted(m for m in sys.modules if m.startswith("dialgate."))
    todo = [fn.rpartition(".")[0] for fn in compat.listdir(folder) if fn.endswith((".py", ".mpy"))]
    todo = [m for m in todo if m not in ("__init__", "__main__", "compat_cpython") and "dialgate." + m not in before]
    n = compat.intern_module_names(folder)
    # every module not loaded yet, unless the heap ran out first (best effort: it stops there)
    assert 0 < n <= len(todo), (n, todo)
    assert n == len(todo) or compat.MICROPYTHON, (n, todo)
    assert sorted(m for m in sys.modules if m.startswith("dialgate.")) == before  # none kept
    compat.intern_module_names(folder)  # a second pass (it may stop early: the heap is at 128K) keeps none either
    assert sorted(m for m in sys.modules if m.startswith("dialgate.")) == before


def test_gc_threshold_sets_micropythons_and_leaves_cpythons():
    # board.gc_threshold (app.main): collect every N octets allocated on a board
    import gc

    if not compat.MICROPYTHON:
        before = gc.get_threshold()
        compat.gc_threshold(16384)
        assert gc.get_threshold() == before  # reference counting frees; the cycle collector keeps its own
        return
    saved = gc.threshold()
    try:
        compat.gc_threshold(0)
        assert gc.threshold() == saved  # 0: MicroPython's default stays
        compat.gc_threshold(16384)
        assert gc.threshold() == 16384
    finally:
        gc.threshold(saved)
