"""Links that dial a Hayes modem themselves: the base for MicroPython `network.PPP`
and the host's emulated link (dial the modem emulator, then use its forwarded ports)."""

import asyncio

from . import compat, config, log
from .compat import const
from .link import NO_PORT, UP, Link
from .modem_profiles import ModemSettings

_CARRIER_POLL_MS = const(250)


class ModemLink(Link):
    """Open the port, dial (with redial), watch DCD, hang up. Subclasses add what
    runs over the connection in `_connected()` / `_disconnecting()`."""

    kind = "modem"

    def __init__(self, cfg):
        Link.__init__(self, cfg)
        self.st = ModemSettings(cfg)
        self.port = None
        self.dialer = None
        self.watch = None
        self.last_call = None  # a dial that failed: its modem.Call (shed once up)

    def _open(self):
        from .modem_port import open_port

        cfg = self.cfg
        pins = (cfg["modem.tx_pin"], cfg["modem.rx_pin"], cfg["modem.dtr_pin"], cfg["modem.dcd_pin"])
        return open_port(self.st.port, self.st.baud, pins)

    async def _up(self):
        # imported on the first dial, not at boot: the dialler and the result
        # tables are heap a board needs only while it dials
        from . import modem
        from .modem_dialer import Dialer

        if not self.st.port:
            log.error("link: modem.port is not set")
            return NO_PORT
        try:
            self.port = self._open()
        except (OSError, ValueError) as e:  # pyserial's SerialException is an OSError
            log.error("link: cannot open modem port %s: %s", self.st.port, compat.exc_text(e))
            return NO_PORT
        try:
            return await self._dial(modem, Dialer)
        except BaseException:
            # Whatever ended the call half way (the port failing under the dial,
            # PPP's setup raising after CONNECT, a cancel), the port is not left
            # open with DTR on: a modem that connects, or has, would stay online,
            # billed, with nobody watching the carrier.
            self._drop()
            raise

    async def _dial(self, modem, Dialer):
        self.dialer = Dialer(self.port, self.st)
        call = await self.dialer.connect()
        self.last_call = call
        self.dial_results = self.dialer.results
        if call is None or call.outcome != modem.CONNECTED or self.dialer.stopping:
            await self._close(call is not None and call.outcome == modem.CONNECTED)
            return call.outcome if call is not None else modem.NO_CARRIER
        self.speed = call.speed or self.st.baud
        self.bytes_in = self.bytes_out = 0
        outcome = await self._connected()
        if outcome != UP:
            await self._close(True)
            return outcome
        self.watch = asyncio.create_task(self._watch())
        self._shed_dialer()
        return UP

    def _shed_dialer(self):
        """Once the line is up, the dialler and its result tables go until the
        hang-up loads them again (`_close`): on a board that unloads idle
        features (board.unload_after) that is heap the call's queue run and the
        ISP's delivery need (docs/architecture.md, "Memory"). Nothing of theirs
        is kept: `dial_results` is strings."""
        self.dialer = self.last_call = None
        if self.cfg["board.unload_after"] > 0:
            compat.unload("dialgate.modem_dialer")
            compat.unload("dialgate.modem")

    async def _connected(self):
        return UP

    async def _disconnecting(self):
        pass

    def _stop(self):
        if self.dialer is not None:
            self.dialer.stop()

    def carrier(self):
        """DCD now: True, False, or None when the port has no DCD line."""
        if self.port is None:
            return False
        return self.port.carrier()

    def alive(self):
        """Is the connection still there? (DCD; PPP adds its own state)"""
        return self.carrier() is not False

    def is_up(self):
        return self.state == "up" and self.alive()

    async def _watch(self):
        """Notice a carrier drop within CARRIER_POLL_MS, even with nobody asking.
        A port that cannot be asked (a USB adapter unplugged: OSError) has lost
        the connection too. Any other failure costs one poll, not the watcher:
        without it a drop would wait for the session's timeouts. A MemoryError
        is a board's full heap; anything else is a bug, logged with its
        traceback once a call (not four times a second)."""
        noted = False
        try:
            while self.state == "up":
                why = None
                try:
                    if self.alive():
                        self._count()
                    else:
                        why = "NO CARRIER" if self.carrier() is False else "PPP down"
                except OSError as e:
                    why = "modem port failed: " + compat.exc_text(e)
                except MemoryError:
                    compat.gc_collect()
                except Exception as e:
                    if not noted:
                        noted = True
                        log.exception("link: carrier watch", e)
                if why is not None:
                    log.warn("link: connection lost (%s)", why)
                    self._set("down")
                    await self._close(False)
                    return
                await asyncio.sleep(_CARRIER_POLL_MS / 1000)
        except asyncio.CancelledError:
            pass

    def _count(self):
        pass

    async def _down(self):
        if self.watch is not None and self.watch is not asyncio.current_task():
            self.watch.cancel()
        self.watch = None
        await self._close(True)

    def _drop(self):
        """Drop DTR (&D2: the modem hangs up) and close the port, at once and
        without raising: for a dial that ended by an exception."""
        port = self.port
        self.port = None
        self.dialer = None
        if port is None:
            return
        try:
            port.set_dtr(False)
        except Exception:  # a failed port: it is still closed
            pass
        try:
            port.close()
        except Exception:
            pass

    async def _close(self, hang_up):
        port = self.port
        if port is None:
            return
        self._count()
        try:
            await self._disconnecting()
            if hang_up:
                dialer = self.dialer
                if dialer is None:  # up: shed once connected (_shed_dialer)
                    from .modem_dialer import Dialer

                    dialer = Dialer(port, self.st)
                await dialer.hangup()
                self._count()  # the final counts arrive with the hang-up
        finally:
            self.port = None
            self.dialer = None
            port.close()


class EmulatedLink(ModemLink):
    """The host simulation: dial the modem emulator over `emu://HOST:PORT`; while
    the call is up the emulator forwards `link.smtp` / `link.pop3` / `link.odmr` to the ISP."""

    kind = "emulated"

    def __init__(self, cfg):
        ModemLink.__init__(self, cfg)
        if cfg["link.smtp"]:
            self.smtp_addr = config.parse_addr("link.smtp", cfg["link.smtp"])
        if cfg["link.pop3"]:
            self.pop3_addr = config.parse_addr("link.pop3", cfg["link.pop3"])
        if cfg["link.odmr"]:
            self.odmr_addr = config.parse_addr("link.odmr", cfg["link.odmr"])

    def _count(self):
        p = self.port
        if p is not None and getattr(p, "bytes_up", None) is not None:
            p.carrier()  # reads the side channel's latest BYTES line
            self.bytes_out = getattr(p, "bytes_up")
            self.bytes_in = getattr(p, "bytes_down")
