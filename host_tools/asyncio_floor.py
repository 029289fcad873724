"""The CPython asyncio floor for bench_side's POP3 RETR load (bench_side runs it).

A POP3 RETR of a 4 KB message costs dialgate one asyncio stream read, one
parse, one open/read/close of the stored file and one send. How much of that
is the runtime and not dialgate? `serve` answers the same client the same
way with none of the work: every line read with asyncio's own readline, `+OK`
to anything, and to RETR a 4 KB message already in memory. What that server
reaches on this machine bounds what any asyncio-streams server in CPython
can reach here; bench_side prints dialgate's RETR rate against it beside
Dovecot's.

    python3 -m host_tools.asyncio_floor serve   (prints its port, serves until killed)
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

MESSAGE = b"+OK 4096 octets\r\n" + b"x" * 4094 + b"\r\n.\r\n"


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"+OK floor ready\r\n")
    while True:
        line = await reader.readline()
        if not line:
            break
        writer.write(MESSAGE if line[:4].upper() == b"RETR" else b"+OK\r\n")
        if line[:4].upper() == b"QUIT":
            break
    writer.close()


async def _serve() -> None:
    srv = await asyncio.start_server(_session, "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    async with srv:
        await srv.serve_forever()


class Floor:
    """The floor server as a bench side: `pop3_port`, `stop()`."""

    name = "floor"

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "host_tools.asyncio_floor", "serve"],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"asyncio_floor did not start: {line!r}")
        self.pop3_port = int(line)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["serve"]:
        print(__doc__)
        return 2
    asyncio.run(_serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
