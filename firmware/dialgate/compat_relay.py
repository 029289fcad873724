"""The relay's runtime differences (client TLS, MX lookups, NTP), kept out of compat
so that boards load them only when the queue runner first connects.

Part of the compat family: the only other place that may branch on the runtime
(through compat.MICROPYTHON) and import CPython-only packages (dnspython) lazily.
"""

import asyncio

from .compat import MICROPYTHON, urandom


def tls_client_context(ca_file, verify):
    """SSLContext for the relay client. `verify`: check the server certificate
    (and name) against `ca_file`, or CPython's system store when it is ""."""
    import ssl

    if MICROPYTHON:
        from .compat_tls import pem_to_der

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if verify:
            if not ca_file:
                raise ValueError("a CA file is needed to verify certificates on a board")
            with open(ca_file, "rb") as f:
                ctx.load_verify_locations(cadata=pem_to_der(f.read()))
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx = ssl.create_default_context(cafile=ca_file or None)  # pyright: ignore[reportAttributeAccessIssue]
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


if MICROPYTHON:
    from .compat_tls import Wrapped

    async def open_tls_connection(host, port, ctx, server_hostname):
        """Implicit TLS (SMTPS, port 465): a stream that is TLS from the first octet.

        Nothing drives a non-blocking mbedTLS handshake but a read or write, and
        asyncio waits for the socket to be readable before it reads, while the
        server waits for our ClientHello. So read by hand until the greeting
        arrives (about 30 s at most) and hand it out first."""
        r, _w = await asyncio.open_connection(host, port)
        st = await start_tls(r, ctx, server_hostname)
        buf = bytearray(512)
        for _ in range(3000):
            n = st.s.readinto(buf)  # type: ignore
            if n is not None:
                return _Prefixed(st, bytes(buf[:n]))
            await asyncio.sleep_ms(10)  # type: ignore
        st.close()
        raise OSError("TLS handshake with %s timed out" % host)

    class _Prefixed(Wrapped):
        """A stream whose first octets were already read (the SMTPS greeting)."""

        def __init__(self, st, data):
            Wrapped.__init__(self, st)
            self.s = st.s  # type: ignore
            self.pending = data

        async def readinto(self, buf):
            p = self.pending
            if p:
                n = min(len(buf), len(p))
                buf[:n] = p[:n]
                self.pending = p[n:]
                return n
            return await self.st.readinto(buf)

    async def start_tls(stream, ctx, server_hostname):
        """STARTTLS by hand (MicroPython asyncio has no start_tls): wrap the socket
        under the stream; the handshake runs non-blocking on first use. Returns the new stream."""
        sock = stream.s  # type: ignore
        ss = ctx.wrap_socket(sock, server_hostname=server_hostname, do_handshake_on_connect=False)
        ss.setblocking(False)
        return asyncio.StreamReader(ss)  # type: ignore  # MicroPython: Stream(s)

else:

    async def open_tls_connection(host, port, ctx, server_hostname):
        from .compat_cpython import Stream

        r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=server_hostname)
        return Stream(r, w)

    async def start_tls(stream, ctx, server_hostname):
        from .compat_cpython import hold_nothing

        await stream._w.start_tls(ctx, server_hostname=server_hostname)  # CPython >= 3.11
        hold_nothing(stream._w.transport)  # the TLS transport that replaced the socket's
        return stream


def resolve_mx(domain, nameserver=""):
    """MX hosts of `domain`, best preference first; [domain] when it has none
    (RFC 5321 §5.1 implicit MX); [] when the domain does not exist.

    CPython: dnspython (system resolver, or `nameserver`). MicroPython: one UDP
    query to `nameserver` (required) parsed by mxlookup. Blocks for at most ~5 s.
    `nameserver`: "IP" or "IP:PORT" (port 53 by default).
    """
    if MICROPYTHON:
        return _resolve_mx_udp(domain, nameserver)
    import dns.exception  # pyright: ignore[reportMissingImports]  # CPython-only (requirements.txt)
    import dns.resolver  # pyright: ignore[reportMissingImports]

    res = dns.resolver.Resolver(configure=not nameserver)
    if nameserver:
        host, port = _server(nameserver)
        res.nameservers = [host]
        res.port = port
    res.lifetime = 5.0
    try:
        ans = res.resolve(domain, "MX")
    except dns.resolver.NXDOMAIN:
        return []
    except dns.resolver.NoAnswer:
        return [domain]
    except dns.exception.DNSException as e:
        raise OSError("MX lookup for %s failed: %s" % (domain, e))
    hosts = sorted([(r.preference, str(r.exchange).rstrip(".")) for r in ans])  # type: ignore
    out = [h for _p, h in hosts if h]
    return out or []  # RFC 7505 null MX ("."): no mail


def _server(nameserver):
    host, _, port = nameserver.partition(":")
    return host, int(port) if port.isdigit() else 53


def _resolve_mx_udp(domain, nameserver):
    import socket

    from . import mxlookup

    if not nameserver:
        raise OSError("relay.resolver is not set (needed for MX lookups on a board)")
    r = urandom(2)
    qid = r[0] << 8 | r[1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(5)
        host, port = _server(nameserver)
        s.sendto(mxlookup.query(domain, qid), socket.getaddrinfo(host, port)[0][-1])
        data = s.recv(1500)
    finally:
        s.close()
    try:
        rcode, mx = mxlookup.parse(data, qid)
    except ValueError as e:
        raise OSError("MX lookup for %s: %s" % (domain, e))
    if rcode == 3:
        return []
    if rcode:
        raise OSError("MX lookup for %s failed: rcode %d" % (domain, rcode))
    hosts = [h for _p, h in mx if h]
    return hosts if mx else [domain]  # RFC 5321 §5.1: no MX, the domain itself


def ntp_time(host="pool.ntp.org"):
    """Unix seconds from an NTP server where the runtime has `ntptime`, else None."""
    try:
        import ntptime  # type: ignore
    except ImportError:
        return None
    try:
        ntptime.host = host
        t = ntptime.time()
    except (OSError, OverflowError, IndexError):
        return None
    return t + 946684800 if t < 946684800 else t
