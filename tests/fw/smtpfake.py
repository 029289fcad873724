"""A scripted SMTP server and a loop-free conversation driver for smtp_client tests.

Runs on CPython and MicroPython. The server answers every command at once (it
does not care about RFC 2920 groups), so the driver can count how many times
the client sends and then waits: the round trips.
"""

import binascii

from dialgate.proto import Framer
from dialgate.smtp_client import Envelope

EXT = ("PIPELINING", "SIZE 1000000", "8BITMIME", "STARTTLS", "AUTH PLAIN LOGIN", "ENHANCEDSTATUSCODES")

DEFAULT = {
    "GREET": "220 isp.test ESMTP",
    "EHLO": None,  # built from ext
    "HELO": "250 isp.test",
    "STARTTLS": "220 2.0.0 go ahead",
    "AUTH": "235 2.7.0 ok",
    "MAIL": "250 2.1.0 ok",
    "RCPT": "250 2.1.5 ok",
    "DATA": "354 go ahead",
    "DOT": "250 2.0.0 queued",
    "BDAT": "250 2.0.0 queued",  # the reply to a whole BDAT ... LAST chunk (RFC 3030)
    "RSET": "250 2.0.0 ok",
    "QUIT": "221 2.0.0 bye",
    "ETRN": "250 2.0.0 queuing started",
    "NOOP": "250 ok",
}


class ScriptServer:
    """`replies`: step name -> reply text, or a list used one per command (the
    last repeats); "RCPT:addr" targets one recipient. `drop_after`: close after
    that many commands (greeting = 0; the end-of-data "." counts as one).
    `drop_at_byte`: close once that many octets of client input arrived."""

    def __init__(self, ext=EXT, replies=None, drop_after=None, drop_at_byte=None, keep=True):
        self.ext = list(ext)
        self.replies = dict(DEFAULT)
        for k in replies or {}:
            self.replies[k] = replies[k]
        self.used = {}
        self.drop_after = drop_after
        self.drop_at_byte = drop_at_byte
        self.keep = keep
        self.commands = []
        self.received = 0
        self.closed = False
        self.tls = False
        self.in_data = False
        self.bdat_left = 0  # octets of a BDAT chunk still to read (RFC 3030 §2)
        self.bdat_last = False
        self.data = bytearray()
        self.data_len = 0
        self.crc = 0
        self.partial = bytearray()
        self.sender = None
        self.rcpts = []
        self.messages = []  # (sender, rcpts, body bytes or None, length)
        self.login = 0
        self.started = False

    def greeting(self):
        if self.drop_after == 0:
            self.closed = True
            return b""
        return self._reply("GREET")

    def _reply(self, step, key=None):
        r = None
        if key is not None and key in self.replies:
            step = key
        r = self.replies[step]
        if isinstance(r, list):
            i = self.used.get(step, 0)
            self.used[step] = i + 1
            r = r[min(i, len(r) - 1)]
        return (r + "\r\n").encode()

    def feed(self, data):
        """Client octets in -> server reply octets out (stops at a drop)."""
        out = []
        i = 0
        n = len(data)
        while i < n and not self.closed:
            end = n
            if self.drop_at_byte is not None:
                if self.received >= self.drop_at_byte:
                    self.closed = True
                    break
                end = min(n, i + self.drop_at_byte - self.received)
            if self.bdat_left:
                k = min(end, i + self.bdat_left)
                self._chunk(data[i:k])
                self.received += k - i
                i = k
                if not self.bdat_left:
                    r = self._chunk_end()
                    if r:
                        out.append(r)
                continue
            j = data.find(b"\n", i, end)
            if j < 0:
                self.partial.extend(data[i:end])
                self.received += end - i
                i = end
                continue
            line = data[i : j + 1]
            if self.partial:
                self.partial.extend(line)
                line = bytes(self.partial)
                self.partial = bytearray()
            self.received += j + 1 - i
            i = j + 1
            r = self._line(line)
            if r:
                out.append(r)
        return b"".join(out)

    def _count(self):
        self.started = True
        self.n = len(self.commands)
        if self.drop_after is not None and self.n >= self.drop_after:
            self.closed = True
            return True
        return False

    def _chunk(self, octets):
        self.bdat_left -= len(octets)
        if self.keep:
            self.data.extend(octets)
        self.data_len += len(octets)
        self.crc = binascii.crc32(octets, self.crc)

    def _chunk_end(self):
        """A whole BDAT chunk is in: RFC 3030 §2, its reply (a refused one is read and discarded)."""
        self.commands.append("<chunk>")
        if self._count():
            return None
        if not self.bdat_last:
            return b"250 2.0.0 chunk ok\r\n"
        if self.sender is None or not self.rcpts:
            r = b"554 5.5.1 no valid recipients\r\n"
        else:
            r = self._reply("BDAT")
        if r[:1] == b"2":
            self.messages.append((self.sender, list(self.rcpts), bytes(self.data) if self.keep else None,
                                  self.data_len, self.crc))
        self.data = bytearray()
        self.data_len = 0
        self.crc = 0
        self.sender = None  # the transaction ends either way (as Postfix does)
        self.rcpts = []
        return r

    def _line(self, line):
        if self.in_data:
            if line == b".\r\n":
                self.in_data = False
                body = bytes(self.data) if self.keep else None
                self.commands.append(".")
                if self._count():
                    return None
                r = self._reply("DOT")
                if r[:1] == b"2":
                    self.messages.append((self.sender, list(self.rcpts), body, self.data_len, self.crc))
                self.data = bytearray()
                self.data_len = 0
                self.crc = 0
                self.sender = None
                self.rcpts = []
                return r
            if line[:1] == b".":
                line = line[1:]  # RFC 5321 §4.5.2 transparency
            if self.keep:
                self.data.extend(line)
            self.data_len += len(line)
            self.crc = binascii.crc32(line, self.crc)
            return None
        text = line.rstrip(b"\r\n").decode()
        verb = text.split(" ", 1)[0].upper()
        if self.login:
            verb = "AUTH"
        self.commands.append(text)
        if self._count():
            return None
        if verb == "EHLO":
            r = self.replies["EHLO"]
            if r is not None:
                return self._reply("EHLO")
            ext = [e for e in self.ext if not (self.tls and e == "STARTTLS")]
            lines = ["250-isp.test hello"] + ["250-" + e for e in ext]
            lines[-1] = "250 " + lines[-1][4:]
            return ("\r\n".join(lines) + "\r\n").encode()
        if verb == "STARTTLS":
            r = self._reply("STARTTLS")
            self.tls = r[:3] == b"220"
            return r
        if verb == "AUTH":
            if text.upper().startswith("AUTH LOGIN") or self.login:
                self.login += 1
                if self.login < 3:
                    return b"334 " + (b"VXNlcm5hbWU6" if self.login == 1 else b"UGFzc3dvcmQ6") + b"\r\n"
                self.login = 0
            return self._reply("AUTH")
        if verb == "MAIL":
            r = self._reply("MAIL")
            if r[:1] == b"2":
                self.sender = text[10:].split(">")[0][1:] if "<" in text else ""
                self.sender = text.split("<", 1)[1].split(">", 1)[0]
            return r
        if verb == "RCPT":
            addr = text.split("<", 1)[1].split(">", 1)[0]
            if self.sender is None:
                return b"503 5.5.1 need MAIL first\r\n"
            r = self._reply("RCPT", "RCPT:" + addr)
            if r[:1] == b"2":
                self.rcpts.append(addr)
            return r
        if verb == "DATA":
            if self.sender is None or not self.rcpts:
                return b"554 5.5.1 no valid recipients\r\n"
            r = self._reply("DATA")
            self.in_data = r[:3] == b"354"
            return r
        if verb == "BDAT" and "CHUNKING" in self.ext:
            words = text.split()
            self.bdat_left = int(words[1])
            self.bdat_last = len(words) > 2 and words[2].upper() == "LAST"
            if not self.bdat_left:
                return self._chunk_end()
            return None
        if verb == "RSET":
            self.sender = None
            self.rcpts = []
            return self._reply("RSET")
        if verb == "QUIT":
            self.closed = True
            return self._reply("QUIT")
        if verb in self.replies:
            return self._reply(verb)
        return b"502 5.5.2 unknown command\r\n"


class Source:
    """Hands envelopes to the client one by one and records decisions."""

    def __init__(self, envs):
        self.envs = list(envs)
        self.given = []
        self.done = []

    def next_envelope(self):
        if not self.envs:
            return None
        e = self.envs.pop(0)
        self.given.append(e)
        return e

    def envelope_done(self, env):
        self.done.append(env)


class BytesFile:
    """A read-only binary file over bytes (readinto + close), counting closes."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.closed = False

    def readinto(self, buf):
        n = min(len(buf), len(self.data) - self.pos)
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n

    def close(self):
        self.closed = True


class PatternFile:
    """A large synthetic message (`size` octets of 78-char lines, some starting
    with "."), generated on the fly so the test itself uses no RAM for it."""

    LINE = b".pattern line 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUV\r\n"

    def __init__(self, size):
        self.size = size
        self.pos = 0
        self.block = self.LINE * (4096 // len(self.LINE) + 2)

    def readinto(self, buf):
        n = min(len(buf), self.size - self.pos, 4096)
        off = self.pos % len(self.LINE)
        buf[:n] = memoryview(self.block)[off : off + n]
        self.pos += n
        return n

    def close(self):
        pass


def envelope(key, body, rcpts=("bob@example.com",), sender="alice@office.test"):
    return Envelope(key, sender, list(rcpts), len(body), lambda: BytesFile(body))


def converse(client, server, piece=4096, bufsize=1024, obufsize=256):
    """Run client and server to the end. Returns the number of client turns
    (client sends, then waits for the server)."""
    fr = Framer(client, bufsize)
    obuf = bytearray(obufsize)
    inbound = server.greeting()
    turns = 0
    while True:
        out = [0]
        replies = []

        def write(b):
            # stream to the server as we go (a 3 MB body never sits in RAM)
            if b and not server.closed:
                out[0] += 1
                r = server.feed(bytes(b))
                if r:
                    replies.append(r)

        i = 0
        while i < len(inbound) and not client.closing:
            sp = fr.space()
            k = min(piece, len(sp), len(inbound) - i)
            sp[:k] = inbound[i : i + k]
            fr.received(k)
            i += k
            while fr.process(write):
                p = client.producer
                while p is not None:  # as net does: take_reply() may start the next body
                    while True:
                        m = p.fill(obuf)
                        if not m:
                            break
                        write(obuf[:m])
                    client.producer = None
                    write(client.take_reply())
                    p = client.producer
            if client.tls is not None and not client.closing:
                if fr.start != fr.end:
                    raise AssertionError("data after 220 to STARTTLS")
                write(client.on_tls())
        if out[0]:
            turns += 1
        inbound = b"".join(replies)
        if inbound:
            continue
        if server.closed and not client.closing:
            client.on_eof()
        if client.closing or server.closed:
            break
        raise AssertionError("client stalled waiting; expect=%r" % (client.expect,))
    return turns
