"""The ask phase's other ways to fetch the office's held mail (docs/inbound.md):
On-Demand Mail Relay (RFC 2645, `odmr_client`: the mail comes in through the
same SMTP server core as LAN mail) and POP3 multidrop collection
(`pop3_client` driving a `multidrop.Collection`: one ISP mailbox sorted into
the office's maildrops by an envelope header, UIDLs journaled before DELE).
The dial session (session_call) calls `collect()` once a call, after the
queue and the ETRN. Loaded for a call that asks this way and unloaded with
the call's code.
"""

from . import compat, log


async def collect(gw, ways):
    """Ask each way in `ways` ("odmr", "pop3") in turn. Returns [(word, how,
    code, text)] for DialSession.collected()."""
    out = []
    for w in ways:
        if w == "odmr":
            out.append(await odmr(gw))
        elif w == "pop3":
            out.append(await pop3(gw))
    return out


async def odmr(gw):
    """One ODMR connection: EHLO, STARTTLS per relay.tls, AUTH, ATRN, and on 250
    our SMTP server session on the same connection until the provider's QUIT."""
    from .net_out import connect
    from .odmr_client import CONFIG, LATER, OdmrClient, plain_words

    cfg = gw.cfg
    host, port = cfg["isp.odmr.host"], cfg["isp.odmr.port"]
    addr = getattr(gw.link, "odmr_addr", None)  # the emulated link's forwarded port
    if addr is not None:
        host, port = addr
    smtp = gw.smtp  # the gateway's SMTP service: same core, spool, limits as LAN mail

    def make_server(peer, tls_active):
        s = smtp.session(peer)
        s.tls_active = tls_active  # the provider's side is TLS already: no STARTTLS offered again
        return s

    pol = cfg["relay.tls"]
    if pol == "implicit":  # port 366 has no implicit-TLS form: STARTTLS, required
        pol = "starttls"
    c = OdmrClient((cfg["relay.helo"] or cfg["hostname"]).encode(), cfg["isp.odmr.user"],
                   cfg["isp.odmr.password"], cfg["isp.odmr.domains"], pol, gw.relay.tls_context, make_server,
                   (host, port))
    try:
        await connect(gw.net, "odmr", host, port, c, cfg["relay.tls_name"] or cfg["isp.odmr.host"])
    except (OSError, ValueError) as e:
        if c.result is None:
            c.result = (LATER, 0, compat.exc_text(e).encode())
    how, code, text = c.outcome()
    text = text.decode("utf-8", "replace")
    got = c.server.messages if c.server is not None else 0
    if how == CONFIG:
        log.error("odmr %s:%d: ATRN %s %s: %s", host, port, code or "-", text,
                  plain_words(code) or "check isp.odmr")
    elif how == LATER:
        log.warn("odmr %s:%d: %s %s%s", host, port, code or "-", text,
                 (" (" + plain_words(code) + ")") if plain_words(code) else "")
    else:
        log.info("odmr %s:%d: ATRN %d (%s), %d message(s) received", host, port, code, how, got)
    return ("ATRN", how, code, text)


async def pop3(gw):
    """One POP3 connection to the ISP mailbox (isp.pop3.*): log in, list, fetch,
    sort and commit each message, journal its UIDL, DELE it, QUIT. Returns
    ("POP3", how, messages collected, "N left" or why it failed)."""
    from . import limits
    from .multidrop import Collection
    from .net_out import connect
    from .pop3_client import CONFIG, DONE, LATER, Pop3Client
    from .pop3_journal import UidlJournal

    cfg = gw.cfg
    host = cfg["isp.pop3.host"]
    pol = cfg["isp.pop3.tls"]
    port = cfg["isp.pop3.port"] or (995 if pol == "implicit" else 110)
    addr = getattr(gw.link, "pop3_addr", None)  # the emulated link's forwarded port
    if addr is not None:
        host, port = addr
    where = "%s@%s:%d" % (cfg["isp.pop3.user"], host, port)
    sp = gw.spool
    col = None
    c = None
    try:
        journal = UidlJournal(sp.path("pop3.uidl"), sp.path("pop3.uidl.tmp"), sp.flash, limits.POP3_JOURNAL_ENTRIES)
        col = Collection(cfg, sp, gw.router, journal, where, cfg["isp.pop3.host"])
        c = Pop3Client(cfg["isp.pop3.user"], cfg["isp.pop3.password"], col, pol, gw.relay.tls_context,
                       cfg["isp.pop3.plaintext"], (host, port), bytearray(cfg["board.buffer"]))
        ctx = gw.relay.tls_context() if pol == "implicit" else None
        await connect(gw.net, "multidrop", host, port, c, cfg["relay.tls_name"] or cfg["isp.pop3.host"], ctx)
    except (OSError, ValueError) as e:
        if c is None:  # the journal could not be opened (flash)
            log.error("multidrop %s: %s", where, compat.exc_text(e))
            return ("POP3", LATER, 0, compat.exc_text(e))
        if c.result is None:
            t = compat.exc_text(e)
            key = "relay.ca_file/relay.tls_name" if "SSL" in t or "TLS" in t else (
                "" if c.greeted else "isp.pop3.host/port")
            c.result = (LATER, t.encode(), key)
    how, text, key = c.result or (LATER, b"no reply", "")
    text = text.decode("utf-8", "replace")
    if how == DONE and col.stop:
        how, text = LATER, col.stop  # stopped early (flash, journal): the next call goes on
    got = col.collected
    left = col.left()
    if how == CONFIG:
        log.error("multidrop %s: %s: check %s", where, text, key or "isp.pop3")
    elif how == LATER:
        log.warn("multidrop %s: %s; %d collected, %d left%s", where, text, got, left,
                 (" (check " + key + ")") if key else "")
    else:
        log.info("multidrop %s: %d collected, %d deleted, %d left (%d too large)", where, got, col.dels, left,
                 col.too_large)
        text = ("%d left" % left) if left else ""
    return ("POP3", how, got, text)

