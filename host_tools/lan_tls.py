"""LAN certificates for the gateway's STARTTLS/STLS, made on the host with the `openssl` CLI.

One local CA per office (`DIR/ca.pem`, `DIR/ca.key`), and a server certificate
signed by it for the gateway's names (`DIR/gateway.pem`, `DIR/gateway.key`). The
office installs `ca.pem` once on its PCs; a new server certificate from the
same CA (another name, a renewal) is then trusted without touching them. The
CA is name-constrained to the office's domains, the gateway's names and the
LAN networks, so its key cannot vouch for anyone else's site.

    python3 -m host_tools.lan_tls DIR gw.office.example --domain office.example --name 192.168.1.2

`make run`, `make install-pi` and `make flash` call `ensure()`; the board never
makes keys itself. RSA 2048: every mbedTLS build MicroPython ships loads it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CA_DAYS = 3650
SERVER_DAYS = 825  # the longest a TLS server certificate may live for Apple clients
RENEW_DAYS = 30  # reissue a server certificate that expires sooner than this


class TlsError(Exception):
    pass


def _openssl(*args: str) -> str:
    exe = shutil.which("openssl")
    if not exe:
        raise TlsError("the openssl command is needed to make the LAN certificate (Debian: apt-get install openssl)")
    r = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise TlsError(f"openssl {args[0]} failed: {(r.stderr or r.stdout).strip()[-400:]}")
    return r.stdout


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _san(names: list[str]) -> str:
    return ",".join(("IP:" if _is_ip(n) else "DNS:") + n for n in names)


def _constraints(names: list[str], domains: list[str], networks: list[str]) -> str:
    """nameConstraints (RFC 5280 §4.2.1.10) for the CA: DNS names under the
    office's domains and the gateway's own names, IPs in the LAN and those named."""
    dns = sorted({d.lower() for d in domains} | {n.lower() for n in names if not _is_ip(n)})
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]
    nets += [ipaddress.ip_network(n) for n in names if _is_ip(n)]
    parts = [f"permitted;DNS:{d}" for d in dns]
    parts += [f"permitted;IP:{n.network_address}/{n.netmask}" for n in dict.fromkeys(nets)]
    return "critical," + ",".join(parts)


def _cnf(path: Path, body: str) -> Path:
    path.write_text("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n" + body)
    return path


def make_ca(d: Path, label: str, names: list[str], domains: list[str], networks: list[str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cnf = _cnf(Path(tmp) / "ca.cnf", f"O = dialgate\nCN = dialgate LAN CA ({label})\n[ext]\n"
                   "basicConstraints = critical,CA:TRUE,pathlen:0\nkeyUsage = critical,keyCertSign,cRLSign\n"
                   "subjectKeyIdentifier = hash\n"
                   f"nameConstraints = {_constraints(names, domains, networks)}\n")
        key = d / "ca.key"
        old = os.umask(0o077)
        try:
            _openssl("req", "-x509", "-config", str(cnf), "-extensions", "ext", "-newkey", "rsa:2048", "-nodes",
                     "-days", str(CA_DAYS), "-keyout", str(key), "-out", str(d / "ca.pem"))
        finally:
            os.umask(old)
    (d / "ca.pem").chmod(0o644)


def issue(d: Path, names: list[str]) -> None:
    """A server certificate for `names` (first: the CN) signed by the CA in `d`."""
    with tempfile.TemporaryDirectory() as tmp:
        cnf = _cnf(Path(tmp) / "srv.cnf", f"CN = {names[0]}\n[ext]\nbasicConstraints = critical,CA:FALSE\n"
                   "keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth\n"
                   "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
                   f"subjectAltName = {_san(names)}\n")
        csr = Path(tmp) / "srv.csr"
        key = Path(tmp) / "gateway.key"
        old = os.umask(0o077)
        try:
            _openssl("req", "-new", "-config", str(cnf), "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                     "-out", str(csr))
            cert = Path(tmp) / "gateway.pem"
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                     "-set_serial", "0x" + secrets.token_hex(16), "-days", str(SERVER_DAYS), "-extfile", str(cnf),
                     "-extensions", "ext", "-out", str(cert))
        finally:
            os.umask(old)
        try:
            _openssl("verify", "-CAfile", str(d / "ca.pem"), str(cert))
        except TlsError as e:
            raise TlsError(f"{d / 'ca.pem'} cannot vouch for {', '.join(names)} (its name constraints are for other "
                           f"names): move ca.pem/ca.key away to make a new CA, and install that one on the PCs "
                           f"({e})") from None
        cert.chmod(0o644)
        shutil.move(str(key), d / "gateway.key")
        shutil.move(str(cert), d / "gateway.pem")


def covers(cert: Path, names: list[str]) -> bool:
    """Does `cert` carry every name in its subjectAltName and stay valid RENEW_DAYS more?"""
    try:
        out = _openssl("x509", "-in", str(cert), "-noout", "-ext", "subjectAltName")
        _openssl("x509", "-in", str(cert), "-noout", "-checkend", str(RENEW_DAYS * 86400))
    except TlsError:
        return False
    have = {w.strip().split(":", 1)[-1].lower() for w in out.splitlines()[-1].split(",")} if out.strip() else set()
    return all(n.lower() in have for n in names)


def ensure(d: Path, names: list[str], domains: list[str] = (), networks: list[str] = ()) -> tuple[Path, Path, Path]:
    """Make the CA if `d` has none, and a server certificate for `names` unless
    one that covers them is there. Returns (certificate, key, CA certificate)."""
    if not names:
        raise TlsError("no name for the gateway's certificate")
    names = list(dict.fromkeys(names))
    if not (d / "ca.pem").exists() or not (d / "ca.key").exists():
        make_ca(d, names[0], names, list(domains), list(networks))
    cert, key = d / "gateway.pem", d / "gateway.key"
    if not (cert.exists() and key.exists() and covers(cert, names)):
        issue(d, names)
    return cert, key, d / "ca.pem"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("hostname")
    ap.add_argument("--name", action="append", default=[], help="another DNS name or IP for the certificate")
    ap.add_argument("--domain", action="append", default=[], help="an office mail domain (the CA's constraint)")
    ap.add_argument("--lan", action="append", default=[], help="a LAN network A.B.C.D/N (the CA's constraint)")
    a = ap.parse_args(argv)
    try:
        cert, key, ca = ensure(a.dir, [a.hostname, *a.name], a.domain, a.lan)
    except TlsError as e:
        print(f"lan_tls: {e}", file=sys.stderr)
        return 1
    print(f"certificate {cert}\nkey {key}\nCA for the PCs {ca}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
