"""A private INetSim (Debian package `inetsim`) whose SMTP service offers ATRN
(RFC 2645): a second ODMR provider we did not write, for tests/host/test_odmr.py.

    python3 -m host_tools.isp_inetsim            # start one, print its port, Ctrl-C stops it

Only the smtp service runs, on 127.0.0.1 and a free port, with its own config,
data, log and report directories in a temporary directory (nothing under
/etc/inetsim or /var/lib/inetsim is touched). INetSim starts as root and runs
its services as user `inetsim` (the package makes it), so the private
directories are handed to that user.

What INetSim's ATRN does (INetSim/SMTP.pm, `TURN`): it takes only a bare
`ATRN` (a domain argument is a 501 syntax error), wants AUTH first (530
otherwise; any credentials pass), answers `250 OK now reversing the
connection`, then plays the SMTP client: EHLO, `MAIL FROM:<foo@bar.org>`,
`RCPT TO:<bar@foo.org>`, one small test message, QUIT. It gives up (closes,
no QUIT) as soon as a reply is not 25x.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

USER = "inetsim"
# What INetSim's reversed session sends (INetSim/SMTP.pm): for the test's assertions.
SENDER = "foo@bar.org"
RCPT = "bar@foo.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require() -> None:
    """For pytest: install inetsim (or skip; never under CI=true)."""
    from host_tools import pkgs

    pkgs.require("inetsim")


class InetSim:
    """One INetSim process serving only SMTP (with ATRN and AUTH) on 127.0.0.1."""

    def __init__(self, fqdn: str = "odmr.inetsim.test", timeout: int = 60) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dg-inetsim-"))
        self.port = free_port()
        self.fqdn = fqdn
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None

    def _write(self) -> Path:
        d = self.dir
        for sub in ("data/smtp", "data/certs", "log", "report"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        certs = Path("/var/lib/inetsim/certs")  # the package's self-signed pair (for its STARTTLS, unused here)
        for f in certs.glob("*.pem") if certs.is_dir() else []:
            shutil.copy(f, d / "data/certs" / f.name)
        conf = d / "inetsim.conf"
        conf.write_text("\n".join([
            "start_service smtp",
            "service_bind_address 127.0.0.1",
            f"service_run_as_user {USER}",
            f"service_timeout {self.timeout}",
            "create_reports no",
            f"smtp_bind_port {self.port}",
            f"smtp_fqdn_hostname {self.fqdn}",
            'smtp_banner "INetSim Mail Service ready."',
            "smtp_extended_smtp yes",
            "smtp_helo_required yes",
            "smtp_service_extension AUTH PLAIN LOGIN CRAM-MD5",
            "smtp_service_extension ATRN",  # RFC 2645: what this helper is for
            "smtp_service_extension ENHANCEDSTATUSCODES",
            "",
        ]))
        try:
            pw = pwd.getpwnam(USER)
        except KeyError:
            pw = None
        if pw is not None and os.geteuid() == 0:
            for root, dirs, files in os.walk(d):
                for n in dirs + files:
                    os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)
            os.chown(d, pw.pw_uid, pw.pw_gid)
        return conf

    def start(self, wait: float = 30.0) -> InetSim:
        conf = self._write()
        d = self.dir
        self.out = open(d / "inetsim.out", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["inetsim", f"--config={conf}", f"--data-dir={d / 'data'}", f"--log-dir={d / 'log'}",
             f"--report-dir={d / 'report'}", f"--pidfile={d / 'inetsim.pid'}", "--bind-address=127.0.0.1",
             f"--session={os.getpid()}"],
            stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"inetsim exited with {self.proc.returncode}: {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.settimeout(5)
                    if s.recv(100).startswith(b"220"):
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"inetsim did not greet on {self.port}: {self.output()}")

    def output(self) -> str:
        try:
            return (self.dir / "inetsim.out").read_text()[-2000:]
        except OSError:
            return ""

    def service_log(self) -> str:
        """INetSim's per-connection log: every line it sent and received."""
        try:
            return (self.dir / "log" / "service.log").read_text()
        except OSError:
            return ""

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            # INetSim's main process stops its service children on SIGTERM
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # its own session (start_new_session): only its children
                p.wait()
        if p is not None:
            self.out.close()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> InetSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> int:
    sim = InetSim().start()
    print(f"INetSim SMTP with ATRN on 127.0.0.1:{sim.port} (state in {sim.dir}); Ctrl-C stops it", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
