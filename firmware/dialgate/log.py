"""Levelled log lines to the console and to a size-capped ring on flash.

The ring is two files, `FILE` and `FILE.1`, each at most half of
`log.max_bytes`; when `FILE` is full it replaces `FILE.1`, so the oldest half
is dropped first. Lines at `warn` and above are flushed at once; the rest are
flushed by `flush()` (the gateway calls it every few seconds) to spare flash.
"""

import sys

from . import compat
from .compat import const

_DEBUG = const(10)
INFO = 20
WARN = 30
ERROR = 40
LEVELS = {"debug": _DEBUG, "info": INFO, "warn": WARN, "error": ERROR}
_NAMES = {_DEBUG: "DEBUG", INFO: "INFO", WARN: "WARN", ERROR: "ERROR"}


class Log:
    def __init__(self):
        self.level = INFO
        self.console = True
        self.path = ""
        self.half = 16384
        self._f = None
        self._size = 0
        self.stream = sys.stdout

    def configure(self, level="info", path="", max_bytes=32768, console=True):
        self.close()
        self.level = LEVELS[level]
        self.console = console
        self.path = path
        self.half = max_bytes // 2
        if path:
            d = path.rsplit("/", 1)[0] if "/" in path else ""
            if d:
                compat.makedirs(d)
            try:
                self._size = compat.file_size(path)
            except OSError:
                self._size = 0
            self._f = open(path, "a")

    def close(self):
        if self._f is not None:
            try:
                self._f.close()
            except (OSError, ValueError):
                pass
            self._f = None

    def write(self, level, msg, args):
        if level < self.level:
            return
        if args:
            try:
                msg = msg % args
            except (TypeError, ValueError):
                msg = msg + " " + repr(args)
        line = "%s %s %s\n" % (_stamp(), _NAMES[level], msg)
        if self.console:
            try:
                self.stream.write(line)
            except OSError:
                pass
        f = self._f
        if f is None:
            return
        try:
            if self._size + len(line) > self.half:
                self._rotate()
                f = self._f
                if f is None:
                    return
            f.write(line)
            self._size += len(line)
            if level >= WARN:
                f.flush()
        except (OSError, ValueError):
            # A full or failing flash must not take the gateway down with it.
            self._f = None

    def _rotate(self):
        self.close()
        compat.replace(self.path, self.path + ".1")
        self._f = open(self.path, "a")
        self._size = 0

    def flush(self):
        if self._f is not None:
            try:
                self._f.flush()
            except (OSError, ValueError):
                self._f = None

    def tail(self, n):
        """The last `n` lines from the ring (oldest first), reading line by line."""
        self.flush()
        keep = []
        if not self.path:
            return keep
        for p in (self.path + ".1", self.path):
            try:
                f = open(p)
            except OSError:
                continue
            try:
                for line in f:
                    keep.append(line.rstrip("\n"))
                    if len(keep) > n:
                        keep.pop(0)
            finally:
                f.close()
        return keep


def _stamp():
    t = compat.wall_time()
    s = t % 86400
    return "%02d:%02d:%02d" % (s // 3600, (s // 60) % 60, s % 60)


LOG = Log()


def debug(msg, *args):
    LOG.write(_DEBUG, msg, args)


def info(msg, *args):
    LOG.write(INFO, msg, args)


def warn(msg, *args):
    LOG.write(WARN, msg, args)


def error(msg, *args):
    LOG.write(ERROR, msg, args)


def exception(msg, exc):
    LOG.write(ERROR, "%s: %s", (msg, compat.exc_text(exc)))
    if LOG.level <= _DEBUG:
        compat.print_exc(exc)
