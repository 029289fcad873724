"""Inbound TLS (STARTTLS, RFC 3207; STLS, RFC 2595) on our listeners, and PEM
handling for MicroPython's mbedTLS (part of the compat family).

Loaded only where a certificate is configured or the relay verifies one, so a
board without TLS never holds this code.
"""

import asyncio
import binascii

from .compat import MICROPYTHON


def tls_server_context(cert, key):
    """Server SSLContext from PEM files `cert` and `key`, or None where this
    runtime (a board build without ssl) cannot do TLS: then STARTTLS is not offered."""
    try:
        import ssl
    except ImportError:
        return None
    if not hasattr(ssl, "SSLContext"):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if MICROPYTHON:  # mbedTLS here takes DER bytes, not PEM file names
        ctx.load_cert_chain(_der_file(cert, b"CERTIFICATE"), _der_file(key, b"PRIVATE KEY"))
    else:
        ctx.load_cert_chain(cert, key)
    return ctx


def _der_file(path, kind):
    with open(path, "rb") as f:
        der = pem_to_der(f.read(), kind, True)
    if not der:
        raise ValueError("%s: no PEM %s block" % (path, kind.decode()))
    return der


def pem_to_der(data, kind=b"CERTIFICATE", first=False):
    """DER bytes of the PEM blocks of `kind` in `data` (b"CERTIFICATE", b"PRIVATE
    KEY"): only the first block if `first`, else all of them concatenated (a CA
    file). Decoded line by line, no big copies; input without PEM armour is taken
    as DER already and returned as it is."""
    if data.find(b"-----BEGIN") < 0:
        return data
    out = bytearray()
    inside = False
    for line in data.split(b"\n"):
        line = line.strip()
        if line.startswith(b"-----BEGIN"):
            inside = kind in line
        elif line.startswith(b"-----END"):
            if inside and first:
                break
            inside = False
        elif inside and line:
            out.extend(binascii.a2b_base64(line))
    return bytes(out)


class Wrapped:
    """A stream that hands everything but reading to the MicroPython Stream `st`;
    subclasses change how it reads (TLS handshake records, octets read ahead)."""

    def __init__(self, st):
        self.st = st

    async def readinto(self, buf):
        return await self.st.readinto(buf)

    def write(self, data):
        self.st.write(data)

    async def drain(self):
        await self.st.drain()

    def close(self):
        self.st.close()

    async def wait_closed(self):
        await self.st.wait_closed()

    def get_extra_info(self, name):
        return self.st.get_extra_info(name)


if MICROPYTHON:

    async def start_tls_server(stream, ctx):
        """Server side of STARTTLS by hand (MicroPython asyncio has no start_tls):
        wrap the socket under the stream; the handshake runs non-blocking on first
        use. The stream has no read buffer, so nothing sent before it survives."""
        ss = ctx.wrap_socket(stream.s, server_side=True, do_handshake_on_connect=False)  # type: ignore
        ss.setblocking(False)
        return _TlsServerStream(asyncio.StreamReader(ss, stream.e))  # type: ignore  # Stream(s, extra)

    class _TlsServerStream(Wrapped):
        """Over a non-blocking TLS socket readinto() gives None while handshake
        records are exchanged: wait for real data instead."""

        async def readinto(self, buf):
            while True:
                n = await self.st.readinto(buf)
                if n is not None:
                    return n

else:
    from .compat_cpython import start_tls_server  # noqa: F401
