"""Start the modem emulator (host_tools/modem_emulator.py) as a process on free ports."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from gateway import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent.parent


class ModemEmulator:
    """An emulator process. `forward`: {gateway-side port: ISP target port};
    `reverse`: {ISP-side port: gateway target port}. Times scale by `scale`."""

    def __init__(self, scenarios: list[str] | None = None, bps: int = 1_000_000, rtt_ms: float = 0.0,
                 scale: float = 0.001, forward: dict[int, int] | None = None,
                 reverse: dict[int, int] | None = None, extra: list[str] | None = None) -> None:
        self.serial = free_port()
        self.control = free_port()
        cmd = [sys.executable, "-m", "host_tools.modem_emulator", "--serial", f"127.0.0.1:{self.serial}",
               "--control", f"127.0.0.1:{self.control}", "--bps", str(bps), "--rtt-ms", str(rtt_ms),
               "--time-scale", str(scale)]
        for s in scenarios or []:
            cmd += ["--scenario", s]
        for a, b in (forward or {}).items():
            cmd += ["--forward", f"127.0.0.1:{a}=127.0.0.1:{b}"]
        for a, b in (reverse or {}).items():
            cmd += ["--reverse", f"127.0.0.1:{a}=127.0.0.1:{b}"]
        if not forward and not reverse:
            cmd += ["--forward", f"127.0.0.1:{free_port()}=127.0.0.1:9"]
        cmd += extra or []
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_port(self.serial, proc=self.proc)
        wait_port(self.control, proc=self.proc)

    @property
    def url(self) -> str:
        return f"emu://127.0.0.1:{self.serial}?control={self.control}"

    def control_command(self, line: str, want: str | None = None, timeout: float = 5.0) -> str:
        """Send one control-channel line; return the first reply line starting with `want`."""
        with socket.create_connection(("127.0.0.1", self.control), timeout=timeout) as s:
            s.sendall(line.encode() + b"\n")
            if want is None:
                time.sleep(0.05)
                return ""
            buf = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                buf += s.recv(4096)
                for ln in buf.decode().splitlines():
                    if ln.startswith(want):
                        return ln
            raise TimeoutError(f"no {want} reply to {line}: {buf!r}")

    def status(self) -> str:
        return self.control_command("STATUS", "STATUS")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""


def link_config(emu: ModemEmulator, over: dict | None = None):
    """A checked firmware Config for an emulated link to `emu`, with fast timings."""
    from dialgate import config

    flat = {
        "board.name": "host",
        "hostname": "gw.office.test",
        "domains": ["office.test"],
        "link.type": "emulated",
        "modem.port": emu.url,
        "modem.number": "5550100",
        "modem.command_timeout": 1,
        "modem.connect_timeout": 3,
        "modem.guard_ms": 50,
        "modem.redial": 0,
        "modem.redial_delay": 0,
        "log.console": False,
    }
    flat.update(over or {})
    return config.build(flat)
