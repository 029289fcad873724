"""The modem emulator by itself, through pyserial socket:// as a terminal would:
echo, result forms, S-registers, escape guard time, &C/&D, X levels, aborts."""

from __future__ import annotations

import socket
import time

import pytest
import serial
from modem_emu import ModemEmulator


@pytest.fixture
def emu():
    e = ModemEmulator(["answer"], bps=33600, scale=0.01)
    yield e
    e.stop()


class Term:
    def __init__(self, emu: ModemEmulator) -> None:
        self.s = serial.serial_for_url(f"socket://127.0.0.1:{emu.serial}", timeout=0.05)

    def cmd(self, text: str | bytes, until: bytes = b"OK\r\n", timeout: float = 3.0) -> bytes:
        self.s.write(text if isinstance(text, bytes) else text.encode() + b"\r")
        return self.read(until, timeout)

    def read(self, until: bytes, timeout: float = 3.0) -> bytes:
        buf = b""
        deadline = time.monotonic() + timeout
        while until not in buf and time.monotonic() < deadline:
            buf += self.s.read(256)
        return buf


def test_echo_and_verbose_results(emu):
    t = Term(emu)
    assert t.cmd("AT") == b"AT\r\r\nOK\r\n"
    assert t.cmd("ATI3") == b"ATI3\r\r\ndialgate modem emulator\r\n\r\nOK\r\n"
    assert t.cmd("ATE0") == b"ATE0\r\r\nOK\r\n"
    assert t.cmd("AT") == b"\r\nOK\r\n"
    assert t.cmd("ATFOO", b"ERROR\r\n") == b"\r\nERROR\r\n"
    assert t.cmd("ATV0", b"0\r") == b"0\r"
    assert t.cmd("ATQ9", b"4\r") == b"4\r"  # wrong argument -> ERROR, numeric form
    assert t.cmd("ATV1Q0") == b"\r\nOK\r\n"


def test_s_registers_and_repeat(emu):
    t = Term(emu)
    t.cmd("ATE0")
    assert t.cmd("ATS7?") == b"\r\n050\r\n\r\nOK\r\n"
    assert t.cmd("ATS7=30S12=10") == b"\r\nOK\r\n"
    assert t.cmd("ATS7?") == b"\r\n030\r\n\r\nOK\r\n"
    assert t.cmd(b"A/") == b"\r\n030\r\n\r\nOK\r\n"  # repeat the last command line
    assert t.cmd("ATZ") == b"\r\nOK\r\n"
    assert t.cmd("ATS7?").endswith(b"050\r\n\r\nOK\r\n")
    assert t.cmd("ATE0&FS7?").endswith(b"\r\n050\r\n\r\nOK\r\n")


def test_dial_escape_and_hangup(emu):
    t = Term(emu)
    t.cmd("ATE0")
    assert t.cmd("ATDT5551234", b"\r\n", 5).startswith(b"\r\nCONNECT 33600/ARQ/V34/LAPM/V42BIS")
    assert "STATUS online" in emu.status()
    t.s.write(b"a+++b")  # not an escape: no guard time, and more data after it
    time.sleep(0.3)
    assert "STATUS online" in emu.status()
    time.sleep(0.3)
    assert t.cmd(b"+++", b"OK\r\n") == b"\r\nOK\r\n"  # guard time 1 s * 0.01 before and after
    assert "STATUS online-command" in emu.status()
    assert t.cmd("ATO", b"\r\n") .startswith(b"\r\nCONNECT 33600")
    time.sleep(0.05)
    t.cmd(b"+++")
    assert t.cmd("ATH0") == b"\r\nOK\r\n"
    assert "STATUS command" in emu.status()


def test_x0_hides_busy_and_v0_connect(emu):
    t = Term(emu)
    t.cmd("ATE0X0")
    emu.control_command("SCENARIO busy,answer")
    assert t.cmd("ATD5551234", b"\r\n\r\n", 5) == b"\r\nNO CARRIER\r\n"
    assert t.cmd("ATX4V0D5551234", b"\r", 5) == b"1\r"  # 33600 has no numeric code: plain CONNECT


def test_character_aborts_dial(emu):
    t = Term(emu)
    t.cmd("ATE0")
    emu.control_command("SCENARIO silent")
    t.s.write(b"ATDT5551234\r")
    time.sleep(0.2)
    assert t.cmd(b"x", b"NO CARRIER\r\n") == b"\r\nNO CARRIER\r\n"
    assert "STATUS command" in emu.status()


def test_dtr_drop_with_d2_and_d0(emu):
    t = Term(emu)
    t.cmd("ATE0&D0")
    ctl = socket.create_connection(("127.0.0.1", emu.control))
    assert t.cmd("ATDT1", b"\r\n", 5).startswith(b"\r\nCONNECT")
    ctl.sendall(b"DTR 0\n")
    time.sleep(0.2)
    assert "STATUS online" in emu.status()  # &D0: DTR ignored
    ctl.sendall(b"DTR 1\n")
    time.sleep(0.05)
    t.cmd(b"+++")
    assert t.cmd("AT&D2O", b"\r\n").startswith(b"\r\nCONNECT")
    ctl.sendall(b"DTR 0\n")
    assert t.read(b"NO CARRIER\r\n") == b"\r\nNO CARRIER\r\n"
    assert "STATUS command" in emu.status()
    lines = b""
    ctl.settimeout(1)
    while b"DCD 0" not in lines:
        lines += ctl.recv(4096)
    assert b"DCD 1" in lines and b"BYTES" in lines
    ctl.close()


def test_gsm_commands(emu):
    t = Term(emu)
    t.cmd("ATE0")
    assert t.cmd('AT+CGDCONT=1,"IP","internet"') == b"\r\nOK\r\n"
    assert b'+CGDCONT: 1,"IP","internet"' in t.cmd("AT+CGDCONT?")
    assert t.cmd("ATD*99#", b"\r\n", 5).startswith(b"\r\nCONNECT")


def test_carrier_drop_after_bytes_on_the_serial_data_phase(emu):
    t = Term(emu)
    t.cmd("ATE0")
    emu.control_command("SCENARIO answer+drop-bytes=1000")
    assert t.cmd("ATDT1", b"\r\n", 5).startswith(b"\r\nCONNECT")
    t.s.write(b"z" * 1500)
    assert t.read(b"NO CARRIER\r\n") == b"\r\nNO CARRIER\r\n"


def test_stuck_modem_wakes_on_dtr_toggle(emu):
    emu.control_command("SCENARIO stuck")
    t = Term(emu)
    assert t.cmd("AT", timeout=0.5) == b""
    ctl = socket.create_connection(("127.0.0.1", emu.control))
    ctl.sendall(b"DTR 0\n")
    time.sleep(0.05)
    ctl.sendall(b"DTR 1\n")
    time.sleep(0.1)
    assert t.cmd("AT") == b"AT\r\r\nOK\r\n"
    ctl.close()


def test_bad_arguments_exit_2():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "host_tools.modem_emulator", "--scenario", "nonsense"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "unknown part" in r.stderr


def test_unsolicited_ring_and_ri_line():
    e = ModemEmulator(["answer"], scale=0.01, extra=["--ring-every", "20"])  # every 0.2 s
    try:
        ctl = socket.create_connection(("127.0.0.1", e.control))
        t = Term(e)
        assert t.read(b"RING\r\n") == b"\r\nRING\r\n"
        ctl.settimeout(2)
        lines = b""
        while b"RI 1" not in lines:
            lines += ctl.recv(4096)
        ctl.close()
    finally:
        e.stop()
