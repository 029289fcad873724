"""Configuration: one JSON file merged over a board profile, checked key by key.

Keys are dotted paths into the nested JSON (`smtp.listen`). Every key lives in
`schema.json`; `docs/config.md` documents each one. A wrong key or value raises
ConfigError, which the entry point turns into one line and exit status 2.
"""

import json

from . import compat

# The schema is data, not code: `schema.json` beside this module maps each key to
# [type, default, minimum] (no default: required). Types: "str", "int", "bool",
# "list" (of str), "addr" (HOST:PORT), "addrs" (list of HOST:PORT), "cidrs"
# (list of A.B.C.D/N), or a list of allowed strings. It is read while the config
# is checked and then dropped, so it costs a board no heap while running.


def schema():
    """The schema as a dict: key -> [type, default?, minimum?]."""
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    with open(here + "/schema.json") as f:
        return json.load(f)


class ConfigError(Exception):
    def __init__(self, key, why):
        super().__init__("%s: %s" % (key, why))
        self.key = key
        self.why = why


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


def parse_addr(key, s):
    """'HOST:PORT' -> (host, port); raises ConfigError naming `key`."""
    if not isinstance(s, str) or ":" not in s:
        raise ConfigError(key, "expected HOST:PORT, got %s" % json.dumps(s))
    host, _, port = s.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not _valid_host(host):
        raise ConfigError(key, "bad address %s" % json.dumps(s))
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key, "bad port in %s (expected 1-65535)" % json.dumps(s))
    return host, int(port)


def _valid_host(h):
    if h[0].isdigit() and h.replace(".", "").isdigit():
        return parse_ipv4(h) is not None
    for ch in h:
        if not (ch.isalpha() or ch.isdigit() or ch in ".-:"):
            return False
    return True


def parse_ipv4(s):
    """'A.B.C.D' -> int, or None if not a dotted quad."""
    parts = s.split(".")
    if len(parts) != 4:
        return None
    n = 0
    for p in parts:
        if not p.isdigit() or len(p) > 3 or int(p) > 255:
            return None
        n = (n << 8) | int(p)
    return n


def parse_cidr(key, s):
    """'A.B.C.D/N' -> (network int, mask int)."""
    if not isinstance(s, str):
        raise ConfigError(key, "expected A.B.C.D/N, got %s" % json.dumps(s))
    addr, _, bits = s.partition("/")
    if not bits:
        bits = "32"
    ip = parse_ipv4(addr)
    if ip is None or not bits.isdigit() or int(bits) > 32:
        raise ConfigError(key, "bad network %s (expected A.B.C.D/N)" % json.dumps(s))
    mask = (0xFFFFFFFF << (32 - int(bits))) & 0xFFFFFFFF
    return ip & mask, mask


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
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(what, "cannot read %s (%s)" % (path, e))
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


def load(path, profile=None):
    """Read the config file at `path`, merge it over its board profile, check it.

    Returns a Config. Raises ConfigError(key, why) on the first problem found.
    """
    user = _flatten(_read_json(path, "config"), "", {})
    name = profile or user.get("profile", "host")
    if not isinstance(name, str) or not name:
        raise ConfigError("profile", "expected a board profile name")
    ppath = _profile_path(name, path)
    merged = _flatten(_read_json(ppath, "profile"), "", {})
    for k in user:
        merged[k] = user[k]
    merged["profile"] = name
    cfg = build(merged)
    cfg.path = path
    cfg.profile_arg = profile
    return cfg


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
    for d in cfg["relay.etrn"]:  # RFC 1985 §3: a domain, "@domain" or "#queue"
        if not d or " " in d:
            raise ConfigError("relay.etrn", "bad ETRN argument %s" % json.dumps(d))
    if cfg["relay.etrn"] and not cfg["relay.smarthost"]:
        raise ConfigError("relay.etrn", "needs relay.smarthost (ETRN is sent to the ISP's server)")


def _check_domains(domains):
    if not domains:
        raise ConfigError("domains", "needs at least one local domain")
    for d in domains:
        if not d or " " in d or "@" in d:
            raise ConfigError("domains", "bad domain %s" % json.dumps(d))


class Config:
    """Checked configuration: `cfg["smtp.listen"]`, plus parsed helpers."""

    def __init__(self, values):
        self._v = values
        self.path = ""  # the config file (config set writes it)
        self.profile_arg = None
        self.lan_nets = [parse_cidr("lan", s) for s in values["lan"]]

    def __getitem__(self, key):
        return self._v[key]

    def get(self, key, default=None):
        return self._v.get(key, default)

    def keys(self):
        return self._v.keys()

    def addrs(self, key):
        return [parse_addr(key, s) for s in self._v[key]]

    def is_lan(self, ip):
        n = parse_ipv4(ip)
        if n is None:
            return False
        for net, mask in self.lan_nets:
            if n & mask == net:
                return True
        return False

    def is_local_domain(self, domain):
        d = domain.lower().rstrip(".")
        for x in self._v["domains"]:
            if x.lower() == d:
                return True
        return False

    def show(self, key):
        """The value of `key` as JSON text, or raise KeyError. Passwords are
        never shown: only whether one is set (DESIGN.md, console contract)."""
        v = self._v[key]
        if key.endswith("password") and v:
            return '"********" (set)'
        return json.dumps(v)
