"""`make install-pi` / `make uninstall-pi` under a throwaway DESTDIR: exactly the
expected files, a unit systemd accepts, a peers file pppd parses, a logrotate
file logrotate parses, an installed command that serves SMTP, POP3 (both with
TLS verified against the installed CA) and the console, and an uninstall that
leaves only the spool (nothing with PURGE=1)."""

from __future__ import annotations

import json
import os
import poplib
import shutil
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import ROOT, free_port, wait_port
from host_tools import pi_files
from host_tools.console_client import ConsoleClient
from host_tools.pkgs import require

PREFIX = "/usr/local"
LIB = PREFIX + "/lib/dialgate"


def make(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(["make", "--no-print-directory", *args, f"PYTHON={sys.executable}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def tree(d: Path) -> set[str]:
    """Every file and directory under `d`, as absolute paths of the target system,
    without the venv's contents and the byte-code caches."""
    out = set()
    for p in d.rglob("*"):
        rel = "/" + p.relative_to(d).as_posix()
        if rel.startswith(LIB + "/venv/") or "__pycache__" in rel:
            continue
        out.add(rel)
    return out


def parents(paths: set[str]) -> set[str]:
    out = set()
    for p in paths:
        while p.count("/") > 1:
            p = p.rsplit("/", 1)[0]
            out.add(p)
    return out


def expected() -> set[str]:
    files = {f"{LIB}/firmware/dialgate/{p.name}" for p in (ROOT / "firmware" / "dialgate").iterdir()
             if p.suffix in (".py", ".json")}
    files |= {f"{LIB}/host_tools/{p.name}" for p in (ROOT / "host_tools").glob("*.py")}
    files |= {f"{LIB}/boards/{p.name}" for p in (ROOT / "boards").glob("*.json")}
    files |= {f"{LIB}/install-manifest", f"{LIB}/venv", f"{PREFIX}/bin/dialgate", f"{PREFIX}/bin/dialgatectl",
              "/etc/dialgate/config.json", "/etc/dialgate/tls/ca.pem", "/etc/dialgate/tls/ca.key",
              "/etc/dialgate/tls/gateway.pem", "/etc/dialgate/tls/gateway.key",
              "/etc/systemd/system/dialgate.service", "/etc/sysusers.d/dialgate.conf",
              "/etc/tmpfiles.d/dialgate.conf", "/etc/ppp/peers/dialgate", "/etc/logrotate.d/dialgate",
              "/var/spool/dialgate", "/var/log/dialgate"}
    return files | parents(files)


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    require("openssl")
    d = tmp_path_factory.mktemp("destdir")
    make("install-pi", f"DESTDIR={d}", "TLS_NAMES=127.0.0.1 localhost")
    return d


def test_install_makes_exactly_the_expected_files(dest):
    assert tree(dest) == expected()
    mode = {p: (dest / p.lstrip("/")).stat().st_mode & 0o777 for p in
            ("/var/spool/dialgate", "/etc/dialgate/config.json", "/etc/dialgate/tls/ca.key",
             "/etc/dialgate/tls/gateway.key", "/etc/dialgate/tls/ca.pem", PREFIX + "/bin/dialgate")}
    assert mode == {"/var/spool/dialgate": 0o700, "/etc/dialgate/config.json": 0o600,
                    "/etc/dialgate/tls/ca.key": 0o600, "/etc/dialgate/tls/gateway.key": 0o600,
                    "/etc/dialgate/tls/ca.pem": 0o644, PREFIX + "/bin/dialgate": 0o755}
    for py in (dest / LIB.lstrip("/") / "firmware" / "dialgate").glob("*.py"):  # compiled as root at install
        assert list((py.parent / "__pycache__").glob(py.stem + ".*.pyc")), py
    cfg = json.loads((dest / "etc/dialgate/config.json").read_text())
    assert cfg["profile"] == "rpi" and cfg["link"]["pppd_peer"] == "dialgate"
    assert cfg["smtp"] == {"tls_cert": "/etc/dialgate/tls/gateway.pem", "tls_key": "/etc/dialgate/tls/gateway.key"}
    users = (dest / "etc/sysusers.d/dialgate.conf").read_text().splitlines()
    assert 'u dialgate - "dialgate mail gateway" /var/spool/dialgate' in users
    assert {"m dialgate dialout", "m dialgate dip"} <= set(users)
    tmpf = (dest / "etc/tmpfiles.d/dialgate.conf").read_text().splitlines()
    assert {"d /var/spool/dialgate 0700 dialgate dialgate -", "z /etc/dialgate/tls/gateway.key 0640 root dialgate -",
            "z /etc/dialgate/config.json 0600 dialgate dialgate -"} <= set(tmpf)
    # with DESTDIR nothing happened outside it: no user was made
    with pytest.raises(KeyError):
        __import__("pwd").getpwnam("dialgate")


def _verify_unit(text: str, dest: Path, tmp_path: Path) -> str:
    # systemd-analyze checks that ExecStart= exists: point it into DESTDIR, change nothing else
    unit = tmp_path / "dialgate.service"
    unit.write_text(text.replace(f"ExecStart={PREFIX}/", f"ExecStart={dest}{PREFIX}/"))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                       timeout=60)
    return f"rc={r.returncode} {r.stdout}{r.stderr}".strip()


def test_systemd_accepts_the_unit_for_pppd_and_for_an_always_on_link(dest, tmp_path):
    require("systemd")
    text = (dest / "etc/systemd/system/dialgate.service").read_text()
    for want in ("User=dialgate", "Restart=on-failure", "After=network-online.target", "ProtectSystem=full",
                 "PrivateTmp=yes", "DevicePolicy=closed", "DeviceAllow=/dev/ttyUSB0 rw", "DeviceAllow=/dev/ppp rw",
                 "ReadWritePaths=/var/spool/dialgate /var/log/dialgate /etc/dialgate -/etc/ppp",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "NoNewPrivileges=no"):
        assert want in text.splitlines(), want
    assert _verify_unit(text, dest, tmp_path) == "rc=0"
    bad = text.replace("PrivateTmp=yes", "PrivateTmp=maybe")
    assert "Failed to parse boolean value" in _verify_unit(bad, dest, tmp_path)  # the check really reads it
    from dialgate.config import build

    always_on = pi_files.unit(PREFIX + "/bin/dialgate", build({"board.name": "rpi", "hostname": "gw.x",
                                                                 "domains": ["x"], "link.type": "always-on"}),
                                "/var/spool/dialgate")
    assert "NoNewPrivileges=yes" in always_on and "ProtectSystem=strict" in always_on
    assert _verify_unit(always_on, dest, tmp_path) == "rc=0"


def test_pppd_parses_the_peers_file(dest, tmp_path):
    require("ppp")
    text = (dest / "etc/ppp/peers/dialgate").read_text()
    lines = [x for x in text.splitlines() if x and not x.startswith("#")]
    assert lines[:2] == ["/dev/ttyUSB0", "115200"]
    assert f'connect "{LIB}/venv/bin/python -m dialgate.link_pppd connect /var/spool/dialgate/pppd/dial.json"' in lines
    assert {"linkname dialgate", "ifname ppp0", "noauth", "lock", "crtscts"} <= set(lines)

    def pppd(options: str) -> subprocess.CompletedProcess:
        f = tmp_path / "peers"
        # pppd takes a device name only if the device is there: a character device this machine has
        f.write_text(options.replace("/dev/ttyUSB0\n", "/dev/null\n", 1))
        return subprocess.run(["/usr/sbin/pppd", "file", str(f), "updetach", "maxfail", "1", "dryrun"],
                              capture_output=True, text=True, timeout=30)

    r = pppd(text)
    # 2 = an option error; past the options pppd stops at 4 where the kernel has no ppp (a container), else 0
    assert r.returncode in (0, 4), r.stderr
    assert "option" not in r.stderr, r.stderr
    r = pppd(text + "connectt /bin/true\n")  # the check really parses: a typo is caught
    assert r.returncode == 2 and "unrecognized option 'connectt'" in r.stderr, r.stderr


def test_logrotate_parses_its_file(dest, tmp_path):
    require("logrotate")
    text = (dest / "etc/logrotate.d/dialgate").read_text()
    assert text.startswith("# ") and "/var/log/dialgate/gateway.log {" in text and "copytruncate" in text
    r = subprocess.run(["/usr/sbin/logrotate", "-d", "-s", str(tmp_path / "state"), str(dest / "etc/logrotate.d/dialgate")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "error" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


def test_installed_command_serves_smtp_pop3_and_console_with_tls(dest, tmp_path):
    """The installed wrapper and venv, the installed config (its paths moved into
    DESTDIR/tmp, its ports to free loopback ones), TLS verified against the installed CA."""
    cfg = json.loads((dest / "etc/dialgate/config.json").read_text())
    ports = {k: free_port() for k in ("smtp", "pop3", "console")}
    for k, port in ports.items():
        cfg.setdefault(k, {})["listen"] = [f"127.0.0.1:{port}"]
    cfg["smtp"]["tls_cert"] = f"{dest}/etc/dialgate/tls/gateway.pem"
    cfg["smtp"]["tls_key"] = f"{dest}/etc/dialgate/tls/gateway.key"
    cfg["spool"] = {"path": str(tmp_path / "spool")}
    cfg["log"] = {"file": str(tmp_path / "log" / "dialgate.log")}
    conf = tmp_path / "config.json"
    conf.write_text(json.dumps(cfg))
    exe = dest / PREFIX.lstrip("/") / "bin" / "dialgate"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run([str(exe), "--config", str(conf), "--check"], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=30)
    assert r.returncode == 0 and "config ok" in r.stdout, r.stdout + r.stderr
    p = subprocess.Popen([str(exe), "--config", str(conf)], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    ca = ssl.create_default_context(cafile=str(dest / "etc/dialgate/tls/ca.pem"))
    try:
        wait_port(ports["console"], proc=p)
        argv = Path(f"/proc/{p.pid}/cmdline").read_bytes().split(b"\0")  # the wrapper exec'd the installed venv
        assert os.path.normpath(argv[0].decode()) == f"{dest}{LIB}/venv/bin/python", argv
        assert argv[1:3] == [b"-m", b"dialgate"], argv
        c = ConsoleClient("127.0.0.1", ports["console"])
        try:
            ok, lines, _ = c.command("user add alice wonderland")
            assert ok, lines
            ok, lines, _ = c.command("status")
            assert ok and "link: down, not dialled since boot (pppd)" in lines, lines
        finally:
            c.close()
        # 127.0.0.1 is not the rpi profile's LAN (192.168.1.0/24): AUTH only after STARTTLS
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=20) as s:
            s.ehlo("pc.example")
            assert s.has_extn("starttls") and not s.has_extn("auth")
            s.starttls(context=ca)  # the certificate carries IP:127.0.0.1 (TLS_NAMES) and chains to the CA
            s.ehlo("pc.example")
            assert "PLAIN" in s.esmtp_features["auth"]
            s.login("alice", "wonderland")
            s.sendmail("alice@office.example", ["alice@office.example"], b"Subject: pi\r\n\r\ninstalled\r\n")
        pop = poplib.POP3("127.0.0.1", ports["pop3"], timeout=20)
        try:
            assert "STLS" in pop.capa()
            pop.stls(context=ca)
            pop.user("alice")
            pop.pass_("wonderland")
            assert b"installed" in b"\n".join(pop.retr(1)[1])
        finally:
            pop.quit()
        ctl = dest / PREFIX.lstrip("/") / "bin" / "dialgatectl"
        r = subprocess.run([str(ctl), "--help"], capture_output=True, text=True, env=env, timeout=30)
        assert r.returncode == 0, r.stderr
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=20)
    assert p.returncode == 0, out


def test_uninstall_keeps_only_the_spool_and_purge_removes_it_too(tmp_path):
    require("openssl")
    d = tmp_path / "root"
    make("install-pi", f"DESTDIR={d}")
    (d / "var/spool/dialgate/users.json").write_text("{}")
    (d / "var/log/dialgate/gateway.log").write_text("a log line\n")  # what the service wrote is removed too
    make("uninstall-pi", f"DESTDIR={d}")
    assert tree(d) == {"/var", "/var/spool", "/var/spool/dialgate", "/var/spool/dialgate/users.json",
                       "/var/spool/dialgate/.install-parents"}
    make("install-pi", f"DESTDIR={d}")  # again, over the kept spool
    assert (d / "var/spool/dialgate/users.json").exists()
    assert tree(d) == expected() | {"/var/spool/dialgate/users.json"}
    make("uninstall-pi", f"DESTDIR={d}", "PURGE=1")
    assert list(d.iterdir()) == []
    shutil.rmtree(d)
