"""The emulated telephone line behind the modem emulator: paced, delayed, droppable.

While a call is up, `Line` gives the gateway IP reachability to the emulated ISP:
TCP forwarders listen on local ports and carry each connection's bytes through
one shared pipe per direction, paced at the line rate (bps/10 bytes per second
for 8N1 framing) and delayed by half the round-trip time. When the call drops,
every forwarded connection is reset and the listeners close: no reachability.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import struct
from collections.abc import Callable


class Pipe:
    """One direction of the line. `carry(n)` waits until n bytes may start on the
    wire and returns the loop time at which they arrive at the far end.

    Pacing uses an absolute schedule (`free_at`), so timer jitter never adds up:
    the caller reads its next chunk while the current one is "on the wire", the
    way a UART FIFO keeps a serial line busy.
    """

    def __init__(self, line: Line, name: str) -> None:
        self.line = line
        self.name = name
        self.free_at = 0.0
        self.bytes = 0

    async def carry(self, n: int) -> float:
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self.free_at)
        self.free_at = start + n * 10.0 / self.line.bps
        self.bytes += n
        self.line.counted(n)
        if start > now:
            await asyncio.sleep(start - now)
        return self.free_at + self.line.delay


class Forward:
    """A forwarder rule: listen on `listen`, connect to `target` while the call is up.

    `outbound`: the listener is the gateway's side (gateway -> ISP: its bytes
    travel on the `up` pipe); otherwise the listener is the ISP's side.
    """

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], outbound: bool) -> None:
        self.listen = listen
        self.target = target
        self.outbound = outbound
        self.server: asyncio.base_events.Server | None = None

    def __str__(self) -> str:
        arrow = "->" if self.outbound else "<-"
        return f"{self.listen[0]}:{self.listen[1]} {arrow} {self.target[0]}:{self.target[1]}"


class Line:
    """The call's data path: two pipes, the forwarders, byte counters, carrier drop."""

    def __init__(self, bps: int, rtt_ms: float, forwards: list[Forward],
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self.bps = bps
        self.delay = rtt_ms / 2000.0
        self.forwards = forwards
        self.on_bytes = on_bytes
        self.up = Pipe(self, "up")  # gateway -> ISP
        self.down = Pipe(self, "down")  # ISP -> gateway
        self.connected = False
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task] = set()
        self.call = 0  # deliveries scheduled during an earlier call are dropped
        self.chunk = max(1, bps // 1000)  # ~10 ms of line time per read

    def counted(self, n: int) -> None:
        if self.on_bytes is not None:
            self.on_bytes(n)

    async def connect(self) -> None:
        """The call is up: reset the counters and open the forwarders."""
        loop = asyncio.get_running_loop()
        self.up.free_at = self.down.free_at = loop.time()
        self.up.bytes = self.down.bytes = 0
        self.connected = True
        for f in self.forwards:
            f.server = await asyncio.start_server(lambda r, w, f=f: self._accept(f, r, w),
                                                  f.listen[0], f.listen[1], reuse_address=True)

    async def disconnect(self) -> None:
        """The call is gone: close the listeners, reset every carried connection."""
        self.connected = False
        self.call += 1
        for f in self.forwards:
            if f.server is not None:
                f.server.close()
        for w in list(self.writers):
            _abort(w)
        self.writers.clear()
        for t in list(self.tasks):
            t.cancel()
        for f in self.forwards:
            if f.server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(f.server.wait_closed(), 1.0)
                f.server = None

    async def _accept(self, fwd: Forward, r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
        if not self.connected:
            _abort(w1)
            return
        try:
            r2, w2 = await asyncio.open_connection(*fwd.target)
        except OSError:
            _abort(w1)
            return
        if not self.connected:
            _abort(w1)
            _abort(w2)
            return
        self.writers.update((w1, w2))
        there, back = (self.up, self.down) if fwd.outbound else (self.down, self.up)
        t1 = asyncio.create_task(self._pump(r1, w2, there))
        t2 = asyncio.create_task(self._pump(r2, w1, back))
        for t in (t1, t2):
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)
        await asyncio.gather(t1, t2, return_exceptions=True)
        for w in (w1, w2):
            self.writers.discard(w)
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pipe: Pipe) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        # What is on the wire, in order: each timer delivers the oldest chunk, so the
        # order holds even where two timers are due at the same instant (the
        # half-close takes no line time, and asyncio's heap does not keep the order
        # of equal times: the EOF could overtake the reply before it).
        fifo: collections.deque[tuple[bytes, asyncio.Future | None]] = collections.deque()
        while self.connected:
            try:
                data = await reader.read(self.chunk)
            except OSError:
                data = b""
            if not self.connected:
                return
            arrive = await pipe.carry(len(data))
            if not self.connected:
                return
            last = not data
            fifo.append((data, done if last else None))
            loop.call_at(arrive, self._deliver, self.call, writer, fifo)
            if last:
                await done  # half-close reaches the far end after the data
                return

    def _deliver(self, call: int, writer: asyncio.StreamWriter,
                 fifo: collections.deque[tuple[bytes, asyncio.Future | None]]) -> None:
        data, done = fifo.popleft()
        if call != self.call or not self.connected:
            return  # the call that carried these bytes is gone
        try:
            if data:
                writer.write(data)
            elif writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
        except (OSError, RuntimeError):
            pass
        if done is not None and not done.done():
            done.set_result(None)


def _abort(w: asyncio.StreamWriter) -> None:
    """Close with RST, as a peer whose route vanished looks to the other end."""
    sock = w.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.transport.abort()


def parse_hostport(s: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return (host or default_host, int(port))


def parse_forward(spec: str, outbound: bool) -> Forward:
    """"LISTEN=TARGET", each HOST:PORT or PORT."""
    a, sep, b = spec.partition("=")
    if not sep:
        raise ValueError(f"forward {spec!r}: expected LISTEN=TARGET")
    return Forward(parse_hostport(a), parse_hostport(b), outbound)
