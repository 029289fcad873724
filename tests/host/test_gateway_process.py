"""The gateway as a real process on both runtimes: boot, console, bad config, stop."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from gateway import ROOT, UPY, Gateway
from host_tools.console_client import ConsoleError

RUNTIMES = ["cpython", "upy"]
# A whole gateway process under the unix port, from .mpy: 160K, issue #15's
# stock-firmware target (a Pico W has ~190 KB with Wi-Fi up). What stays
# resident after boot is still held under 128K below; but the first console
# command interns enough names for MicroPython's sixth qstr pool, one ~7.2 KB
# block (measured: micropython.qstr_info(), 5 -> 6 pools), which a 128K heap
# no longer has in one piece after boot (docs/architecture.md, "Memory").
GW_HEAP = "160K"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_boots_and_answers_status(tmp_path, runtime):
    gw = Gateway(tmp_path, runtime=runtime, mpy=True, heap=GW_HEAP)  # upy: from .mpy, as a board runs
    try:
        ok, lines, last = gw.command("status")
        assert ok and last == "OK", lines
        fields = dict(x.split(": ", 1) for x in lines)
        assert fields["version"]
        assert fields["connections"].startswith("1 of 64")  # host profile
        assert f"smtp 127.0.0.1:{gw.smtp_port}" in fields["listening"]
        assert f"pop3 127.0.0.1:{gw.pop3_port}" in fields["listening"]
        used, free = fields["heap"].split()[1], fields["heap"].split()[3]
        if runtime == "upy":
            assert int(used) + int(free) <= 160 * 1024
    finally:
        assert gw.stop() in (0, 130, -2), gw.output()


@pytest.mark.parametrize("mpy", [False, True], ids=["py", "mpy"])
def test_micropython_heap_after_boot(tmp_path, mpy):
    """Boots under the unix port; prints heap used after boot.

    From .mpy (how a board runs it) at GW_HEAP, holding what stays resident
    under the 128K test budget. From .py the compiler
    needs a transient peak on top of what stays resident (DESIGN.md: a
    550-line module needs ~100 KiB to compile), so that run gets 256K and we compare what stays resident
    after the boot's collection. Below that the compile peak's fragmentation decides, not the size:
    with the console login code 184K, 192K, 208K and 224K failed compiling the session owner's modules
    at start while 196K and 200K passed (128K fails at spool.py)."""
    gw = Gateway(tmp_path, runtime="upy", heap=GW_HEAP if mpy else "256K", mpy=mpy)
    try:
        ok, lines, _ = gw.command("status")
        assert ok
        heap = [x for x in lines if x.startswith("heap:")][0]
        used = int(heap.split()[2])
        print(f"\nMicroPython heap after boot ({'.mpy at ' + GW_HEAP if mpy else '.py at 256K'}): {heap}")
        assert used < 128 * 1024
    finally:
        gw.stop()


def test_romfs_boots_serves_and_costs_less_than_mpy(tmp_path):
    """The code in a ROMFS image (as on a board with a ROMFS partition; the
    image held apart, host_tools/romfs_boot.py) boots at 144K besides the image,
    takes mail by SMTP and serves it by POP3, and leaves less in the heap after
    boot than the same .mpy files do (bench_heap measures the whole day).
    144K, not 128K: measured, at 136K the first console command fails on a
    640-octet block with ~30 KB free in pieces (issue #15)."""
    import poplib
    import smtplib

    used = {}
    for romfs in (False, True):
        d = tmp_path / ("rom" if romfs else "mpy")
        d.mkdir()
        gw = Gateway(d, runtime="upy", heap="144K" if romfs else GW_HEAP, mpy=True, romfs=romfs)
        try:
            ok, lines, _ = gw.command("status")
            assert ok, lines
            used[romfs] = int([x for x in lines if x.startswith("heap:")][0].split()[2])
            if romfs:
                assert gw.command("user add alice alice-secret")[0]
                with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=10) as s:
                    s.sendmail("bob@office.test", ["alice@office.test"], "Subject: rom\r\n\r\nfrom ROMFS\r\n")
                pop = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=10)
                pop.user("alice")
                pop.pass_("alice-secret")
                assert b"from ROMFS" in b"\n".join(pop.retr(1)[1])
                pop.quit()
        finally:
            gw.stop()
        if romfs:  # romfs_boot's line: the heap the image itself takes, counted apart
            used[romfs] -= int(gw.output().split("romfs: image ")[1].split(", heap ")[1].split()[0])
    print(f"\nheap after boot: .mpy {used[False]}, ROMFS {used[True]} (image apart)")
    assert used[True] < used[False] * 0.9, used


def test_sigterm_stops_cleanly(tmp_path):
    import signal

    gw = Gateway(tmp_path)
    gw.proc.send_signal(signal.SIGTERM)  # what systemd sends (gw.stop() uses the console)
    assert gw.proc.wait(timeout=10) == 0
    out = gw.output()
    assert "stopping" in out and "Traceback" not in out, out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_console_restart_applies_config_set_and_shutdown_exits_0(tmp_path, runtime):
    """`config set` then `restart`: the new value is in force, on the same ports,
    in the same process (CPython executes itself again: same pid; the unix port
    runs again in-process); mail accepted before is still there; `shutdown` exits 0."""
    import smtplib

    gw = Gateway(tmp_path, runtime=runtime, mpy=True, heap="256K")  # SMTP, POP3, config_edit: see bench_heap
    try:
        pid = gw.proc.pid
        assert gw.command("user add bob pw-bob-1")[0]
        with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=10) as c:
            c.sendmail("alice@office.test", ["bob@office.test"], b"Subject: before\r\n\r\nkept\r\n")
        ok, lines, last = gw.command("config set smtp.max_size 200000")
        assert ok, (lines, last)
        assert gw.command("config get smtp.max_size")[1] == ["smtp.max_size = 10485760"]  # not yet
        ok, lines, _ = gw.command("restart")
        assert ok and lines[0].startswith("restarting with "), lines
        deadline = time.monotonic() + 15
        lines = []
        while lines != ["smtp.max_size = 200000"]:  # the old gateway answers until it stops (0.2 s)
            assert time.monotonic() < deadline and gw.proc.poll() is None, (lines, gw.output())
            time.sleep(0.1)
            try:
                lines = gw.command("config get smtp.max_size")[1]
            except (OSError, ConsoleError):  # between the old listeners closing and the new opening
                lines = []
        assert gw.proc.pid == pid and gw.proc.poll() is None
        with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=10) as c:
            assert "size" in c.ehlo()[1].decode().lower() and c.esmtp_features["size"] == "200000"
        import poplib

        p = poplib.POP3("127.0.0.1", gw.pop3_port, timeout=10)
        p.user("bob")
        p.pass_("pw-bob-1")
        assert p.stat()[0] == 1 and b"kept" in b"\n".join(p.retr(1)[1])
        p.quit()
        ok, lines, _ = gw.command("shutdown")
        assert ok and lines[0].startswith("stopping: "), lines
        assert gw.proc.wait(timeout=15) == 0
        out = gw.output()
        assert out.count(" up as ") == 2 and "restarting" in out and "Traceback" not in out, out
        assert "Error" not in out, out
    finally:
        gw.stop()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_smtp_and_pop3_load_on_first_use(tmp_path, runtime):
    """Both protocol stacks load on first use (from .mpy); prints the heap they take.

    At 256K: on the 64-bit unix port the core plus both stacks need ~150K
    (docs/architecture.md, "Memory"); a 32-bit board needs roughly 60% of that."""
    gw = Gateway(tmp_path, runtime=runtime, mpy=True, heap="256K")
    try:
        with socket.create_connection(("127.0.0.1", gw.smtp_port), timeout=5) as s:
            assert s.recv(200).startswith(b"220 gw.office.test ESMTP")
            s.sendall(b"QUIT\r\n")
            assert s.recv(200).startswith(b"221")
        with socket.create_connection(("127.0.0.1", gw.pop3_port), timeout=5) as s:
            assert s.recv(200).startswith(b"+OK")
            s.sendall(b"QUIT\r\n")
            assert s.recv(200).startswith(b"+OK")
        ok, lines, _ = gw.command("status")
        assert ok, lines
        print(f"\n{runtime}: heap with SMTP and POP3 loaded: {[x for x in lines if x.startswith('heap')][0]}")
    finally:
        gw.stop()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_endless_line_does_not_grow_memory(tmp_path, runtime):
    """10 MB without CRLF to the console: one ERR, no growth, then in sync again.

    At 192K, the least heap at which this harness's gateway serves a console
    command at all: at 160K and 176K its first `status` fails the same way with
    or without the long line before it (MemoryError on a 640-entry qstr pool as
    the console interns its names; measured 3 December 2026, which corrects an
    earlier note that blamed the line). At 192K the 10 MB moved the heap in use
    by 32 octets (117,536 before, 117,504 after)."""
    gw = Gateway(tmp_path, runtime=runtime, heap="192K", mpy=True)
    try:
        s = socket.create_connection(("127.0.0.1", gw.console_port), timeout=20)
        s.recv(200)
        chunk = b"A" * 65536
        for _ in range(160):
            s.sendall(chunk)
        s.sendall(b"\r\nconfig get hostname\r\n")
        buf = b""
        deadline = time.monotonic() + 30
        while b"OK\r\n" not in buf and time.monotonic() < deadline:
            buf += s.recv(4096)
        assert buf.startswith(b"ERR line too long"), buf
        assert b'hostname = "gw.office.test"\r\nOK\r\n' in buf, buf
        s.close()
        ok, lines, _ = gw.command("status")
        assert ok  # still serving
    finally:
        gw.stop()


def test_connection_cap_refuses_politely(tmp_path):
    gw = Gateway(tmp_path, {"net.max_connections": 2})
    try:
        a = socket.create_connection(("127.0.0.1", gw.console_port), timeout=5)
        a.recv(200)
        b = socket.create_connection(("127.0.0.1", gw.console_port), timeout=5)
        b.recv(200)
        c = socket.create_connection(("127.0.0.1", gw.console_port), timeout=5)
        assert c.recv(200) == b"ERR too many connections\r\n"
        c.close()
        a.close()
        time.sleep(0.3)
        ok, _, _ = gw.command("status")
        assert ok
        b.close()
    finally:
        gw.stop()


BAD = [
    ({"smpt": {"listen": []}}, "config: smpt.listen: unknown key"),
    ({"net": {"max_connections": "many"}}, "config: net.max_connections: expected an integer, got a string"),
    ({"smtp": {"listen": ["127.0.0.1:70000"]}}, 'config: smtp.listen: bad port in "127.0.0.1:70000" (expected 1-65535)'),
    ({"pop3": {"listen": ["1.2.3:110"]}}, 'config: pop3.listen: bad address "1.2.3:110"'),
    ({"hostname": 7}, "config: hostname: expected a string, got an integer"),
    ({"profile": "toaster"}, 'config: profile: no board profile named "toaster" (looked in boards/)'),
    ({"domains": []}, "config: domains: needs at least one local domain"),
]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("cfg,message", BAD, ids=[m.split(":")[1].strip() for _, m in BAD])
def test_bad_config_one_line_exit_2(tmp_path, runtime, cfg, message):
    cfg = dict({"profile": "host"}, **cfg)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(cfg))
    if runtime == "cpython":
        cmd = [sys.executable, "-m", "dialgate", "--config", str(p)]
        env = {"PYTHONPATH": str(ROOT / "firmware"), "PATH": "/usr/bin:/bin"}
    else:
        cmd = [UPY, "-X", "heapsize=128K", str(ROOT / "firmware" / "main.py"), "--config", str(p)]
        env = {"PATH": "/usr/bin:/bin"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    assert r.stderr == f"dialgate: {message}\n"


def test_missing_config_file_and_bad_json(tmp_path):
    env = {"PYTHONPATH": str(ROOT / "firmware"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "dialgate", "--config", str(tmp_path / "nope.json")],
                       env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.startswith("dialgate: config: config: cannot read"), r.stderr
    p = tmp_path / "c.json"
    p.write_text("{ not json")
    r = subprocess.run([sys.executable, "-m", "dialgate", "--config", str(p)], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "is not valid JSON" in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_corrupt_users_file_gives_temporary_errors_and_keeps_serving(tmp_path, runtime):
    """Bad data on flash is a local error: 421 / -ERR [SYS/TEMP] (clients retry), never silence."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "users.json").write_text('{"users": {"bob": ')  # cut short
    gw = Gateway(tmp_path, runtime=runtime, mpy=True, heap="256K")
    try:
        with socket.create_connection(("127.0.0.1", gw.smtp_port), timeout=5) as s:
            assert s.recv(200) == b"421 4.3.0 Local error, try again later\r\n"
        with socket.create_connection(("127.0.0.1", gw.pop3_port), timeout=5) as s:
            assert s.recv(200) == b"-ERR [SYS/TEMP] Local error, try again later\r\n"
        ok, lines, _ = gw.command("log 5")
        assert ok and any("cannot start a session" in x for x in lines), lines
        (spool / "users.json").write_text('{"users": {}, "aliases": {}}')  # the admin restores it
        with socket.create_connection(("127.0.0.1", gw.smtp_port), timeout=5) as s:
            assert s.recv(200).startswith(b"220 ")
    finally:
        gw.stop()
