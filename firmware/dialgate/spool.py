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

    def used(self):
        """At most how many octets of the filesystem the writes counted so far have
        taken: the data, and for each file two 4 KB blocks (littlefs: the last
        block's rounding, the metadata), so Spool.free's estimate never says more
        is free than there is."""
        return self.bytes + self.created * 8192

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

    def put(self, path, tmp, text, private=False):
        """Replace the small file `path` by `text` atomically (old or new, never
        neither), durable when it returns; `private`: owner-only (0600) before
        it takes the name (passwords). A reader of a file that is put with the
        tmp `path + ".tmp"` calls compat.settle(path) first."""
        f = self.create(tmp)
        try:
            self.write(f, text.encode())
        finally:
            self.finish(f)
        if private:
            compat.chmod_private(tmp)
        self.rename(tmp, path)
        self.sync_dir(path.rsplit("/", 1)[0] if "/" in path else ".")


def valid_id(msg_id):
    """True if `msg_id` can be a message id: a file name in queue/, body/ and
    the maildrops (what new_id() makes: hex and "-"). Anything that names a
    path elsewhere ("..", "a/b", ".x") is not: ids typed at the console
    (`queue show ID`) go through here before they touch the flash."""
    return 0 < len(msg_id) <= 64 and msg_id[0] != "." and "/" not in msg_id and "\\" not in msg_id


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

    def __init__(self, root, reserve=65536, links=None, write_buffer=1024):
        from .mailbox import Maildrops

        self.root = root.rstrip("/") or "/"
        self.reserve = reserve
        self.write_size = compat.io_buffer(write_buffer)  # octets each SpoolWriter gathers per file write
        self.links = compat.HAS_LINK if links is None else links
        self.flash = Flash()
        self._free_at = None  # ticks of the last free-space reading (free())
        self._free = 0  # that reading plus flash.used() then
        self.boot = ""
        self._boot_text = ""  # this boot's counter, while it is not on flash yet
        self._seq = 0
        self._deferred = False
        self.maildrops = Maildrops(self)
        self._queue = None
        self.delivered_local = 0  # messages committed into maildrops since boot (the cost record's msgs_in)
        self.corrupt = 0  # unreadable queue records set aside in corrupt/ (status)
        self.inflight = set()  # ids of unfinished commit jobs (SpoolWriter.step): not shown by POP3, not fanned out twice

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
            if name in self.inflight:  # its own commit is still fanning it out
                continue
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
            _drive(self.flash, self._fan_out_steps(name, rec))
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

    def free(self, need=0):
        """Free octets above the reserve (negative below it), or None if the runtime cannot tell.
        Within compat.FREE_REUSE_MS of the last reading (a board), that reading less
        what Flash's writes since can have taken (Flash.used), while it leaves more
        than the reserve again above `need`; nearer the reserve, or later, statvfs
        is asked afresh."""
        if self._free_at is not None:
            f = self._free - self.flash.used() - self.reserve
            if f > self.reserve + need and compat.ticks_diff(compat.ticks_ms(), self._free_at) < compat.FREE_REUSE_MS:
                return f
        f = compat.disk_free(self.root)
        if f < 0:
            return None
        self._free_at = compat.ticks_ms()
        self._free = f + self.flash.used()
        return f - self.reserve

    def has_room(self, size=0):
        """True if free space minus the reserve is at least `size` octets (SIZE=, RFC 1870)."""
        f = self.free(size)
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
    # Each is a generator of sync requests (SpoolWriter.step): it does the renames and
    # links itself and yields what must be on stable storage before it goes on.

    def _commit_steps(self, w, f, sender, users, remote):
        """SpoolWriter.start_commit's steps. An OSError before the commit point
        removes what was written (nothing promised: 451/452)."""
        fl = self.flash
        msg_id = w.id
        tmp = w._tmp
        dst = rec = None
        try:
            yield (f,)  # the body: fsync + close
            if len(users) == 1 and not remote:
                # One maildrop: the rename into it is the commit (no envelope needed).
                d = self.mail_dir(users[0])
                if not compat.is_dir(d):
                    compat.makedirs(d)
                    yield (self.path("mail"),)  # the new maildrop's own entry first
                dst = d + "/" + msg_id
                fl.rename(tmp, dst)
                yield (d,)
            else:
                fl.rename(tmp, self.path("body", msg_id))
                yield (self.path("body"),)
                rec = {
                    "id": msg_id,
                    "sender": sender,
                    "size": w.size,
                    "created": compat.wall_time(),
                    "next": 0,
                    "attempts": 0,
                    "sessions": 0,
                    "local": users,
                    "rcpts": [[a, "pending", "", 0] for a in remote],
                }
                # Remote only: the queue record is the commit point (no fan-out to
                # journal); else the envelope renamed into new/ is (the body is in body/).
                kind = "new" if users else "queue"
                env = tmp + ".env"
                ef = fl.create(env)
                try:
                    fl.write(ef, json.dumps(rec).encode())
                except OSError:
                    ef.close()
                    raise
                yield (ef,)
                dst = self.path(kind, msg_id)
                fl.rename(env, dst)
                yield (self.path(kind),)
        except OSError as e:
            try:
                if dst is not None:
                    fl.remove(dst)  # renamed in, but not durable: not promised, take it back
                fl.remove(tmp)
                fl.remove(tmp + ".env")
                self.release(msg_id)  # a body already moved to body/ but never committed
            except OSError:
                pass  # recovery removes it at the next boot
            if e.args and e.args[0] == _ENOSPC:
                raise SpoolFull(_ENOSPC, "spool full")
            raise
        # committed
        if users:
            self.delivered_local += 1
        if rec is None:  # (one maildrop: done)
            return
        if not users:
            self.queue.index(msg_id, 0)  # (only once durable: the relay may send it now)
        else:
            try:
                yield from self._fan_out_steps(msg_id, rec)
            except OSError as e:  # the envelope stays in new/; retried by the next writer() or at boot
                self._deferred = True
                log.error("spool: fan-out of %s deferred: %s", msg_id, compat.exc_text(e))

    def _fan_out_steps(self, msg_id, rec):
        fl = self.flash
        body = self.path("body", msg_id)
        dirs = []
        made = False
        for user in rec["local"]:
            d = self.mail_dir(user)
            if not compat.is_dir(d):
                compat.makedirs(d)
                made = True
            dirs.append(d)
        if made:
            yield (self.path("mail"),)
        for d in dirs:
            if self.links:
                dst = d + "/" + msg_id
                if not compat.exists(dst):
                    fl.link(body, dst)
            else:
                dst = d + "/" + msg_id + ".ref"
                if not compat.exists(dst):
                    fl.create(dst).close()
        yield tuple(dirs)  # every maildrop's entry durable before the envelope goes
        env = self.path("new", msg_id)
        if rec["rcpts"]:
            fl.rename(env, self.path("queue", msg_id))
            yield (self.path("queue"),)
            self.queue.index(msg_id, rec["next"])
        else:
            fl.remove(env)
            yield (self.path("new"),)
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
        return compat.open_rb(self.path("body", msg_id))


def sync(x):
    """One item of a commit's sync request (SpoolWriter.step), blocking: an open
    file is fsync'd and closed, a directory path fsync'd. CPython's group
    committer calls it in a worker thread."""
    if isinstance(x, str):
        compat.sync_dir(x)
        return
    try:
        compat.fsync(x)
    finally:
        x.close()


def _drive(fl, g):
    """Perform the sync requests of steps generator `g` here, in turn; raises what it raises."""
    err = None
    while True:
        try:
            req = g.send(None) if err is None else g.throw(err)
        except StopIteration:
            return
        err = None
        for x in req:
            try:
                sync(x)
                if isinstance(x, str):
                    fl.syncs += 1
            except OSError as e:
                err = err or e


class SpoolWriter:
    """Streams one message body to tmp/ in constant RAM; commit() makes it durable.

    The free-space budget is read once (statvfs is slow on littlefs) and again
    only when the message outgrows it; a real ENOSPC is SpoolFull too.
    """

    def __init__(self, spool, msg_id, budget):
        self.spool = spool
        self.id = msg_id
        self.size = 0
        self.error = None  # (the job's outcome: see start_commit)
        self._steps = None
        self._budget = budget
        self._tmp = spool.path("tmp", msg_id)
        self._f = _GatheredFile(spool, spool.flash.create(self._tmp))

    def write(self, data):
        """Append bytes/memoryview `data` (copied: its buffer may be reused on return).
        Raises SpoolFull (and aborts) if flash fills, here or when the gathered
        octets are written out (a later write, or commit())."""
        f = self._f
        if f is None:
            raise OSError("spool writer is closed")
        n = len(data)
        if self._budget is not None and self.size + n > self._budget:
            self._budget = self.spool.free(self.size + n)
            if self._budget is not None and self.size + n > self._budget:
                self.abort()
                raise SpoolFull(_ENOSPC, "spool full (reserve reached)")
        try:
            f.write(data)
        except OSError as e:
            self.abort()
            if e.args and e.args[0] == _ENOSPC:
                raise SpoolFull(_ENOSPC, "spool full")
            raise
        self.size += n

    def commit(self, sender, recipients):
        """Make the message durable and deliver it, here and now; returns the message id (str).

        sender: str ("" for <>). recipients: list of delivery.Route. Local routes
        land in maildrops, remote ones become one outbound queue record. Durable
        on return; only then may SMTP answer 250. On OSError nothing was promised
        (the writer is aborted; SMTP answers 451).
        """
        self.start_commit(sender, recipients).run()
        if self.error is not None:
            raise self.error
        return self.id

    def start_commit(self, sender, recipients):
        """The same commit as a job (the writer itself, not started): run() does
        it here, or net hands it to compat's group committer (CPython: the fsyncs
        in worker threads, shared with other sessions' commits). Raises
        ValueError (no recipients, a bad maildrop name) or OSError at once;
        nothing promised then.

        As a job: step(err) does the next renames and links and returns a
        request: a tuple of open files (to fsync and close) and directory paths
        (to fsync), all to be on stable storage before the next step(); `err` is
        the OSError a sync of the last request raised, or None. It returns None
        once finished: `error` is then None (committed, durable) or the
        exception (nothing promised, nothing left half-done). run() performs
        every request here, in turn (a board; commit()). Until it has finished
        the id is in `spool.inflight`: POP3 does not show it, recovery's
        fan-out leaves it alone (docs/storage.md "Commit")."""
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
        self._steps = self.spool._commit_steps(self, f, sender, users, remote)
        self.spool.inflight.add(self.id)
        return self

    def step(self, err=None):
        g = self._steps
        if g is None:
            return None
        try:
            return g.send(None) if err is None else g.throw(err)
        except StopIteration:
            pass
        except Exception as e:  # (the steps cleaned up before raising)
            self.error = e
        self._steps = None
        self.spool.inflight.discard(self.id)
        return None

    def run(self):
        """Perform the whole commit here, blocking. Returns self (see `error`)."""
        try:
            _drive(self.spool.flash, self._steps)
        except Exception as e:  # (the steps cleaned up before raising)
            self.error = e
        self._steps = None
        self.spool.inflight.discard(self.id)
        return self

    def abort(self):
        """Throw the message away. Idempotent; nothing half-written remains."""
        f = self._f
        self._f = None
        if f is not None:
            f.discard()
            try:
                f.close()
            except OSError:
                pass
            self.spool.flash.remove(self._tmp)


class _GatheredFile:
    """A SpoolWriter's tmp/ file behind one write buffer of `spool.write_size`
    octets, so flash sees writes of that size whatever pieces the DATA decoder,
    the POP3 collector or a bounce hands over (a bare-LF message is three pieces
    a line). Pieces at least that large go straight through. flush() and close()
    write the gathered octets first, so Flash.finish (fsync, close) and the commit
    path see an ordinary file."""

    def __init__(self, spool, f):
        self.spool = spool
        self.f = f
        self.buf = bytearray(spool.write_size)
        self.n = 0

    def write(self, data):
        n = len(data)
        k = self.n
        buf = self.buf
        if k + n <= len(buf):
            buf[k : k + n] = data
            self.n = k + n
            return
        self._drain()
        if n >= len(buf):
            self.spool.flash.write(self.f, data)
        else:
            buf[:n] = data
            self.n = n

    def _drain(self):
        k = self.n
        if k:
            self.n = 0
            self.spool.flash.write(self.f, memoryview(self.buf)[:k])

    def discard(self):
        """Forget the gathered octets (the message is being thrown away)."""
        self.n = 0

    def flush(self):
        self._drain()
        self.f.flush()

    def fileno(self):
        return self.f.fileno()

    def close(self):
        if self.buf is None:
            return
        try:
            self._drain()
        finally:
            self.buf = None  # freed with the writer: a board's next writer or connection reuses the block
            self.f.close()
