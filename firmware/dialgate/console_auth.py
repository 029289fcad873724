"""Console commands for the console's own password (console.password):
console passwd PASSWORD, console nopasswd. Imported on first use."""

from . import log
from .config import ConfigError
from .console import CommandError, need


def _save(gw, value):
    from .config_edit import save_setting

    try:
        save_setting(gw.cfg, "console.password", value)
    except ConfigError as e:
        raise CommandError(str(e))
    except OSError as e:
        raise CommandError("cannot write %s: %s" % (gw.cfg.path, e))
    gw.cfg._v["console.password"] = value  # console.session() reads it for each new connection


def cmd_passwd(gw, args):
    need(args, 1, "console passwd PASSWORD")
    from .users import hash_password
    from .users_edit import valid_password

    if len(args) > 1 or not valid_password(args[0]):
        raise CommandError("bad password: 1-128 printable characters, no spaces")
    _save(gw, hash_password(args[0], gw.cfg["users.iterations"]))
    log.info("console: console password set")
    return ["console password set in %s (new connections ask for it; the UART console after a restart)" % gw.cfg.path]


def cmd_nopasswd(gw, args):
    if gw.cfg["console.listen"] and not _all_loopback(gw):
        raise CommandError("console.listen is not loopback only: a password is required")
    _save(gw, "")
    log.info("console: console password removed")
    return ["console password removed from %s" % gw.cfg.path]


def _all_loopback(gw):
    from .config_load import _loopback

    for h, _p in gw.cfg.addrs("console.listen"):
        if not _loopback(h):
            return False
    return True


def add_commands(commands):
    commands.add("console passwd", cmd_passwd, "console passwd PASSWORD",
                 "set the console password (hashed; new connections ask for it)", secret=True)
    commands.add("console nopasswd", cmd_nopasswd, "console nopasswd", "remove the console password")
