"""The clock set when the link comes up (docs/sessions.md "Windows and times"):
on a board whose RTC is not trusted, NTP (`ntptime` where the firmware has it)
sets the wall clock the scheduler trusts; without `ntptime`, or when NTP fails,
the date in the ISP's SMTP greeting does; a clock already trusted is left alone.
A fake `ntptime` and a board clock stand in on both runtimes."""

import sys

from dialgate import compat, session_call

NTP_NOW = 1796212800  # 2026-12-02 12:00:00 UTC


class FakeNtp:
    """MicroPython's ntptime: `host`, and time() in the port's epoch (2000 on a board)."""

    host = ""
    asked = 0
    fail = False

    @staticmethod
    def time():
        FakeNtp.asked += 1
        if FakeNtp.fail:
            raise OSError(110)  # ETIMEDOUT: no answer over the link
        return NTP_NOW - 946684800


def on_a_board(fn, ntp=True):
    """Run fn() with an untrusted board RTC and (if `ntp`) the fake ntptime; restore both."""
    saved = (list(compat._wall), compat._BOARD_CLOCK, sys.modules.get("ntptime"))
    compat._wall[0] = -compat.wall_time()  # a board's RTC after power-on: 1970 (or 2000)
    compat._wall[1] = False
    compat._BOARD_CLOCK = True
    if ntp:
        sys.modules["ntptime"] = FakeNtp
    FakeNtp.asked = 0
    FakeNtp.host = ""
    try:
        assert not compat.clock_trusted()
        return fn()
    finally:
        compat._wall[0] = saved[0][0]
        compat._wall[1] = saved[0][1]
        compat._BOARD_CLOCK = saved[1]
        if saved[2] is None:
            sys.modules.pop("ntptime", None)
        else:
            sys.modules["ntptime"] = saved[2]


def test_ntp_sets_a_board_clock_when_the_link_comes_up():
    def run():
        session_call._set_clock(None)  # what run_call does on "online at N bps"
        return compat.clock_trusted(), compat.wall_time(), FakeNtp.asked, FakeNtp.host

    trusted, wall, asked, host = on_a_board(run)
    assert trusted and asked == 1 and host == "pool.ntp.org"
    assert 0 <= wall - NTP_NOW <= 2  # the 2000 epoch of a board's ntptime counted in


def test_a_trusted_clock_does_not_ask_ntp_again():
    def run():
        session_call._set_clock(None)
        session_call._set_clock(None)  # the next call's link-up
        session_call._set_clock(b"isp ESMTP; Wed, 2 Dec 2026 13:00:00 +0000")
        return FakeNtp.asked, compat.wall_time()

    asked, wall = on_a_board(run)
    assert asked == 1 and wall - NTP_NOW <= 2  # neither NTP again nor the greeting stepped it


def test_without_ntp_the_isp_greeting_sets_the_clock():
    def run(fail):
        FakeNtp.fail = fail
        try:
            session_call._set_clock(None)
            after_ntp = compat.clock_trusted()
            session_call._set_clock(b"smtp.isp.test ESMTP Sendmail 8.18.1; Wed, 2 Dec 2026 14:00:00 +0100")
            return after_ntp, compat.clock_trusted(), compat.wall_time()
        finally:
            FakeNtp.fail = False

    for ntp, fail in ((False, False), (True, True)):  # no ntptime in the firmware; NTP times out
        after_ntp, trusted, wall = on_a_board(lambda: run(fail), ntp=ntp)
        assert not after_ntp and trusted, (ntp, fail)
        assert 0 <= wall - (NTP_NOW + 3600) <= 2, (ntp, fail)  # 14:00 +0100 is 13:00 UTC


def test_a_greeting_without_a_date_leaves_the_clock_untrusted():
    def run():
        session_call._set_clock(b"isp.test ESMTP Postfix")
        return compat.clock_trusted()

    assert on_a_board(run, ntp=False) is False
