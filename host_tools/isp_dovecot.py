"""A real Dovecot POP3 server playing the ISP's mailbox, on loopback, from its own
config, base_dir and state directory (no system config, no system service).

    with IspDovecot(maildir, users={"office": "pop-secret"}, cert=..., key=...) as pop:
        pop.port                    # POP3 (STLS with a cert; APOP, SASL PLAIN/CRAM-MD5 per `mechanisms`)
        pop.messages()              # maildir files still held (new/ + cur/)

`maildir` is the catch-all mailbox a Postfix fixture (host_tools.isp_postfix,
`mailbox_domains` with the office's domain) delivers into; the mail processes
run as the maildir's owner. The passdb is a passwd-file with plaintext secrets
(APOP and CRAM-MD5 need them). `stop()` stops the master and removes the
directory. Needs Debian's dovecot-pop3d; `require()` installs it through
host_tools.pkgs (or skips the test, never under CI=true).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PROGRAMS = {"dovecot-pop3d": "/usr/lib/dovecot/pop3"}


def require() -> None:
    from host_tools import pkgs

    pkgs.PROGRAMS.update({k: v for k, v in PROGRAMS.items() if k not in pkgs.PROGRAMS})
    pkgs.require("dovecot-pop3d")
    if os.geteuid() != 0:
        import pytest

        pytest.skip("Dovecot's master must start as root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class IspDovecot:
    def __init__(self, maildir: Path, users: dict[str, str], cert: str = "", key: str = "",
                 root: Path | None = None, uidl_format: str = "%08Xu%08Xv", mechanisms: str = "plain cram-md5 apop"):
        self.maildir = Path(maildir)
        self.users = users
        self.cert, self.key = cert, key
        self.root = Path(tempfile.mkdtemp(prefix="isp-dovecot-")) if root is None else Path(root)
        self.root.chmod(0o755)
        self.conf = self.root / "dovecot.conf"
        self.log = self.root / "dovecot.log"
        self.port = free_port()
        self.uidl_format = uidl_format
        self.mechanisms = mechanisms  # "apop" puts the APOP timestamp in the greeting
        self.started = False

    def write_files(self) -> None:
        (self.root / "run").mkdir(exist_ok=True)
        (self.root / "state").mkdir(exist_ok=True)
        self.maildir.mkdir(parents=True, exist_ok=True)
        for d in ("new", "cur", "tmp"):
            (self.maildir / d).mkdir(exist_ok=True)
        st = self.maildir.stat()
        for p in [self.maildir, *self.maildir.iterdir()]:
            os.chown(p, st.st_uid, st.st_gid)
        passwd = self.root / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        passwd.chmod(0o644)
        ssl = "ssl = no\n"
        if self.cert:
            ssl = f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{self.key}\n"
            if Path("/usr/share/dovecot/dh.pem").exists():
                ssl += "ssl_dh = </usr/share/dovecot/dh.pem\n"
        self.conf.write_text(f"""\
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log}
instance_name = isp-dovecot-{self.port}
protocols = pop3
listen = 127.0.0.1
{ssl}disable_plaintext_auth = yes
auth_mechanisms = {self.mechanisms}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{self.maildir}
pop3_uidl_format = {self.uidl_format}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {passwd}
}}
userdb {{
  driver = static
  args = uid={st.st_uid} gid={st.st_gid} home={self.root}/home/%n
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")

    def start(self) -> IspDovecot:
        self.write_files()
        # the master forks into the background: its output to a file, not a pipe it would hold open
        with open(self.root / "start.out", "w+") as out:
            r = subprocess.run(["dovecot", "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT,
                               check=False, timeout=30)
            out.seek(0)
            if r.returncode != 0:
                raise RuntimeError(f"dovecot start failed: {out.read()}\n{self.log_text()}")
        self.started = True
        end = time.monotonic() + 15
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot is not listening on {self.port}\n{self.log_text()}")

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        pid = self._master_pid()
        subprocess.run(["doveadm", "-c", str(self.conf), "stop"], capture_output=True, check=False, timeout=30)
        end = time.monotonic() + 10
        while pid and time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)
        else:
            if pid:
                os.kill(pid, signal.SIGKILL)
        if not os.environ.get("KEEP_ISP_DOVECOT"):
            shutil.rmtree(self.root, ignore_errors=True)

    def _master_pid(self) -> int:
        try:
            return int((self.root / "run" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def __enter__(self) -> IspDovecot:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def messages(self) -> list[Path]:
        """Messages still in the mailbox (maildir new/ and cur/)."""
        return [f for d in ("new", "cur") if (self.maildir / d).is_dir() for f in (self.maildir / d).iterdir()]
