"""Talk to the dialgate console over TCP (host) or a serial port (board).

    python3 -m host_tools.console_client                 # interactive, 127.0.0.1:2323
    python3 -m host_tools.console_client status "log 5"  # run commands, print replies
    python3 -m host_tools.console_client --port /dev/ttyACM0 status

Exit status 0 if every command answered OK, 1 if any answered ERR.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time


class ConsoleClient:
    """One console connection. `command(line)` returns (ok, reply lines without the OK/ERR line, last line)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 2323, serial_port: str | None = None,
                 timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._buf = b""
        if serial_port:
            import serial  # pyserial

            self._ser = serial.serial_for_url(serial_port, baudrate=115200, timeout=0.2)
            self._sock = None
            self._ser.write(b"\r\n")
            self._read_block()  # whatever answers the empty line
        else:
            self._ser = None
            self._sock = socket.create_connection((host, port), timeout=timeout)
            self.greeting = self._read_block()

    def _recv(self) -> bytes:
        if self._sock is not None:
            return self._sock.recv(4096)
        assert self._ser is not None
        return self._ser.read(4096)

    def _read_line(self, deadline: float) -> str:
        while b"\n" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("console did not answer")
            data = self._recv()
            if not data and self._sock is not None:
                raise ConnectionError("console closed the connection")
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
            assert self._ser is not None
            self._ser.write(data)
        block = self._read_block()
        return block[-1] == "OK", block[:-1], block[-1]

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._ser is not None:
            self._ser.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tcp-port", type=int, default=2323)
    ap.add_argument("--port", help="serial port or pyserial URL of a board's console")
    ap.add_argument("commands", nargs="*")
    a = ap.parse_args(argv)
    try:
        c = ConsoleClient(a.host, a.tcp_port, a.port)
    except OSError as e:
        print(f"cannot reach the console: {e}", file=sys.stderr)
        return 2
    status = 0
    try:
        cmds = a.commands
        interactive = not cmds
        while True:
            if interactive:
                try:
                    line = input("dialgate> ")
                except EOFError:
                    break
            elif cmds:
                line = cmds.pop(0)
            else:
                break
            if not line.strip():
                continue
            ok, lines, last = c.command(line)
            for x in lines:
                print(x)
            print(last)
            status |= 0 if ok else 1
            if line.strip() in ("quit", "exit"):
                break
    except (OSError, TimeoutError) as e:
        print(f"console: {e}", file=sys.stderr)
        return 2
    finally:
        c.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
