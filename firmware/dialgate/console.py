"""The admin console: one command per line, every reply ends with `OK` or `ERR <reason>`.

Sans-IO: `ConsoleSession` is a proto.Session served by `net` over TCP on a host
or over the UART/stdin on a board. Commands live in one table; each feature
adds its rows with `Commands.add()` when the gateway starts.
"""

from . import compat, log
from .proto import Session


class CommandError(Exception):
    """Raised by a command to answer `ERR <reason>`."""


class Commands:
    """The command table: "word" or "word sub" -> (handler, usage, summary).

    A handler is `fn(gw, args)` with `args` the list of remaining words; it
    returns a list of text lines (may be empty) or raises CommandError.
    `secret` commands have their arguments kept out of the log.
    """

    def __init__(self):
        self.table = {}
        self.secret = {}
        self.lazy = {}  # first word -> module whose add_commands() adds that word's rows
        self.loaded = {}  # lazy module -> ([its words], [the rows it added])
        self.used = compat.ticks_ms()  # last command run (idle unloading)

    def add_lazy(self, word, module):
        """Rows starting with `word` come from `dialgate.<module>.add_commands`,
        imported on first use (its code stays off the heap until then)."""
        self.lazy[word] = module

    def load(self, word=None):
        """Import the module behind `word` (every lazy module if None)."""
        words = [word] if word is not None else list(self.lazy)
        for w in words:
            mod = self.lazy.get(w)
            if mod is None:
                continue
            words_of = [k for k in self.lazy if self.lazy[k] == mod]
            for k in words_of:
                del self.lazy[k]
            before = list(self.table)
            __import__("dialgate." + mod, None, None, ["add_commands"]).add_commands(self)
            self.loaded[mod] = (words_of, [k for k in self.table if k not in before])

    def unload(self, keep=()):
        """Drop the rows of every lazy module loaded so far (but those in `keep`)
        and forget the modules (app's idle unloading); the next use imports them again."""
        for mod in list(self.loaded):
            if mod in keep:
                continue
            words_of, rows = self.loaded.pop(mod)
            for k in rows:
                compat.forget(self.table, k)
                compat.forget(self.secret, k)
            for w in words_of:
                self.lazy[w] = mod
            compat.unload("dialgate." + mod)
        compat.unload("dialgate.console_login")  # loaded by a login, not by a command
        compat.unload("dialgate.users_edit")  # loaded by the user store's first change

    def add(self, name, fn, usage, summary, secret=False):
        self.table[name] = (fn, usage, summary)
        if secret:
            self.secret[name] = True

    def find(self, words):
        if words[0] in self.lazy:
            self.load(words[0])
        if len(words) >= 2:
            two = words[0] + " " + words[1]
            if two in self.table:
                return two, words[2:]
        if words[0] in self.table:
            return words[0], words[1:]
        return None, None

    def run(self, gw, line):
        """Execute one command line -> list of reply lines ending in OK / ERR."""
        words = line.split()
        if not words:
            return []
        self.used = compat.ticks_ms()
        name, args = self.find(words)
        if name is None:
            log.info("console: unknown command %s", words[0][:32])
            return ["ERR unknown command %s (try help)" % words[0][:32]]
        if name in self.secret:
            log.info("console: %s", name)
        else:
            log.info("console: %s", line[:120])
        try:
            out = self.table[name][0](gw, args)
        except CommandError as e:
            return ["ERR %s" % e]
        except MemoryError:  # (on_line answers it)
            raise
        except Exception as e:  # a broken command must not kill the console
            log.exception("console " + name, e)
            return ["ERR internal error: %s" % type(e).__name__]
        out = list(out or [])
        out.append("OK")
        return out


_OUT_OF_MEMORY = b"ERR out of memory: try again"


class ConsoleSession(Session):
    """One console: a TCP connection, or the board's UART (timeout_ms 0: net
    never closes it, and `quit` cannot: nothing would reopen it). With
    console.password set the gateway serves console_login.LockedConsole instead."""

    max_line = 512
    timeout_ms = 3600000  # an operator may leave the console open a long while

    def __init__(self, peer, gw, commands, eol=b"\r\n"):
        Session.__init__(self, peer)
        self.gw = gw
        self.commands = commands
        self.eol = eol

    def uart(self):
        self.timeout_ms = 0
        return self

    def greeting(self):
        return self._lines(["dialgate console on %s, `help` lists commands" % self.gw.cfg["hostname"], "OK"])

    def _lines(self, lines):
        eol = self.eol
        return eol.join([x.encode() for x in lines]) + eol

    def on_line(self, line):
        try:
            return self._answer(line)
        except MemoryError:
            # a board's heap, full or in pieces (a long reply is one block): the
            # console lives on, and the UART's could not be opened again
            compat.gc_collect()
            return _OUT_OF_MEMORY + self.eol

    def _answer(self, line):
        try:
            text = line.decode()
        except UnicodeError:
            return self._lines(["ERR not UTF-8 text"])
        text = text.strip()
        if text in ("quit", "exit"):
            self.closing = self.timeout_ms != 0
            return self._lines(["bye", "OK"])
        out = self.commands.run(self.gw, text)
        if not out:
            return None
        return self._lines(out)

    def on_overflow(self):
        return self._lines(["ERR line too long (max %d octets)" % self.max_line])


def need(args, n, usage):
    if len(args) < n:
        raise CommandError("usage: " + usage)


def add_base_commands(commands):
    """status, memory, log, config get/set (console_base) and help (console_help), imported on first use."""
    for word in ("status", "memory", "log", "config"):
        commands.add_lazy(word, "console_base")
    commands.add_lazy("help", "console_help")
    commands.add_lazy("login", "console_help")
    commands.add_lazy("console", "console_auth")


def session(peer, gw, eol=b"\r\n"):
    """A console session for `peer` (console_login's when console.password is set)."""
    if gw.cfg["console.password"]:
        from .console_login import LockedConsole

        return LockedConsole(peer, gw, gw.commands, eol)
    return ConsoleSession(peer, gw, gw.commands, eol)
