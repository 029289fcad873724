"""Durable message spool on flash: streaming writer, commit by fsync + atomic rename, boot recovery.

Layout and the crash argument are in docs/storage.md. Every flash write goes
through `Flash`, which counts files created, renames, removes and bytes.
"""

import json
import os

from . import compat, log
from .compat import const
from .mailbox import valid_user

_ENOSPC = const(28)
_RECORD_MAX = const(65536)  # envelope / queue record files are small; never read more than this


class SpoolFull(OSError):
    """Flash full or the reserve reached: SMTP answers 452 4.3.1 (RFC 3463 §3.4)."""


class Flash:
    """The durability primitives, counted for wear (docs/storage.md "Wear")."""

    def __init__(self):
        self.created = 0
        self.renames = 0
        self.removes = 0
        self.links = 0
        self.bytes = 0
        self.syncs = 0

    def counts(self):
        return {
            "created": self.created,
            "renames": self.renames,
            "removes": self.removes,
            "links": self.links,
            "bytes": self.bytes,
            "syncs": self.syncs,
        }

    def create(self, path):
        f = open(path, "wb")
        self.created += 1
        return f

    def write(self, f, data):
        f.write(data)
        self.bytes += len(data)

    def finish(self, f):
        """Flush, fsync (where the runtime can) and close."""
        try:
            compat.fsync(f)
        finally:
            f.close()

    def rename(self, src, dst):
        compat.replace(src, dst)
        self.renames += 1

    def link(self, src, dst):
        compat.link(src, dst)
        self.links += 1

    def remove(self, path):
        """Remove `path`; a missing file is not an error (recovery repeats work)."""
        try:
            os.remove(path)
        except OSError:
            if compat.exists(path):
                raise
            return
        self.removes += 1

    def sync_dir(self, path):
        compat.sync_dir(path)
        self.syncs += 1

    def put(self, path, tmp, text):
        """Replace the small file `path` by `text` atomically (old or new, never neither)."""
        f = self.create(tmp)
        try:
            self.write(f, text.encode())
        finally:
            self.finish(f)
        self.rename(tmp, path)
        self.sync_dir(path.rsplit("/", 1)[0])


def read_record(path):
    """A small JSON record file -> dict (raises OSError / ValueError)."""
    size = compat.file_size(path)
    if size > _RECORD_MAX:
        raise ValueError("record too large")
    with open(path, "rb") as f:
        data = f.read(size)
    return json.loads(data)


class Spool:
    """The spool under `root`. Call recover() once at boot before anything else.

    Attributes: maildrops (mailbox.Maildrops), queue (outq.OutboundQueue),
    boot (this boot's id, str), flash (Flash counters). `links`: fan out with
    hard links (default where the runtime has them) or with reference stubs.
    """

    def __init__(self, root, reserve=65536, links=None):
        from .mailbox import Maildrops

        self.root = root.rstrip("/") or "/"
        self.reserve = reserve
        self.links = compat.HAS_LINK if links is None else links
        self.flash = Flash()
        self.boot = ""
        self._boot_text = ""  # this boot's counter, while it is not on flash yet
        self._seq = 0
        self._deferred = False
        self.maildrops = Maildrops(self)
        self._queue = None
        self.delivered_local = 0  # messages committed into maildrops since boot (the cost record's msgs_in)
        self.corrupt = 0  # unreadable queue records set aside in corrupt/ (status)

    def queue_loaded(self):
        """Has the outbound queue been loaded (a message queued, or asked for)?"""
        return self._queue is not None

    @property
    def queue(self):
        """The OutboundQueue, imported on first use (a maildrop-only spool never loads it)."""
        if self._queue is None:
            from .outq import OutboundQueue  # (outq imports this module)

            self._queue = OutboundQueue(self)
            self._queue.rebuild()
        return self._queue

    # ---- paths ----

    def path(self, kind, name=""):
        return self.root + "/" + kind + ("/" + name if name else "")

    def mail_dir(self, user):
        return self.root + "/mail/" + user

    def _make_maildrop(self, user):
        """mail/USER, created durably (its entry in mail/ synced) the first time."""
        d = self.mail_dir(user)
        if not compat.is_dir(d):
            compat.makedirs(d)
            self.flash.sync_dir(self.path("mail"))
        return d

    # ---- boot ----

    def recover(self):
        """Remove half-written files, finish interrupted fan-outs, free orphan bodies.

        Idempotent: a crash during recovery is recovered by the next one.
        Returns counts {"tmp", "fanout", "orphans", "queue"}.
        """
        for d in ("tmp", "new", "body", "queue", "mail", "locks"):
            compat.makedirs(self.path(d))
        counts = {"tmp": 0, "fanout": 0, "orphans": 0, "queue": 0}
        tmp = self.path("tmp")
        for name in os.listdir(tmp):
            if not self._finish_replace(name):
                self.flash.remove(tmp + "/" + name)
                counts["tmp"] += 1
        self._new_boot()  # (after tmp/ is cleaned: on a full flash that is the room it needs)
        counts["fanout"] = self._finish_fanouts()
        for name in os.listdir(self.path("body")):
            if not self._body_held(name):
                self.flash.remove(self.path("body", name))
                counts["orphans"] += 1
        try:
            self.corrupt = len([n for n in os.listdir(self.path("corrupt")) if not n.endswith(".body")])
        except OSError:
            self.corrupt = 0
        q = self._queue
        if q is not None:
            counts["queue"] = q.rebuild()
        else:
            counts["queue"] = len(os.listdir(self.path("queue")))  # indexed when first used
        if counts["tmp"] or counts["fanout"] or counts["orphans"]:
            log.warn("spool recovery: %s", json.dumps(counts))
        return counts

    def _finish_replace(self, name):
        """A queue record update cut between compat.replace's remove and rename
        (VFSes that cannot rename over a file, e.g. FAT): the complete new record
        is still in tmp/ and the old one is gone. Put it in place -> True."""
        if not name.endswith(".q"):
            return False
        dst = self.path("queue", name[:-2])
        src = self.path("tmp", name)
        if compat.exists(dst):
            return False
        try:
            read_record(src)  # complete JSON only
        except (OSError, ValueError):
            return False
        self.flash.rename(src, dst)
        self.flash.sync_dir(self.path("queue"))
        return True

    def _finish_fanouts(self):
        """Deliver every envelope still in new/ (interrupted or deferred fan-outs) -> how many."""
        self._deferred = False
        done = 0
        for name in sorted(os.listdir(self.path("new"))):
            p = self.path("new", name)
            try:
                rec = read_record(p)
            except (OSError, ValueError) as e:  # cannot happen after an atomic rename; be safe
                log.error("spool: unreadable envelope %s (%s), dropped", name, compat.exc_text(e))
                self.flash.remove(p)
                continue
            if not compat.exists(self.path("body", name)):
                log.error("spool: envelope %s without body, dropped", name)
                self.flash.remove(p)
                continue
            self._fan_out(name, rec)
            done += 1
        return done

    def _new_boot(self):
        p = self.path("boot")
        nonce, n = "", 0
        try:
            with open(p) as f:
                parts = f.read(64).split()
            nonce, n = parts[0], int(parts[1])
        except (OSError, ValueError, IndexError):
            pass
        if not nonce:
            nonce = "".join(["%02x" % b for b in compat.urandom(4)])
        n += 1
        self.boot = "%s-%08x" % (nonce, n)
        self._seq = 0
        self._boot_text = "%s %d\n" % (nonce, n)
        try:
            self._save_boot()
        except OSError as e:
            # A full flash must not stop the gateway starting: POP3 has to serve
            # (and delete) to make room. No id is handed out until the counter is
            # on flash (new_id), so ids stay unique; the log says why once.
            log.error("spool: cannot save the boot counter (%s): no new mail until there is room",
                      compat.exc_text(e))

    def _save_boot(self):
        """Put this boot's counter on flash (once); raises OSError if it cannot."""
        if self._boot_text:
            self.flash.put(self.path("boot"), self.path("tmp", "boot"), self._boot_text)
            self._boot_text = ""

    def new_id(self):
        """A message id never used before in this spool: NONCE-BOOT-SEQ (fixed-width hex, sorts by age).
        Raises SpoolFull while this boot's counter cannot be put on flash."""
        if not self.boot:
            raise OSError("spool: recover() was not called")
        if self._boot_text:
            try:
                self._save_boot()
            except OSError:
                raise SpoolFull(_ENOSPC, "spool full (boot counter not saved)")
        self._seq += 1
        return "%s-%08x" % (self.boot, self._seq)

    # ---- space ----

    def free(self):
        """Free octets above the reserve (negative below it), or None if the runtime cannot tell."""
        f = compat.disk_free(self.root)
        if f < 0:
            return None
        return f - self.reserve

    def has_room(self, size=0):
        """True if free space minus the reserve is at least `size` octets (SIZE=, RFC 1870)."""
        f = self.free()
        return f is None or f >= size

    def writer(self):
        """A new SpoolWriter; raises SpoolFull if there is no room at all."""
        if self._deferred:
            try:
                self._finish_fanouts()
            except OSError as e:
                self._deferred = True
                log.error("spool: deferred fan-out still failing: %s", compat.exc_text(e))
        budget = self.free()
        if budget is not None and budget <= 0:
            raise SpoolFull(_ENOSPC, "spool full")
        return SpoolWriter(self, self.new_id(), budget)

    # ---- commit and fan-out ----

    def _commit(self, msg_id, tmp, sender, size, users, remote):
        fl = self.flash
        if len(users) == 1 and not remote:
            # One maildrop: the rename into it is the commit (no envelope needed).
            d = self._make_maildrop(users[0])
            fl.rename(tmp, d + "/" + msg_id)
            fl.sync_dir(d)
            return
        fl.rename(tmp, self.path("body", msg_id))
        fl.sync_dir(self.path("body"))
        rec = {
            "id": msg_id,
            "sender": sender,
            "size": size,
            "created": compat.wall_time(),
            "next": 0,
            "attempts": 0,
            "sessions": 0,
            "local": users,
            "rcpts": [[a, "pending", "", 0] for a in remote],
        }
        if not users:
            # Remote only: the queue record itself is the commit point (no fan-out to journal).
            fl.put(self.path("queue", msg_id), self.path("tmp", msg_id + ".env"), json.dumps(rec))
            self.queue.index(msg_id, 0)
            return
        # Commit point: the envelope renamed into new/ (body already durable in body/).
        fl.put(self.path("new", msg_id), self.path("tmp", msg_id + ".env"), json.dumps(rec))
        try:
            self._fan_out(msg_id, rec)
        except OSError as e:  # committed: the envelope stays in new/; retried by the next writer() or at boot
            self._deferred = True
            log.error("spool: fan-out of %s deferred: %s", msg_id, compat.exc_text(e))

    def _fan_out(self, msg_id, rec):
        """Deliver an envelope in new/ to its maildrops, then file or drop it. Idempotent."""
        fl = self.flash
        body = self.path("body", msg_id)
        for user in rec["local"]:
            d = self._make_maildrop(user)
            if self.links:
                dst = d + "/" + msg_id
                if not compat.exists(dst):
                    fl.link(body, dst)
            else:
                dst = d + "/" + msg_id + ".ref"
                if not compat.exists(dst):
                    fl.create(dst).close()
            fl.sync_dir(d)
        env = self.path("new", msg_id)
        if rec["rcpts"]:
            fl.rename(env, self.path("queue", msg_id))
            fl.sync_dir(self.path("queue"))
            self.queue.index(msg_id, rec["next"])
        else:
            fl.remove(env)
            fl.sync_dir(self.path("new"))
            self.release(msg_id)

    def _body_held(self, msg_id):
        if compat.exists(self.path("new", msg_id)) or compat.exists(self.path("queue", msg_id)):
            return True
        stub = "/" + msg_id + ".ref"
        mail = self.path("mail")
        for user in os.listdir(mail):
            if compat.exists(mail + "/" + user + stub):
                return True
        return False

    def set_aside(self, msg_id, why):
        """A queue record that cannot be read (`why`): move it to corrupt/ so no
        queue run trips over it again, and keep its message there too when
        nothing else holds the body (a maildrop stub may). Nothing is deleted:
        the operator decides (docs/storage.md). Logged once, here."""
        d = self.path("corrupt")
        compat.makedirs(d)
        fl = self.flash
        fl.rename(self.path("queue", msg_id), d + "/" + msg_id)
        if compat.exists(self.path("body", msg_id)) and not self._body_held(msg_id):
            fl.rename(self.path("body", msg_id), d + "/" + msg_id + ".body")
        fl.sync_dir(d)
        fl.sync_dir(self.path("queue"))
        self.corrupt += 1
        log.error("spool: queue record %s cannot be read (%s): set aside in %s with its message", msg_id, why, d)

    def release(self, msg_id):
        """Free body/ID once no envelope, queue record or maildrop stub refers to it."""
        if not compat.exists(self.path("body", msg_id)) or self._body_held(msg_id):
            return
        self.flash.remove(self.path("body", msg_id))

    def open_body(self, msg_id):
        """The shared body of a queued / fanned-out message, opened 'rb'."""
        return open(self.path("body", msg_id), "rb")


class SpoolWriter:
    """Streams one message body to tmp/ in constant RAM; commit() makes it durable.

    The free-space budget is read once (statvfs is slow on littlefs) and again
    only when the message outgrows it; a real ENOSPC is SpoolFull too.
    """

    def __init__(self, spool, msg_id, budget):
        self.spool = spool
        self.id = msg_id
        self.size = 0
        self._budget = budget
        self._tmp = spool.path("tmp", msg_id)
        self._f = spool.flash.create(self._tmp)

    def write(self, data):
        """Append bytes/memoryview `data`. Raises SpoolFull (and aborts) if flash fills."""
        f = self._f
        if f is None:
            raise OSError("spool writer is closed")
        n = len(data)
        if self._budget is not None and self.size + n > self._budget:
            self._budget = self.spool.free()
            if self._budget is not None and self.size + n > self._budget:
                self.abort()
                raise SpoolFull(_ENOSPC, "spool full (reserve reached)")
        try:
            self.spool.flash.write(f, data)
        except OSError as e:
            self.abort()
            if e.args and e.args[0] == _ENOSPC:
                raise SpoolFull(_ENOSPC, "spool full")
            raise
        self.size += n

    def commit(self, sender, recipients):
        """Make the message durable and deliver it; returns the message id (str).

        sender: str ("" for <>). recipients: list of delivery.Route. Local routes
        land in maildrops, remote ones become one outbound queue record. Durable
        on return; only then may SMTP answer 250. On OSError nothing was promised
        (the writer is aborted; SMTP answers 451).
        """
        f = self._f
        if f is None:
            raise OSError("spool writer is closed")
        users = []
        remote = []
        for r in recipients:
            if r.kind == "local":
                for u in r.users:
                    if not valid_user(u):  # a maildrop name becomes a directory name
                        self.abort()
                        raise ValueError("bad maildrop name %r" % u[:64])
                    if u not in users:
                        users.append(u)
            elif r.address not in remote:
                remote.append(r.address)
        if not users and not remote:
            self.abort()
            raise ValueError("no recipients")
        self._f = None
        try:
            self.spool.flash.finish(f)
            self.spool._commit(self.id, self._tmp, sender, self.size, users, remote)
        except OSError as e:
            try:
                self.spool.flash.remove(self._tmp)
                self.spool.release(self.id)  # a body already moved to body/ but never committed
            except OSError:
                pass  # recovery removes it at the next boot
            if e.args and e.args[0] == _ENOSPC:
                raise SpoolFull(_ENOSPC, "spool full")
            raise
        if users:
            self.spool.delivered_local += 1
        return self.id

    def abort(self):
        """Throw the message away. Idempotent; nothing half-written remains."""
        f = self._f
        self._f = None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
            self.spool.flash.remove(self._tmp)
