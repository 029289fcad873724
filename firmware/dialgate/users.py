"""User store: PBKDF2-HMAC-SHA256 password hashes, optional APOP secrets, aliases; console commands.

Hash format (same on both runtimes): pbkdf2-sha256$ITERATIONS$SALT_B64$HASH_B64.
"""


class UserStore:
    """Users and aliases in `path` (JSON); APOP secrets in `path`.apop when apop is on."""

    def __init__(self, path, apop=False, iterations=10000):
        self.path = path
        self.apop = apop
        self.iterations = iterations

    def check_password(self, name, password):
        raise NotImplementedError

    def apop_secret(self, name):
        raise NotImplementedError

    def exists(self, name):
        raise NotImplementedError


def add_commands(commands):
    """Console: user add/del/passwd/list, alias add/del/list."""
