"""`config set`: check one value and save it in the config file for the next start.

Loaded only when an operator uses the command (console.cmd_config_set).
"""

import json

from . import compat, log
from .config import ConfigError
from .config_load import _check, _check_domains, _profile_path, _read_json, check_console_password, load, schema_path
from .console import CommandError, need


def schema_row(key):
    """One key's schema row, read line by line (schema.json holds one key a
    line), so checking a single value never parses the whole schema."""
    want = json.dumps(key) + ":"
    with open(schema_path()) as f:  # frozen firmware: not beside this module
        for line in f:
            line = line.strip()
            if line.startswith(want):
                return json.loads(line[len(want) :].rstrip(","))
    raise ConfigError(key, "unknown key")


def save_setting(cfg, key, value, text=None):
    """`config set`: write `key` = `value` into the config file, checked first;
    returns (the value saved, whether the whole file could be checked).
    `text`: the value as typed, saved as the string it is where the key takes
    a string and `value` (its JSON) is not one (a phone number, an all-digit
    password).

    The value is checked against its schema row, then the whole file with it
    over its profile (as the next start will); then the file is rewritten
    whole through a temporary file (fsync, atomic replace). Takes effect at the
    next start. Raises ConfigError naming what is wrong (nothing written).
    """
    path = cfg.path
    if not path:
        raise ConfigError(key, "this gateway was not started from a config file")
    row = schema_row(key)
    if text is not None and row[0] == "str" and not isinstance(value, str):
        value = text
    # The other keys passed at start-up; this one is checked on its own.
    _check(key, row, value)
    if key == "domains":
        _check_domains(value)
    if key == "profile":
        _profile_path(value, path)
    if key == "console.password":
        check_console_password(value)
    user = _read_json(path, "config")
    d = user
    parts = key.split(".")
    for p in parts[:-1]:
        if not isinstance(d.get(p), dict):
            d[p] = {}
        d = d[p]
    d[parts[-1]] = value
    # The whole file as the next start will check it (a value that only fails
    # beside the others: console.listen beyond loopback with no password, a
    # schedule, relay.etrn with session.etrn): a board that starts to find its
    # config broken stays down until someone brings a cable.
    checked = True
    try:
        compat.gc_collect()  # (a board: the schema and the profile in one go)
        load(path, getattr(cfg, "profile_arg", None), user)
    except MemoryError:  # a tight board with features loaded: as `restart`, the start checks it
        checked = False
    # spool.Flash.put's steps, written out: importing spool here, where a test
    # has no gateway's spool resident, tips the 128K console test. Durable with
    # its directory, owner-only (it holds the ISP's password); a cut inside the
    # rename on FAT is settled by config_load (compat.settle) at the next start.
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(user))
        compat.fsync(f)
    compat.chmod_private(tmp)
    compat.replace(tmp, path)
    compat.sync_dir(path.rsplit("/", 1)[0] if "/" in path else ".")
    return value, checked


def config_set(gw, args):
    need(args, 2, "config set KEY VALUE")
    key = args[0]
    text = " ".join(args[1:])
    try:
        value = json.loads(text)  # 8, true, ["127.0.0.1:25"], "quoted"
    except ValueError:
        value = text  # a bare word is a string: config set relay.smarthost 10.0.0.1:25
    try:
        value, checked = save_setting(gw.cfg, key, value, text)
    except ConfigError as e:
        raise CommandError(str(e))
    except OSError as e:
        raise CommandError("cannot write %s: %s" % (gw.cfg.path, e))
    shown = '"********"' if key.endswith("password") else json.dumps(value)
    log.info("console: config set %s = %s", key, shown)
    if key not in gw.unapplied:
        gw.unapplied.append(key)  # `status` lists it until a restart
    note = "" if checked else " (too little heap free to check the whole file: the start checks it)"
    return ["%s = %s saved in %s; restart to apply%s" % (key, shown, gw.cfg.path, note)]
