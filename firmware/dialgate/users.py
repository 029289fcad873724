"""User store: PBKDF2-HMAC-SHA256 password hashes, optional APOP secrets, aliases
(console commands: users_console; the changes they make: users_edit).

Hash format (same on both runtimes): pbkdf2-sha256$ITERATIONS$SALT_B64$HASH_B64.
The store is one small JSON file replaced atomically; APOP secrets (RFC 1939
§7 needs the secret itself) live apart in FILE.apop, owner-only, and only
when APOP is enabled.
"""

import json
from hashlib import sha256

from . import compat
from .compat import const

_SCHEME = const("pbkdf2-sha256")
_SALT = const(16)
_MAX_FILE = const(262144)
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


def _read_json(path):
    compat.settle(path)  # (a save cut inside compat.replace on FAT)
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
        self._right = {}  # name -> mark of its last right password (check_password)

    # ---- users ----

    def exists(self, name):
        return name in self._users

    def list(self):
        return sorted(self._users)

    def check_password(self, name, password):
        """PBKDF2 check; an unknown user costs the same time as a wrong password.

        A user's last right password is remembered, in RAM only, as a SHA-256 of
        it with the stored hash (`_right`): a mail client polling every few
        minutes pays the PBKDF2 once, not at each login (on a board 0.2-0.5 s of
        a blocked loop each time). Anything else, a wrong password included,
        pays the whole PBKDF2 every time, so guessing costs what it did; a new
        password (a new stored hash) never matches the old mark."""
        stored = self._users.get(name)
        if stored is None:
            if self._dummy is None:
                self._dummy = hash_password("x", self.iterations)
            verify_password(self._dummy, password)
            return False
        mark = sha256((stored + "\n" + password).encode()).digest()
        if self._right.get(name) == mark:
            return True
        ok = verify_password(stored, password)
        if ok:
            self._right[name] = mark
        return ok

    def apop_secret(self, name):
        """The APOP shared secret (RFC 1939 §7), or None if APOP is off or none is stored."""
        if not self.apop or name not in self._users:
            return None
        return self._apop.get(name)

    # ---- changes: users_edit, the console's code, imported by the first change ----

    def add(self, name, password):
        from .users_edit import add

        add(self, name, password)

    def set_password(self, name, password):
        from .users_edit import set_password

        set_password(self, name, password)

    def delete(self, name):
        from .users_edit import delete

        delete(self, name)

    def alias_add(self, address, targets):
        from .users_edit import alias_add

        alias_add(self, address, targets)

    def alias_del(self, address):
        from .users_edit import alias_del

        alias_del(self, address)

    # ---- aliases ----

    def aliases(self):
        return self._aliases

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
