"""SMTP paths and the relay test: parse `MAIL FROM:<...>`/`RCPT TO:<...>` (RFC 5321
§4.1.2) leniently, then decide whether an address could mean anything but local
delivery (the %-hack, bang paths, quoted `@`, source routes, IP literals ...).
"""

from . import limits
from .compat import const

# RFC 5322 §3.2.3 atext besides letters and digits.
_ATEXT = const("!#$%&'*+-/=?^_`{|}~")
# Characters that make some mailer somewhere route a local part onward:
# user%host (the %-hack), host!user (UUCP bang path), user@host (quoted), route colons.
_RELAY_MARKS = const("%!@:")


class BadPath(Exception):
    """A path we cannot use; `reply` is the SMTP reply line (bytes, with CRLF)."""

    def __init__(self, reply):
        super().__init__(reply)
        self.reply = reply


class Address:
    """A parsed mailbox. `local` keeps its quotes as sent; `domain` is None for a
    bare `<postmaster>`; `route` is the source route (ignored, RFC 5321 §3.6.1
    and Appendix C); `literal` marks `[address literal]` domains; `clean` is
    True only if the whole mailbox is strict RFC 5321 syntax."""

    __slots__ = ("local", "domain", "route", "literal", "clean", "plain")

    def __init__(self, local, domain, route, literal, clean, plain):
        self.local = local
        self.domain = domain
        self.route = route
        self.literal = literal
        self.clean = clean
        self.plain = plain  # local part with quoting and escapes removed

    def text(self):
        """`local@domain` as sent (route dropped): what routing and the queue see."""
        if self.domain is None:
            return self.local
        return self.local + "@" + self.domain


def _unquoted(s, ch, i=0, last=False):
    """Index of the first (or, with `last`, the last) `ch` outside quotes from
    s[i], or -1. RFC 5321 §4.1.2: `\\` escapes inside a quoted-string."""
    quoted = False
    found = -1
    n = len(s)
    while i < n:
        c = s[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ch:
            if not last:
                return i
            found = i
        i += 1
    return found


def _dot_atom(s):
    if not s or s[0] == "." or s[-1] == "." or ".." in s:
        return False
    for c in s:
        if not (c.isalpha() or c.isdigit() or c == "." or c in _ATEXT):
            return False
    return True


def _unquote(s):
    """`"a\\"b"` -> `a"b`; None if not one well-formed quoted string."""
    if len(s) < 2 or s[0] != '"' or s[-1] != '"':
        return None
    out = []
    i = 1
    n = len(s) - 1
    while i < n:
        c = s[i]
        if c == "\\":
            i += 1
            if i >= n:
                return None
            c = s[i]
        elif c == '"':
            return None
        out.append(c)
        i += 1
    return "".join(out)


def valid_domain(d):
    """RFC 5321 §4.1.2 Domain: dot-separated labels of letters, digits, hyphens."""
    if not d or len(d) > limits.SMTP_DOMAIN:
        return False
    for label in d.split("."):
        if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-":
            return False
        for c in label:
            if not (c.isalpha() or c.isdigit() or c == "-"):
                return False
    return True


def _valid_literal(d):
    """RFC 5321 §4.1.3 address literal: [A.B.C.D] or [IPv6:...]."""
    inner = d[1:-1]
    if inner[:5].upper() == "IPV6:":
        return len(inner) > 5 and not [c for c in inner[5:] if c not in "0123456789abcdefABCDEF:."]
    parts = inner.split(".")
    return len(parts) == 4 and not [p for p in parts if not p.isdigit() or len(p) > 3 or int(p) > 255]


def parse_mailbox(s):
    """Inner text of a path (no angle brackets) -> Address; `""` is not handled here."""
    route = ""
    clean = True
    if s[0] == "@":  # RFC 5321 §4.1.2 A-d-l: "@a,@b:mailbox"
        k = s.find(":")
        if k < 0:
            raise BadPath(b"501 5.1.3 Bad address syntax\r\n")
        route = s[:k]
        s = s[k + 1 :]
        for hop in route.split(","):
            if hop[:1] != "@" or not valid_domain(hop[1:]):
                clean = False
    at = _unquoted(s, "@", 0, True)
    if at < 0:
        local, domain = s, None
    else:
        local, domain = s[:at], s[at + 1 :]
    if not local or len(local) > limits.SMTP_LOCAL_PART:
        raise BadPath(b"501 5.1.3 Bad address syntax\r\n")
    literal = False
    if domain is not None:
        if domain[:1] == "[" and domain[-1:] == "]":
            literal = True
            clean = clean and _valid_literal(domain)
        elif not valid_domain(domain):
            clean = False
    plain = _unquote(local)
    if plain is None:
        plain = local
        clean = clean and _dot_atom(local)
    return Address(local, domain, route, literal, clean, plain)


def parse_path(arg, keyword):
    """`b"FROM:<a@b> SIZE=10"` with keyword "FROM:" -> (Address, or None for `<>`, params).

    params: list of (KEYWORD upper-case, value or None) (RFC 5321 §4.1.2
    Mail-parameters). Raises BadPath with the reply to give.
    """
    for c in arg:
        if c > 126 or c < 32:  # no SMTPUTF8 (RFC 6531 §3.5 / RFC 5321 §4.1.2)
            raise BadPath(b"553 5.6.7 Only ASCII addresses are accepted here\r\n")
    s = arg.decode()
    usage = ("501 5.5.4 Syntax: %s<address>\r\n" % keyword).encode()
    if s[: len(keyword)].upper() != keyword:
        raise BadPath(usage)
    s = s[len(keyword) :].lstrip(" ")  # a space after the colon is common: tolerate it
    if s[:1] != "<":
        raise BadPath(usage)
    j = _unquoted(s, ">", 1)
    if j < 0:
        raise BadPath(usage)
    inner = s[1:j]
    if len(inner) + 2 > limits.SMTP_PATH:
        raise BadPath(b"501 5.1.3 Path too long\r\n")
    rest = s[j + 1 :]
    if rest and rest[0] != " ":
        raise BadPath(usage)
    params = []
    for word in rest.split(" "):
        if word:
            k, eq, v = word.partition("=")
            params.append((k.upper(), v if eq else None))
    inner = inner.strip(" ")
    if not inner:
        return None, params
    return parse_mailbox(inner), params


def needs_relay(cfg, a):
    """True unless `a` can only mean delivery to one of our local domains.

    Anything some mailer might route onward counts as relaying: a non-local or
    IP-literal domain, a local part with %, !, @ or : in it (quoted or not),
    sloppy syntax (trailing dots, stray characters). A bare <postmaster> is
    local (RFC 5321 §4.1.1.3). Source routes are ignored (§3.6.1): only the
    final mailbox counts.
    """
    if a.domain is None:
        return a.local.lower() != "postmaster"
    if a.literal or not a.clean or not cfg.is_local_domain(a.domain):
        return True
    for c in _RELAY_MARKS:
        if c in a.plain:
            return True
    return False
