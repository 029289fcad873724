"""User store: PBKDF2-HMAC-SHA256 password hashes, optional APOP secrets, aliases
(console commands: users_console).

Hash format (same on both runtimes): pbkdf2-sha256$ITERATIONS$SALT_B64$HASH_B64.
The store is one small JSON file replaced atomically; APOP secrets (RFC 1939
§7 needs the secret itself) live apart in FILE.apop, owner-only, and only
when APOP is enabled.
"""

import json

from . import compat
from .compat import const
from .mailbox import valid_user

_SCHEME = const("pbkdf2-sha256")
_SALT = const(16)
_MAX_FILE = const(262144)
_MAX_TARGETS = const(32)
_ALIAS_DEPTH = const(4)


def hash_password(password, iterations, salt=None):
    """-> "pbkdf2-sha256$ITER$SALT$HASH" for str `password`."""
    if salt is None:
        salt = compat.urandom(_SALT)
    dk = compat.pbkdf2_sha256(password.encode(), salt, iterations)
    return "%s$%d$%s$%s" % (_SCHEME, iterations, compat.b64encode(salt), compat.b64encode(dk))


def verify_password(stored, password):
    """True if `password` matches the stored hash string (its own iteration count)."""
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != _SCHEME or not parts[1].isdigit():
        return False
    try:
        salt = compat.b64decode(parts[2])
        want = compat.b64decode(parts[3])
    except ValueError:
        return False
    got = compat.pbkdf2_sha256(password.encode(), salt, int(parts[1]), len(want))
    return same(got, want)


def same(a, b):
    """Compare without an early exit (timing)."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0


def valid_password(pw):
    if not 0 < len(pw) <= 128:
        return False
    for c in pw:
        if ord(c) < 0x21 or ord(c) > 0x7E:
            return False
    return True


def _read_json(path):
    if not compat.exists(path) and compat.exists(path + ".tmp"):
        # cut inside compat.replace on a VFS that removes before renaming (FAT):
        # the .tmp is complete (it is renamed only after fsync + close)
        compat.replace(path + ".tmp", path)
    try:
        size = compat.file_size(path)
    except OSError:
        return {}
    if size > _MAX_FILE:
        raise ValueError("%s is too large" % path)
    with open(path, "rb") as f:
        data = f.read(size)
    return json.loads(data)


class UserStore:
    """Users and aliases in `path` (JSON); APOP secrets in `path`.apop when apop is on."""

    def __init__(self, path, apop=False, iterations=10000):
        self.path = path
        self.apop = apop
        self.iterations = iterations
        d = _read_json(path)
        self._users = d.get("users", {})
        self._aliases = d.get("aliases", {})
        self._apop = _read_json(path + ".apop") if apop else {}
        self._dummy = None

    # ---- persistence ----

    def _save(self):
        text = json.dumps({"users": self._users, "aliases": self._aliases})
        _put(self.path, text)

    def _save_apop(self):
        _put(self.path + ".apop", json.dumps(self._apop))

    # ---- users ----

    def exists(self, name):
        return name in self._users

    def list(self):
        return sorted(self._users)

    def check_password(self, name, password):
        """PBKDF2 check; an unknown user costs the same time as a wrong password."""
        stored = self._users.get(name)
        if stored is None:
            if self._dummy is None:
                self._dummy = hash_password("x", self.iterations)
            verify_password(self._dummy, password)
            return False
        return verify_password(stored, password)

    def apop_secret(self, name):
        """The APOP shared secret (RFC 1939 §7), or None if APOP is off or none is stored."""
        if not self.apop or name not in self._users:
            return None
        return self._apop.get(name)

    def add(self, name, password):
        if not valid_user(name):
            raise ValueError("bad user name %s (a-z 0-9 . _ -, up to 64)" % name[:64])
        if name in self._users:
            raise ValueError("user %s exists" % name)
        if name in self._aliases:
            raise ValueError("%s is an alias" % name)
        self._set(name, password)

    def set_password(self, name, password):
        if name not in self._users:
            raise ValueError("no user %s" % name[:64])
        self._set(name, password)

    def _set(self, name, password):
        if not valid_password(password):
            raise ValueError("bad password (1-128 printable characters, no spaces)")
        self._users[name] = hash_password(password, self.iterations)
        if self.apop:
            self._apop[name] = password
            self._save_apop()
        self._save()

    def delete(self, name):
        if name not in self._users:
            raise ValueError("no user %s" % name[:64])
        del self._users[name]
        self._save()
        if name in self._apop:
            del self._apop[name]
            self._save_apop()

    # ---- aliases ----

    def aliases(self):
        return self._aliases

    def alias_add(self, address, targets):
        address = address.lower()
        lp = address.split("@", 1)[0]
        if not lp or " " in address or address.count("@") > 1:
            raise ValueError("bad alias address %s" % address[:64])
        if not 0 < len(targets) <= _MAX_TARGETS:
            raise ValueError("an alias needs 1 to %d targets" % _MAX_TARGETS)
        if address in self._users:
            raise ValueError("%s is a user" % address)
        out = []
        for t in targets:
            t = t.lower()
            if t not in self._users and t not in self._aliases:
                raise ValueError("no user or alias %s" % t[:64])
            if t == address:
                raise ValueError("an alias cannot point at itself")
            if t not in out:
                out.append(t)
        self._aliases[address] = out
        self._save()

    def alias_del(self, address):
        address = address.lower()
        if address not in self._aliases:
            raise ValueError("no alias %s" % address[:64])
        del self._aliases[address]
        self._save()

    def expand(self, name, depth=0):
        """Users reached from a user or alias name (aliases nest up to 4 deep); [] if none."""
        if name in self._users:
            return [name]
        targets = self._aliases.get(name)
        if targets is None or depth >= _ALIAS_DEPTH:
            return []
        out = []
        for t in targets:
            for u in self.expand(t, depth + 1):
                if u not in out:
                    out.append(u)
        return out


def _put(path, text):
    tmp = path + ".tmp"
    f = open(tmp, "wb")
    try:
        f.write(text.encode())
        compat.fsync(f)
    finally:
        f.close()
    compat.chmod_private(tmp)
    compat.replace(tmp, path)
    d = path.rsplit("/", 1)[0] if "/" in path else "."
    compat.sync_dir(d)
