"""Outbound queue records: one JSON record per queued message, replaced atomically on every change."""


class Rcpt:
    """One remote recipient: address, state ("pending"|"delivered"|"failed"), reply, attempts."""


class QueueRecord:
    """id, sender, size, created, next_attempt (wall s), attempts, sessions, rcpts (list of Rcpt)."""


class OutboundQueue:
    """spool.queue: due(now), ids(), load(id), save(rec), open_body(id), remove(id)."""

    def __init__(self, spool):
        self.spool = spool
