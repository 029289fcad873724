"""Hayes AT modem conversation, sans-IO: modem output in, commands and one outcome out.

`ResultReader` frames result codes (V1 verbose or V0 numeric, ITU-T V.250 §5.7);
`Call` walks one call attempt (wake with AT, init strings, dial) and ends in an
outcome. The async driver (modem_dialer) owns the port, the clock and DTR.
"""

from .compat import const

# Outcomes of a call attempt: what the driver, the link and the console report.
CONNECTED = "connected"
BUSY = "busy"
NO_CARRIER = "no-carrier"
NO_DIALTONE = "no-dialtone"
NO_ANSWER = "no-answer"
ERROR = "error"
SILENT = "silent"  # no final result before the deadline
NO_MODEM = "no-modem"  # no OK to AT, not even after a reset
STOPPED = "stopped"  # the operator hung up while we dialled

# Outcomes worth dialling again after a backoff (the line or the far end was busy).
REDIAL = (BUSY, NO_CARRIER, NO_ANSWER, NO_DIALTONE, SILENT)

_MAX_LINE = const(96)  # longest result line kept; longer ones (line noise) are cut

# Result codes. V.250 §5.7.1 Table 1 defines 0-8; 10-18 are the common Hayes/USR
# "CONNECT <rate>" extensions seen with V0 (X1 and above).
_VERBOSE = {
    "OK": "OK",
    "CONNECT": "CONNECT",
    "RING": "RING",
    "NO CARRIER": "NO CARRIER",
    "ERROR": "ERROR",
    "NO DIALTONE": "NO DIALTONE",
    "NO DIAL TONE": "NO DIALTONE",
    "BUSY": "BUSY",
    "NO ANSWER": "NO ANSWER",
}
NUMERIC = {
    0: ("OK", 0),
    1: ("CONNECT", 0),
    2: ("RING", 0),
    3: ("NO CARRIER", 0),
    4: ("ERROR", 0),
    5: ("CONNECT", 1200),
    6: ("NO DIALTONE", 0),
    7: ("BUSY", 0),
    8: ("NO ANSWER", 0),
    10: ("CONNECT", 2400),
    11: ("CONNECT", 4800),
    12: ("CONNECT", 9600),
    13: ("CONNECT", 7200),
    14: ("CONNECT", 12000),
    15: ("CONNECT", 14400),
    16: ("CONNECT", 19200),
    17: ("CONNECT", 38400),
    18: ("CONNECT", 57600),
}
_FINAL_DIAL = {
    "CONNECT": CONNECTED,
    "BUSY": BUSY,
    "NO CARRIER": NO_CARRIER,
    "NO DIALTONE": NO_DIALTONE,
    "NO ANSWER": NO_ANSWER,
    "ERROR": ERROR,
}


def classify(line):
    """One framed line -> (code, speed, text).

    code: a V.250 result name ("OK", "CONNECT", ...), "ECHO" for our own command
    echoed back (E1), or "OTHER" (information text, line noise). speed: bps from
    a CONNECT form, 0 when it names none. text: the line as printable ASCII.
    """
    try:
        text = line.decode().strip()
    except UnicodeError:
        return ("OTHER", 0, "")
    if not text:
        return ("OTHER", 0, "")
    up = text.upper()
    if up.isdigit() and len(up) <= 3:
        r = NUMERIC.get(int(up))
        if r is None:
            return ("OTHER", 0, text)
        return (r[0], r[1], text)
    if up.startswith("AT") or up == "A/":
        return ("ECHO", 0, text)
    if up.startswith("CONNECT"):
        rest = up[7:]
        if rest and rest[0] not in " /":
            return ("OTHER", 0, text)
        return ("CONNECT", connect_speed(rest), text)
    code = _VERBOSE.get(up)
    if code is None:
        return ("OTHER", 0, text)
    return (code, 0, text)


def connect_speed(rest):
    """Rate from the tail of a CONNECT line: " 33600/ARQ/V34/LAPM/V42BIS" -> 33600,
    " 115200" -> 115200, "" -> 0 (plain CONNECT: the DTE rate), " 1200/75" -> 1200."""
    i = 0
    n = len(rest)
    while i < n and rest[i] == " ":
        i += 1
    j = i
    while j < n and "0" <= rest[j] <= "9":
        j += 1
    if j == i or j - i > 9:
        return 0
    return int(rest[i:j])


class ResultReader:
    """Frames modem output into lines at CR or LF; empty lines are skipped.

    feed(data) returns a list of classified lines (see classify). A line longer
    than MAX_LINE keeps its first MAX_LINE octets: line noise costs no memory.
    """

    def __init__(self):
        self.buf = bytearray(_MAX_LINE)
        self.n = 0

    def feed(self, data):
        out = []
        buf = self.buf
        for b in data:
            if b == 13 or b == 10:
                if self.n:
                    out.append(classify(bytes(buf[: self.n])))
                    self.n = 0
            elif self.n < _MAX_LINE:
                buf[self.n] = b
                self.n += 1
        return out

    def reset(self):
        self.n = 0


# Phases of a Call
_WAKE = const(0)
_RESET = const(1)
_INIT = const(2)
_DIAL = const(3)
_DONE = const(4)


class Call:
    """One call attempt, sans-IO: wake the modem, send the init strings, dial.

    Drive it like this: write `start()`; feed modem output to `receive(data)`;
    when `timeout_ms` passes with no final result call `expired()`. Both return
    the next command to write (bytes) or None. When `want_reset` turns True,
    toggle DTR and call `reset_done()` (it returns `ATZ`). The attempt is over
    when `outcome` is set: CONNECTED (with `speed`, `connect`), or one of the
    failure outcomes with `detail` saying which command or result.
    """

    def __init__(self, init, dial, cmd_ms=3000, connect_ms=90000, wake_tries=2):
        self.init = init  # list of command strings ("AT&C1&D2")
        self.dial = dial  # dial command ("ATDT5551234")
        self.cmd_ms = cmd_ms
        self.connect_ms = connect_ms
        self.wake_tries = wake_tries
        self.reader = ResultReader()
        self.phase = _WAKE
        self.step = 0
        self.tries = 0
        self.reset_tried = False
        self.want_reset = False
        self.timeout_ms = cmd_ms
        self.outcome = None
        self.speed = 0
        self.connect = ""
        self.detail = ""
        self.rings = 0

    def _cmd(self, text):
        return text.encode() + b"\r"

    def start(self):
        self.tries = 1
        return self._cmd("AT")

    def _finish(self, outcome, detail):
        self.outcome = outcome
        self.detail = detail
        self.phase = _DONE
        self.timeout_ms = 0
        return None

    def _next_init(self):
        if self.step < len(self.init):
            self.phase = _INIT
            self.timeout_ms = self.cmd_ms
            cmd = self.init[self.step]
            self.step += 1
            return self._cmd(cmd)
        self.phase = _DIAL
        self.timeout_ms = self.connect_ms
        return self._cmd(self.dial)

    def receive(self, data):
        """Modem output (any split). Returns the next command to send, or None."""
        send = None
        for code, speed, text in self.reader.feed(data):
            if self.phase == _DONE:
                break
            if code == "RING":  # V.250 §6.3.4: unsolicited, an incoming call we do not take
                self.rings += 1
                continue
            if code in ("ECHO", "OTHER"):
                continue
            send = self._result(code, speed, text)
        return send

    def _result(self, code, speed, text):
        phase = self.phase
        if phase == _DIAL:
            outcome = _FINAL_DIAL.get(code)
            if outcome is None:  # "OK" to a data dial: not a data call
                return self._finish(ERROR, "%s answered %s" % (self.dial, text))
            self.speed = speed
            self.connect = text
            return self._finish(outcome, text)
        if code == "OK":
            if phase == _WAKE:
                self.step = 0
            return self._next_init()
        if code == "ERROR":
            cmd = "AT" if phase == _WAKE else ("ATZ" if phase == _RESET else self.init[self.step - 1])
            return self._finish(ERROR, "%s answered ERROR" % cmd)
        return None  # a stray NO CARRIER etc. while not dialling: ignore

    def expired(self):
        """No final result within timeout_ms. Returns the next command, or None."""
        if self.phase == _WAKE or self.phase == _RESET:
            if self.tries < self.wake_tries:
                self.tries += 1
                self.phase = _WAKE
                self.timeout_ms = self.cmd_ms
                return self._cmd("AT")
            if not self.reset_tried:
                self.want_reset = True
                return None
            return self._finish(NO_MODEM, "no answer to AT, not even after a reset")
        if self.phase == _INIT:
            return self._finish(SILENT, "no answer to %s" % self.init[self.step - 1])
        if self.phase == _DIAL:
            return self._finish(SILENT, "no result to %s within %d s" % (self.dial, self.connect_ms // 1000))
        return None

    def abort(self, outcome, detail):
        """End the attempt from outside (the driver gave up on it)."""
        return self._finish(outcome, detail)

    def reset_done(self):
        """The driver toggled DTR; send ATZ (then AT again)."""
        self.want_reset = False
        self.reset_tried = True
        self.reader.reset()
        self.phase = _RESET
        self.tries = 0
        self.timeout_ms = self.cmd_ms
        return self._cmd("ATZ")


def backoff_ms(attempt, base_ms, cap_ms):
    """Delay before redial number `attempt` (1, 2, ...): base, 2*base, 4*base ... capped."""
    d = base_ms
    i = 1
    while i < attempt and d < cap_ms:
        d *= 2
        i += 1
    return min(d, cap_ms)
