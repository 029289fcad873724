"""Link efficiency: bulk TCP through the emulated link against the line-rate bound.

    python3 -m host_tools.bench_link [--bps 33600] [--seconds 20] [--rtt-ms 150]

Starts the modem emulator, dials it with the firmware's emulated link (CPython,
pyserial), pushes --seconds worth of line time (bps/10 bytes per second, 8N1)
through the forwarded port to a sink on the "ISP" side, then the other way, then
both at once, and prints each rate and its ratio to the bound. Elapsed time runs
from the first byte written to the last byte received, one-way delay included.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _r, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


class Sink:
    """The ISP's end: receives an upload (timing its last byte) or sends a download."""

    def __init__(self) -> None:
        self.mode = ("recv", 0)
        self.done: asyncio.Future | None = None

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        kind, n = self.mode
        if kind in ("send", "both"):
            w.write(b"d" * n)
        got = 0
        while got < (n if kind in ("recv", "both") else 0):
            data = await r.read(65536)
            if not data:
                break
            got += len(data)
        if self.done is not None and not self.done.done():
            self.done.set_result(time.monotonic())
        await w.drain()
        await r.read()
        w.close()


async def transfer(port: int, sink: Sink, kind: str, n: int) -> tuple[float, float]:
    """Returns (seconds up, seconds down) for this run (0 where not measured)."""
    loop = asyncio.get_running_loop()
    sink.mode = (kind, n)
    sink.done = loop.create_future()
    r, w = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    if kind in ("recv", "both"):
        w.write(b"u" * n)
    got = 0
    down = 0.0
    while got < (n if kind in ("send", "both") else 0):
        data = await r.read(65536)
        if not data:
            break
        got += len(data)
    if kind in ("send", "both"):
        down = time.monotonic() - t0
    up = (await sink.done) - t0 if kind in ("recv", "both") else 0.0
    w.write_eof()
    await r.read()
    w.close()
    return up, down


async def run(a: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT / "firmware"))
    from dialgate import config, link, log

    serial, fwd, isp = free_port(), free_port(), free_port()
    emu = subprocess.Popen([sys.executable, "-m", "host_tools.modem_emulator", "--serial", f"127.0.0.1:{serial}",
                            "--bps", str(a.bps), "--rtt-ms", str(a.rtt_ms), "--time-scale", "0.01",
                            "--forward", f"127.0.0.1:{fwd}=127.0.0.1:{isp}"], cwd=ROOT, stdout=subprocess.DEVNULL)
    sink = Sink()
    srv = await asyncio.start_server(sink.handle, "127.0.0.1", isp)
    log.LOG.configure("warn", "", 4096, True)
    try:
        await wait_port(serial)
        await wait_port(serial + 1)
        cfg = config.build({"board.name": "host", "hostname": "gw.office.test", "domains": ["office.test"],
                            "link.type": "emulated", "modem.port": f"emu://127.0.0.1:{serial}",
                            "modem.number": "5550100", "link.smtp": f"127.0.0.1:{fwd}", "modem.guard_ms": 50})
        lk = link.make_link(cfg)
        outcome = await lk.up()
        if outcome != link.UP:
            print(f"bench_link: dial failed: {outcome}")
            return 1
        bound = a.bps / 10
        n = int(bound * a.seconds)
        host, port = lk.smtp_addr
        print(f"link: {lk.describe()}; line-rate bound {bound:.0f} B/s (8N1), rtt {a.rtt_ms:g} ms, "
              f"{n} bytes per direction")
        rows = []
        up, _ = await transfer(port, sink, "recv", n)
        rows.append(("gateway -> ISP", up))
        _, down = await transfer(port, sink, "send", n)
        rows.append(("ISP -> gateway", down))
        up2, down2 = await transfer(port, sink, "both", n)
        rows.append(("both at once, up", up2))
        rows.append(("both at once, down", down2))
        for name, secs in rows:
            rate = n / secs
            print(f"  {name:20s} {n} B in {secs:7.3f} s = {rate:8.1f} B/s  ratio to bound {rate / bound:.4f}")
        await lk.down()
        worst = min(n / s for _, s in rows) / bound
        print(f"link efficiency at {a.bps} bps: worst ratio {worst:.4f} (target >= 0.98)")
        return 0
    finally:
        srv.close()
        emu.terminate()
        emu.wait(5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m host_tools.bench_link", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bps", type=int, default=33600)
    ap.add_argument("--seconds", type=float, default=20.0, help="line time per transfer")
    ap.add_argument("--rtt-ms", type=float, default=150.0)
    return asyncio.run(run(ap.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
