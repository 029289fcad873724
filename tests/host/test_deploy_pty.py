"""make flash through the real mpremote, against the MicroPython unix port on a pty.

The "board" is a micropython process whose stdin/stdout is the master side of
a pty, with its working directory a temp folder (its "flash"); mpremote opens
the slave side, /dev/pts/N, like a USB serial port. A soft reset ends that
process, so the deploy runs with --resume (mpremote's `resume`) and its final
reset (machine.soft_reset() where there is no machine.reset()) is seen as the
process ending. Then the gateway boots from the deployed files and serves
SMTP (smtplib) and POP3 (poplib).
"""

from __future__ import annotations

import json
import os
import poplib
import smtplib
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest

from gateway import ROOT, UPY, free_port, wait_port
from host_tools import deploy
from host_tools.console_client import ConsoleClient

# The deployed pico_w image with its STARTTLS certificate loaded, one SMTP then one
# POP3 session (measured on the unix port: 160K fails at the SMTP session's start,
# 192K at the POP3 one, 224K passes). Getting that into a board's heap is issue
# #15's memory work, not this test's: 256K keeps it about the deploy.
GW_HEAP = "256K"
# The board's REPL that mpremote talks to: the pico_w profile's budget (190 KB);
# the deploy's probe of ~70 file hashes needs a 6.4 KB block, which a 128K REPL
# stopped finding once the image had 65 modules.
BOARD_HEAP = f"{json.loads((ROOT / 'boards' / 'pico_w.json').read_text())['board']['heap'] // 1024}K"


class PtyBoard:
    """The unix port's REPL on a pty, in `flash` (its cwd)."""

    def __init__(self, flash: Path, prelude: str = "") -> None:
        flash.mkdir(exist_ok=True)
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.slave = slave  # kept open: the pty stays up between mpremote's sessions
        self.port = os.ttyname(slave)
        self.proc = subprocess.Popen([UPY, "-X", f"heapsize={BOARD_HEAP}"], stdin=self.master, stdout=self.master,
                                     stderr=self.master, cwd=flash, close_fds=True)
        if prelude:  # typed at the friendly REPL before deploy connects
            os.write(slave, prelude.encode() + b"\r\n")
            time.sleep(0.5)

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self.slave)
        os.close(self.master)
        return self.proc.returncode


def flash_cmd(port: str, tmp: Path, *more: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host_tools.deploy", "--board", "pico_w", "--port", port, "--resume",
                           "--lan-tls", str(tmp / "lan"), *more], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def deploy_once(flash: Path, tmp: Path, *more: str) -> subprocess.CompletedProcess:
    board = PtyBoard(flash)
    try:
        r = flash_cmd(board.port, tmp, *more)
        if r.returncode == 0:  # the final reset is a soft reset here: the process ends
            assert board.proc.wait(timeout=10) is not None
        return r
    finally:
        board.close()


def test_flash_over_pty_then_again_copies_nothing_then_serves_smtp_and_pop3(tmp_path):
    flash = tmp_path / "board"
    r = deploy_once(flash, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    copied = [x for x in lines if x.lstrip().startswith("[")]
    print("\n" + "\n".join(lines[:1] + lines[-1:]))
    mods = ["lib/dialgate/" + m + ".mpy" for m in deploy.board_modules()]
    for m in mods:
        assert (flash / m).is_file(), m
        assert any(f" {m} (" in x for x in copied), m  # one progress line per file
    assert not (flash / "lib/dialgate/compat_cpython.mpy").exists()  # only what the board needs
    assert (flash / "boards/pico_w.json").read_bytes() == (ROOT / "boards/pico_w.json").read_bytes()
    assert json.loads((flash / "config.json").read_text())["profile"] == "pico_w"
    assert (flash / "tls/gateway.pem").is_file() and (flash / "main.py").is_file()
    assert len(copied) == len(mods) + 6  # + schema.json, main.py, profile, config, cert, key
    stamps = {p: p.stat().st_mtime_ns for p in flash.rglob("*") if p.is_file()}

    (flash / "lib/dialgate/stale.py").write_text("raise ImportError\n")  # a module this image no longer has
    r = deploy_once(flash, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 of " in r.stdout.splitlines()[0] and r.stdout.rstrip().splitlines()[-1].startswith("0 copied"), r.stdout
    assert "removed lib/dialgate/stale.py" in r.stdout and not (flash / "lib/dialgate/stale.py").exists()
    assert {p: p.stat().st_mtime_ns for p in flash.rglob("*") if p.is_file()} == stamps

    # Boot what was deployed: its profile, its certificate, a config for free loopback ports.
    smtp, pop3, console = free_port(), free_port(), free_port()
    cfg = {"profile": "pico_w", "domains": ["office.test"], "lan": ["127.0.0.1/32"],
           "smtp": {"listen": [f"127.0.0.1:{smtp}"], "tls_cert": str(flash / "tls/gateway.pem"),
                    "tls_key": str(flash / "tls/gateway.key")},
           "pop3": {"listen": [f"127.0.0.1:{pop3}"]}, "console": {"listen": [f"127.0.0.1:{console}"], "stdin": False},
           "spool": {"path": str(flash / "spool")}, "log": {"file": str(flash / "log/dialgate.log")}}
    (tmp_path / "host.json").write_text(json.dumps(cfg))
    # A board's sys.path has /lib (where make flash puts the package); the unix port's is set by MICROPYPATH.
    gw = subprocess.Popen([UPY, "-X", f"heapsize={GW_HEAP}", "main.py", "--config", str(tmp_path / "host.json")],
                          cwd=flash, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=dict(os.environ, MICROPYPATH=".frozen:lib"))
    try:
        wait_port(console, proc=gw)
        c = ConsoleClient("127.0.0.1", console)
        try:
            ok, _, _ = c.command("user add bob secret")
            assert ok
        finally:
            c.close()
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
            assert s.ehlo()[0] == 250 and s.has_extn("starttls")
            s.sendmail("carol@office.test", ["bob@office.test"], b"Subject: flashed\r\n\r\nfrom the board\r\n")
        p = poplib.POP3("127.0.0.1", pop3, timeout=30)
        try:
            p.user("bob")
            p.pass_("secret")
            assert p.stat()[0] == 1
            assert b"from the board" in b"\n".join(p.retr(1)[1])
        finally:
            p.quit()
    finally:
        gw.terminate()
        out = gw.communicate(timeout=10)[0]
    assert "dialgate" in out


def test_flash_no_board_on_the_port(tmp_path):
    r = flash_cmd(str(tmp_path / "ttyACM9"), tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"make flash: no board on {tmp_path / 'ttyACM9'}: no such port "
                                             "(is it plugged in? `ls /dev/ttyACM* /dev/ttyUSB*`)"]


def test_flash_a_port_where_no_micropython_answers(tmp_path):
    """A pty with nothing on its other side: mpremote cannot enter the raw REPL."""
    master, slave = os.openpty()
    port = os.ttyname(slave)
    try:
        tty.setraw(slave)
        r = flash_cmd(port, tmp_path)
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"make flash: no board on {port}: no MicroPython REPL answers there"]


@pytest.mark.parametrize("version, mpy, says", [
    ("(1, 22, 2)", "0x1206", "the board runs MicroPython 1.22.2; dialgate needs 1.24.0 or newer"),
    ("(1, 30, 0)", "0x1006", "imports .mpy v6.0, but mpy-cross emits v6.3"),
])
def test_flash_refuses_a_micropython_it_cannot_compile_for(tmp_path, version, mpy, says):
    """An older (or differently built) MicroPython, faked: the board's `sys` is
    replaced in sys.modules before deploy asks it; nothing is copied."""
    prelude = (f"import sys\rclass _I:\r version = {version}; _mpy = {mpy}; name = 'micropython'\r\r"
               "class _S:\r implementation = _I(); platform = 'rp2'\r\rsys.modules['sys'] = _S()")
    flash = tmp_path / "board"
    board = PtyBoard(flash, prelude)
    try:
        r = flash_cmd(board.port, tmp_path)
    finally:
        board.close()
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and says in r.stderr, r.stderr
    assert not list(flash.iterdir())


def test_flash_too_little_flash_for_the_spool_reserve(tmp_path):
    """The files fit, but not with the spool's reserve: refused before copying."""
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"spool": {"reserve": 1 << 50}}))
    flash = tmp_path / "board"
    r = deploy_once(flash, tmp_path, "--config", str(site))
    assert r.returncode == 1
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("make flash: too little flash on the board:"), line
    assert "spool.reserve" in line and not list(flash.iterdir())


def test_flash_a_board_that_goes_away_half_way(tmp_path):
    """The board's process dies after the first files: one line, and the next
    make flash copies the rest (what was already written is not copied again)."""
    flash = tmp_path / "board"
    board = PtyBoard(flash)
    try:
        p = subprocess.Popen([sys.executable, "-m", "host_tools.deploy", "--board", "pico_w", "--port", board.port,
                              "--resume", "--lan-tls", str(tmp_path / "lan")], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        assert p.stdout is not None
        for line in p.stdout:
            if "[3/" in line:
                board.proc.kill()  # the board is unplugged
                break
        out, err = p.communicate(timeout=120)
    finally:
        board.close()
    assert p.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("make flash: "), err
    print("\n" + err.strip())
    written = {f for f in flash.rglob("*.mpy")}
    r = deploy_once(flash, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    first = r.stdout.splitlines()[0]
    total = int(first.split(" of ")[1].split()[0])
    assert f"; {total - len(written) + 1} of " in first or f"; {total - len(written)} of " in first, (first, written)


def test_a_board_gone_mid_paste_is_one_line_too(monkeypatch, capsys):
    """Where the board vanishes decides what mpremote raises: in the middle of a
    raw paste its 2-octet window reply comes short, a struct.error, which once
    ended make flash with a traceback (seen in the test above, 1 run in many)."""
    import struct

    def gone(a, say):
        raise struct.error("unpack requires a buffer of 2 bytes")

    monkeypatch.setattr(deploy, "flash", gone)
    assert deploy.main(["--board", "pico_w", "--port", "/dev/ttyACM9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("make flash: lost the board on /dev/ttyACM9"), err
