"""POP3 maildrops on flash: one directory per user, stable never-reused UIDs, exclusive locks.

RFC 1939 §7 (UIDL), §8 (exclusive lock), §11 (octet counts = file sizes, CRLF).
An entry `mail/USER/ID` is the body itself (hard link or sole copy); an entry
`mail/USER/ID.ref` is an empty stub for the shared body `body/ID`.
"""

import os
from array import array

from . import compat
from .compat import const

_REF = const(".ref")


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
        # CPython: user -> {entry name: size} from the last listing. A stored
        # message never changes and its id is never reused, so the next login
        # (a mail client polling with "leave on server") stats only what is
        # new. A board's littlefs lists sizes itself, and its heap has no room.
        self._sizes = None if compat.MICROPYTHON else {}

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

    def holds(self, msg_id):
        """True if spool message `msg_id` is in some maildrop (as its file or a
        stub), or its envelope waits in new/ for the fan-out: it was committed.
        pop3_journal's "P" lines ask it."""
        if compat.exists(self.spool.path("new", msg_id)):
            return True
        for user in self.users():
            d = self.spool.mail_dir(user) + "/" + msg_id
            if compat.exists(d) or compat.exists(d + _REF):
                return True
        return False

    def count(self, user):
        """Messages waiting in `user`'s maildrop (a directory listing; no lock)."""
        n = 0
        try:
            for name, _size in compat.files_in(self.spool.mail_dir(user)):
                if name[0] != ".":
                    n += 1
        except OSError:
            pass
        return n

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
        if self._sizes:
            self._sizes.pop(user, None)


class Maildrop:
    """One locked maildrop, a snapshot taken at open (RFC 1939 §8: new mail shows at the next session).

    Message number n is index n-1 of messages(). UID = the spool message id:
    printable ASCII, 26 octets, never reused (boot counter + per-boot sequence).
    """

    def __init__(self, drops, user):
        self.drops = drops
        self.user = user
        self.dir = drops.spool.mail_dir(user)
        sizes = drops._sizes
        known = None if sizes is None else sizes.setdefault(user, {})
        self._msgs = _snapshot(self.dir, drops.spool.path("body") + "/", drops.spool.inflight, known)
        self._open = True

    def messages(self):
        """Sequence of (uid, size), oldest first; sizes in octets; no body is opened.

        A MessageList (len, [i], iteration), not a list: ~40 octets a message
        on a board instead of ~100 for a list of tuples.
        """
        return self._msgs

    def _name(self, index):
        uid = self._msgs.uid(index)
        return uid + _REF if self._msgs.stub[index] else uid

    def open_body(self, index):
        """The message body opened 'rb' (readinto works). The caller closes it."""
        if self._msgs.stub[index]:
            return self.drops.spool.open_body(self._msgs.uid(index))
        return compat.open_rb(self.dir + "/" + self._msgs.uid(index))

    def expunge(self, indexes):
        """Delete these 0-based messages durably (POP3 UPDATE state only, RFC 1939 §6)."""
        sp = self.drops.spool
        fl = sp.flash
        shared = []
        done = 0
        for i in indexes:
            n = self._name(i)
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


class MessageList:
    """(uid, size) pairs of a maildrop snapshot in flat preallocated arrays (RAM per
    message: the uid's octets + 9; no growth, so no heap fragmentation), for POP3
    on a board with hundreds of messages waiting. len(), [i] -> (uid, size), iteration;
    `sizes[i]` and `uid(i)` for one of the two without building the pair."""

    def __init__(self, count, octets):
        self.n = 0
        self.uids = bytearray(octets)
        self.ends = array("L", range(count))
        self.sizes = array("L", range(count))
        self.stub = bytearray(count)

    def add(self, uid, size, stub):
        """Append one message; False when the snapshot is full (mail that arrived while listing)."""
        i = self.n
        a = self.ends[i - 1] if i > 0 else 0
        b = a + len(uid)
        if i >= len(self.ends) or b > len(self.uids):
            return False
        self.uids[a:b] = uid.encode()
        self.ends[i] = b
        self.sizes[i] = size
        self.stub[i] = 1 if stub else 0
        self.n = i + 1
        return True

    def __len__(self):
        return self.n

    def uid(self, i):
        return bytes(self.uids[self.ends[i - 1] if i > 0 else 0 : self.ends[i]]).decode()

    def __getitem__(self, i):
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError("no such message")
        return (self.uid(i), self.sizes[i])


def _snapshot(path, body_dir, hide, known=None):
    """List a maildrop directory into a MessageList sorted by uid (= by age).

    Two passes over compat.files_in (entry by entry, no list of names): one to
    size the arrays, one to fill them. littlefs lists names sorted, with their
    sizes, so a board neither sorts nor stats. A stub whose body is gone
    (cannot happen by design) is never shown. `known`: {entry name: size}
    from the last listing (CPython), used instead of a stat and left holding
    this listing's entries only.
    """
    count = octets = 0
    try:
        for name, _size in compat.files_in(path):
            count += 1
            octets += len(name)
    except OSError:  # no maildrop directory yet: empty
        return MessageList(0, 0)
    out = MessageList(count, octets)
    last = ""
    in_order = True
    old = known
    if known is not None:
        known = {}
    for name, size in compat.files_in(path):
        stub = name.endswith(_REF)
        uid = name[: -len(_REF)] if stub else name
        if hide and uid in hide:
            continue
        if stub or size < 0:
            size = old.get(name, -1) if old else -1
            if size < 0:
                try:
                    size = compat.file_size(body_dir + uid if stub else path + "/" + name)
                except OSError:
                    continue
            if known is not None:
                known[name] = size
        if not out.add(uid, size, stub):
            break
        in_order = in_order and uid > last
        last = uid
    if old is not None:  # (the caller's dict: this listing's entries only)
        old.clear()
        old.update(known)
    if in_order:
        return out
    srt = MessageList(out.n, out.ends[out.n - 1])
    for i in sorted(range(out.n), key=out.uid):
        srt.add(out.uid(i), out.sizes[i], out.stub[i])
    return srt
