"""Drives modem.Call over a port: deadlines, the DTR reset of a deaf modem, redial
with backoff, and hang-up (DTR drop, else `+++` guard time and ATH0)."""

import asyncio

from . import compat, log, modem
from .compat import const

_POLL_MS = const(20)  # how often an idle port is looked at
_DTR_DROP_MS = const(500)  # V.250 §6.2.9 &D2: DTR off long enough to be seen
_HANGUP_WAIT_MS = const(3000)  # for DCD to fall after a hang-up


async def sleep_ms(ms):
    await asyncio.sleep(ms / 1000)


class Dialer:
    """One modem on one open port. `settings` is a modem_profiles.ModemSettings.

    `connect()` -> the last modem.Call (its `outcome` says how it ended);
    `hangup()` -> True once the carrier is gone (or cannot be seen).
    `stop()` ends a dial or a redial wait early (an operator's `hangup`).
    """

    def __init__(self, port, settings):
        self.port = port
        self.st = settings
        self.buf = bytearray(64)
        self.stopping = False
        self.attempts = 0
        self.resets = 0
        self.results = []  # each attempt's result ("CONNECT 33600/ARQ", "busy"): the cost record

    def stop(self):
        self.stopping = True

    async def run(self, call):
        """Walk one Call to its outcome."""
        port = self.port
        mv = memoryview(self.buf)
        self._drain_input()
        send = call.start()
        while True:
            if send is not None:
                port.write(send)
                deadline = compat.ticks_add(compat.ticks_ms(), call.timeout_ms)
                send = None
            if call.outcome is not None:
                return call
            if call.want_reset:
                await self.reset()
                send = call.reset_done()
                continue
            if self.stopping:
                port.write(b"\r")  # V.250 §6.3.1: any character aborts a dial
                call.abort(modem.STOPPED, "stopped by the operator")
                return call
            n = port.read_into(self.buf)
            if n:
                send = call.receive(mv[:n])
                continue
            if compat.ticks_diff(deadline, compat.ticks_ms()) <= 0:
                send = call.expired()
                if send is None and call.outcome is None and not call.want_reset:
                    return call
                continue
            await sleep_ms(_POLL_MS)

    def _drain_input(self):
        for _ in range(64):
            if not self.port.read_into(self.buf):
                return

    async def reset(self):
        """A modem that does not answer AT: toggle DTR (&D2/&D3 resets it), then ATZ."""
        self.resets += 1
        log.warn("modem: no answer to AT; resetting it (DTR toggle, then ATZ)")
        self.port.set_dtr(False)
        await sleep_ms(_DTR_DROP_MS)
        self.port.set_dtr(True)
        await sleep_ms(_DTR_DROP_MS)
        self._drain_input()

    async def connect(self):
        """Dial with redial: at most 1 + modem.redial attempts, backing off
        modem.redial_delay, doubled each time up to modem.redial_delay_max."""
        st = self.st
        call = None
        k = 0
        while k <= st.redial and not self.stopping:
            if k:
                wait = modem.backoff_ms(k, st.redial_ms, st.redial_max_ms)
                log.info("modem: redial %d of %d in %d s", k, st.redial, wait // 1000)
                if not await self._wait(wait):
                    break
            k += 1
            self.attempts += 1
            call = modem.Call(st.init, st.dial, st.cmd_ms, st.connect_ms)
            await self.run(call)
            if call.reset_tried:
                if call.outcome == modem.NO_MODEM:
                    log.error("modem: not answering on %s, even after a reset", st.port)
                else:
                    log.warn("modem: answering again after a reset")
            self.results.append(call.connect if call.outcome == modem.CONNECTED and call.connect else call.outcome)
            if call.outcome == modem.CONNECTED:
                log.info("modem: %s (%d bps)", call.connect, call.speed or st.baud)
                return call
            log.warn("modem: %s: %s", call.outcome, call.detail)
            if call.outcome == modem.SILENT:
                await self.hangup()
            if call.outcome not in modem.REDIAL:
                break
        return call

    async def _wait(self, ms):
        t0 = compat.ticks_ms()
        while compat.ticks_diff(compat.ticks_ms(), t0) < ms:
            if self.stopping:
                return False
            await sleep_ms(min(100, ms))
        return not self.stopping

    async def _carrier_gone(self, ms):
        t0 = compat.ticks_ms()
        while compat.ticks_diff(compat.ticks_ms(), t0) < ms:
            if self.port.carrier() is False:
                return True
            await sleep_ms(_POLL_MS)
        return self.port.carrier() is not True

    async def command(self, text, ms):
        """Send one command line, return its final result code or None on silence."""
        self.port.write(text.encode() + b"\r")
        return await self._result(ms)

    async def _result(self, ms):
        reader = modem.ResultReader()
        mv = memoryview(self.buf)
        t0 = compat.ticks_ms()
        while compat.ticks_diff(compat.ticks_ms(), t0) < ms:
            n = self.port.read_into(self.buf)
            if not n:
                await sleep_ms(_POLL_MS)
                continue
            for code, _speed, _text in reader.feed(mv[:n]):
                if code not in ("ECHO", "OTHER", "RING"):
                    return code
        return None

    async def hangup(self):
        """Hang up: drop DTR (&D2); if the carrier stays, `+++` with the S12 guard
        time before and after, then ATH0 (V.250 §6.3.5, §6.3.6)."""
        port = self.port
        if port.has_dtr:
            port.set_dtr(False)
            gone = await self._carrier_gone(_HANGUP_WAIT_MS if port.carrier() is not None else _DTR_DROP_MS)
            port.set_dtr(True)
            if gone and port.carrier() is not None:
                log.info("modem: hung up by dropping DTR")
                return True
            if port.carrier() is None:
                log.info("modem: DTR dropped (no DCD line to confirm); sending ATH0 as well")
            else:
                log.warn("modem: still connected after a DTR drop; trying +++ and ATH0")
        guard = self.st.guard_ms
        await sleep_ms(guard)
        port.write(b"+++")
        await sleep_ms(guard)
        await self._result(self.st.cmd_ms)  # OK once back in command mode (or nothing, already there)
        code = await self.command("ATH0", self.st.cmd_ms)
        gone = await self._carrier_gone(_HANGUP_WAIT_MS)
        if gone:
            log.info("modem: hung up with ATH0 (%s)", code)
        else:
            log.error("modem: carrier still up after ATH0 (%s)", code)
        return gone
