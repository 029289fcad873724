"""Local routing: which maildrops an RCPT address reaches (users, aliases, catch-all, postmaster).

RFC 5321 §4.5.1: `postmaster` at every local domain is always deliverable.
"""


class Route:
    """Where one RCPT goes. kind: "local" or "remote"; address: the RCPT address
    as given; users: local user names (maildrops) for kind "local", [] for remote."""

    def __init__(self, kind, address, users):
        self.kind = kind
        self.address = address
        self.users = users


class Router:
    def __init__(self, cfg, users):
        self.cfg = cfg
        self.users = users

    def route(self, address):
        """Route for `address` ("local@domain"), or None if local and unknown (550 5.1.1).

        Non-local domains give Route("remote", address, []); whether to relay is SMTP's call.
        """
        raise NotImplementedError
