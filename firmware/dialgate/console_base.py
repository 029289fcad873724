"""The console's own commands: status, memory, log, config get/set. Imported on the
first of them and unloaded with the other command groups when idle (help is
console_help, login the session's own, console_login)."""

from . import compat, log
from .console import CommandError, need


def cmd_log(gw, args):
    n = 20
    if args:
        if not args[0].isdigit() or not 0 < int(args[0]) <= 1000:
            raise CommandError("N must be a number from 1 to 1000")
        n = int(args[0])
    lines = log.LOG.tail(n)
    if not log.LOG.path:
        lines.append("(log.file is not set: nothing kept on flash)")
    return lines


def cmd_config_get(gw, args):
    need(args, 1, "config get KEY")
    key = args[0]
    try:
        return ["%s = %s" % (key, gw.cfg.show(key))]
    except KeyError:
        raise CommandError("unknown key %s" % key)


def cmd_config_set(gw, args):
    from .config_edit import config_set  # only an operator's edit needs it

    return config_set(gw, args)


def link_state(gw):
    """The link's status line, without loading the link layer to ask."""
    if "link" not in gw.__dict__:
        if gw.cfg["link.type"] == "always-on":
            return "up (always-on uplink)"
        if gw.link_last:
            return gw.link_last  # what it said before it was unloaded
        return "down, not dialled since boot (%s)" % gw.cfg["link.type"]
    return gw.link.describe()


def _corrupt(gw):
    n = gw.spool.corrupt if "spool" in gw.__dict__ else 0
    return ("; %d unreadable queue record(s) set aside in corrupt/ (see log)" % n) if n else ""


def _calls(gw):
    """The call in progress, the last and the next (session_run), without
    starting the session owner to ask."""
    if "sessions" not in gw.__dict__:
        return ["calls: the session task has not started"]
    sr = gw.sessions
    s = sr.current
    out = []
    if s is not None:
        out.append("call: %d %s (%s), %d s" % (s.n, s.phase, s.record["trigger"],
                                              compat.ticks_diff(compat.ticks_ms(), s.t0) // 1000))
    out.append("last call: %s" % sr.last_result)
    out.append("next call: %s" % next_call_text(sr))
    return out


def next_call_text(sr):
    """What the scheduler last said: "in 4m10s (window: ...)", "none planned (...)"."""
    secs, kind, why = sr.next
    if sr.current is not None:
        return "after this one"
    if secs is None:
        return "none planned (%s)" % why
    if secs == 0:
        return "now (%s: %s)" % (kind, why)
    return "in %s (%s: %s)" % (span(secs), kind, why)


def span(s):
    """Seconds -> "2h05m", "7m10s", "40s"."""
    s = int(s)
    if s < 60:
        return "%ds" % s
    if s < 3600:
        return "%dm%02ds" % (s // 60, s % 60)
    return "%dh%02dm" % (s // 3600, s // 60 % 60)


def cmd_status(gw, args):
    import sys

    from .app import _MAKERS, VERSION

    compat.gc_collect()
    n = gw.net
    kinds = {}
    for c in n.conns:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    per = ", ".join(["%s %d" % (k, kinds[k]) for k in sorted(kinds)])
    free = compat.disk_free(gw.cfg["spool.path"])
    return [
        "version: %s" % VERSION,
        "uptime: %ds" % (compat.ticks_diff(compat.ticks_ms(), gw.started) // 1000),
        "heap: used %d free %d" % (compat.mem_alloc(), compat.mem_free()),
        "loaded: %s; %d modules, %d unloads" % (
            " ".join([k for k in _MAKERS if gw.__dict__.get(k) is not None]) or "-",  # server_tls None: no cert
            len([m for m in sys.modules if m.startswith("dialgate.")]), gw.unloads),
        "connections: %d of %d%s" % (len(n.conns), n.max_connections, (" (" + per + ")") if per else ""),
        "link: %s" % link_state(gw),
    ] + _calls(gw) + [
        "spool: %s free %d%s" % (gw.cfg["spool.path"], free, _corrupt(gw)),
        "listening: %s" % ", ".join(n.listening),
    ] + (["config: saved, in force after restart: %s" % " ".join(gw.unapplied)] if gw.unapplied else [])


def cmd_memory(gw, args):
    """Where the heap goes: what a board admin (or bench_heap) asks before a
    feature is turned on, and after a MemoryError in the log."""
    import sys

    compat.gc_collect()
    mods = sorted([m[9:] for m in sys.modules if m.startswith("dialgate.")])
    used, pooled, size = gw.net.buffers()
    return [
        "heap: used %d free %d" % (compat.mem_alloc(), compat.mem_free()),
        "modules: %d in memory: %s" % (len(mods), " ".join(mods)),
        "buffers: %d of %d octets for connections, %d kept for reuse" % (used, size, pooled),
    ]


def add_commands(commands):
    commands.add("status", cmd_status, "status", "uptime, heap, loaded features, connections, link, last and next call, spool")
    commands.add("memory", cmd_memory, "memory", "heap in use, the firmware modules in memory, connection buffers")
    commands.add("log", cmd_log, "log [N]", "the last N log lines (default 20)")
    commands.add("config get", cmd_config_get, "config get KEY", "show one configuration value")
    commands.add("config set", cmd_config_set, "config set KEY VALUE", "check and save one value (at restart)",
                 secret=True)
