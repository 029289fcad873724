"""The gateway process: read config, start listeners and console, run until stopped.

Same program on both runtimes: `python3 -m dialgate --config FILE` and
`micropython firmware/main.py --config FILE` both land in `main(argv)`.
"""

import asyncio
import sys

from . import compat, config, log
from .compat import const
from .console import Commands, add_base_commands, session
from .net import Net

VERSION = "0.1.0"
_ADMIT_POLL_MS = const(100)
_ADMIT_POLLS = const(50)  # 5 s: the longest an SMTP greeting waits for a queue run's code to go

# Console commands whose module is imported on first use: first word -> module.
LAZY_COMMANDS = {
    "user": "users_console",
    "alias": "users_console",
    "queue": "queue_console",
    "stats": "stats_console",
    "dial": "link_console",
    "hangup": "link_console",
    "schedule": "link_console",
    "shutdown": "console_stop",
    "restart": "console_stop",
}


class Gateway:
    """What the running gateway holds: config, transport, console table, state.

    Features are built on first use (`__getattr__` below), so a board's heap
    holds only what is running: at boot the core plus the spool; the SMTP or
    POP3 stack when its first client connects; the link, modem and relay
    client when the office goes online (docs/architecture.md, "Memory").
    Test whether one is loaded with `"relay" in gw.__dict__`, never hasattr().
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.restart = False  # the console's `restart`: main() starts the gateway again
        self.unapplied = []  # keys `config set` saved since the start (in force after a restart)
        self.tls = None  # what STARTTLS/STLS are offered with (_tls_offer), set once start() loads the certificate
        self.net = Net(compat.io_buffer(cfg["board.buffer"]), cfg["net.max_connections"], cfg["net.backlog"])
        self.commands = Commands()
        add_base_commands(self.commands)
        for word in LAZY_COMMANDS:
            self.commands.add_lazy(word, LAZY_COMMANDS[word])
        self.started = compat.ticks_ms()
        self.stopping = None
        self.wdt = None  # machine.WDT on a board with board.watchdog_ms, fed by _tick
        self.tasks = []
        self._session_task = None
        self.busy = {}  # feature -> ticks when last seen in use (idle unloading)
        self.link_last = None  # the link's status line when it was unloaded
        self.unloads = 0

    def __getattr__(self, name):
        make = _MAKERS.get(name)
        if make is None:
            raise AttributeError(name)
        value = make(self)
        setattr(self, name, value)
        return value

    # ---- features, built on first use -----------------------------------------
    # Storage (docs/storage.md): spool + maildrops + outbound queue, users/aliases, routing.

    def _spool(self):
        from .spool import Spool

        return Spool(self.cfg["spool.path"], self.cfg["spool.reserve"], write_buffer=self.cfg["board.buffer"])

    def _users(self):
        from .users import UserStore

        cfg = self.cfg
        return UserStore(cfg["spool.path"] + "/users.json", cfg["users.apop"], cfg["users.iterations"])

    def _router(self):
        from .delivery import Router

        return Router(self.cfg, self.users)

    def _auth_throttle(self):
        # Failed logins per client address, shared by POP3 and SMTP AUTH (auth.py).
        from .auth import AuthThrottle

        return AuthThrottle()

    def _smtp(self):
        # ESMTP server (docs/smtp.md)
        from .smtp_server import SmtpService

        return SmtpService(self.cfg, self.spool, self.router, self.users, self.tls,
                           lambda: self.auth_throttle)  # shared with POP3, loaded on the first AUTH

    def _pop3(self):
        # POP3 server (docs/pop3.md); STLS (RFC 2595) uses the SMTP certificate.
        from .pop3_service import Pop3Service

        return Pop3Service(self.cfg, self.maildrops, self.users, self.auth_throttle, self.tls, VERSION)

    def _tls_offer(self):
        """`self.tls` where start() made a context: what the LAN servers offer
        STARTTLS / STLS with, called at the command. The context (`server_tls`)
        is made then, not for every session: about 6 KB of a board's heap that
        the ISP's delivery after ETRN, the call's peak, needs only if it asks for TLS."""
        return self.server_tls

    def _link(self):
        # link.py: up()/down()/is_up()/describe(); no I/O until up()
        from .link import make_link

        return make_link(self.cfg)

    def _relay(self):
        # outbound queue runner (docs/queue.md): the dial session flushes it
        from .relay import Relay

        return Relay(self)

    def _sessions(self):
        # the owner of the line: scheduler, dial sessions, cost log (docs/sessions.md)
        from .session_run import SessionRunner

        return SessionRunner(self)

    def _costlog(self):
        from .costlog import CostLog

        sp = self.spool
        return CostLog(sp.path("calls.log"), sp.path("calls.log.tmp"), self.cfg["session.cost_log_bytes"], sp.flash)

    async def start(self):
        cfg = self.cfg
        compat.makedirs(cfg["spool.path"])
        self.spool.recover()
        ctx = self._server_tls("smtp")  # a certificate that does not load stops the start
        if cfg["board.unload_after"] <= 0:
            self.server_tls = ctx  # kept; a board that unloads makes it again on the first STARTTLS
        else:
            compat.unload("dialgate.compat_tls")  # so is the code that makes it
        ctx = None
        admit = self._admit_smtp if cfg["board.unload_after"] > 0 else None
        for h, p in cfg.addrs("smtp.listen"):
            await self._listen("smtp", h, p, lambda peer: self.smtp.session(peer), admit)
        for h, p in cfg.addrs("pop3.listen"):
            await self._listen("pop3", h, p, lambda peer: self.pop3.session(peer))
        for h, p in cfg.addrs("console.listen"):
            await self._listen("console", h, p, lambda peer: session(peer, self))
        if cfg["console.stdin"]:
            self.tasks.append(asyncio.create_task(self._stdin_console()))
        self._session_task = asyncio.create_task(self.sessions.run())
        for msg in cfg.deprecated:
            log.warn("config: %s", msg)
        for line in self.net.listening:
            log.info("listening: %s", line)

    def _server_tls(self, kind, starting=True):
        """The LAN-side TLS context from `KIND.tls_cert`/`KIND.tls_key`, or None
        (no STARTTLS). Made in start(), where a certificate that does not load
        stops the gateway; on a board it is not kept from there, goes with the
        LAN servers' other state (app_unload.LAN_STATE), and is made again at
        the next STARTTLS, where one that no longer loads is logged and that
        client told 454 (RFC 3207 §4; POP3: -ERR [SYS/TEMP])."""
        cert = self.cfg[kind + ".tls_cert"]
        if not cert:
            return None
        key = self.cfg[kind + ".tls_key"] or cert
        from .compat_tls import tls_server_context

        try:
            ctx = tls_server_context(cert, key)
        except (OSError, ValueError) as e:
            why = "%s.tls_cert: cannot load %s / %s (%s)" % (kind, cert, key, e)
            if starting:
                raise StartError(why)
            log.error("%s; STARTTLS is refused (454) until it loads", why)
            return None
        if starting:  # offered only where a context loads: not in a runtime without TLS
            self.tls = self._tls_offer if ctx is not None else None
            if ctx is None:
                log.warn("%s.tls_cert: this runtime has no TLS; STARTTLS is not offered", kind)
        return ctx

    async def _listen(self, kind, host, port, factory, admit=None):
        try:
            await self.net.listen(kind, host, port, factory, admit)
        except OSError as e:
            raise StartError("%s.listen: cannot listen on %s:%d (%s)" % (kind, host, port, e))

    async def _admit_smtp(self):
        """Where features unload: an SMTP connection that finds the SMTP server
        unloaded while a call's queue run still holds its own code (relay_run,
        the SMTP client: about 25 KB as .mpy) waits for that code to go, up to
        5 s, before the server loads. The ISP's delivery after ETRN arrives
        while our connection is still saying QUIT, and the two stacks at once
        were the office day's peak (docs/architecture.md, "Memory"). The
        greeting is that much later; a client waits 5 minutes for it (RFC 5321
        §4.5.3.2.1)."""
        d = self.__dict__
        n = 0
        while (n < _ADMIT_POLLS and "smtp" not in d and "dialgate.relay_run" in sys.modules
               and "sessions" in d and d["sessions"].current is not None):
            await asyncio.sleep(_ADMIT_POLL_MS / 1000)
            n += 1

    async def _stdin_console(self):
        stream = compat.stdin_stream()
        if stream is None:
            log.warn("console.stdin: this runtime has no asyncio stdin; use console.listen")
            return
        await self.net.serve(stream, lambda peer: session(peer, self, b"\n").uart(), "console")

    async def run(self):
        self.stopping = asyncio.Event()
        # before start(): its listeners are open (a supervisor may already stop us)
        # while recovery and the rest of start run; a SIGTERM then stops cleanly
        compat.install_stop(self.stopping.set)
        await self.start()
        log.info("dialgate %s up as %s (%s profile)", VERSION, self.cfg["hostname"], self.cfg["board.name"])
        if self.cfg["board.watchdog_ms"]:  # after boot: spool recovery may take long
            from .compat_wdt import watchdog

            self.wdt = watchdog(self.cfg["board.watchdog_ms"])
        ticker = asyncio.create_task(self._tick())
        try:
            await self.stopping.wait()
        finally:
            log.info("stopping")
            ticker.cancel()
            if self.wdt is not None:
                self.wdt.feed()  # the hang-up below may take a few seconds
            for t in self.tasks:
                t.cancel()
            if self._session_task is not None:
                self._session_task.cancel()  # a call in progress hangs up and writes its record
                try:
                    await self._session_task
                except (asyncio.CancelledError, Exception):
                    pass
            if "link" in self.__dict__:
                await self.link.down()  # never leave the line up (and billing) on exit
            await self.net.close()
            log.LOG.flush()

    def request_session(self, why="operator"):
        """The console's `dial`: the session owner makes the call (scheduler limits aside)."""
        self.sessions.request(why)

    async def _tick(self):
        """Once a second: feed the watchdog (a loop that stops coming here resets
        the board), flush the log, unload idle features."""
        n = 0
        while True:
            if self.wdt is not None:
                self.wdt.feed()
            await asyncio.sleep(1)
            n += 1
            try:
                if n % 5 == 0:
                    log.LOG.flush()
                after = self.cfg["board.unload_after"]
                if after > 0:
                    self.unload_idle(compat.ticks_ms(), after * 1000)
            except Exception as e:  # a tight heap (MemoryError), a failing flash: the tick goes on feeding
                compat.gc_collect()
                try:
                    log.warn("tick: %s", compat.exc_text(e))
                except MemoryError:
                    pass

    def unload_idle(self, now, after_ms):
        """Give the heap back from features idle for `after_ms` (app_unload:
        imported only where `board.unload_after` is set). Returns what went."""
        from .app_unload import unload_idle

        return unload_idle(self, now, after_ms)


class StartError(Exception):
    pass


_MAKERS = {
    "spool": Gateway._spool,
    "maildrops": lambda gw: gw.spool.maildrops,
    "outq": lambda gw: gw.spool.queue,
    "users": Gateway._users,
    "router": Gateway._router,
    "auth_throttle": Gateway._auth_throttle,
    "server_tls": lambda gw: gw._server_tls("smtp", False),
    "smtp": Gateway._smtp,
    "pop3": Gateway._pop3,
    "link": Gateway._link,
    "relay": Gateway._relay,
    "sessions": Gateway._sessions,
    "costlog": Gateway._costlog,
}


def _die(msg):
    sys.stderr.write("dialgate: %s\n" % msg)
    compat.exit(2)


def main(argv):
    from .config_load import parse_args  # start-up only: dropped with config_load below

    opts = parse_args(argv)
    # `del`, not a helper function: a returned helper's frame can leave a stale
    # pointer the collector scans conservatively, pinning config_load (5 KB, measured)
    del parse_args
    while True:  # again after the console's `restart` where the runtime cannot start afresh
        try:
            cfg = config.load(opts["config"], opts["board"])
        except config.ConfigError as e:
            _die("config: %s" % e)
            return
        if opts["check"]:
            print("config ok")
            return
        compat.unload("dialgate.config_load")  # checking is done: give its code back
        log.LOG.configure(cfg["log.level"], cfg["log.file"], cfg["log.max_bytes"], cfg["log.console"])
        if cfg["board.unload_after"] > 0 and compat.MICROPYTHON:  # a board that unloads: its heap is tight
            n = compat.intern_module_names(compat.__file__.rpartition("/")[0])
            log.info("memory: the names of %d firmware modules interned at start (board.unload_after)", n)
        compat.gc_threshold(cfg["board.gc_threshold"])
        gw = Gateway(cfg)
        try:
            asyncio.run(gw.run())
        except StartError as e:
            _die(str(e))
        except KeyboardInterrupt:
            log.info("interrupted")
        finally:
            if gw.restart:
                log.info("restarting")
            log.LOG.close()
        if not gw.restart:
            return
        gw = cfg = None
        # a board resets (a fresh heap; a started machine.WDT cannot be stopped),
        # CPython executes itself again (the same pid, new code and config); the
        # unix port can do neither and starts again here
        compat.restart()
