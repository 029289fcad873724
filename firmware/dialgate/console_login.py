"""The console when console.password is set: nothing but `login PASSWORD` and
`quit` runs before a login (app serves it instead of console.ConsoleSession;
imported only where a password is set, so a board without one never loads it)."""

from . import log
from .console import ConsoleSession

_LOCKED = ["ERR login first: login PASSWORD"]


class LockedConsole(ConsoleSession):
    def __init__(self, peer, gw, commands, eol=b"\r\n"):
        ConsoleSession.__init__(self, peer, gw, commands, eol)
        self.locked = True

    def greeting(self):
        return self._lines(["dialgate console on %s, login PASSWORD first" % self.gw.cfg["hostname"], "OK"])

    def _answer(self, line):  # (ConsoleSession.on_line: a MemoryError here is an ERR too)
        text = line.strip()
        if text == b"login" or text[:6] == b"login ":
            try:
                pw = text[6:].decode().strip()
            except UnicodeError:
                pw = ""
            return self._lines(self.login(pw))
        if text in (b"quit", b"exit") and not self.timeout_ms:
            self.locked = True  # the UART console cannot close: quit logs out
        elif self.locked and text and text not in (b"quit", b"exit"):
            return self._lines(_LOCKED)
        return ConsoleSession._answer(self, line)

    def login(self, password):
        """`login PASSWORD` (never logged): checked against the console.password
        hash; a wrong one answers ERR, then the session pauses (auth.AuthThrottle,
        per address, kept apart from the mail users' so a console guesser cannot
        lock the office out of its mail)."""
        stored = self.gw.cfg["console.password"]
        if not stored:  # removed since this session began (console nopasswd)
            self.locked = False
            return ["no console password is set (console.password)", "OK"]
        gw = self.gw
        th = getattr(gw, "console_throttle", None)  # outlives this module's idle unloading
        if th is None:
            from .auth import AuthThrottle

            th = gw.console_throttle = AuthThrottle()
        ip = self.peer[0]
        wait = th.check(ip)
        if wait:
            self.pause_ms = 1000
            return ["ERR too many wrong passwords: try again in %d s" % (wait // 1000 + 1)]
        from .users import verify_password

        if password and verify_password(stored, password):
            th.succeeded(ip)
            self.locked = False
            log.info("console: login from %s", ip)
            return ["logged in", "OK"]
        self.pause_ms = th.failed(ip)
        log.warn("console: wrong password from %s", ip)
        return ["ERR wrong password"]
