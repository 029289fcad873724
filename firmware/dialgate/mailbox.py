"""POP3 maildrops on flash: one directory per user, stable never-reused UIDs, exclusive locks.

RFC 1939 §7 (UIDL), §8 (exclusive lock), §11 (octet counts = file sizes, CRLF).
"""


class Locked(Exception):
    """The maildrop is already locked: POP3 answers -ERR [IN-USE] (RFC 3206 §4)."""


class Maildrops:
    """All maildrops of a spool (`spool.maildrops`)."""

    def __init__(self, spool):
        self.spool = spool

    def open(self, user):
        """Lock and open `user`'s maildrop -> Maildrop. Raises Locked.

        A lock left by a crashed session or an earlier boot is stale and taken over.
        """
        raise NotImplementedError


class Maildrop:
    """One locked maildrop; message number n is index n-1 of messages()."""

    def messages(self):
        """List of (uid, size) oldest first; sizes in octets; no body is opened."""
        raise NotImplementedError

    def open_body(self, index):
        """The message body opened 'rb' (readinto works). The caller closes it."""
        raise NotImplementedError

    def expunge(self, indexes):
        """Delete these 0-based messages durably (POP3 UPDATE state only)."""
        raise NotImplementedError

    def close(self):
        """Release the lock. Idempotent; call it in finally."""
        raise NotImplementedError
