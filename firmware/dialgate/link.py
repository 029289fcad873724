"""The link to the ISP: one interface (`up`, `down`, `is_up`, `speed`, byte counts,
`describe`) over an always-on uplink, a modem (emulated, MicroPython network.PPP)
or pppd. `make_link(cfg)` picks one from `link.type`; it does no I/O until `up()`.
"""

import asyncio

from . import compat, log

UP = "up"  # what up() returns on success; any other string says why not
NO_PORT = "no-port"  # the modem port cannot be opened
PPP_FAILED = "ppp-failed"  # dialled, but PPP did not come up
FAILED = "failed"  # an unexpected error (logged with its traceback)


class Link:
    """Base: state and counters every link type keeps.

    `smtp_addr` / `pop3_addr` / `odmr_addr`: (host, port) the queue runner and
    the ask phase should use for the ISP's SMTP / POP3 / ODMR while this link is up, or None to use its own config
    (the emulated link forwards them through the modem emulator's line).
    """

    kind = "?"

    def __init__(self, cfg):
        self.cfg = cfg
        self.speed = 0  # bps of the current (or last) connection
        self.bytes_in = 0
        self.bytes_out = 0
        self.state = "down"  # down | dialling | up | hanging up
        self.since = compat.ticks_ms()
        self.last = None  # outcome of the last up()
        self.sessions = 0
        self.smtp_addr = None
        self.pop3_addr = None
        self.odmr_addr = None
        self.dial_results = []  # the last up()'s dial attempts, in order (modem links)
        self._busy = False

    def _set(self, state):
        self.state = state
        self.since = compat.ticks_ms()

    def is_up(self):
        return self.state == "up"

    def describe(self):
        """One line for the console's `status`: "up 33600 bps, 3 min, in 1200 out 5400 bytes"."""
        mins = compat.ticks_diff(compat.ticks_ms(), self.since) // 60000
        if self.is_up():
            return "up %d bps, %d min, in %d out %d bytes (%s)" % (
                self.speed, mins, self.bytes_in, self.bytes_out, self.kind)
        if self.state == "up":
            self._lost()
        if self.state != "down":
            return "%s (%s)" % (self.state, self.kind)
        if self.last and self.last != UP:
            return "down, last attempt: %s (%s)" % (self.last, self.kind)
        return "down (%s)" % self.kind

    def _lost(self):
        """The link went away under us (carrier drop, PPP ended)."""
        log.warn("link: %s link lost", self.kind)
        self._set("down")

    async def up(self):
        """Bring the link up. Returns UP or the reason it failed (a modem outcome,
        NO_PORT, PPP_FAILED). A second caller waits for the first attempt."""
        if self.is_up():
            return UP
        if self._busy:
            while self._busy:
                await asyncio.sleep(0.05)
            return UP if self.is_up() else (self.last or NO_PORT)
        self._busy = True
        self.dial_results = []
        self._set("dialling")
        try:
            outcome = await self._up()
        except OSError as e:
            log.error("link: %s", compat.exc_text(e))
            outcome = NO_PORT
        except Exception as e:  # a bug or a missing package must not leave us "dialling"
            log.exception("link: up", e)
            outcome = FAILED
        finally:
            self._busy = False
            if self.state == "dialling":  # (cancelled: the outcome below never comes)
                self._set("down")
        self.last = outcome
        if outcome == UP:
            self.sessions += 1
            self._set("up")
            log.info("link: up, %d bps", self.speed)
        else:
            self._set("down")
        return outcome

    async def down(self):
        """Hang up (if up or dialling). Never raises."""
        if self._busy:  # dialling: stop it; up() hangs up and closes the port itself
            self._stop()
            while self._busy:
                await asyncio.sleep(0.05)
        if self.state == "down":
            return
        prev = self.state
        self._set("hanging up")
        try:
            await self._down()
        except OSError as e:
            log.warn("link: hang-up: %s", compat.exc_text(e))
        self._set("down")
        if prev == "up":
            log.info("link: down after %d bytes in, %d out", self.bytes_in, self.bytes_out)

    def _stop(self):
        pass

    async def _up(self):
        return UP

    async def _down(self):
        pass


class AlwaysOnLink(Link):
    """An Ethernet/Wi-Fi/LTE-router uplink: nothing to dial, always up."""

    kind = "always-on"

    def __init__(self, cfg):
        Link.__init__(self, cfg)
        self.state = "up"
        self.last = UP

    def is_up(self):
        return True

    async def down(self):
        pass


def make_link(cfg):
    """The link object for `link.type` (no I/O happens here)."""
    kind = cfg["link.type"]
    if kind == "always-on":
        return AlwaysOnLink(cfg)
    if kind == "emulated":
        from .link_modem import EmulatedLink

        return EmulatedLink(cfg)
    if kind == "ppp":
        from .link_ppp import PPPLink

        return PPPLink(cfg)
    from .link_pppd import PppdLink

    return PppdLink(cfg)
