"""Start a real gateway process (CPython or the MicroPython unix port) for host tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from host_tools.console_client import ConsoleClient

ROOT = Path(__file__).resolve().parent.parent.parent
UPY = str(Path(sys.executable).parent / "micropython")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class Gateway:
    """A gateway process on free loopback ports, with its own spool in `workdir`.

    `runtime`: "cpython" or "upy" (MicroPython unix port at `heap`); `mpy`: run
    the board's way, from .mpy files compiled by mpy-cross (upy only); `romfs`:
    those files in a ROMFS image (host_tools/romfs_boot.py), the heap enlarged
    by the image (upy only); `python`: the CPython that runs it (cpython only;
    default this one).
    """

    def __init__(self, workdir: Path, overrides: dict | None = None, runtime: str = "cpython",
                 heap: str = "128K", mpy: bool = False, romfs: bool = False, python: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.smtp_port, self.pop3_port, self.console_port = free_port(), free_port(), free_port()
        cfg = {
            "profile": "host",
            "smtp": {"listen": [f"127.0.0.1:{self.smtp_port}"]},
            "pop3": {"listen": [f"127.0.0.1:{self.pop3_port}"]},
            "console": {"listen": [f"127.0.0.1:{self.console_port}"]},
            "spool": {"path": str(self.workdir / "spool")},
            "log": {"file": str(self.workdir / "log" / "dialgate.log")},
        }
        if runtime == "upy":
            # A board's memory settings (boards/pico_w.json: its buffers, not the PC's
            # 4096, and its collection threshold): the unix port at a board's heap
            # stands in for the board.
            from host_tools.run_host import board_memory

            cfg["board"] = board_memory()
        for k, v in (overrides or {}).items():  # dotted keys
            d = cfg
            parts = k.split(".")
            for p in parts[:-1]:
                d = d.setdefault(p, {})
            d[parts[-1]] = v
        self.config_path = self.workdir / "config.json"
        self.config_path.write_text(json.dumps(cfg))
        self.runtime = runtime
        self.console_password = ""  # set by a test that sets one: stop() logs in with it
        if runtime == "cpython":
            cmd = [python or sys.executable, "-m", "dialgate", "--config", str(self.config_path)]
            env = dict(os.environ, PYTHONPATH=str(ROOT / "firmware"))
            cwd = ROOT
        else:
            from host_tools.upy_test import board_cmd

            if mpy or romfs:
                from host_tools.upy_test import build_tree

                tree = self.workdir / "mpy"
                build_tree(tree, compiled=True)
                (tree / "main.py").write_text((ROOT / "firmware" / "main.py").read_text())
                folder = tree
            else:
                folder = ROOT / "firmware"
            cmd = board_cmd(UPY, heap, "main") + ["--config", str(self.config_path)]
            if romfs:
                from host_tools.run_host import romfs_heap, romfs_image

                image = romfs_image(tree, self.workdir / "dialgate.romfs")
                cmd = [UPY, "-X", f"heapsize={romfs_heap(heap, image)}",
                       str(ROOT / "host_tools" / "romfs_boot.py"), str(image), "--config", str(self.config_path)]
            env = dict(os.environ)
            cwd = ROOT if romfs else folder
        self._cmd, self._env, self._cwd = cmd, env, cwd
        for attempt in range(3):
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True)
            try:
                wait_port(self.console_port, proc=self.proc)
                return
            except RuntimeError as e:
                # free_port() closes its socket before the gateway binds: on a busy
                # machine another test can take the port in between. Pick others.
                if "address already in use" not in str(e) or attempt == 2:
                    raise
            except BaseException:  # it never listened: no gateway left running behind a failed test
                self.stop()
                raise
            for key, attr in (("smtp", "smtp_port"), ("pop3", "pop3_port"), ("console", "console_port")):
                if cfg[key]["listen"] == [f"127.0.0.1:{getattr(self, attr)}"]:
                    setattr(self, attr, free_port())
                    cfg[key]["listen"] = [f"127.0.0.1:{getattr(self, attr)}"]
            self.config_path.write_text(json.dumps(cfg))

    def kill(self) -> None:
        """SIGKILL: the power cut of a process (no handler runs, nothing is flushed)."""
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def restart(self, timeout: float = 15.0) -> None:
        """Start the same gateway again (same config, ports and spool) once it has
        stopped; returns when the console listens (spool recovery is done by then)."""
        assert self.proc.poll() is not None, "the gateway is still running"
        self.proc = subprocess.Popen(self._cmd, cwd=self._cwd, env=self._env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        wait_port(self.console_port, timeout, proc=self.proc)

    def console(self) -> ConsoleClient:
        return ConsoleClient("127.0.0.1", self.console_port)

    def command(self, line: str) -> tuple[bool, list[str], str]:
        c = self.console()
        try:
            return c.command(line)
        finally:
            c.close()

    def stop(self) -> int:
        """Stop the gateway: the console's `shutdown` (how an admin stops a board),
        a signal if the console does not take it (a password set, a gateway that
        no longer answers). Returns the exit code."""
        from host_tools.run_host import shutdown

        shutdown(self.proc, self.console_port, self.console_password)
        if self.proc.poll() is None:
            # SIGINT on the unix port (it has no SIGTERM handler). A SIGINT that lands
            # in a threshold-triggered collection can leave the unix port's heap locked
            # for good ("MemoryError: ... heap is locked" at the shutdown's first
            # allocation: 4 of 30 stops after a POP3 QUIT, 6 December), which is why
            # the console comes first.
            self.proc.send_signal(signal.SIGTERM if self.runtime == "cpython" else signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def output(self) -> str:
        return self.proc.stdout.read() if self.proc.stdout else ""
