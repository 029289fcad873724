"""Configuration: one JSON file merged over a board profile, checked key by key.

Keys are dotted paths into the nested JSON (`smtp.listen`). Every key lives in
`schema.json`; `docs/config.md` documents each one. A wrong key or value raises
ConfigError, which the entry point turns into one line and exit status 2.
"""

import json


class ConfigError(Exception):
    def __init__(self, key, why):
        super().__init__("%s: %s" % (key, why))
        self.key = key
        self.why = why


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


def load(path, profile=None):
    """Read the config file at `path`, merge it over its board profile, check it.

    Returns a Config; raises ConfigError(key, why) on the first problem found.
    The checking code lives in config_load: the gateway drops it once started
    (compat.unload), so a board does not keep it on the heap while it runs.
    """
    from .config_load import load as f

    return f(path, profile)


def build(flat):
    """Check a flat {dotted key: value} dict and fill in defaults -> Config (config_load)."""
    from .config_load import build as f

    return f(flat)


def schema():
    """The schema as a dict: key -> [type, default?, minimum?] (config_load)."""
    from .config_load import schema as f

    return f()


class Config:
    """Checked configuration: `cfg["smtp.listen"]`, plus parsed helpers."""

    def __init__(self, values):
        self._v = values
        self.path = ""  # the config file (config set writes it)
        self.profile_arg = None
        self.deprecated = []  # lines for the log at start-up: old keys still honoured
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
