"""The transport's less common paths, imported on first use so a board that
never opens a connection, upgrades one or reverses one keeps only `net`'s loop
in its heap: connections we open (`connect`: the relay's SMTP client, the ODMR
client, the POP3 collector), TLS upgrades on either side (`start_tls`) and the
handover of a live connection to another session (`hand_over`: ATRN), and
the polite refusals of a connection we cannot serve (`refuse`).
"""

import asyncio

from . import compat, log


async def connect(net, kind, host, port, session, tls_name=None, ctx=None):
    """Open a connection to host:port and drive `session` (a client) over it
    until it closes, on `net` (a net.Net) like every other session. `ctx`: TLS
    from the first octet (SMTPS, POP3S); `tls_name`: the server's name a TLS
    handshake checks (implicit or STARTTLS/STLS).
    Raises what opening the connection raised (OSError, ValueError); what
    happened afterwards is the session's to say (its own state).

    The conversation runs as its own task so the watchdog can end it on the
    session's idle deadline without cancelling the caller."""
    if ctx is not None:
        from .compat_relay import open_tls_connection

        stream = await open_tls_connection(host, port, ctx, tls_name)
    else:
        stream = await compat.open_connection(host, port)
    net.watch_start()
    done = asyncio.Event()
    err = []

    async def run():
        try:
            await net.drive(stream, session, kind, tls_name, True)
        except Exception as e:  # handed to the caller below
            err.append(e)
        finally:
            done.set()

    task = asyncio.create_task(run())
    try:
        await done.wait()
    except asyncio.CancelledError:
        task.cancel()  # the caller is being stopped: so is its conversation
        raise
    if err:
        raise err[0]


async def start_tls(conn, fr):
    """Upgrade the connection in place. Input read before the handshake is
    not part of the TLS session (RFC 3207 §4.2, §5): the session decides
    whether to drop it (a server) or end the session (a client)."""
    s = conn.session
    if fr.start != fr.end and not s.early_data():
        s.tls = None
        s.closing = True
        return conn.stream
    fr.reset()
    ctx = s.tls
    if not conn.outbound:
        from .compat_tls import start_tls_server

        conn.stream = await start_tls_server(conn.stream, ctx)
    else:
        from .compat_relay import start_tls

        conn.stream = await start_tls(conn.stream, ctx, conn.tls_name)
    conn.last = compat.ticks_ms()
    r = s.on_tls()
    if r:
        conn.stream.write(r)
        await conn.stream.drain()
    return conn.stream


def hand_over(conn, fr):
    """The session gives the live connection to another (proto.Session.handover):
    same stream, same TLS, same buffer and unread input; the new one greets."""
    old = conn.session
    kind, new = old.handover
    old.handover = None
    try:
        old.on_close()
    except Exception as e:
        log.exception("%s on_close" % conn.kind, e)
    log.debug("%s %s:%d handed over to %s", conn.kind, old.peer[0], old.peer[1], kind)
    conn.kind = kind
    conn.session = fr.s = new
    conn.last = compat.ticks_ms()
    g = new.greeting()
    if g:
        conn.stream.write(g)
    return new


async def refuse(stream, kind, busy):
    """Say why and close: the connection cap is reached (`busy`) or the session
    could not be set up (a local error). The client tries again later."""
    try:
        stream.write(busy_reply(kind) if busy else failure_reply(kind))
        await stream.drain()
    except OSError:
        pass
    stream.close()
    await compat.wait_closed(stream)


def out_of_memory(conn, outbound):
    """net.drive's MemoryError: logged as a local error, and a server session's
    client told to try again later (RFC 5321 §3.8 421, RFC 3206 [SYS/TEMP])
    unless a multi-line reply is streaming (the line would be its text);
    net then closes the connection."""
    compat.gc_collect()
    peer = conn.session.peer
    log.warn("%s %s:%d: out of memory, connection closed", conn.kind, peer[0], peer[1])
    if not outbound and conn.session.producer is None:
        try:
            conn.stream.write(failure_reply(conn.kind))
        except OSError:
            pass


def busy_reply(kind):
    """Polite refusal when the connection cap is reached (RFC 5321 §3.8: 421)."""
    if kind == "smtp":
        return b"421 4.7.0 Too many connections, try again later\r\n"
    if kind == "pop3":
        return b"-ERR [SYS/TEMP] Too many connections, try again later\r\n"
    return b"ERR too many connections\r\n"


def failure_reply(kind):
    """The session could not be set up (a local error): a temporary refusal,
    RFC 5321 §3.8 (421) / RFC 3206 [SYS/TEMP]; the client tries again later."""
    if kind == "smtp":
        return b"421 4.3.0 Local error, try again later\r\n"
    if kind == "pop3":
        return b"-ERR [SYS/TEMP] Local error, try again later\r\n"
    return b"ERR internal error\r\n"
