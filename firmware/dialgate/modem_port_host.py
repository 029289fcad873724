"""The host-side ports (CPython): pyserial devices and URLs, the modem emulator's
`emu://` (socket:// data plus a DTR/DCD side channel), and the tty on a file
descriptor that pppd hands its connect program. See modem_port.open_port."""

from . import log


class SerialPort:
    """pyserial (CPython): a local tty, or any URL pyserial knows."""

    has_dtr = True

    def __init__(self, url, baud):
        import serial  # CPython only: pyserial  # pyright: ignore[reportMissingImports]

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


def _emu_where(where):
    """"HOST:PORT[?control=P]" -> (host, data port, control port)."""
    host, _, rest = where.partition(":")
    port, _, query = rest.partition("?")
    ctl = int(port) + 1
    if query.startswith("control="):
        ctl = int(query[8:])
    return host, int(port), ctl


def _connect(host, port):
    import socket

    s = socket.socket()
    s.connect(socket.getaddrinfo(host, port)[0][-1])
    return s


def _recv(sock, n):
    """Non-blocking recv on either runtime: bytes, None (nothing yet), b"" at EOF."""
    try:
        return sock.recv(n)
    except OSError as e:
        if e.args and e.args[0] in (11, 35, 115):  # EAGAIN (Linux, BSD), EINPROGRESS
            return None
        return b""


class EmuLines:
    """The modem emulator's control-line side channel, one text line each way:
    we send "DTR 0|1"; it sends "DCD 0|1" and "BYTES UP DOWN" (docs/modem.md)."""

    def __init__(self, host, port):
        self.ctl = _connect(host, port)
        self.ctl.setblocking(False)
        self.dcd = False
        self.bytes_up = 0
        self.bytes_down = 0
        self.pending = b""
        self.send("DTR 1")

    def send(self, line):
        self.ctl.setblocking(True)
        try:
            self.ctl.send(line.encode() + b"\n")
        finally:
            self.ctl.setblocking(False)

    def poll(self):
        """Read what the side channel has sent (never blocks)."""
        while True:
            data = _recv(self.ctl, 512)
            if data is None:
                return
            if not data:
                self.dcd = False  # the emulator went away: no line
                return
            self.pending = self.pending + data
            while b"\n" in self.pending:
                i = self.pending.find(b"\n")
                words = self.pending[:i].decode().split()
                self.pending = self.pending[i + 1 :]
                if len(words) >= 2 and words[0] == "DCD":
                    self.dcd = words[1] == "1"
                elif len(words) >= 3 and words[0] == "BYTES":
                    self.bytes_up = int(words[1])
                    self.bytes_down = int(words[2])
            if len(self.pending) > 512:
                self.pending = b""

    def close(self):
        try:
            self.send("DTR 0")
        except OSError:
            pass
        try:
            self.ctl.close()
        except OSError:
            pass


class EmuPort(SerialPort):
    """The host modem emulator on CPython: data over pyserial `socket://`, the
    control lines over EmuLines."""

    def __init__(self, where, baud):
        host, port, ctl = _emu_where(where)
        SerialPort.__init__(self, "socket://%s:%d" % (host, port), baud)
        self.has_dtr = True
        try:
            self.em = EmuLines(host, ctl)
        except OSError:
            SerialPort.close(self)
            raise

    @property
    def bytes_up(self):
        return self.em.bytes_up

    @property
    def bytes_down(self):
        return self.em.bytes_down

    def set_dtr(self, on):
        self.em.send("DTR 1" if on else "DTR 0")

    def carrier(self):
        self.em.poll()
        return self.em.dcd

    def close(self):
        self.em.close()
        SerialPort.close(self)


class EmuSocketPort(EmuPort):
    """The same on the MicroPython unix port, which has no pyserial: a plain socket."""

    def __init__(self, where, baud):
        host, port, ctl = _emu_where(where)
        self.sock = _connect(host, port)
        self.sock.setblocking(False)
        self.has_dtr = True
        try:
            self.em = EmuLines(host, ctl)
        except OSError:
            self.sock.close()
            raise

    def read_into(self, buf):
        data = _recv(self.sock, len(buf))
        if not data:
            return 0
        n = len(data)
        buf[:n] = data
        return n

    def write(self, data):
        self.sock.setblocking(True)
        try:
            mv = memoryview(data)
            while len(mv):
                mv = mv[self.sock.send(mv) :]
        finally:
            self.sock.setblocking(False)

    def close(self):
        self.em.close()
        try:
            self.sock.close()
        except OSError:
            pass


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
