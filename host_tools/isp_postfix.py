"""A real Postfix playing the ISP, on loopback, from its own config and queue directories.

    with IspPostfix(tmp_path) as isp:         # installs nothing; see require() below
        isp.ports["submission"]                # 587-like: STARTTLS required, SASL AUTH required
        isp.ports["smtps"]                     # 465-like: implicit TLS, SASL AUTH required
        isp.ports["smtp"]                      # 25-like: STARTTLS offered, no AUTH
        isp.ca_file                            # the self-signed CA/cert the client must trust
        isp.wait_delivered(50)                 # maildir files under mail/DOMAIN/USER/new

Everything lives under one directory: `postfix -c ETC` with its own main.cf and
master.cf (no chroot), queue and data directories, a Cyrus SASL sasldb with the
users given, and a certificate made by openssl. `stop()` stops the master.

Mail for `mailbox_domains` is delivered by virtual(8) into maildirs (a domain's
unlisted addresses into one catch-all maildir, DOMAIN/other/: with
`original_recipient=True` each copy carries `X-Original-To:`, the multidrop
case that host_tools/isp_dovecot.py serves by POP3). Mail for
`hold_domains` is the ETRN case (RFC 1985, Postfix ETRN_README): relayed to
`hold_nexthop` by the `hold` transport, which `defer_transports` keeps deferred
until someone says `ETRN domain` (`fast_flush_domains`) or calls `flush()`.

Needs Debian packages postfix, sasl2-bin, libsasl2-modules, openssl; `require()`
installs them through host_tools.pkgs (or skips the test, never under CI=true).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ("postfix", "sasl2-bin", "libsasl2-modules", "openssl")
PROGRAMS = {"sasl2-bin": "/usr/sbin/saslpasswd2", "libsasl2-modules": "/usr/share/doc/libsasl2-modules"}


def require() -> None:
    """For pytest fixtures: make sure the packages are there, or skip."""
    from host_tools import pkgs

    pkgs.PROGRAMS.update({k: v for k, v in PROGRAMS.items() if k not in pkgs.PROGRAMS})
    pkgs.require(*PACKAGES)
    if os.geteuid() != 0:
        import pytest

        pytest.skip("Postfix's master must start as root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{smtp} inet n - n - - smtpd
127.0.0.1:{submission} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
127.0.0.1:{smtps} inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
hold      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsproxy  unix  -       -       n       -       0       tlsproxy
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class IspPostfix:
    def __init__(self, root: Path | None = None, users: dict[str, str] | None = None,
                 mailbox_domains: tuple[str, ...] = ("example.com", "example.net", "isp.test"),
                 mailboxes: tuple[str, ...] = (), reject: dict[str, str] | None = None,
                 hold_domains: tuple[str, ...] = (), hold_nexthop: str = "127.0.0.1:2525",
                 message_size_limit: int = 10_240_000, original_recipient: bool = False):
        # Postfix's daemons run as `postfix` and must reach every path: a pytest
        # tmp_path (mode 0700 under /tmp/pytest-of-root) will not do.
        self.own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="isp-postfix-")) if root is None else Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.etc = self.root / "etc"
        self.queue = self.root / "queue"
        self.data = self.root / "data"
        self.mail = self.root / "mail"
        self.log = self.root / "maillog"
        self.ca_file = str(self.etc / "isp-cert.pem")
        self.users = users if users is not None else {"gw": "secret"}
        self.mailbox_domains = mailbox_domains
        self.mailboxes = mailboxes  # own maildir each; anyone else in a domain lands in DOMAIN/other/
        self.reject = reject or {}  # address -> "550 5.1.1 text": refused at RCPT
        self.hold_domains = hold_domains
        self.hold_nexthop = hold_nexthop
        self.size_limit = message_size_limit
        # X-Original-To on delivered mail (what a multidrop collector sorts by); off
        # by default so the ETRN tests see only the trace and the original message
        self.original_recipient = original_recipient
        self.ports = {"smtp": free_port(), "submission": free_port(), "smtps": free_port()}
        self.started = False

    # ---- files -------------------------------------------------------------------

    def main_cf(self) -> str:
        pw = pwd.getpwnam("postfix")
        hold = " ".join(self.hold_domains)
        lines = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue}",
            f"data_directory = {self.data}",
            "meta_directory = /etc/postfix",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "myhostname = isp.test",
            "mydomain = isp.test",
            "myorigin = isp.test",
            "mydestination =",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mynetworks = 192.0.2.1/32",  # nobody: relaying needs AUTH
            "smtpd_banner = $myhostname ESMTP",
            f"enable_original_recipient = {'yes' if self.original_recipient else 'no'}",  # X-Original-To
            "local_header_rewrite_clients =",  # never touch the relayed header
            "biff = no",
            "alias_maps =",
            "alias_database =",
            "local_recipient_maps =",
            f"maillog_file_prefixes = {self.root}",
            f"maillog_file = {self.log}",
            f"message_size_limit = {self.size_limit}",
            f"virtual_mailbox_domains = {' '.join(self.mailbox_domains)}",
            f"virtual_mailbox_base = {self.mail}",
            f"virtual_mailbox_maps = texthash:{self.etc}/vmailbox",
            f"virtual_uid_maps = static:{pw.pw_uid}",
            f"virtual_gid_maps = static:{pw.pw_gid}",
            "virtual_minimum_uid = 1",
            f"smtpd_tls_cert_file = {self.ca_file}",
            f"smtpd_tls_key_file = {self.etc}/isp-key.pem",
            "smtpd_tls_security_level = may",
            "smtpd_sasl_type = cyrus",
            "smtpd_sasl_path = smtpd",
            f"cyrus_sasl_config_path = {self.etc}/sasl",
            "smtpd_sasl_local_domain = isp.test",
            f"smtpd_recipient_restrictions = check_recipient_access texthash:{self.etc}/rcpt_access",
            "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
            # The ISP holds the office's mail until ETRN (RFC 1985; Postfix ETRN_README):
            f"relay_domains = {hold}",
            "fast_flush_domains = $relay_domains",
            f"transport_maps = regexp:{self.etc}/transport",
            "defer_transports = hold" if self.hold_domains else "defer_transports =",
            "smtpd_etrn_restrictions = permit",
        ]
        return "\n".join(lines) + "\n"

    def write_files(self) -> None:
        for d in (self.etc, self.etc / "sasl", self.queue, self.data, self.mail, self.root / "sasldb"):
            d.mkdir(parents=True, exist_ok=True)
        (self.etc / "main.cf").write_text(self.main_cf())
        (self.etc / "master.cf").write_text(MASTER_CF.format(**self.ports))
        vmail = [f"{a} {a.partition('@')[2]}/{a.partition('@')[0]}/" for a in self.mailboxes]
        vmail += [f"@{d} {d}/other/" for d in self.mailbox_domains]  # the trailing / means maildir
        (self.etc / "vmailbox").write_text("\n".join(vmail) + "\n")
        access = [f"{a} {r[:3]} {r[4:]}" for a, r in self.reject.items()]
        (self.etc / "rcpt_access").write_text("\n".join(access) + "\n")
        host, _, port = self.hold_nexthop.rpartition(":")
        transport = "".join(f"/@{d.replace('.', '[.]')}$/ hold:[{host}]:{port}\n" for d in self.hold_domains)
        (self.etc / "transport").write_text(transport or "/^$/ local:\n")
        sasldb = self.root / "sasldb" / "sasldb2"
        (self.etc / "sasl" / "smtpd.conf").write_text(
            f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: {sasldb}\n")
        for user, password in self.users.items():
            subprocess.run(["saslpasswd2", "-f", str(sasldb), "-c", "-p", "-u", "isp.test", user],
                           input=password + "\n", text=True, check=True, capture_output=True)
        if sasldb.exists():
            shutil.chown(sasldb, "postfix")
        self._make_cert()
        pw = pwd.getpwnam("postfix")
        for d in (self.mail, self.data, self.root / "sasldb"):
            os.chown(d, pw.pw_uid, pw.pw_gid)

    def _make_cert(self) -> None:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(self.etc / "isp-key.pem"), "-out", self.ca_file, "-subj", "/CN=isp.test",
             "-addext", "subjectAltName=DNS:isp.test,DNS:localhost,IP:127.0.0.1",
             "-addext", "basicConstraints=critical,CA:TRUE"],
            check=True, capture_output=True)

    # ---- running -----------------------------------------------------------------

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["postfix", "-c", str(self.etc), *args], capture_output=True, text=True,
                              check=check, timeout=60)

    def start(self) -> IspPostfix:
        self.write_files()
        self.postfix("check", check=False)  # creates the queue directories with their owners
        r = self.postfix("start", check=False)
        if r.returncode != 0:
            raise RuntimeError(f"postfix start failed: {r.stdout}{r.stderr}\n{self.log_text()}")
        self.started = True
        for port in self.ports.values():
            self._wait_port(port)
        return self

    def _wait_port(self, port: int, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"postfix is not listening on {port}\n{self.log_text()}")

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        pid = self._master_pid()
        self.postfix("stop", check=False)
        end = time.monotonic() + 10
        while pid and time.monotonic() < end:
            try:
                os.kill(pid, 0)  # the master is still there (the pid file stays behind)
            except OSError:
                break
            time.sleep(0.05)
        if self.own_root and not os.environ.get("KEEP_ISP_POSTFIX"):
            shutil.rmtree(self.root, ignore_errors=True)

    def _master_pid(self) -> int:
        try:
            return int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def __enter__(self) -> IspPostfix:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- looking at the result ----------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def delivered(self, address: str | None = None) -> list[Path]:
        """Maildir files delivered (to `address`, or to anyone), oldest first."""
        if address:
            local, _, domain = address.partition("@")
            dirs = [self.mail / domain / local / "new"]
        else:
            dirs = sorted(self.mail.glob("*/*/new"))
        files = [f for d in dirs if d.is_dir() for f in d.iterdir()]
        return sorted(files, key=lambda f: (f.stat().st_mtime_ns, f.name))

    def wait_delivered(self, count: int, timeout: float = 60) -> list[Path]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.delivered()
            if len(got) >= count:
                return got
            time.sleep(0.2)
        raise AssertionError(f"{len(self.delivered())} of {count} delivered\n{self.log_text()[-3000:]}")

    def queued(self) -> list[str]:
        """Queue ids in Postfix's queue (postqueue -j)."""
        r = subprocess.run(["postqueue", "-c", str(self.etc), "-j"], capture_output=True, text=True, check=False)
        import json

        return [json.loads(x)["queue_id"] for x in r.stdout.splitlines() if x.strip()]

    def flush(self, domain: str) -> None:
        """What `ETRN domain` does (postqueue -s)."""
        subprocess.run(["postqueue", "-c", str(self.etc), "-s", domain], check=False, capture_output=True)


def strip_trace(delivered: bytes) -> bytes:
    """A delivered maildir file without the header lines Postfix put on top
    (Return-Path, Delivered-To, Received with its continuation lines)."""
    lines = delivered.split(b"\n")
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith((b"Return-Path:", b"Delivered-To:", b"Received:")):
            i += 1
            while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                i += 1
            continue
        break
    return b"\n".join(lines[i:])


class OfficePostfix(IspPostfix):
    """Postfix as the office's own gateway (the peer dialgate is measured against,
    host_tools/bench_link.py):
    everything not local is relayed to `relayhost` (the ISP's submission port,
    through the emulated line) with STARTTLS required and SASL AUTH, and held
    (`defer_transports = smtp`) until `flush_queue()`, as a dial-up site's
    Postfix is run (`postqueue -f` once the line is up). Clients submit on its
    own submission port (AUTH as `users`)."""

    def __init__(self, relayhost: str, relay_user: str, relay_password: str, relay_ca: str,
                 tls_reuse: bool = False, **kw):
        kw.setdefault("mailbox_domains", ("office.test",))
        super().__init__(**kw)
        # smtp_tls_connection_reuse (Postfix >= 3.4, through tlsproxy(8)): off by
        # default, so each message to a TLS relayhost gets its own connection
        self.tls_reuse = tls_reuse
        self.relayhost = relayhost
        self.relay_user = relay_user
        self.relay_password = relay_password
        self.relay_ca = relay_ca

    def main_cf(self) -> str:
        # the ISP's main.cf with these keys replaced, not repeated: each repeated key
        # makes every daemon warn through postlogd, whose own warnings then fill its
        # socket until the whole instance hangs (seen with Postfix 3.7)
        extra = [
            "myhostname = postfix-gw.office.test",  # not the ISP's own name: its client would see a loop
            "mydomain = office.test",
            "myorigin = office.test",
            f"relayhost = [{self.relayhost.rpartition(':')[0]}]:{self.relayhost.rpartition(':')[2]}",
            "smtp_sasl_auth_enable = yes",
            f"smtp_sasl_password_maps = texthash:{self.etc}/relay_passwd",
            "smtp_sasl_security_options = noanonymous",
            "smtp_sasl_tls_security_options = noanonymous",
            "smtp_tls_security_level = encrypt",
            f"smtp_tls_CAfile = {self.relay_ca}",
            "defer_transports = smtp",
            f"smtp_tls_connection_reuse = {'yes' if self.tls_reuse else 'no'}",
        ]
        keys = {e.partition(" =")[0] for e in extra}
        base = [ln for ln in super().main_cf().splitlines() if ln.partition(" =")[0] not in keys]
        return "\n".join(base + extra) + "\n"

    def write_files(self) -> None:
        super().write_files()
        host, _, port = self.relayhost.rpartition(":")
        (self.etc / "relay_passwd").write_text(f"[{host}]:{port} {self.relay_user}:{self.relay_password}\n")

    def flush_queue(self) -> None:
        """What a dial-up script runs once the line is up (postqueue -f)."""
        subprocess.run(["postqueue", "-c", str(self.etc), "-f"], check=False, capture_output=True)
