"""Linux (Raspberry Pi): pppd owns the modem port and runs our dialler as its
`connect` program; `updetach` makes pppd exit 0 once the link is up (CPython only).

The connect program: `python3 -m dialgate.link_pppd connect SETTINGS.json`, with
the tty on stdin/stdout. It writes the dial outcome to SETTINGS.json's "status"
file so that pppd's exit 8 ("connect script failed") still says why.
"""

import asyncio

from . import compat, log, modem
from .compat import const
from .link import NO_PORT, PPP_FAILED, UP, Link

# pppd(8) EXIT STATUS -> our outcome
PPPD_EXIT = {
    1: "pppd-error",
    2: "pppd-options",
    3: "pppd-not-root",
    4: "pppd-no-kernel-ppp",
    5: "pppd-signal",
    6: "port-locked",
    7: NO_PORT,
    8: "connect-failed",  # replaced by the dialler's own outcome when it left one
    9: "pppd-pty",
    10: PPP_FAILED,  # PPP negotiation failed
    11: "auth-failed",  # the peer failed to authenticate
    12: "idle",
    13: "connect-time",
    14: "callback",
    15: "peer-dead",  # LCP echo requests unanswered
    16: modem.NO_CARRIER,  # the modem hung up
    17: "loopback",
    18: "init-failed",
    19: "auth-failed",  # we failed to authenticate to the peer
}

_MODEM_KEYS = const(("modem.port", "modem.baud", "modem.profile", "modem.number", "modem.init", "modem.apn",
               "modem.speaker", "modem.dial", "modem.command_timeout", "modem.connect_timeout",
               "modem.guard_ms", "modem.redial", "modem.redial_delay", "modem.redial_delay_max"))


class PppdLink(Link):
    kind = "pppd"

    def __init__(self, cfg):
        Link.__init__(self, cfg)
        self.pid = 0
        self.dir = cfg["spool.path"] + "/pppd"
        self.pidfile = cfg["link.pppd_pidfile"]

    def _argv(self, settings_path):
        import sys

        cfg = self.cfg
        peer = cfg["link.pppd_peer"]
        if peer:
            # /etc/ppp/peers/PEER (root's file) holds the port, the speed, the connect
            # program and the privileged options a non-root caller may not give
            argv = [cfg["link.pppd"], "call", peer]
        else:
            connect = "%s -m dialgate.link_pppd connect %s" % (sys.executable, settings_path)  # pyright: ignore[reportAttributeAccessIssue]
            argv = [cfg["link.pppd"], cfg["modem.port"], str(cfg["modem.baud"])]
            argv += cfg["link.pppd_options"]
            argv += ["connect", connect, "linkname", "dialgate", "ifname", cfg["link.interface"]]
        if cfg["link.user"]:
            argv += ["user", cfg["link.user"]]
        # maxfail 1: one dial per pppd; redial and backoff are the connect program's
        argv += ["updetach", "maxfail", "1"]
        return argv

    def _write_settings(self):
        import json
        import os

        compat.makedirs(self.dir)
        path = self.dir + "/dial.json"
        data = {}
        for k in _MODEM_KEYS:
            data[k] = self.cfg[k]
        data["status"] = self.dir + "/status"
        with open(path, "w") as f:
            json.dump(data, f)
        try:
            os.remove(data["status"])
        except OSError:
            pass
        return path, data["status"]

    async def _up(self):
        import os
        from asyncio import create_subprocess_exec  # CPython only: pppd runs on Linux # pyright: ignore[reportAttributeAccessIssue]

        settings, status = self._write_settings()
        env = dict(os.environ)  # pyright: ignore[reportAttributeAccessIssue]
        here = __file__.rsplit("/", 2)[0]  # firmware/: where `dialgate` is importable from
        env["PYTHONPATH"] = here + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cfg = self.cfg
        tries = 1 + cfg["modem.redial"]
        limit = tries * (cfg["modem.connect_timeout"] + 5) + cfg["modem.redial"] * cfg["modem.redial_delay_max"]
        limit += cfg["link.up_timeout"]
        try:
            proc = await create_subprocess_exec(*self._argv(settings), env=env)
        except OSError as e:
            log.error("link: cannot run %s: %s", cfg["link.pppd"], e)
            return "pppd-missing"
        try:
            rc = await asyncio.wait_for(proc.wait(), limit)
        except asyncio.TimeoutError:
            log.error("link: pppd did not bring the link up within %d s", limit)
            proc.terminate()
            await proc.wait()
            return PPP_FAILED
        if rc != 0:
            outcome = PPPD_EXIT.get(rc, "pppd-exit-%d" % rc)
            if rc == 8:
                outcome = _read_status(status) or outcome
            log.warn("link: pppd exited %d (%s)", rc, outcome)
            return outcome
        self.pid = _read_pid(self.pidfile)
        if not self.pid:
            log.error("link: pppd reported the link up but left no pid in %s", self.pidfile)
            return PPP_FAILED
        self.speed = _read_speed(status) or cfg["modem.baud"]
        return UP

    def _stats(self, name):
        try:
            with open("/sys/class/net/%s/statistics/%s" % (self.cfg["link.interface"], name)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return 0

    def is_up(self):
        if self.state != "up" or not self.pid:
            return False
        if not _alive(self.pid):
            self.pid = 0
            return False
        self.bytes_in = self._stats("rx_bytes") or self.bytes_in
        self.bytes_out = self._stats("tx_bytes") or self.bytes_out
        return True

    async def _down(self):
        import os
        import signal

        pid = self.pid
        self.pid = 0
        if not pid:
            return
        try:
            os.kill(pid, signal.SIGTERM)  # pppd: LCP terminate, then hang up (DTR drop on close) # pyright: ignore[reportAttributeAccessIssue]
        except OSError:
            return
        for _ in range(100):
            if not _alive(pid):
                return
            await asyncio.sleep(0.1)
        log.warn("link: pppd %d did not exit after SIGTERM; killing it", pid)
        try:
            os.kill(pid, signal.SIGKILL)  # pyright: ignore[reportAttributeAccessIssue]
        except OSError:
            pass


def _alive(pid):
    import os

    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours is not alive
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.readline().strip() or "0")
    except (OSError, ValueError):
        return 0


def _read_status(path):
    try:
        with open(path) as f:
            return f.readline().split(" ")[0].strip()
    except OSError:
        return ""


def _read_speed(path):
    try:
        with open(path) as f:
            words = f.readline().split()
        return int(words[1]) if len(words) > 1 and words[0] == modem.CONNECTED else 0
    except (OSError, ValueError):
        return 0


# ---- the connect program pppd runs ------------------------------------------


async def _dial(data):
    from .modem_dialer import Dialer
    from .modem_port import open_port
    from .modem_profiles import ModemSettings

    st = ModemSettings(data)
    port = open_port("fd:0", st.baud)
    call = await Dialer(port, st).connect()
    if call is None:
        return modem.NO_CARRIER, 0, "not dialled"
    return call.outcome, call.speed, call.detail


def connect_main(argv):
    """pppd's connect program: dial on stdin/stdout, record the outcome, exit 0 on CONNECT."""
    import json

    with open(argv[0]) as f:
        data = json.load(f)
    log.LOG.configure("info", "", 1024, False)  # stdout is the modem: never print there
    outcome, speed, detail = asyncio.run(_dial(data))
    with open(data["status"], "w") as f:
        f.write("%s %d %s\n" % (outcome, speed, detail))
    return 0 if outcome == modem.CONNECTED else 1


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "connect":
        sys.exit(connect_main(sys.argv[2:]))
    sys.stderr.write("usage: python3 -m dialgate.link_pppd connect SETTINGS.json\n")
    sys.exit(2)
