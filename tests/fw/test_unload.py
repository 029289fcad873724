"""Idle unloading (board.unload_after): a feature idle long enough is dropped,
its modules forgotten, the heap given back, and the next use loads it again.
On MicroPython the heap must come back to where it was, cycle after cycle: a
module loaded twice (one still referred to while unloaded) would show here.

A whole Gateway plus one feature needs more than the 128K board budget on the
64-bit unix port (docs/architecture.md, "Memory"), so host_tools/upy_test.py
runs this file at UPY_HEAP."""

import sys

import fwtest
from dialgate import compat
from dialgate.app import Gateway

UPY_HEAP = "192K"
LAN = ("127.0.0.1", 40000)
SMTP = b"EHLO pc\r\nMAIL FROM:<alice@office.test>\r\nRCPT TO:<far@example.net>\r\nDATA\r\nSubject: t\r\n\r\nhi\r\n.\r\nQUIT\r\n"
POP3 = b"CAPA\r\nQUIT\r\n"


def _gw(tag):
    d = fwtest.tempdir(tag)
    gw = Gateway(fwtest.host_config({"spool.path": d, "board.unload_after": 1, "link.type": "emulated"}))
    gw.spool.recover()
    return gw, d


def _heap():
    compat.gc_collect()
    return compat.mem_alloc() if compat.mem_free() >= 0 else -1


def _unload(gw):
    """Two housekeeping passes 1.5 s apart (on the ticks clock): the first sees
    the feature idle, the second finds it idle long enough."""
    t = compat.ticks_ms()
    out = gw.unload_idle(t, 1000)
    return out + gw.unload_idle(compat.ticks_add(t, 1500), 1000)


def _owned(name):
    """The modules idle unloading gives back with `name` (the registry make lint
    checks). Imports app_unload, which the first unload would load anyway: it
    stays, so the heap before counts it."""
    from dialgate.app_unload import FEATURES

    return FEATURES[name][1]


def _cycles(gw, name, use, modules):
    """Use, unload, use, unload, use, unload; returns the heap after each unload."""
    after = []
    for _ in range(3):
        use(gw)
        assert name in gw.__dict__
        out = _unload(gw)
        assert name in out, out
        assert name not in gw.__dict__
        for m in modules:
            assert "dialgate." + m not in sys.modules, m
        after.append(_heap())
    return after


def _smtp(gw):
    out = fwtest.drive(gw.smtp.session(LAN), SMTP, 64)
    assert b"250 2.0.0 Ok: queued as" in out, out


def _pop3(gw):
    out = fwtest.drive(gw.pop3.session(LAN), POP3, 64)
    assert out.startswith(b"+OK") and b"\r\nUIDL\r\n" in out and out.count(b"+OK") == 3, out


def _steady(after):
    if after[0] >= 0:
        # second and third cycle: back to the same heap (a few hundred octets of
        # interned names and log text may come and go)
        assert abs(after[2] - after[1]) < 512, after


def test_smtp_stack_unloads_when_idle_and_comes_back():
    gw, d = _gw("uls")
    try:
        gw.router  # shared with POP3, the console or the queue runner: these stay
        gw.auth_throttle
        gw.outq
        __import__("dialgate.smtp_data")  # shared with the POP3 collector: stays
        __import__("dialgate.limits")
        mods = _owned("smtp")
        before = _heap()
        after = _cycles(gw, "smtp", _smtp, mods)
        _steady(after)
        print("# smtp: heap %d before, %s after each of 3 use+unload cycles" % (before, after))
        if before >= 0:
            assert after[0] - before < 4096, (before, after)  # interned names, the queued message
        assert len(gw.outq.ids()) == 3  # each cycle's message was spooled
    finally:
        fwtest.rmtree(d)


def test_pop3_stack_unloads_when_idle_and_comes_back():
    gw, d = _gw("ulp")
    try:
        gw.users
        gw.auth_throttle
        __import__("dialgate.dotstuff")  # shared with the SMTP client: stays
        __import__("dialgate.limits")
        mods = _owned("pop3")
        before = _heap()
        after = _cycles(gw, "pop3", _pop3, mods)
        _steady(after)
        print("# pop3: heap %d before, %s after each of 3 use+unload cycles" % (before, after))
        if before >= 0:
            assert after[0] - before < 4096, (before, after)  # interned names
    finally:
        fwtest.rmtree(d)


def _kept_while_held(gw, name, hold, release):
    """`name` stays loaded while `hold()` keeps it busy, and goes once it has
    been idle for 1 s after `release()`."""
    hold()
    t = compat.ticks_ms()
    for k in range(4):
        assert name not in gw.unload_idle(compat.ticks_add(t, k * 2000), 1000)
    assert name in gw.__dict__
    release()  # last seen in use at t + 6 s
    assert gw.unload_idle(compat.ticks_add(t, 6500), 1000) == []
    assert gw.unload_idle(compat.ticks_add(t, 7100), 1000) == [name]


class _Conn:
    kind = "smtp"


def test_a_feature_in_use_stays():
    gw, d = _gw("ulb")
    try:
        gw.smtp
        _kept_while_held(gw, "smtp", lambda: gw.net.conns.append(_Conn()), gw.net.conns.pop)  # a session open
    finally:
        fwtest.rmtree(d)


def test_idle_link_and_console_groups_unload():
    gw, d = _gw("ull")
    try:
        assert gw.commands.run(gw, "queue list")[-1] == "OK"  # loads queue_console
        gw.link  # the emulated link's driver module, line down
        assert "dialgate.link_modem" in sys.modules and "dialgate.queue_console" in sys.modules
        gw.commands.used = compat.ticks_add(compat.ticks_ms(), -5000)
        out = _unload(gw)
        assert "link" in out and "console" in out, out
        assert "dialgate.link_modem" not in sys.modules and "dialgate.queue_console" not in sys.modules
        assert "queue list" not in gw.commands.table and gw.commands.lazy["queue"] == "queue_console"
        from dialgate.console_base import link_state

        assert link_state(gw) == "down (emulated)"  # what the link said last
        assert gw.commands.run(gw, "queue list")[-1] == "OK"  # loads again on use
        assert "link" not in gw.__dict__ and gw.link.state == "down"  # and the link too
    finally:
        fwtest.rmtree(d)


class _Pending:
    def done(self):
        return False


def test_a_dial_not_yet_running_keeps_the_link():
    # `dial` spawns link.up(); until that task runs the link is still "down".
    # Unloading it then would leave the task dialling an object the gateway no
    # longer knows: a line up (and billed) that `hangup` cannot reach.
    gw, d = _gw("uld")
    try:
        gw.link
        _kept_while_held(gw, "link", lambda: gw.tasks.append(_Pending()), gw.tasks.clear)
    finally:
        fwtest.rmtree(d)


def test_a_queue_runs_code_goes_when_its_flush_ends():
    # session_call drops relay_run at once after a flush (app_unload.unload_now),
    # not board.unload_after later: the held mail ETRN asked for needs the room
    from dialgate.app_unload import unload_now

    gw, d = _gw("ulq")
    try:
        import dialgate.net_out  # noqa: F401
        import dialgate.relay_run  # noqa: F401 - what a queue run loads
        import dialgate.smtp_client  # noqa: F401

        n = gw.unloads
        assert unload_now(gw, "relay_run")
        assert "dialgate.relay_run" not in sys.modules and "dialgate.smtp_client" not in sys.modules
        # and what it shares with the core only in functions (app_unload.SHARED)
        assert "dialgate.retry" not in sys.modules and "dialgate.net_out" not in sys.modules
        assert gw.unloads == n + 1
        assert not unload_now(gw, "relay_run")  # nothing loaded: nothing to do
    finally:
        fwtest.rmtree(d)


def test_an_smtp_connection_waits_for_the_queue_runs_code_to_go():
    # app._admit_smtp: the ISP's delivery after ETRN arrives while our queue run
    # is still saying QUIT; the SMTP server loads only once that code has gone
    import asyncio

    gw, d = _gw("uladm")
    try:
        import dialgate.relay_run  # noqa: F401 - a queue run in progress holds it

        async def admitted(settle):
            t = asyncio.create_task(gw._admit_smtp())
            await asyncio.sleep(0)
            for _ in range(settle):
                await asyncio.sleep(0.1)
            return t

        async def day():
            out = []
            t = await admitted(0)
            out.append(t.done())  # no call in progress: at once
            gw.sessions.current = "a call"
            t = await admitted(4)
            out.append(t.done())  # the queue run's code is loaded: waits
            compat.unload("dialgate.relay_run")  # what session_call does once the flush has ended
            for _ in range(30):
                if t.done():
                    break
                await asyncio.sleep(0.1)
            out.append(t.done())
            return out

        assert asyncio.run(day()) == [True, False, True]
    finally:
        gw.sessions.current = None
        fwtest.rmtree(d)


def test_a_call_drops_the_lan_servers_no_one_is_using():
    # app_unload.unload_unused, from session_call as a call starts: the submission that started it must not keep
    # the SMTP server through the dial and the queue run (the day's peak)
    from dialgate.app_unload import unload_unused

    class Reading:
        kind = "pop3"  # a client still reading its mail

    gw, d = _gw("uldrop")
    try:
        gw.smtp
        gw.pop3
        gw.net.conns.append(Reading())
        assert unload_unused(gw) == ["smtp"]
        assert "smtp" not in gw.__dict__ and "dialgate.smtp_server" not in sys.modules
        assert "pop3" in gw.__dict__ and "dialgate.pop3_server" in sys.modules
        gw.net.conns.clear()
        gw.auth_throttle.failed("192.0.2.9")  # a wrong password a moment ago: its throttle stays
        assert unload_unused(gw) == ["pop3", "LAN state"]
        assert "pop3" not in gw.__dict__ and "dialgate.pop3_server" not in sys.modules
        # with both servers gone, what they shared goes too, and the modules no one loaded still imports
        for a in ("router", "users", "server_tls"):
            assert a not in gw.__dict__, a
        assert "auth_throttle" in gw.__dict__ and "dialgate.auth" in sys.modules
        for m in ("smtp_data", "dotstuff", "delivery", "users"):
            assert "dialgate." + m not in sys.modules, m
        e = gw.auth_throttle.entries["192.0.2.9"]
        e[1] = compat.ticks_add(e[1], -gw.auth_throttle.lockout_ms)  # the failure is old now
        assert unload_unused(gw) == ["LAN state"]
        assert "auth_throttle" not in gw.__dict__
        assert "dialgate.auth" not in sys.modules and "dialgate.limits" not in sys.modules
        # and each comes back on use
        _smtp(gw)
        assert "router" in gw.__dict__ and "dialgate.smtp_data" in sys.modules
    finally:
        gw.net.conns.clear()
        fwtest.rmtree(d)


def test_starttls_is_offered_only_where_the_start_made_a_context():
    # a certificate configured, but a runtime without TLS (tls_server_context
    # gives None): the start warns, and no session offers STARTTLS
    import dialgate.compat_tls as ct

    d = fwtest.tempdir("ultls")
    gw = Gateway(fwtest.host_config({"spool.path": d, "board.unload_after": 1, "smtp.tls_cert": d + "/c.pem"}))
    real = ct.tls_server_context
    ct.tls_server_context = lambda cert, key: None
    try:
        assert gw._server_tls("smtp") is None and gw.tls is None  # (what start() asks)
        out = fwtest.drive(gw.smtp.session(LAN), b"EHLO pc\r\nSTARTTLS\r\n", 64)
        assert b"250-STARTTLS" not in out and out.endswith(b"502 5.5.1 STARTTLS not offered\r\n"), out
    finally:
        ct.tls_server_context = real
        fwtest.rmtree(d)

