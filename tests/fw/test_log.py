"""Log ring on flash: size-capped, oldest dropped first, tail N, levels."""

import fwtest
from dialgate import compat
from dialgate.log import ERROR, INFO, WARN, Log


def test_ring_is_capped_and_keeps_newest():
    d = fwtest.tempdir("log")
    try:
        lg = Log()
        lg.configure("info", d + "/gw.log", 2048, False)
        for i in range(500):
            lg.write(INFO, "line %d", (i,))
        lg.flush()
        total = compat.file_size(d + "/gw.log") + compat.file_size(d + "/gw.log.1")
        assert total <= 2048 + 64, total
        tail = lg.tail(5)
        assert [x.split(" ", 2)[2] for x in tail] == ["line 495", "line 496", "line 497", "line 498", "line 499"], tail
        first = lg.tail(1000)[0]
        assert "line 0" not in first  # the oldest were dropped
        lg.close()
    finally:
        fwtest.rmtree(d)


def test_levels_filter_and_warn_is_flushed_at_once():
    d = fwtest.tempdir("log")
    try:
        lg = Log()
        lg.configure("warn", d + "/gw.log", 4096, False)
        lg.write(INFO, "quiet", ())
        lg.write(WARN, "loud %s", ("x",))
        lg.write(ERROR, "bad args %d", ("notanint",))
        with open(d + "/gw.log") as f:
            text = f.read()
        assert "quiet" not in text
        assert "WARN loud x" in text
        assert "ERROR bad args %d" in text  # a bad format never raises
        lg.close()
    finally:
        fwtest.rmtree(d)


def test_unwritable_log_does_not_raise():
    lg = Log()
    d = fwtest.tempdir("log")
    try:
        lg.configure("info", d + "/gw.log", 4096, False)
        lg._f.close()  # simulate the flash going away under the logger
        lg.write(WARN, "still fine", ())
        lg.write(WARN, "still fine", ())
    finally:
        lg.close()
        fwtest.rmtree(d)
