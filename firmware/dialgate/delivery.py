"""Local routing: which maildrops an RCPT address reaches (users, aliases, catch-all, postmaster).

RFC 5321 §4.5.1: `postmaster` at every local domain (and bare `postmaster`,
§4.1.1.3) is always deliverable, whether or not such a user exists.
"""

from .mailbox import valid_user


class Route:
    """Where one RCPT goes. kind: "local" or "remote"; address: the RCPT address
    as given; users: local user names (maildrops) for kind "local", [] for remote."""

    def __init__(self, kind, address, users):
        self.kind = kind
        self.address = address
        self.users = users

    def __repr__(self):
        return "Route(%s, %s, %s)" % (self.kind, self.address, self.users)


class Router:
    """Resolves addresses with the config (domains, delivery.*) and the UserStore.

    Order for a local domain: alias `local@domain`, alias or user `local`,
    `user+detail` as `user`, postmaster, catch-all. Local parts are matched
    case-insensitively (RFC 5321 §2.4 allows a host to).
    """

    def __init__(self, cfg, users):
        self.cfg = cfg
        self.users = users

    def route(self, address):
        """Route for `address` ("local@domain" or bare "postmaster"), or None if
        local and unknown (SMTP 550 5.1.1). Non-local domains give
        Route("remote", address, []); whether to relay is SMTP's call."""
        at = address.rfind("@")
        if at < 0:
            if address.lower() != "postmaster":
                return None
            local, domain = "postmaster", ""
        else:
            local, domain = address[:at].lower(), address[at + 1 :]
            if not local or not domain:
                return None
            if not self.cfg.is_local_domain(domain):
                return Route("remote", address, [])
        users = self.local_users(local, domain.lower().rstrip("."))
        if not users:
            return None
        return Route("local", address, users)

    def local_users(self, local, domain):
        st = self.users
        if domain:
            got = st.expand(local + "@" + domain)
            if got:
                return got
        got = st.expand(local)
        if got:
            return got
        plus = local.find("+")
        if plus > 0:
            got = st.expand(local[:plus])
            if got:
                return got
        if local == "postmaster":
            pm = self.cfg["delivery.postmaster"]
            return st.expand(pm) or ([pm] if valid_user(pm) else ["postmaster"])
        ca = self.cfg["delivery.catch_all"]
        if ca:
            return st.expand(ca) or ([ca] if valid_user(ca) else [])
        return []
