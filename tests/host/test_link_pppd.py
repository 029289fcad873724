"""The pppd link: a stand-in pppd runs our real connect program on a "tty" that is
a socket to the modem emulator, then detaches like `updetach`, or exits with a
pppd(8) exit status; the link maps each to an outcome."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from pathlib import Path

import pytest
from modem_emu import ModemEmulator, link_config

from dialgate import link, modem
from dialgate.link_pppd import _alive

FAKE_PPPD = r'''#!{python}
"""Stand-in pppd: DEVICE SPEED OPTIONS... connect PROG updetach ..., or call PEER ... (see test_link_pppd.py)."""
import os, signal, socket, subprocess, sys, time
args = sys.argv[1:]
log = open(os.environ["FAKE_PPPD_LOG"], "a")
log.write(" ".join(args) + "\n"); log.flush()
if os.environ.get("FAKE_PPPD_EXIT"):
    sys.exit(int(os.environ["FAKE_PPPD_EXIT"]))
host, port = os.environ["FAKE_PPPD_TTY"].split(":")
tty = socket.create_connection((host, int(port)))
if args[0] == "call":  # options from the peers file, as pppd reads them
    import shlex
    opts = shlex.split(open(os.path.join(os.environ["FAKE_PPPD_PEERS"], args[1])).read(), comments=True)
    args = opts + args[2:]
    log.write("peers: " + " ".join(args) + "\n"); log.flush()
prog = args[args.index("connect") + 1]
rc = subprocess.call(["/bin/sh", "-c", prog], stdin=tty.fileno(), stdout=tty.fileno())
if rc != 0:
    sys.exit(8)  # pppd: the connect script failed
if os.environ.get("FAKE_PPPD_LCP_FAIL"):
    sys.exit(10)
r, w = os.pipe()
if os.fork():
    os.read(r, 1)  # updetach: exit 0 once the "link" is up
    sys.exit(0)
with open(os.environ["FAKE_PPPD_PIDFILE"], "w") as f:
    f.write("%d\nppp0\n" % os.getpid())
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
os.write(w, b"u")
while True:
    time.sleep(1)
'''


@pytest.fixture
def pppd(tmp_path, monkeypatch):
    exe = tmp_path / "pppd"
    exe.write_text(FAKE_PPPD.replace("{python}", sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("FAKE_PPPD_LOG", str(tmp_path / "pppd.log"))
    monkeypatch.setenv("FAKE_PPPD_PIDFILE", str(tmp_path / "ppp-dialgate.pid"))
    emus: list[ModemEmulator] = []

    def make(scenarios, **env):
        emu = ModemEmulator(scenarios, bps=33600)
        emus.append(emu)
        monkeypatch.setenv("FAKE_PPPD_TTY", f"127.0.0.1:{emu.serial}")
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        over = {"link.type": "pppd", "link.pppd": str(exe), "link.pppd_pidfile": str(tmp_path / "ppp-dialgate.pid"),
                "spool.path": str(tmp_path / "spool"), "modem.port": "/dev/ttyUSB0", "link.user": "office"}
        return emu, link.make_link(link_config(emu, over))

    yield make
    for e in emus:
        e.stop()


def test_pppd_link_up_then_down(pppd, tmp_path):
    emu, lk = pppd(["answer"])

    async def go():
        assert await lk.up() == link.UP
        assert lk.is_up() and lk.speed == 33600
        pid = lk.pid
        argv = (tmp_path / "pppd.log").read_text().split()
        assert argv[:2] == ["/dev/ttyUSB0", "115200"]
        assert {"updetach", "connect", "noauth"} <= set(argv) and argv[argv.index("user") + 1] == "office"
        assert "STATUS online" in emu.status()
        await lk.down()
        assert not lk.is_up()
        for _ in range(50):  # pppd's exit closed the tty: the modem saw DTR drop
            if "STATUS command" in emu.status():
                break
            time.sleep(0.05)
        assert "STATUS command" in emu.status()
        assert not _alive(pid)  # (a zombie if nobody reaps it in this container)

    asyncio.run(go())


def test_peers_file_holds_port_connect_and_privileged_options(pppd, tmp_path, monkeypatch):
    """link.pppd_peer: `pppd call PEER` with only unprivileged options of ours on
    the command line; the connect program in the peers file dials (make install-pi's layout)."""
    _emu, lk = pppd(["answer"])
    peers = tmp_path / "peers"
    peers.mkdir()
    fw = Path(__file__).resolve().parents[2] / "firmware"
    settings = Path(lk.dir) / "dial.json"
    (peers / "dialgate").write_text(f"# dialgate\n/dev/ttyUSB0\n115200\nnoauth\nlock\n"
                                    f'connect "env PYTHONPATH={fw} {sys.executable} -m dialgate.link_pppd connect '
                                    f'{settings}"\nlinkname dialgate\n')
    monkeypatch.setenv("FAKE_PPPD_PEERS", str(peers))
    lk.cfg._v["link.pppd_peer"] = "dialgate"

    async def go():
        assert await lk.up() == link.UP
        first = (tmp_path / "pppd.log").read_text().splitlines()[0].split()
        assert first == ["call", "dialgate", "user", "office", "updetach", "maxfail", "1"]
        await lk.down()

    asyncio.run(go())


def test_connect_program_outcome_survives_pppd_exit_8(pppd):
    _emu, lk = pppd(["busy"])
    assert asyncio.run(lk.up()) == modem.BUSY
    assert "last attempt: busy" in lk.describe()


@pytest.mark.parametrize("code,outcome", [(10, link.PPP_FAILED), (16, modem.NO_CARRIER), (19, "auth-failed"),
                                          (6, "port-locked"), (7, link.NO_PORT), (99, "pppd-exit-99")])
def test_pppd_exit_codes(pppd, code, outcome):
    _emu, lk = pppd(["answer"], FAKE_PPPD_EXIT=str(code))
    assert asyncio.run(lk.up()) == outcome


def test_negotiation_failure_after_connect(pppd):
    emu, lk = pppd(["answer"], FAKE_PPPD_LCP_FAIL="1")
    assert asyncio.run(lk.up()) == link.PPP_FAILED


def test_missing_pppd(pppd, tmp_path):
    _emu, lk = pppd(["answer"])
    lk.cfg._v["link.pppd"] = str(tmp_path / "nope")
    assert asyncio.run(lk.up()) == "pppd-missing"


def test_connect_program_alone(tmp_path):
    """`python3 -m dialgate.link_pppd connect FILE` on a socket "tty": exit 0, status CONNECTED."""
    import json
    import socket
    import subprocess

    emu = ModemEmulator(["answer"], bps=33600)
    try:
        settings = {"modem.port": "/dev/ttyS0", "modem.baud": 115200, "modem.profile": "gsm", "modem.number": "",
                    "modem.init": [], "modem.apn": "internet", "modem.speaker": False, "modem.dial": "",
                    "modem.command_timeout": 1, "modem.connect_timeout": 3, "modem.guard_ms": 50, "modem.redial": 0,
                    "modem.redial_delay": 0, "modem.redial_delay_max": 0, "status": str(tmp_path / "status")}
        path = tmp_path / "dial.json"
        path.write_text(json.dumps(settings))
        with socket.create_connection(("127.0.0.1", emu.serial)) as tty:
            env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "firmware"))
            rc = subprocess.call([sys.executable, "-m", "dialgate.link_pppd", "connect", str(path)],
                                 stdin=tty.fileno(), stdout=tty.fileno(), env=env, timeout=30)
            assert rc == 0
            assert (tmp_path / "status").read_text().startswith("connected 33600 CONNECT 33600/ARQ")
    finally:
        emu.stop()
