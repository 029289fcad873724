"""Durable message spool on flash: streaming writer, commit by fsync + atomic rename, boot recovery.

Layout and the crash argument are in docs/storage.md. Every flash write goes
through `Flash`, which counts files created, renames, removes and bytes.
"""

from . import compat


class SpoolFull(OSError):
    """Flash full or the reserve reached: SMTP answers 452 4.3.1 (RFC 3463 §3.4)."""


class Flash:
    """The durability primitives (create/write/rename/link/remove + sync), counted for wear."""


class Spool:
    """The spool under `root`. Call recover() once at boot before anything else.

    Attributes: maildrops (mailbox.Maildrops), queue (outq.OutboundQueue),
    boot (this boot's id, str), flash (Flash counters).
    """

    def __init__(self, root, reserve=65536, chunk=2048):
        self.root = root
        self.reserve = reserve
        self.chunk = chunk

    def recover(self):
        """Remove half-written files, finish interrupted fan-outs, free orphan bodies.

        Idempotent. Returns a dict of counts {"tmp": n, "fanout": n, "orphans": n}.
        """
        raise NotImplementedError

    def has_room(self, size=0):
        """True if free space minus the reserve is at least `size` octets."""
        return compat.disk_free(self.root) < 0 or compat.disk_free(self.root) - self.reserve >= size

    def writer(self):
        """A new SpoolWriter; raises SpoolFull if there is no room at all."""
        raise NotImplementedError


class SpoolWriter:
    """Streams one message body to tmp/ in constant RAM; commit() makes it durable."""

    size = 0  # octets written so far

    def write(self, data):
        """Append bytes/memoryview `data`. Raises SpoolFull (and aborts) if flash fills."""
        raise NotImplementedError

    def commit(self, sender, recipients):
        """Make the message durable and deliver it; returns the message id (str).

        sender: str ("" for <>). recipients: list of delivery.Route. Local routes
        land in maildrops, remote ones become one outbound queue record. Durable
        on return; only then may SMTP answer 250.
        """
        raise NotImplementedError

    def abort(self):
        """Throw the message away. Idempotent; nothing half-written remains."""
        raise NotImplementedError
