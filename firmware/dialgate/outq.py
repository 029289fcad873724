"""Outbound queue records: one JSON record per queued message in queue/ID, replaced atomically.

The body is the spool's shared body/ID; it is freed when the record goes and
no maildrop stub still refers to it. The envelope written at commit (new/ID)
has the same format and becomes the queue record by a rename.
"""

import json
import os

from . import compat, log
from .spool import read_record, valid_id

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


class Rcpt:
    """One remote recipient: address, state (pending|delivered|failed), reply (last reply text), attempts."""

    def __init__(self, address, state=PENDING, reply="", attempts=0):
        self.address = address
        self.state = state
        self.reply = reply
        self.attempts = attempts


class QueueRecord:
    """id, sender ("" = <>), size (octets), created and next_attempt (wall seconds),
    attempts (delivery tries), sessions (online sessions it waited through),
    local (users it was also delivered to), rcpts (list of Rcpt)."""

    def __init__(self, d):
        self.id = d["id"]
        self.sender = d["sender"]
        self.size = d["size"]
        self.created = d["created"]
        self.next_attempt = d.get("next", 0)
        self.attempts = d.get("attempts", 0)
        self.sessions = d.get("sessions", 0)
        self.local = d.get("local", [])
        self.rcpts = [Rcpt(r[0], r[1], r[2], r[3]) for r in d["rcpts"]]

    def pending(self):
        return [r for r in self.rcpts if r.state == PENDING]

    def to_json(self):
        return json.dumps(
            {
                "id": self.id,
                "sender": self.sender,
                "size": self.size,
                "created": self.created,
                "next": self.next_attempt,
                "attempts": self.attempts,
                "sessions": self.sessions,
                "local": self.local,
                "rcpts": [[r.address, r.state, r.reply, r.attempts] for r in self.rcpts],
            }
        )


class OutboundQueue:
    """spool.queue. Keeps an index {id: next_attempt} in RAM, rebuilt from flash at recover()."""

    def __init__(self, spool):
        self.spool = spool
        self._next = {}

    def rebuild(self):
        """Re-read every record's next attempt time (boot). Returns the number of records."""
        self._next = {}
        d = self.spool.path("queue")
        try:
            names = os.listdir(d)
        except OSError:  # no spool on flash yet (recover() makes it)
            return 0
        for name in names:
            try:
                self._next[name] = read_record(d + "/" + name).get("next", 0)
            except (OSError, ValueError, AttributeError) as e:  # AttributeError: JSON, but not an object
                self._set_aside(name, e)
        return len(self._next)

    def _set_aside(self, msg_id, e):
        """An unreadable record: out of the queue (a queue run would skip it for
        ever, and it would look due to the scheduler), into corrupt/."""
        self._next.pop(msg_id, None)
        try:
            self.spool.set_aside(msg_id, compat.exc_text(e))
        except OSError as e2:
            log.error("queue: record %s unreadable and cannot be moved aside: %s", msg_id, compat.exc_text(e2))

    def index(self, msg_id, next_attempt):
        self._next[msg_id] = next_attempt

    def ids(self):
        """Queued message ids, oldest first."""
        return sorted(self._next)

    def __len__(self):
        return len(self._next)

    def due(self, now):
        """Ids whose next attempt time is at or before `now` (wall seconds), oldest first."""
        return sorted([k for k in self._next if self._next[k] <= now])

    def load(self, msg_id):
        """The QueueRecord for `msg_id`; KeyError if it is not queued (or not an id)."""
        if not valid_id(msg_id):
            raise KeyError(msg_id)
        path = self.spool.path("queue", msg_id)
        try:
            return QueueRecord(read_record(path))
        except (OSError, ValueError, AttributeError, KeyError, TypeError, IndexError) as e:
            if compat.exists(path):  # there, but not a record: set it aside once
                self._set_aside(msg_id, e)
            raise KeyError(msg_id)

    def save(self, rec):
        """Replace the record atomically (a crash leaves the old or the new one)."""
        if rec.id not in self._next and not compat.exists(self.spool.path("queue", rec.id)):
            raise KeyError(rec.id)
        sp = self.spool
        sp.flash.put(sp.path("queue", rec.id), sp.path("tmp", rec.id + ".q"), rec.to_json())
        self._next[rec.id] = rec.next_attempt

    def open_body(self, msg_id):
        """The message body, opened 'rb'. The caller closes it."""
        return self.spool.open_body(msg_id)

    def remove(self, msg_id):
        """Drop the record (no recipient pending, or the operator deleted it); frees the body if unshared."""
        sp = self.spool
        self._next.pop(msg_id, None)
        sp.flash.remove(sp.path("queue", msg_id))
        sp.flash.sync_dir(sp.path("queue"))
        sp.release(msg_id)
