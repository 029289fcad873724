"""Byte ports under the modem driver: what it needs is `read_into` (never blocks),
`write`, `set_dtr`, `carrier` (True/False, None if unknown) and `close`.

`open_port(spec, baud, pins)` picks the adapter from `modem.port`:
  uart:N             machine.UART N, DTR/DCD on machine.Pin (MicroPython boards)
  emu://HOST:PORT    the host modem emulator: data over pyserial socket://, the
                     control lines on a side channel at PORT+1 (?control=P to move it)
  fd:0               the tty pppd hands its connect program on stdin/stdout
  anything else      a pyserial device or URL (/dev/ttyUSB0, rfc2217://...)
CPython-only packages are imported inside the adapters, never at import time.
"""

from . import compat


def open_port(spec, baud, pins=(-1, -1, -1, -1)):
    """pins: (tx, rx, dtr, dcd) GPIO numbers for uart:N, -1 = unused/default."""
    if spec.startswith("uart:"):
        return UartPort(int(spec[5:]), baud, pins)
    from . import modem_port_host as host  # CPython: pyserial, ttys on fds

    if spec.startswith("emu://"):
        if compat.MICROPYTHON:  # the unix port running the host simulation
            return host.EmuSocketPort(spec[6:], baud)
        return host.EmuPort(spec[6:], baud)
    if spec.startswith("fd:"):
        return host.FdPort(int(spec[3:]))
    return host.SerialPort(spec, baud)


class UartPort:
    """machine.UART with DTR and DCD on GPIO pins (MicroPython boards).

    Pins are at TTL level behind an inverting RS-232 transceiver (MAX3232):
    DTR on = pin low, carrier = DCD pin low.
    """

    def __init__(self, uart_id, baud, pins):
        from machine import UART, Pin  # MicroPython only

        tx, rx, dtr, dcd = pins
        kw = {"baudrate": baud, "timeout": 0}
        if tx >= 0:
            kw["tx"] = Pin(tx)
        if rx >= 0:
            kw["rx"] = Pin(rx)
        self.uart = UART(uart_id, **kw)
        self.dtr = Pin(dtr, Pin.OUT, value=0) if dtr >= 0 else None
        self.dcd = Pin(dcd, Pin.IN, Pin.PULL_UP) if dcd >= 0 else None
        self.has_dtr = self.dtr is not None

    def read_into(self, buf):
        n = self.uart.any()
        if not n:
            return 0
        got = self.uart.readinto(buf, min(n, len(buf)))
        return got or 0

    def write(self, data):
        self.uart.write(data)

    def set_dtr(self, on):
        if self.dtr is not None:
            self.dtr.value(0 if on else 1)

    def carrier(self):
        if self.dcd is None:
            return None
        return self.dcd.value() == 0

    def close(self):
        pass  # the UART stays configured; network.PPP may still be using it
