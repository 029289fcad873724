"""One connection to the dialgate console, over TCP (host, Pi) or a serial port (board).

The operator's tool is `dialgatectl` (host_tools/dialgatectl.py); this module
is its transport, and what tests and benchmarks use to drive a gateway:

    c = ConsoleClient("127.0.0.1", 2323)          # or ConsoleClient(serial_port="/dev/ttyACM0")
    ok, lines, last = c.command("queue list")    # last: "OK" or "ERR reason"

`python3 -m host_tools.console_client ...` still works: it is `dialgatectl`.
"""

from __future__ import annotations

import socket
import sys
import time


class ConsoleError(OSError):
    """No console to talk to: it did not answer, closed, or refused the login."""


class ConsoleClient:
    """One console connection. `command(line)` returns (ok, reply lines without
    the OK/ERR line, that last line). `login_required` is True when the greeting
    asked for `login PASSWORD` (TCP; a board's UART sends no greeting once it has
    booted: there the first `ERR login first` says so)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 2323, serial_port: str | None = None,
                 timeout: float = 10.0, baud: int = 115200) -> None:
        self.timeout = timeout
        self._buf = b""
        self.greeting: list[str] = []
        self._sock: socket.socket | None = None
        self._ser = None
        if serial_port:
            import serial  # pyserial

            self._ser = serial.serial_for_url(serial_port, baudrate=baud, timeout=0.2)
            # The UART console has been up since boot: nothing greets us. Drop
            # whatever is pending (boot messages, log lines) before the first command.
            quiet_until = time.monotonic() + 0.3
            while time.monotonic() < quiet_until:
                if self._ser.read(4096):
                    quiet_until = time.monotonic() + 0.3
        else:
            self._sock = socket.create_connection((host, port), timeout=timeout)
            self.greeting = self._read_block()
        self.login_required = bool(self.greeting) and "login PASSWORD first" in self.greeting[0]

    def _recv(self) -> bytes:
        if self._sock is not None:
            return self._sock.recv(4096)
        return self._ser.read(4096)

    def _read_line(self, deadline: float) -> str:
        while b"\n" not in self._buf:
            if time.monotonic() > deadline:
                raise ConsoleError("the console did not answer")
            try:
                data = self._recv()
            except TimeoutError:
                continue
            if not data and self._sock is not None:
                raise ConsoleError("the console closed the connection")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def _read_block(self) -> list[str]:
        deadline = time.monotonic() + self.timeout
        lines = []
        while True:
            line = self._read_line(deadline)
            lines.append(line)
            if line == "OK" or line.startswith("ERR"):
                return lines

    def command(self, line: str) -> tuple[bool, list[str], str]:
        data = (line + "\r\n").encode()
        if self._sock is not None:
            self._sock.sendall(data)
        else:
            self._ser.write(data)
        block = self._read_block()
        return block[-1] == "OK", block[:-1], block[-1]

    def login(self, password: str) -> tuple[bool, str]:
        """`login PASSWORD` -> (ok, the reply's last line)."""
        ok, _lines, last = self.command("login " + password)
        if ok:
            self.login_required = False
        return ok, last

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._ser is not None:
            self._ser.close()


if __name__ == "__main__":
    from host_tools.dialgatectl import main

    sys.exit(main())
