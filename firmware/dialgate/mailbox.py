"""POP3 maildrops on flash: one directory per user, stable never-reused UIDs, exclusive locks.

RFC 1939 §7 (UIDL), §8 (exclusive lock), §11 (octet counts = file sizes, CRLF).
An entry `mail/USER/ID` is the body itself (hard link or sole copy); an entry
`mail/USER/ID.ref` is an empty stub for the shared body `body/ID`.
"""

import os

from . import compat

_REF = ".ref"


class Locked(Exception):
    """The maildrop is already locked: POP3 answers -ERR [IN-USE] (RFC 3206 §4)."""


def valid_user(name):
    """User (= maildrop directory) names: 1-64 of a-z 0-9 . _ - , not starting with a dot."""
    if not 0 < len(name) <= 64 or name[0] == ".":
        return False
    for c in name:
        if not ("a" <= c <= "z" or "0" <= c <= "9" or c in "._-"):
            return False
    return True


class Maildrops:
    """All maildrops of a spool (`spool.maildrops`).

    Locks: a table in RAM (one gateway process per spool; a crash or reset
    empties it), plus on CPython an flock on locks/USER that the kernel drops
    when the holding process dies, so another process cannot share a maildrop
    and a SIGKILL cannot leave one stuck.
    """

    def __init__(self, spool):
        self.spool = spool
        self._held = {}  # user -> OS lock handle (None on MicroPython)

    def open(self, user):
        """Lock and open `user`'s maildrop -> Maildrop. Raises Locked, or ValueError for a bad name."""
        if not valid_user(user):
            raise ValueError("bad user name")
        if user in self._held:
            raise Locked(user)
        try:
            handle = compat.lock_exclusive(self.spool.path("locks", user))
        except OSError:
            raise Locked(user)
        self._held[user] = handle
        try:
            return Maildrop(self, user)
        except Exception:
            self._unlock(user)
            raise

    def _unlock(self, user):
        handle = self._held.pop(user, None)
        compat.unlock(handle)

    def is_locked(self, user):
        return user in self._held

    def users(self):
        """Names of the maildrops that exist on flash."""
        return sorted(os.listdir(self.spool.path("mail")))

    def count(self, user):
        """Messages waiting in `user`'s maildrop (a directory listing; no lock)."""
        try:
            return len([n for n in os.listdir(self.spool.mail_dir(user)) if n[0] != "."])
        except OSError:
            return 0

    def remove_all(self, user):
        """Delete a maildrop with everything in it (user deleted). Raises Locked if in use."""
        md = self.open(user)
        try:
            md.expunge(range(len(md.messages())))
        finally:
            md.close()
        try:
            os.rmdir(self.spool.mail_dir(user))
        except OSError:
            pass


class Maildrop:
    """One locked maildrop, a snapshot taken at open (RFC 1939 §8: new mail shows at the next session).

    Message number n is index n-1 of messages(). UID = the spool message id:
    printable ASCII, 26 octets, never reused (boot counter + per-boot sequence).
    """

    def __init__(self, drops, user):
        self.drops = drops
        self.user = user
        self.dir = drops.spool.mail_dir(user)
        try:
            names = [n for n in os.listdir(self.dir) if n[0] != "."]
        except OSError:
            names = []
        names.sort()
        body = drops.spool.path("body") + "/"
        keep = []
        msgs = []
        for n in names:
            if n.endswith(_REF):
                uid = n[: -len(_REF)]
                path = body + uid
            else:
                uid = n
                path = self.dir + "/" + n
            try:
                size = compat.file_size(path)
            except OSError:  # a stub whose body is gone: cannot happen by design; never show it
                continue
            keep.append(n)
            msgs.append((uid, size))
        self._names = keep
        self._msgs = msgs
        self._open = True

    def messages(self):
        """List of (uid, size) oldest first; sizes in octets; no body is opened."""
        return self._msgs

    def open_body(self, index):
        """The message body opened 'rb' (readinto works). The caller closes it."""
        n = self._names[index]
        if n.endswith(_REF):
            return self.drops.spool.open_body(n[: -len(_REF)])
        return open(self.dir + "/" + n, "rb")

    def expunge(self, indexes):
        """Delete these 0-based messages durably (POP3 UPDATE state only, RFC 1939 §6)."""
        sp = self.drops.spool
        fl = sp.flash
        shared = []
        done = 0
        for i in indexes:
            n = self._names[i]
            fl.remove(self.dir + "/" + n)
            done += 1
            if n.endswith(_REF):
                shared.append(n[: -len(_REF)])
        if done:
            fl.sync_dir(self.dir)
        for msg_id in shared:
            sp.release(msg_id)
        if shared:
            fl.sync_dir(sp.path("body"))

    def close(self):
        """Release the lock. Idempotent; call it in finally."""
        if self._open:
            self._open = False
            self.drops._unlock(self.user)
