"""MicroPython boards: dial over the UART, see CONNECT, hand the UART to
`network.PPP` (esp32; rp2 from v1.29), drop DTR to hang up."""

import asyncio

from . import compat, log
from .link import PPP_FAILED, UP
from .link_modem import ModemLink


class PPPLink(ModemLink):
    kind = "ppp"

    def __init__(self, cfg):
        ModemLink.__init__(self, cfg)
        self.ppp = None

    async def _connected(self):
        import network  # MicroPython only; imported when the link comes up

        uart = getattr(self.port, "uart", None)
        if uart is None:
            log.error("link: network.PPP needs modem.port uart:N, not %s", self.st.port)
            return PPP_FAILED
        ppp = network.PPP(uart)
        self.ppp = ppp
        user = self.cfg["link.user"]
        if user:
            # RFC 1334 PAP / RFC 1994 CHAP: the ISP picks; SEC_CHAP also answers PAP on lwIP
            ppp.connect(security=network.PPP.SEC_CHAP, user=user, key=self.cfg["link.password"])
        else:
            ppp.connect()
        limit = self.cfg["link.up_timeout"] * 1000
        t0 = compat.ticks_ms()
        while not ppp.isconnected():
            if self.dialer is None or self.dialer.stopping:
                return PPP_FAILED  # an operator's hangup while PPP negotiates
            if compat.ticks_diff(compat.ticks_ms(), t0) > limit or self.carrier() is False:
                log.error("link: PPP did not come up within %d s", limit // 1000)
                return PPP_FAILED
            await asyncio.sleep(0.1)
        try:
            log.info("link: PPP up, address %s", ppp.ipconfig("addr4")[0])
        except (AttributeError, OSError, ValueError, TypeError):
            log.info("link: PPP up")
        return UP

    def alive(self):
        return self.carrier() is not False and self.ppp is not None and self.ppp.isconnected()

    def _drop(self):
        ppp = self.ppp
        self.ppp = None
        if ppp is not None:
            try:
                ppp.disconnect()  # the UART back from PPP before DTR drops
            except Exception:
                pass
        ModemLink._drop(self)

    async def _disconnecting(self):
        ppp = self.ppp
        self.ppp = None
        if ppp is None:
            return
        try:
            ppp.disconnect()  # LCP Terminate-Request (RFC 1661 §5.5), then the UART is ours again
        except OSError as e:
            log.warn("link: PPP disconnect: %s", e)
        t0 = compat.ticks_ms()
        while ppp.isconnected() and compat.ticks_diff(compat.ticks_ms(), t0) < 3000:
            await asyncio.sleep(0.1)
