"""The CPython asyncio floor for bench_side's POP3 RETR and SMTP 4 KB loads (bench_side runs it).

A POP3 RETR of a 4 KB message costs dialgate one asyncio stream read, one
parse, one open/read/close of the stored file and one send. How much of that
is the runtime and not dialgate? `serve` answers the same client the same
way with none of the work: every line read with asyncio's own readline, `+OK`
to anything, and to RETR a 4 KB message already in memory. What that server
reaches on this machine bounds what any asyncio-streams server in CPython
can reach here; bench_side prints dialgate's RETR rate against it beside
Dovecot's.

The same for SMTP: `_smtp` greets, answers EHLO as dialgate does, 250 to every
command, and takes DATA with asyncio's own readuntil up to the end-of-data
line, storing nothing and syncing nothing. What smtplib and smtp-source reach
against it bounds any asyncio-streams SMTP server here, durable or not; the
bench prints it beside Postfix's figure from the same run.

    python3 -m host_tools.asyncio_floor serve   (prints "POP3PORT SMTPPORT", serves until killed)
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


_EHLO = (b"250-floor.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
         b"250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n")


async def _smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 floor.test ESMTP\r\n")
    while True:
        line = await reader.readline()
        if not line:
            break
        verb = line[:4].upper()
        if verb == b"EHLO":
            writer.write(_EHLO)
        elif verb == b"DATA":
            writer.write(b"354 go ahead\r\n")
            try:
                await reader.readuntil(b"\r\n.\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                break
            writer.write(b"250 2.0.0 Ok: not stored\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 2.0.0 bye\r\n")
            break
        else:
            writer.write(b"250 2.0.0 Ok\r\n")
    writer.close()


async def _serve() -> None:
    srv = await asyncio.start_server(_session, "127.0.0.1", 0)
    smtp = await asyncio.start_server(_smtp, "127.0.0.1", 0, backlog=128, limit=1 << 20)
    print(srv.sockets[0].getsockname()[1], smtp.sockets[0].getsockname()[1], flush=True)
    async with srv, smtp:
        await asyncio.gather(srv.serve_forever(), smtp.serve_forever())


class Floor:
    """The floor server as a bench side: `pop3_port`, `smtp_port`, `stop()`;
    nothing is stored, so a message counts once its 250 is in."""

    name = "floor"

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "host_tools.asyncio_floor", "serve"],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        ports = line.split()
        if len(ports) != 2 or not all(p.isdigit() for p in ports):
            self.stop()
            raise RuntimeError(f"asyncio_floor did not start: {line!r}")
        self.pop3_port, self.smtp_port = int(ports[0]), int(ports[1])

    def delivered_base(self) -> int:
        return 0

    def wait_durable(self, base: int, n: int, timeout: float = 120) -> None:
        pass

    def cleanup(self) -> None:
        pass

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
