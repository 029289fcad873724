"""MX lookups for relay.route "mx" against a small DNS server on loopback:
dnspython under CPython, the firmware's own UDP query + mxlookup under MicroPython."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
ZONE = {"example.com": [(20, "mx2.example.com"), (10, "mx1.example.com")], "nomx.test": []}


def _name(n: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in n.split(".")) + b"\x00"


def answer(query: bytes) -> bytes:
    qid, _flags, qd = struct.unpack(">HHH", query[:6])
    i = 12
    labels = []
    while query[i]:
        labels.append(query[i + 1 : i + 1 + query[i]].decode())
        i += 1 + query[i]
    question = query[12 : i + 5]
    domain = ".".join(labels).lower()
    if domain not in ZONE:
        return struct.pack(">HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
    rrs = b""
    for pref, host in ZONE[domain]:
        rdata = struct.pack(">H", pref) + _name(host)
        rrs += b"\xc0\x0c" + struct.pack(">HHIH", 15, 1, 300, len(rdata)) + rdata
    return struct.pack(">HHHHHH", qid, 0x8180, 1, len(ZONE[domain]), 0, 0) + question + rrs


@pytest.fixture(scope="module")
def dns_server():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, peer = s.recvfrom(1500)
            except OSError:
                continue
            s.sendto(answer(data), peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"127.0.0.1:{s.getsockname()[1]}"
    stop.set()
    t.join()
    s.close()


def test_cpython_dnspython(dns_server):
    from dialgate.compat_relay import resolve_mx

    assert resolve_mx("example.com", dns_server) == ["mx1.example.com", "mx2.example.com"]
    assert resolve_mx("nomx.test", dns_server) == ["nomx.test"]  # RFC 5321 §5.1 implicit MX
    assert resolve_mx("nx.test", dns_server) == []


def test_micropython_udp(dns_server):
    upy = Path(sys.executable).parent / "micropython"
    if not upy.exists():
        pytest.skip("no micropython in the venv (make venv)")
    prog = (f"import sys; sys.path.insert(0, {str(ROOT / 'firmware')!r})\n"
            "from dialgate.compat_relay import resolve_mx\n"
            f"for d in ('example.com', 'nomx.test', 'nx.test'): print(resolve_mx(d, {dns_server!r}))\n")
    r = subprocess.run([str(upy), "-c", prog], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == ["['mx1.example.com', 'mx2.example.com']", "['nomx.test']", "[]"]
