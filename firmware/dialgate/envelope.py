"""One message on one relay connection, and what a reply code means for a recipient.

Shared by smtp_client (which fills it in) and relay (which applies it to the
queue record) so the queue runner does not load the client until it connects.
"""


class Envelope:
    """One message to try on this connection.

    `key`: caller's handle (queue id); `sender`: "" for <>; `rcpts`: addresses to
    try now; `size`: body octets; `opener()` -> binary file with readinto().
    After the transaction `results[i]` is (code, text) for rcpts[i]; an entry left
    None was not decided (connection lost, session failed): still pending.
    """

    def __init__(self, key, sender, rcpts, size, opener):
        self.key = key
        self.sender = sender
        self.rcpts = rcpts
        self.size = size
        self.opener = opener
        self.results = [None] * len(rcpts)
        self.accepted = [False] * len(rcpts)
        self.mail_ok = False
        self.next_rcpt = 0  # without pipelining: index of the next RCPT to send


def outcome(result):
    """(code, text) or None -> "delivered" | "retry" | "failed" | "pending" (RFC 5321 §4.2.1)."""
    if result is None:
        return "pending"
    c = result[0] // 100
    if c == 2:
        return "delivered"
    if c == 5:
        return "failed"
    return "retry"
