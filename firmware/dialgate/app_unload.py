"""Idle unloading (`board.unload_after`, docs/architecture.md "Memory"): the
gateway's features idle for a while give their heap back. Imported on the
first tick where unloading is on; a gateway that never unloads never holds it.
"""

import sys

from . import compat, log

# The features idle unloading gives back: name -> (the gateway attribute that
# holds it, or None; the modules only that feature imports). `make lint`
# (host_tools/lint_firmware.py) derives each list from the import graph and
# fails when one drifts: a module missing here stays resident after its
# feature goes; one that the core or another feature also imports would be
# loaded twice (unloading it while a loaded module still refers to it).
# Modules two features share are in SHARED below.
FEATURES = {
    "smtp": ("smtp", ("smtp_server", "smtp_auth", "smtp_addr")),
    "pop3": ("pop3", ("pop3_service", "pop3_server")),
    "link": ("link", ("link_modem", "link_ppp", "link_pppd", "modem", "modem_dialer", "modem_port",
                      "modem_port_host", "modem_profiles")),
    # one queue run's code (relay.Relay imports it per run)
    "relay_run": (None, ("relay_run", "smtp_client", "bounce", "envelope", "compat_relay", "mxlookup")),
    # one call's phase machine, its inbound collection, and the cost log, between calls
    "call": ("costlog", ("session_call", "session", "costlog", "inbound", "odmr_client", "pop3_client",
                         "multidrop", "header_scan", "pop3_journal")),
}


# What the LAN's SMTP and POP3 servers share, given back once both have gone
# (and the console's `user` commands): the gateway attributes, made again on
# next use (users.json read again, the certificate parsed again, a few ms).
# The failed-login throttle goes only when quiet (auth.AuthThrottle.quiet).
LAN_STATE = ("router", "users", "auth_throttle", "server_tls")

# Modules more than one feature (or the LAN state) uses: each goes once no
# module that imports it at module level is loaded and no gateway attribute
# made from it is held. In order (a module before the ones it imports):
# (module, (its module-level importers), (the attributes holding its objects)).
# `make lint` checks every importer list against the import graph.
SHARED = (
    ("smtp_data", ("multidrop", "smtp_server"), ()),
    ("dotstuff", ("pop3_server", "smtp_client"), ()),
    ("delivery", ("multidrop",), ("router",)),
    ("users", ("users_edit",), ("users",)),
    ("auth", ("odmr_client", "pop3_client", "pop3_server", "pop3_service", "smtp_auth"),
     ("auth_throttle", "console_throttle")),
    ("limits", ("auth", "header_scan", "multidrop", "pop3_client", "pop3_server", "pop3_service",
                "smtp_addr", "smtp_auth", "smtp_server"), ()),
    ("compat_tls", ("compat_relay",), ()),
    ("retry", ("bounce", "relay_run"), ()),  # also in functions: the call's date, the cost log, `queue`
    ("net_out", (), ()),  # only in functions: outbound connections, STARTTLS, ATRN, refusals
)


def _loaded(gw, name):
    attr, mods = FEATURES[name]
    return (attr is not None and attr in gw.__dict__) or "dialgate." + mods[0] in sys.modules


def _idle(gw, name, in_use, now, after_ms):
    """True once `name` has not been `in_use` for `after_ms`."""
    if in_use:
        gw.busy[name] = now
        return False
    return compat.ticks_diff(now, gw.busy.setdefault(name, now)) >= after_ms


def unload_idle(gw, now, after_ms):
    """Give the heap back from features idle for `after_ms`: the SMTP or POP3
    stack with no session open, the modem and link driver while the line is
    down, one queue run's code between runs, a call's phase machine and the
    cost log between calls, console command groups. The
    next use loads them again (a few ms from flash). Returns what was unloaded."""
    d = gw.__dict__
    out = []
    for kind in ("smtp", "pop3"):
        if kind in d and _idle(gw, kind, gw.net.count(kind) > 0, now, after_ms):
            out.append(kind)
    relay = d.get("relay")
    running = relay is not None and relay.running
    calling = "sessions" in d and gw.sessions.current is not None
    if "link" in d:
        lk = gw.link
        # a call in progress (or a console action not yet run) holds this link
        pending = [t for t in gw.tasks if not t.done()]
        if _idle(gw, "link", lk.state != "down" or running or pending or calling, now, after_ms):
            gw.link_last = lk.describe()
            out.append("link")
    if _loaded(gw, "relay_run") and _idle(gw, "relay_run", running, now, after_ms):
        out.append("relay_run")
    if _loaded(gw, "call") and _idle(gw, "call", calling, now, after_ms):
        out.append("call")
    cmds = gw.commands
    if cmds.loaded and compat.ticks_diff(now, cmds.used) >= after_ms:
        out.append("console")
    lan_use = "smtp" in d or "pop3" in d or "dialgate.users_console" in sys.modules  # `user ...` holds gw.users
    if any(a in d for a in LAN_STATE) and _idle(gw, "lan", lan_use, now, after_ms) and _lan_state(gw, now):
        out.append("LAN state")
    if not out:
        return out
    for name in out:
        gw.busy.pop(name, None)
        if name == "console":
            cmds.unload()
            compat.unload("dialgate.config_edit")  # `config set`'s helpers
            compat.unload("dialgate.config_load")
        elif name == "LAN state":
            _drop_lan(gw, now)
        else:
            _drop(gw, name)
    _sweep(gw)
    gw.unloads += 1
    compat.gc_collect()
    log.info("memory: unloaded idle %s (heap free %d)", ", ".join(out), compat.mem_free())
    return out


def _lan_state(gw, now):
    """The LAN state (LAN_STATE) that may go now: none while either server is loaded."""
    d = gw.__dict__
    if "smtp" in d or "pop3" in d:
        return []
    return [a for a in LAN_STATE if a in d and (a != "auth_throttle" or d[a].quiet(now))]


def _drop_lan(gw, now):
    """Drop the LAN state that may go now; returns what went."""
    lan = _lan_state(gw, now)
    for a in lan:
        compat.drop_attr(gw, a)
    if lan:
        gw.busy.pop("lan", None)
    return lan


def _sweep(gw):
    """Unload the shared modules (SHARED) that nothing loaded uses any more."""
    d = gw.__dict__
    mods = sys.modules
    for name, importers, held in SHARED:
        if "dialgate." + name not in mods:
            continue
        if any("dialgate." + m in mods for m in importers) or any(a in d for a in held):
            continue
        compat.unload("dialgate." + name)


def _drop(gw, name):
    attr, mods = FEATURES[name]
    if attr is not None and attr in gw.__dict__:
        compat.drop_attr(gw, attr)
    for m in mods:
        compat.unload("dialgate." + m)


def unload_now(gw, name):
    """Unload feature `name` at once, not `board.unload_after` later: a call
    drops one queue run's code as soon as its flush has ended, before the held
    mail that ETRN asked for fills the same call (session_call). Returns True
    if it was loaded."""
    if not _loaded(gw, name):
        return False
    gw.busy.pop(name, None)
    _drop(gw, name)
    _sweep(gw)
    gw.unloads += 1
    compat.gc_collect()
    log.info("memory: unloaded %s after use (heap free %d)", name, compat.mem_free())
    return True


def unload_unused(gw):
    """Unload the LAN's SMTP and POP3 stacks with no session open at once, not
    board.unload_after later: a call does this as it starts, so the submission
    that started it does not keep the SMTP server (about 30 KB as .mpy) through
    the dial and the queue run. The ISP's delivery loads it again once the
    queue run's code has gone (app._admit_smtp). Returns what went."""
    d = gw.__dict__
    out = [k for k in ("smtp", "pop3") if k in d and gw.net.count(k) == 0]
    for k in out:
        unload_now(gw, k)
    if _drop_lan(gw, compat.ticks_ms()):
        out.append("LAN state")
        _sweep(gw)
        compat.gc_collect()
        log.info("memory: unloaded the LAN state for the call (heap free %d)", compat.mem_free())
    return out
