"""SASL PLAIN/LOGIN decoding and failed-login throttling, shared by SMTP and POP3.

Sans-IO: protocol sessions pass in base64 text and the current ticks; nothing
here touches sockets or the clock on its own.
"""

import binascii

from . import compat, limits

# RFC 4954 §4 / RFC 5034 §4: the client cancels an exchange with "*".
CANCEL = b"*"


def b64decode(data):
    """Base64 bytes -> bytes, or None if malformed (RFC 4954 §4: 501 then)."""
    data = data.strip()
    if len(data) % 4:
        return None
    for c in data:
        if not (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in (43, 47, 61)):
            return None
    try:
        return binascii.a2b_base64(data)
    except ValueError:
        return None


def b64encode(data):
    """bytes -> base64 bytes without a newline."""
    return binascii.b2a_base64(data).strip()


def cram_md5(user, secret, challenge):
    """RFC 2195 client response to a base64 `challenge`: base64 of the user, a
    space and the lowercase hex HMAC-MD5 (RFC 2104) of the challenge keyed
    with the secret. The mechanism RFC 2645 §5.1.2 requires of ODMR."""
    import hashlib

    key = secret.encode()
    if len(key) > 64:
        key = hashlib.md5(key).digest()
    pad = bytearray(64)  # the key block, padded; XORed in place (no 64-int lists on a board)
    pad[: len(key)] = key
    for i in range(64):
        pad[i] ^= 0x36
    inner = hashlib.md5(pad)
    inner.update(binascii.a2b_base64(challenge))
    for i in range(64):
        pad[i] ^= 0x36 ^ 0x5C
    outer = hashlib.md5(pad)
    outer.update(inner.digest())
    return b64encode(user.encode() + b" " + binascii.hexlify(outer.digest()))


def _text(b):
    """UTF-8 bytes -> str, or None (RFC 4616 §2: authcid/passwd are UTF-8)."""
    try:
        return b.decode()
    except UnicodeError:
        return None


def decode_plain(response):
    """RFC 4616 §2 PLAIN: base64 of authzid NUL authcid NUL passwd.

    Returns (user, password) as str, or None when malformed or when the
    authorization identity differs from the user (no proxy authorization).
    """
    raw = b64decode(response)
    if raw is None:
        return None
    parts = raw.split(b"\x00")
    if len(parts) != 3 or not parts[1]:
        return None
    authz, user, pw = _text(parts[0]), _text(parts[1]), _text(parts[2])
    if authz is None or user is None or pw is None:
        return None
    if authz and authz != user:
        return None
    return user, pw


def decode_text(response):
    """One LOGIN step (user name or password, base64) -> str, or None."""
    raw = b64decode(response)
    if raw is None or b"\x00" in raw:
        return None
    return _text(raw)


# The two LOGIN prompts (draft-murchison-sasl-login): "Username:" / "Password:".
LOGIN_USER = b64encode(b"Username:")
LOGIN_PASS = b64encode(b"Password:")


class AuthThrottle:
    """Failed logins per client address: delay-then-lockout, bounded RAM.

    One instance is shared by every session of a service (or by SMTP and POP3
    together). `check(ip)` before verifying a password: 0 = go ahead, else
    milliseconds left in a lockout (refuse without checking). `failed(ip)`
    after a wrong password returns the delay in ms the session should pause
    (proto.Session.pause_ms) before reading on; `succeeded(ip)` forgets the
    address. `now` is compat.ticks_ms() unless given (tests pass their own).
    """

    def __init__(
        self,
        delay_ms=limits.AUTH_DELAY_MS,
        max_delay_ms=limits.AUTH_DELAY_MAX_MS,
        lockout_after=limits.AUTH_LOCKOUT_AFTER,
        lockout_ms=limits.AUTH_LOCKOUT_MS,
        tracked=limits.AUTH_TRACKED,
    ):
        self.delay_ms = delay_ms
        self.max_delay_ms = max_delay_ms
        self.lockout_after = lockout_after
        self.lockout_ms = lockout_ms
        self.tracked = tracked
        self.entries = {}  # ip -> [failures, ticks of last failure]

    def _now(self, now):
        return compat.ticks_ms() if now is None else now

    def check(self, ip, now=None):
        e = self.entries.get(ip)
        if e is None or e[0] < self.lockout_after:
            return 0
        left = self.lockout_ms - compat.ticks_diff(self._now(now), e[1])
        if left > 0:
            return left
        del self.entries[ip]  # lockout over: a clean slate
        return 0

    def failed(self, ip, now=None):
        now = self._now(now)
        e = self.entries.get(ip)
        if e is None:
            if len(self.entries) >= self.tracked:
                self._forget_oldest(now)
            e = self.entries[ip] = [0, now]
        e[0] += 1
        e[1] = now
        if e[0] >= self.lockout_after:
            return self.max_delay_ms
        d = self.delay_ms << (e[0] - 1)
        return d if d < self.max_delay_ms else self.max_delay_ms

    def succeeded(self, ip):
        if ip in self.entries:
            del self.entries[ip]

    def quiet(self, now=None):
        """True when no address has failed within the lockout window: no one
        is locked out, so forgetting them all refuses no one (idle unloading
        gives a quiet throttle's heap back, app_unload)."""
        now = self._now(now)
        for ip in self.entries:
            if compat.ticks_diff(now, self.entries[ip][1]) < self.lockout_ms:
                return False
        return True

    def _forget_oldest(self, now):
        oldest = None
        age = -1
        for ip in self.entries:
            a = compat.ticks_diff(now, self.entries[ip][1])
            if a > age:
                oldest, age = ip, a
        if oldest is not None:
            del self.entries[oldest]
