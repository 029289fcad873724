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

from . import log


def open_port(spec, baud, pins=(-1, -1, -1, -1)):
    """pins: (tx, rx, dtr, dcd) GPIO numbers for uart:N, -1 = unused/default."""
    if spec.startswith("uart:"):
        return UartPort(int(spec[5:]), baud, pins)
    if spec.startswith("emu://"):
        return EmuPort(spec[6:], baud)
    if spec.startswith("fd:"):
        return FdPort(int(spec[3:]))
    return SerialPort(spec, baud)


class SerialPort:
    """pyserial (CPython): a local tty, or any URL pyserial knows."""

    has_dtr = True

    def __init__(self, url, baud):
        import serial  # CPython only: pyserial

        self.url = url
        s = serial.serial_for_url(url, baudrate=baud, timeout=0, write_timeout=5, do_not_open=True)
        s.dtr = True  # V.250 §6.2.9 &D2: the modem only listens while DTR is on
        s.open()
        self.ser = s
        # socket:// and loop:// carry no modem lines
        self.lines = not (url.startswith("socket://") or url.startswith("loop://"))
        if not self.lines:
            self.has_dtr = False

    def read_into(self, buf):
        data = self.ser.read(len(buf))
        n = len(data)
        if n:
            buf[:n] = data
        return n

    def write(self, data):
        self.ser.write(data)

    def set_dtr(self, on):
        if self.lines:
            self.ser.dtr = on

    def carrier(self):
        if not self.lines:
            return None
        return bool(self.ser.cd)

    def close(self):
        try:
            self.ser.close()
        except OSError:
            pass


class EmuPort(SerialPort):
    """The host modem emulator: data on pyserial `socket://`, DTR/DCD on a text
    side channel ("DTR 1\\n" out; "DCD 1\\n", "BYTES UP DOWN\\n" in)."""

    has_dtr = True

    def __init__(self, where, baud):
        import socket

        host, _, rest = where.partition(":")
        port, _, query = rest.partition("?")
        ctl = int(port) + 1
        if query.startswith("control="):
            ctl = int(query[8:])
        SerialPort.__init__(self, "socket://%s:%s" % (host, port), baud)
        self.lines = True
        self.has_dtr = True
        self.dcd = False
        self.bytes_up = 0
        self.bytes_down = 0
        self.pending = b""
        self.ctl = socket.create_connection((host, ctl), 5)
        self.ctl.setblocking(False)
        self.send_control("DTR 1")

    def send_control(self, line):
        self.ctl.setblocking(True)
        try:
            self.ctl.sendall(line.encode() + b"\n")
        finally:
            self.ctl.setblocking(False)

    def set_dtr(self, on):
        self.send_control("DTR 1" if on else "DTR 0")

    def poll(self):
        """Read what the side channel has sent (never blocks)."""
        while True:
            try:
                data = self.ctl.recv(512)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.dcd = False  # the emulator went away: no line
                return
            self.pending = self.pending + data
            while b"\n" in self.pending:
                line, _, self.pending = self.pending.partition(b"\n")
                self._control(line.decode("latin-1").split())
            if len(self.pending) > 512:
                self.pending = b""

    def _control(self, words):
        if len(words) >= 2 and words[0] == "DCD":
            self.dcd = words[1] == "1"
        elif len(words) >= 3 and words[0] == "BYTES":
            self.bytes_up = int(words[1])
            self.bytes_down = int(words[2])

    def carrier(self):
        self.poll()
        return self.dcd

    def close(self):
        try:
            self.send_control("DTR 0")
        except OSError:
            pass
        try:
            self.ctl.close()
        except OSError:
            pass
        SerialPort.close(self)


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


class FdPort:
    """The modem tty on a file descriptor (pppd's connect program: fd 0 in, fd 1 out)."""

    def __init__(self, fd):
        import os
        import select

        self.os = os
        self.select = select
        self.rfd = fd
        self.wfd = 1 if fd == 0 else fd
        self.has_dtr = self._lines() is not None

    def _lines(self):
        import fcntl
        import struct
        import termios

        try:
            got = fcntl.ioctl(self.rfd, termios.TIOCMGET, struct.pack("i", 0))
        except OSError:
            return None
        return struct.unpack("i", got)[0]

    def read_into(self, buf):
        r, _w, _x = self.select.select([self.rfd], [], [], 0)
        if not r:
            return 0
        data = self.os.read(self.rfd, len(buf))
        n = len(data)
        buf[:n] = data
        return n

    def write(self, data):
        mv = memoryview(data)
        while len(mv):
            n = self.os.write(self.wfd, mv)
            mv = mv[n:]

    def set_dtr(self, on):
        import fcntl
        import struct
        import termios

        try:
            fcntl.ioctl(self.rfd, termios.TIOCMBIS if on else termios.TIOCMBIC, struct.pack("i", termios.TIOCM_DTR))
        except OSError as e:
            log.warn("modem: cannot set DTR on fd %d: %s", self.rfd, e)

    def carrier(self):
        import termios

        bits = self._lines()
        if bits is None:
            return None
        return bits & termios.TIOCM_CAR != 0

    def close(self):
        pass
