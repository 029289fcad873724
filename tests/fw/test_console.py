"""Console: every reply ends in OK or ERR <reason>; framing over the session."""

import sys

import fwtest
from dialgate import compat, log
from dialgate.app import Gateway
from dialgate.console import CommandError, ConsoleSession


def _gw():
    return Gateway(fwtest.host_config())


def _lines(out):
    return out.decode().split("\r\n")[:-1]


def test_greeting_and_every_reply_ends_ok_or_err():
    gw = _gw()
    data = b"help\r\nstatus\r\nconfig get hostname\r\nconfig get nope\r\nconfig get\r\nbogus cmd\r\nlog 0\r\n\r\nquit\r\n"
    out = _lines(fwtest.drive(ConsoleSession(("127.0.0.1", 1), gw, gw.commands), data, piece=7))
    assert out[0].startswith("dialgate console on gw.office.test") and out[1] == "OK"
    ends = [x for x in out if x == "OK" or x.startswith("ERR")]
    # greeting, help, status, config get: OK; nope/usage/bogus/log 0: ERR; quit: OK
    assert ends == ["OK", "OK", "OK", "OK", "ERR unknown key nope", "ERR usage: config get KEY",
                    "ERR unknown command bogus (try help)", "ERR N must be a number from 1 to 1000", "OK"], ends
    assert 'hostname = "gw.office.test"' in out
    assert out[-2] == "bye"


def test_status_names_its_fields():
    gw = _gw()
    lines = gw.commands.run(gw, "status")
    assert lines[-1] == "OK" and not [x for x in lines if x.startswith("config:")]  # nothing saved yet
    keys = [x.split(":")[0] for x in lines[:-1]]
    for k in ("uptime", "heap", "loaded", "connections", "link", "spool"):
        assert k in keys, keys


def test_memory_names_the_modules_in_memory_and_the_buffers():
    gw = _gw()
    before = gw.commands.run(gw, "memory")
    assert before[-1] == "OK" and before[0].startswith("heap: used "), before
    mods = before[1].split(": ")[2].split()
    assert mods == sorted([m[9:] for m in sys.modules if m.startswith("dialgate.")]), mods
    assert "app" in mods and "console_base" in mods, mods
    assert int(before[1].split()[1]) == len(mods)
    assert before[2] == "buffers: 0 of %d octets for connections, 0 kept for reuse" % gw.net.buffer_size, before
    gw.auth_throttle  # a feature built: its module is now in memory
    fr = gw.net._buffer()
    gw.net._release(fr)  # a closed connection's buffer, kept
    after = gw.commands.run(gw, "memory")
    assert "auth" in after[1].split(": ")[2].split(), after
    assert after[2].endswith(", 1 kept for reuse"), after


def test_help_lists_every_command_and_one():
    gw = _gw()
    lines = gw.commands.run(gw, "help")
    text = "\n".join(lines)
    for c in ("help", "status", "log [N]", "config get KEY"):
        assert c in text
    assert gw.commands.run(gw, "help status")[-1] == "OK"
    assert gw.commands.run(gw, "help frob")[-1] == "ERR no command frob"


def test_feature_commands_secret_args_not_logged():
    gw = _gw()
    seen = []

    def fn(g, args):
        if not args:
            raise CommandError("usage: pw NAME SECRET")
        seen.append(args)
        return ["set"]

    gw.commands.add("pw set", fn, "pw set NAME SECRET", "set a secret", secret=True)
    d = fwtest.tempdir("con")
    try:
        log.LOG.configure("info", d + "/log.txt", 4096, False)
        assert gw.commands.run(gw, "pw set bob hunter2") == ["set", "OK"]
        assert gw.commands.run(gw, "pw set") == ["ERR usage: pw NAME SECRET"]
        text = "\n".join(log.LOG.tail(50))
        assert "pw set" in text and "hunter2" not in text, text
    finally:
        log.LOG.configure("info", "", 4096, True)
        fwtest.rmtree(d)
    assert seen == [["bob", "hunter2"]]


def test_binary_garbage_gets_error_and_console_keeps_serving():
    gw = _gw()
    data = b"\xff\xfe\x00garbage\r\n" + b"z" * 600 + b"\r\nconfig get lan\r\n"
    out = _lines(fwtest.drive(ConsoleSession(("127.0.0.1", 1), gw, gw.commands), data, piece=64))
    assert out[2] == "ERR not UTF-8 text"
    assert out[3] == "ERR line too long (max 512 octets)"
    assert out[4:] == ['lan = ["127.0.0.1/32"]', "OK"], out


def _gw_from_file(d, user):
    import json

    from dialgate import config

    p = d + "/dialgate.json"
    with open(p, "w") as f:
        f.write(json.dumps(user))
    return Gateway(config.load(p)), p


def test_config_set_checks_then_saves_for_next_start():
    from dialgate import config

    d = fwtest.tempdir("set")
    try:
        gw, p = _gw_from_file(d, {"profile": "host", "spool": {"path": d + "/spool"}})
        run = gw.commands.run
        synced = []
        real = compat.sync_dir
        compat.sync_dir = lambda path: synced.append(path) or real(path)
        try:
            out = run(gw, "config set net.max_connections 4")
        finally:
            compat.sync_dir = real
        assert out[-1] == "OK" and out[0].startswith("net.max_connections = 4 saved in"), out
        assert synced == [d], "the config's directory was not synced: %r" % synced  # durable at OK
        if not compat.MICROPYTHON:  # (a board's VFS has no permissions)
            import os

            assert os.stat(p).st_mode & 0o777 == 0o600, oct(os.stat(p).st_mode)  # it holds the ISP's password
        out = run(gw, "config set relay.smarthost smtp.isp.test:587")
        assert out[-1] == "OK", out
        assert run(gw, "config set smtp.listen [\"127.0.0.1:2600\", \"127.0.0.1:2601\"]")[-1] == "OK"
        assert run(gw, "config set net.max_connections 4")[-1] == "OK"  # listed once
        st = run(gw, "status")
        assert st[-2] == "config: saved, in force after restart: net.max_connections relay.smarthost smtp.listen", st
        with open(p) as f:
            before = f.read()
        assert run(gw, "config set net.max_connections many") == [
            "ERR net.max_connections: expected an integer, got a string"]
        assert run(gw, "config set smpt.listen []") == ["ERR smpt.listen: unknown key"]
        assert run(gw, "config set net.max_connections") == ["ERR usage: config set KEY VALUE"]
        with open(p) as f:
            assert f.read() == before  # a refused value leaves the file as it was
        assert not compat.exists(p + ".tmp")
        out = run(gw, "config set modem.number 5550100")  # a string key takes digits as the text they are
        assert out[0].startswith('modem.number = "5550100" saved'), out
        with open(p) as f:
            before = f.read()
        # a value that fails only beside the others: refused as the next start would refuse it
        out = run(gw, 'config set console.listen ["0.0.0.0:2323"]')
        if compat.MICROPYTHON and out[-1] == "OK":  # 128K with a gateway loaded: no room for the whole check,
            assert out[0].endswith("(too little heap free to check the whole file: the start checks it)"), out
            assert run(gw, 'config set console.listen ["127.0.0.1:2323"]')[-1] == "OK"  # (said so, not silent)
        else:
            assert out == ["ERR console.listen: 0.0.0.0 is not a loopback address: set console.password first"], out
        assert run(gw, "config set session.etrn [\"office.test\"]")[-1] == "OK"  # relay.smarthost is set above
        with open(p) as f:
            assert '"session"' in f.read()
        gw.commands.unload()  # the next start sees the file without this gateway's console in the heap
        compat.unload("dialgate.config_edit")
        before = out = synced = real = None
        compat.gc_collect()
        # what the next start sees, after a save cut inside compat.replace on FAT
        # (removed, not yet renamed): config_load puts the complete tmp in place
        compat.replace(p, p + ".tmp")
        cfg = config.load(p)
        assert compat.exists(p) and not compat.exists(p + ".tmp")
        assert cfg["net.max_connections"] == 4
        assert cfg["relay.smarthost"] == "smtp.isp.test:587"
        assert cfg["smtp.listen"] == ["127.0.0.1:2600", "127.0.0.1:2601"]
        assert gw.cfg["net.max_connections"] == 64  # the running gateway is unchanged (host profile)
    finally:
        fwtest.rmtree(d)


def test_passwords_are_never_shown():
    d = fwtest.tempdir("set")
    try:
        gw, p = _gw_from_file(d, {"profile": "host", "relay": {"password": "s3cret"}})
        out = gw.commands.run(gw, "config get relay.password")
        assert out == ['relay.password = "********" (set)', "OK"], out
        assert gw.commands.run(gw, "config get link.password") == ['link.password = ""', "OK"]
        out = gw.commands.run(gw, "config set relay.password n3w-s3cret")
        assert "n3w-s3cret" not in out[0] and out[-1] == "OK", out
    finally:
        fwtest.rmtree(d)


def _stops(gw, line):
    """Run `line` as the console would, inside a loop -> (reply, stopping set at
    once, stopping set 0.5 s later)."""
    import asyncio

    async def go():
        gw.stopping = asyncio.Event()
        out = gw.commands.run(gw, line)
        at_once = gw.stopping.is_set()
        await asyncio.sleep(0.5)
        for t in gw.tasks:
            t.cancel()
        return out, at_once, gw.stopping.is_set()

    return asyncio.run(go())


def test_shutdown_stops_the_gateway_once_its_reply_is_out():
    gw = _gw()
    out, at_once, later = _stops(gw, "shutdown")
    assert out[-1] == "OK" and out[0].startswith("stopping: "), out
    assert not at_once and later  # the reply leaves before net closes the connections
    assert gw.restart is False


def test_shutdown_is_refused_while_a_watchdog_runs():
    gw = _gw()
    gw.wdt = object()  # a started machine.WDT: stopping would only reset the board
    out, at_once, later = _stops(gw, "shutdown")
    assert out[-1].startswith("ERR the watchdog (board.watchdog_ms) would reset the board"), out
    assert not later


def test_restart_checks_the_saved_config_first():
    import json

    d = fwtest.tempdir("rst")
    try:
        user = {"profile": "host", "spool": {"path": d + "/spool"}}
        gw, p = _gw_from_file(d, user)
        with open(p, "w") as f:  # edited by hand after the start: a key misspelt
            f.write(json.dumps({"profile": "host", "spool": {"path": d + "/spool"}, "smpt": {"listen": []}}))
        out, at_once, later = _stops(gw, "restart")
        assert len(out) == 1 and out[0].startswith("ERR config: ") and out[0].endswith("(not restarted)"), out
        assert "smpt" in out[0], out
        assert not later and gw.restart is False  # still serving
        assert "dialgate.config_load" not in sys.modules  # the check gave its code back
        with open(p, "w") as f:
            f.write(json.dumps(user))
        out, at_once, later = _stops(gw, "restart")
        assert out == ["restarting with %s: a call in progress hangs up first" % p, "OK"], out
        assert not at_once and later and gw.restart is True  # main() starts it again
    finally:
        fwtest.rmtree(d)


def test_restart_needs_a_config_file():
    gw = _gw()
    out, at_once, later = _stops(gw, "restart")
    assert out == ["ERR this gateway was not started from a config file: nothing to restart from"], out
    assert not later


def test_out_of_memory_is_an_err_and_the_console_keeps_serving():
    """A board's heap full or in pieces: a command that cannot allocate, or a
    long reply (help's is one block of ~2 KB) that cannot be joined, answers
    ERR and the next command is served. Before, the session crashed, which
    closes the connection, and the UART console cannot be opened again."""
    gw = _gw()
    s = ConsoleSession(("127.0.0.1", 1), gw, gw.commands)
    real = s._lines
    calls = []

    def tight(lines):
        calls.append(len(lines))
        if len(calls) == 2:  # the greeting is the first: the help reply cannot be joined
            raise MemoryError("memory allocation failed, allocating 2065 bytes")
        return real(lines)

    def hungry(gw, args):
        raise MemoryError()

    s._lines = tight
    gw.commands.add("eat", hungry, "eat", "allocate too much")
    out = _lines(fwtest.drive(s, b"help\r\neat\r\nconfig get hostname\r\n", piece=5))
    assert out[2] == out[3] == "ERR out of memory: try again", out  # (it said "internal error" for eat)
    assert out[4:] == ['hostname = "gw.office.test"', "OK"], out
