"""Checking a configuration (config.load / config.build): schema, merge over the
board profile, one ConfigError per problem. Imported while the gateway starts
(and by `config set`), then unloaded: a running board does not keep it.
"""

import json

from . import compat
from .compat import const
from .config import Config, ConfigError, parse_addr, parse_cidr

# The schema is data, not code: `schema.json` beside this module maps each key to
# [type, default, minimum] (no default: required). Types: "str", "int", "bool",
# "list" (of str), "addr" (HOST:PORT), "addrs" (list of HOST:PORT), "cidrs"
# (list of A.B.C.D/N), or a list of allowed strings. It is read while the config
# is checked and then dropped, so it costs a board no heap while running.


def schema_path():
    """schema.json: beside this module or, with the code frozen into the firmware
    (`.frozen/dialgate`), where make flash puts it: /lib/dialgate."""
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    if here.startswith(".frozen"):
        here = "/lib/dialgate"
    return here + "/schema.json"


def schema():
    """The schema as a dict: key -> [type, default?, minimum?]."""
    with open(schema_path()) as f:
        return json.load(f)



def _flatten(obj, prefix, out):
    for k in obj:
        v = obj[k]
        key = prefix + k
        if isinstance(v, dict):
            _flatten(v, key + ".", out)
        else:
            out[key] = v
    return out


def _typename(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__



def _check(key, row, v):
    kind = row[0]
    if isinstance(kind, list):
        if v not in kind:
            raise ConfigError(key, "expected one of %s, got %s" % (", ".join(kind), json.dumps(v)))
        return
    if kind == "str":
        ok = isinstance(v, str)
    elif kind == "int":
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif kind == "bool":
        ok = isinstance(v, bool)
    elif kind == "addr":
        ok = isinstance(v, str)
    else:  # list, addrs, cidrs
        ok = isinstance(v, list)
    if not ok:
        want = {"str": "a string", "int": "an integer", "bool": "true or false", "addr": "a string HOST:PORT"}
        raise ConfigError(key, "expected %s, got %s" % (want.get(kind, "a list"), _typename(v)))
    if kind == "int" and len(row) > 2 and v < row[2]:
        raise ConfigError(key, "must be at least %d, got %d" % (row[2], v))
    if kind == "addr":
        parse_addr(key, v)
    elif kind in ("list", "addrs", "cidrs") and isinstance(v, list):
        for item in v:
            if not isinstance(item, str):
                raise ConfigError(key, "expected a list of strings, found %s" % _typename(item))
            if kind == "addrs":
                parse_addr(key, item)
            elif kind == "cidrs":
                parse_cidr(key, item)


def _read_json(path, what):
    try:
        compat.settle(path)  # a `config set` cut inside compat.replace on FAT
        with open(path, "rb") as f:
            text = f.read().decode()  # UTF-8 whatever the locale (RFC 8259 §8.1)
    except OSError as e:
        raise ConfigError(what, "cannot read %s (%s)" % (path, e))
    except UnicodeError:  # e.g. UTF-16 from Windows Notepad: a one-line error, not a traceback
        raise ConfigError(what, "%s is not UTF-8 text (save it as UTF-8)" % path)
    if text[:1] == "\ufeff":  # the byte order mark older Notepads put before UTF-8
        text = text[1:]
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ConfigError(what, "%s is not valid JSON (%s)" % (path, e))
    if not isinstance(obj, dict):
        raise ConfigError(what, "%s must hold a JSON object" % path)
    return obj


def _profile_path(name, config_path):
    if "/" in name or name.endswith(".json"):
        return name
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    cands = [
        here + "/../../boards/" + name + ".json",  # repo checkout: firmware/dialgate/..
        here + "/../boards/" + name + ".json",  # board: /lib/dialgate -> /boards
        "boards/" + name + ".json",
        "/boards/" + name + ".json",
    ]
    if config_path and "/" in config_path:
        cands.insert(0, config_path.rsplit("/", 1)[0] + "/boards/" + name + ".json")
    for c in cands:
        if compat.exists(c):
            return c
    raise ConfigError("profile", "no board profile named %s (looked in boards/)" % json.dumps(name))


def load(path, profile=None, obj=None):
    """Read the config file at `path`, merge it over its board profile, check it.

    Returns a Config. Raises ConfigError(key, why) on the first problem found.
    `obj`: check this as the file's content instead (`config set`: the file it
    would write); that Config is not the running one (no names interned).
    """
    user = _flatten(_read_json(path, "config") if obj is None else obj, "", {})
    name = profile or user.get("profile", "host")
    if not isinstance(name, str) or not name:
        raise ConfigError("profile", "expected a board profile name")
    ppath = _profile_path(name, path)
    merged = _flatten(_read_json(ppath, "profile"), "", {})
    for k in user:
        merged[k] = user[k]
    merged["profile"] = name
    if obj is None:
        _intern_keys()
    cfg = build(merged)
    if compat.MICROPYTHON:
        # what a board lacks (config_board), imported by a string: `from .config_board`
        # would add a name to this module's own, interned with it in every test's
        # config.build, and one name can tip a 128K test into a new qstr pool
        try:
            __import__("dialgate.config_board", None, None, ("check",)).check(cfg._v)
        finally:
            compat.unload("dialgate.config_board")
    cfg.path = path
    cfg.profile_arg = profile
    return cfg


def _intern_keys():
    """Intern the schema's keys (compat.intern) before the running gateway's
    config is built: build() reads the schema again, and each key is then the
    interned name, not a string of its own; so is every `cfg["smtp.listen"]`
    in a module loaded from here on (about 5 KB at start, and some 50 octets a
    key a module, on the unix port: docs/architecture.md "Memory"). Only here,
    for the gateway's one config: 118 more names can cost a board a new qstr
    pool in one block, which a test building configs at 128K cannot spare."""
    for k in schema():
        compat.intern(k)
    compat.gc_collect()  # the first schema dict is garbage before build() reads the second


def build(flat):
    """Check a flat {dotted key: value} dict and fill in defaults -> Config."""
    sch = schema()
    for k in flat:
        if k not in sch:
            raise ConfigError(k, "unknown key")
        _check(k, sch[k], flat[k])
    # The schema dict becomes the values dict: overwriting existing keys allocates
    # nothing, where a new dict of every key would need one large block (~1.5 KB
    # on a 64-bit port) on a heap that may be fragmented by then.
    for k in sch:
        if k in flat:
            sch[k] = flat[k]
        elif len(sch[k]) < 2:
            raise ConfigError(k, "missing required value")
        else:
            sch[k] = sch[k][1]
    cfg = Config(sch)
    _cross_check(cfg)
    return cfg


def _cross_check(cfg):
    _check_domains(cfg["domains"])
    v = cfg._v
    if v["relay.etrn"]:
        # the ETRN moved to the dial session: the old key still works, with a line in the log
        if v["session.etrn"]:
            raise ConfigError("relay.etrn", "renamed session.etrn; set only session.etrn")
        v["session.etrn"] = v["relay.etrn"]
        cfg.deprecated.append("relay.etrn is deprecated: it is now session.etrn (used as that)")
    for d in v["session.etrn"]:  # RFC 1985 §3: a domain, "@domain" or "#queue"
        if not d or " " in d:
            raise ConfigError("session.etrn", "bad ETRN argument %s" % json.dumps(d))
    if not v["hostname"]:  # (our EHLO/HELO name and greeting, RFC 5321 §4.1.4)
        raise ConfigError("hostname", "missing required value")
    if v["isp.odmr.host"]:
        if v["isp.odmr.port"] > 65535:
            raise ConfigError("isp.odmr.port", "expected 1-65535")
        if not v["isp.odmr.user"]:  # RFC 2645 §5.1.2: AUTH comes before ATRN
            raise ConfigError("isp.odmr.user", "ODMR needs the provider's user name and password")
        for d in v["isp.odmr.domains"]:
            if not isinstance(d, str) or not d or "," in d or " " in d or "@" in d:
                raise ConfigError("isp.odmr.domains", "bad domain %s" % json.dumps(d))
    if v["isp.pop3.host"]:
        _check_pop3(v)
    if v["session.etrn"] and not v["relay.smarthost"]:
        raise ConfigError("session.etrn", "needs relay.smarthost (ETRN is sent to the ISP's server)")
    check_console_password(v["console.password"])
    if v["console.password"] == "":
        for h, _p in cfg.addrs("console.listen"):
            if not _loopback(h):
                raise ConfigError("console.listen", "%s is not a loopback address: set console.password first" % h)
    if v["schedule.windows"] or v["schedule.times"] or v["schedule.utc_offset"]:
        # a bad entry stops start-up, naming the key (scheduler.parse_plan
        # imports the parsing code for the check only, then drops it)
        from .scheduler import parse_plan

        parse_plan(cfg)


def _check_pop3(v):
    """POP3 multidrop (docs/inbound.md): a login, a port, a default maildrop."""
    from .mailbox import valid_user

    if not v["isp.pop3.user"]:
        raise ConfigError("isp.pop3.user", "POP3 multidrop needs the ISP mailbox's user name and password")
    if v["isp.pop3.port"] > 65535:
        raise ConfigError("isp.pop3.port", "expected 1-65535 (or 0: 110, 995 with isp.pop3.tls implicit)")
    if not valid_user(v["isp.pop3.default_user"]):
        raise ConfigError("isp.pop3.default_user", "expected a user or alias name (a-z 0-9 . _ -), got %s"
                          % json.dumps(v["isp.pop3.default_user"]))
    if v["isp.pop3.keep_days"] and not v["isp.pop3.leave_on_server"]:
        raise ConfigError("isp.pop3.keep_days", "only with isp.pop3.leave_on_server (otherwise mail is deleted "
                          "at the ISP as soon as it is collected)")


def _loopback(host):
    return host.startswith("127.") or host in ("localhost", "::1")


def check_console_password(v):
    """`console.password` is empty or a hash (users.hash_password), never the password itself."""
    parts = v.split("$")
    if v and (len(parts) != 4 or parts[0] != "pbkdf2-sha256" or not parts[1].isdigit()):
        raise ConfigError("console.password", "expected a pbkdf2-sha256$... hash (console passwd PASSWORD, "
                          "or dialgatectl hash-password), not the password itself")


def _check_domains(domains):
    if not domains:
        raise ConfigError("domains", "needs at least one local domain")
    for d in domains:
        if not d or " " in d or "@" in d:
            raise ConfigError("domains", "bad domain %s" % json.dumps(d))


# ---- the command line (start-up only, like the rest of this module) ----------

_USAGE = const("""usage: dialgate --config FILE [--board PROFILE] [--check]
  --config FILE     JSON configuration (see docs/config.md)
  --board PROFILE   board profile name or path (default: the config's "profile")
  --check           check the configuration and exit""")


def parse_args(argv):
    opts = {"config": None, "board": None, "check": False}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(_USAGE)
            compat.exit(0)
        elif a == "--check":
            opts["check"] = True
        elif a in ("--config", "--board") and i + 1 < len(argv):
            opts[a[2:]] = argv[i + 1]
            i += 1
        else:
            _die_usage("argument %s: not understood\n%s" % (a, _USAGE))
        i += 1
    if not opts["config"]:
        _die_usage("--config FILE is required\n%s" % _USAGE)
    return opts


def _die_usage(msg):
    from .app import _die

    _die(msg)
