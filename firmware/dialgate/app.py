"""The gateway process: read config, start listeners and console, run until stopped.

Same program on both runtimes: `python3 -m dialgate --config FILE` and
`micropython firmware/main.py --config FILE` both land in `main(argv)`.
"""

import asyncio
import sys

from . import compat, config, log
from .auth import AuthThrottle
from .console import Commands, ConsoleSession, add_base_commands
from .delivery import Router
from .link import add_commands as add_link_commands
from .link import make_link
from .net import Net
from .pop3_service import Pop3Service
from .proto import Session
from .queue_console import add_commands as add_queue_commands
from .relay import Relay
from .smtp_server import SmtpService
from .spool import Spool
from .users import UserStore
from .users import add_commands as add_user_commands

VERSION = "0.1.0"

USAGE = """usage: dialgate --config FILE [--board PROFILE] [--check]
  --config FILE     JSON configuration (see docs/config.md)
  --board PROFILE   board profile name or path (default: the config's "profile")
  --check           check the configuration and exit"""


class NotYetSession(Session):
    """Listener placeholder for a protocol not built yet: a temporary refusal."""

    def __init__(self, peer, reply):
        Session.__init__(self, peer)
        self.reply = reply
        self.closing = True

    def greeting(self):
        return self.reply


class Gateway:
    """What the running gateway holds: config, transport, console table, state."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.net = Net(cfg["board.buffer"], cfg["net.max_connections"])
        self.commands = Commands()
        add_base_commands(self.commands)
        # Storage (docs/storage.md): spool + maildrops + outbound queue, users/aliases, routing.
        self.spool = Spool(cfg["spool.path"], cfg["spool.reserve"])
        self.maildrops = self.spool.maildrops
        self.outq = self.spool.queue
        self.users = UserStore(cfg["spool.path"] + "/users.json", cfg["users.apop"], cfg["users.iterations"])
        self.router = Router(cfg, self.users)
        # Failed logins per client address, shared by POP3 and SMTP AUTH (auth.py).
        self.auth_throttle = AuthThrottle()
        # ESMTP server (docs/smtp.md); its TLS context is loaded in start().
        self.smtp = SmtpService(cfg, self.spool, self.router, self.users, None, self.auth_throttle)
        self.pop3 = Pop3Service(cfg, self.maildrops, self.users, self.auth_throttle, None, VERSION)
        add_user_commands(self.commands)
        self.started = compat.ticks_ms()
        self.link = make_link(cfg)  # link.py: up()/down()/is_up()/describe(); no I/O until up()
        add_link_commands(self.commands)
        self.relay = Relay(self)  # outbound queue runner (docs/queue.md); runs while the link is up
        add_queue_commands(self.commands)
        self.stopping = None
        self.tasks = []

    def uptime_s(self):
        return compat.ticks_diff(compat.ticks_ms(), self.started) // 1000

    def link_state(self):
        if self.link is None:
            return "down (%s link not started)" % self.cfg["link.type"]
        return self.link.describe()

    def status_lines(self):
        compat.gc_collect()
        n = self.net
        kinds = {}
        for c in n.conns:
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        per = ", ".join(["%s %d" % (k, kinds[k]) for k in sorted(kinds)])
        free = compat.disk_free(self.cfg["spool.path"])
        return [
            "version: %s" % VERSION,
            "uptime: %ds" % self.uptime_s(),
            "heap: used %d free %d" % (compat.mem_alloc(), compat.mem_free()),
            "connections: %d of %d%s" % (len(n.conns), n.max_connections, (" (" + per + ")") if per else ""),
            "link: %s" % self.link_state(),
            "spool: %s free %d" % (self.cfg["spool.path"], free),
            "listening: %s" % ", ".join(n.listening),
        ]

    async def start(self):
        cfg = self.cfg
        compat.makedirs(cfg["spool.path"])
        self.spool.recover()
        self.smtp.tls = self._server_tls("smtp")
        self.pop3.tls = self.smtp.tls  # POP3 STLS (RFC 2595) uses the same certificate
        for h, p in cfg.addrs("smtp.listen"):
            await self._listen("smtp", h, p, self.smtp.session)
        for h, p in cfg.addrs("pop3.listen"):
            await self._listen("pop3", h, p, self.pop3.session)
        for h, p in cfg.addrs("console.listen"):
            await self._listen("console", h, p, lambda peer: ConsoleSession(peer, self, self.commands))
        if cfg["console.stdin"]:
            self.tasks.append(asyncio.create_task(self._stdin_console()))
        self.tasks.append(asyncio.create_task(self.relay.run()))
        for line in self.net.listening:
            log.info("listening: %s", line)

    def _server_tls(self, kind):
        """The LAN-side TLS context from `KIND.tls_cert`/`KIND.tls_key`, or None (no STARTTLS)."""
        cert = self.cfg[kind + ".tls_cert"]
        if not cert:
            return None
        key = self.cfg[kind + ".tls_key"] or cert
        try:
            ctx = compat.tls_server_context(cert, key)
        except (OSError, ValueError) as e:
            raise StartError("%s.tls_cert: cannot load %s / %s (%s)" % (kind, cert, key, e))
        if ctx is None:
            log.warn("%s.tls_cert: this runtime has no TLS; STARTTLS is not offered", kind)
        return ctx

    async def _listen(self, kind, host, port, factory):
        try:
            await self.net.listen(kind, host, port, factory)
        except OSError as e:
            raise StartError("%s.listen: cannot listen on %s:%d (%s)" % (kind, host, port, e))

    async def _stdin_console(self):
        stream = compat.stdin_stream()
        if stream is None:
            log.warn("console.stdin: this runtime has no asyncio stdin; use console.listen")
            return
        await self.net.serve(stream, lambda peer: ConsoleSession(peer, self, self.commands, b"\n"), "console")

    async def run(self):
        self.stopping = asyncio.Event()
        await self.start()
        compat.install_stop(self.stopping.set)
        log.info("dialgate %s up as %s (%s profile)", VERSION, self.cfg["hostname"], self.cfg["board.name"])
        ticker = asyncio.create_task(self._tick())
        try:
            await self.stopping.wait()
        finally:
            log.info("stopping")
            ticker.cancel()
            for t in self.tasks:
                t.cancel()
            if self.link is not None:
                await self.link.down()  # never leave the line up (and billing) on exit
            await self.net.close()
            log.LOG.flush()

    async def _tick(self):
        while True:
            await asyncio.sleep(5)
            log.LOG.flush()


class StartError(Exception):
    pass


def parse_args(argv):
    opts = {"config": None, "board": None, "check": False}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(USAGE)
            compat.exit(0)
        elif a == "--check":
            opts["check"] = True
        elif a in ("--config", "--board") and i + 1 < len(argv):
            opts[a[2:]] = argv[i + 1]
            i += 1
        else:
            _die("argument %s: not understood\n%s" % (a, USAGE))
        i += 1
    if not opts["config"]:
        _die("--config FILE is required\n%s" % USAGE)
    return opts


def _die(msg):
    sys.stderr.write("dialgate: %s\n" % msg)
    compat.exit(2)


def main(argv):
    opts = parse_args(argv)
    try:
        cfg = config.load(opts["config"], opts["board"])
    except config.ConfigError as e:
        _die("config: %s" % e)
        return
    if opts["check"]:
        print("config ok")
        return
    log.LOG.configure(cfg["log.level"], cfg["log.file"], cfg["log.max_bytes"], cfg["log.console"])
    gw = Gateway(cfg)
    try:
        asyncio.run(gw.run())
    except StartError as e:
        _die(str(e))
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        log.LOG.close()
