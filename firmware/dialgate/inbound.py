"""The ask phase's other ways to fetch the office's held mail (docs/inbound.md):
On-Demand Mail Relay (RFC 2645, `odmr_client`) and, with issue 14's second
half, POP3 multidrop collection. The dial session (session_call) calls
`collect()` once a call, after the queue and the ETRN; the mail comes in
through the same SMTP server core, spool and delivery as LAN mail.
Loaded for a call that asks this way and unloaded with the call's code.
"""

from . import compat, log


async def collect(gw, ways):
    """Ask each way in `ways` ("odmr") in turn. Returns [(word, how, code, text)]
    for DialSession.collected()."""
    out = []
    for w in ways:
        if w == "odmr":
            out.append(await odmr(gw))
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
        s.max_messages = 1000000  # all it holds comes over this one connection
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
    how, code, text = c.result or (LATER, 0, b"no reply")
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
