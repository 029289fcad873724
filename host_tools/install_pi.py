"""`make install-pi` / `make uninstall-pi`: dialgate as a systemd service on a Raspberry Pi (CPython).

    sudo make install-pi [PREFIX=/usr/local] [DESTDIR=] [CONFIG=site.json] [TLS_NAMES="gw 192.168.1.2"]
    sudo make uninstall-pi [PURGE=1]

Installs (paths as on the Pi; everything goes under DESTDIR when it is set):

    PREFIX/lib/dialgate/            firmware/, host_tools/, boards/, a venv (pyserial, dnspython), the manifest
    PREFIX/bin/dialgate             the gateway: venv python -m dialgate --config /etc/dialgate/config.json
    PREFIX/bin/dialgatectl          the operator's command (python -m host_tools.dialgatectl)
    /etc/dialgate/config.json       CONFIG=, else a starter from the rpi profile (an existing one is kept)
    /etc/dialgate/tls/              LAN CA + server certificate (host_tools/lan_tls.py) unless CONFIG names one
    /etc/systemd/system/dialgate.service
    /etc/sysusers.d/dialgate.conf   the `dialgate` user, in `dialout` (the modem) and `dip` (pppd)
    /etc/tmpfiles.d/dialgate.conf   spool and log directories, owners and modes
    /etc/ppp/peers/dialgate         pppd options; `connect` runs dialgate's own dialler
    /etc/logrotate.d/dialgate       rotation of /var/log/dialgate/gateway.log (the service's output)
    /var/spool/dialgate/            the spool (0700): kept by uninstall unless PURGE=1
    /var/log/dialgate/              the log ring (log.file) and gateway.log

With DESTDIR empty (a real install, as root) the user and the ownerships are
then made by `systemd-sysusers` and `systemd-tmpfiles --create` from those two
files, and systemd is reloaded; under DESTDIR nothing outside it is touched,
and the same two files make the user and the ownerships at the target's first boot.
Uninstall removes what the manifest lists, nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "firmware"))

from dialgate import config_load  # noqa: E402  (firmware/ is not a package on the host's path)
from dialgate.config import ConfigError  # noqa: E402
from host_tools import lan_tls  # noqa: E402
from host_tools.pi_files import (  # noqa: E402
    CONFIG,
    ETC,
    LOG_DIR,
    LOGROTATE,
    PEERS,
    SYSUSERS,
    TLS,
    TMPFILES,
    UNIT,
    USER,
    logrotate,
    peers,
    sysusers,
    tmpfiles,
    unit,
    wrapper,
)

MANIFEST = "install-manifest"
KEPT_PARENTS = ".install-parents"  # in a spool that uninstall kept: its parent directories that were ours
# manifest kinds: f file, t tree (removed whole), d directory (removed if empty),
# s the spool (kept unless purge), u the user (removed with purge: the kept spool is its)


class InstallError(Exception):
    pass


class Installer:
    def __init__(self, prefix: str, destdir: str) -> None:
        self.prefix = prefix.rstrip("/") or "/"
        self.destdir = destdir.rstrip("/")
        self.lib = self.prefix + "/lib/dialgate"
        self.entries: dict[str, str] = {}  # final path -> kind

    def staged(self, path: str) -> Path:
        return Path(self.destdir + path)

    # ---- recording what we make ----

    def mkdir(self, path: str, mode: int = 0o755, kind: str = "d") -> Path:
        """Make `path` and its missing parents (recorded as ours; ones that were there are not)."""
        missing = []
        p = path
        while p not in ("", "/") and not self.staged(p).exists():
            missing.append(p)
            p = p.rsplit("/", 1)[0]
        for m in reversed(missing):
            self.staged(m).mkdir(mode=0o755)
            self.entries.setdefault(m, "d")
        if path in missing:
            self.staged(path).chmod(mode)
            self.entries[path] = kind
        return self.staged(path)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file (recorded as ours)."""
        dst = self.staged(path)
        self.mkdir(path.rsplit("/", 1)[0])
        dst.write_text(text)
        dst.chmod(mode)
        self.entries[path] = "f"

    def copy_tree(self, src: Path, dst: str, pattern: str) -> None:
        self.mkdir(dst)
        for f in sorted(src.glob(pattern)):
            shutil.copyfile(f, self.staged(dst + "/" + f.name))
            self.staged(dst + "/" + f.name).chmod(0o644)

    def load_manifest(self) -> None:
        m = self.staged(self.lib + "/" + MANIFEST)
        if m.exists():
            for line in m.read_text().splitlines():
                kind, _, path = line.partition(" ")
                if path:
                    self.entries[path] = kind

    def save_manifest(self) -> None:
        lines = [f"{k} {p}" for p, k in sorted(self.entries.items())]
        self.staged(self.lib + "/" + MANIFEST).write_text("\n".join(lines) + "\n")


def starter_config(site: Path | None) -> dict:
    data = json.loads(site.read_text()) if site else {}
    if not site:
        prof = json.loads((ROOT / "boards" / "rpi.json").read_text())
        data = {"profile": "rpi", "hostname": prof["hostname"], "domains": prof["domains"], "lan": prof["lan"]}
    data.setdefault("profile", "rpi")
    return data


# ---- install / uninstall -----------------------------------------------------


def _venv(ins: Installer, python: str) -> None:
    venv = ins.staged(ins.lib + "/venv")
    if venv.exists():
        shutil.rmtree(venv)
    reqs = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.split("==")[0].strip() in ("pyserial", "dnspython")]
    have_pip = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False).returncode == 0
    r = subprocess.run([python, "-m", "venv", *(["--without-pip"] if have_pip else []), str(venv)],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise InstallError(f"python3 -m venv failed (Debian: apt-get install python3-venv): {r.stderr.strip()}")
    vpy = venv / "bin" / "python"
    pip = [python, "-m", "pip", "--python", str(vpy)] if have_pip else [str(vpy), "-m", "pip"]
    r = subprocess.run([*pip, "install", "-q", "--disable-pip-version-check", *reqs], capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        raise InstallError(f"pip install {' '.join(reqs)} failed: {r.stderr.strip()[-400:]}")
    site = subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # relative to site-packages (venv/lib/pythonX.Y/site-packages): lib/dialgate/firmware and lib/dialgate
    Path(site, "dialgate.pth").write_text("../../../../firmware\n../../../..\n")
    ins.entries[ins.lib + "/venv"] = "t"


def install(prefix: str, destdir: str, site: Path | None, tls_names: list[str], python: str) -> Installer:
    ins = Installer(prefix, destdir)
    if destdir:
        Path(destdir).mkdir(parents=True, exist_ok=True)
    ins.load_manifest()
    lib = ins.lib
    # the program: sources, profiles, a venv that finds them, byte-compiled as root
    ins.mkdir(lib)
    ins.entries[lib] = "t"
    ins.copy_tree(ROOT / "firmware" / "dialgate", lib + "/firmware/dialgate", "*.py")
    ins.copy_tree(ROOT / "firmware" / "dialgate", lib + "/firmware/dialgate", "*.json")
    ins.copy_tree(ROOT / "host_tools", lib + "/host_tools", "*.py")
    ins.copy_tree(ROOT / "boards", lib + "/boards", "*.json")
    _venv(ins, python)
    vpy = str(ins.staged(lib + "/venv/bin/python"))
    subprocess.run([vpy, "-m", "compileall", "-q", str(ins.staged(lib + "/firmware")),
                    str(ins.staged(lib + "/host_tools"))], check=True, capture_output=True)
    rel = os.path.relpath(lib, ins.prefix + "/bin")
    ctl = "host_tools.dialgatectl" if (ROOT / "host_tools" / "dialgatectl.py").exists() else "host_tools.console_client"
    ins.write(ins.prefix + "/bin/dialgate", wrapper(rel, "dialgate", True), 0o755)
    ins.write(ins.prefix + "/bin/dialgatectl", wrapper(rel, ctl, False), 0o755)

    # the config: the site's (CONFIG=), or a starter; one that is there is kept
    ins.mkdir(ETC, 0o750)
    if site or not ins.staged(CONFIG).exists():
        data = starter_config(site)
        smtp = data.setdefault("smtp", {})
        if not smtp.get("tls_cert"):
            smtp["tls_cert"], smtp["tls_key"] = TLS + "/gateway.pem", TLS + "/gateway.key"
        ins.write(CONFIG, json.dumps(data, indent=1) + "\n", 0o600)
        if _load(ins)["link.type"] == "pppd" and "pppd_peer" not in data.get("link", {}):
            data.setdefault("link", {})["pppd_peer"] = "dialgate"
            ins.write(CONFIG, json.dumps(data, indent=1) + "\n", 0o600)
    cfg = _load(ins)
    spool, log_file = cfg["spool.path"], cfg["log.file"]
    if not spool.startswith("/"):
        raise InstallError(f"{CONFIG}: spool.path must be an absolute path, not {spool!r}")

    # LAN certificate, unless the config names the office's own
    tls_key = ""
    if cfg["smtp.tls_cert"] == TLS + "/gateway.pem":
        ins.mkdir(TLS, 0o755, kind="t")
        names = [cfg["hostname"], *tls_names]
        lan_tls.ensure(ins.staged(TLS), names, cfg["domains"], cfg["lan"])
        tls_key = TLS + "/gateway.key"

    # the service and its surroundings
    ins.write(UNIT, unit(ins.prefix + "/bin/dialgate", cfg, spool))
    ins.write(SYSUSERS, sysusers(spool))
    log_dir = log_file.rsplit("/", 1)[0] if log_file.startswith("/") else LOG_DIR
    ins.write(TMPFILES, tmpfiles(spool, LOG_DIR, tls_key) + (f"d {log_dir} 0750 {USER} {USER} -\n"
                                                              if log_dir != LOG_DIR else ""))
    ins.write(PEERS, peers(lib + "/venv/bin/python", cfg, spool))
    ins.write(LOGROTATE, logrotate())
    kept = ins.staged(spool + "/" + KEPT_PARENTS)  # a kept spool's parents that an earlier install made
    if kept.exists():
        for d in kept.read_text().split():
            ins.entries.setdefault(d, "d")
        kept.unlink()
    ins.mkdir(spool, 0o700, kind="s")
    if spool.rstrip("/").rsplit("/", 1)[-1] == USER:  # ours even if an earlier install left it: PURGE removes it
        ins.entries[spool] = "s"
    for d in {LOG_DIR, log_dir}:
        ins.mkdir(d, 0o750, kind="t")
    ins.entries[LOG_DIR] = "t"
    ins.save_manifest()
    if not destdir:
        _activate(ins)
    return ins


def _load(ins: Installer):
    try:
        return config_load.load(str(ins.staged(CONFIG)))
    except ConfigError as e:
        raise InstallError(f"{CONFIG}: {e}") from None


def _user_exists() -> bool:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return False
    return True


def _run(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise InstallError(f"{' '.join(cmd)} failed: {(r.stderr or r.stdout).strip()}")


def _activate(ins: Installer) -> None:
    """A real install: the user and the ownerships from the sysusers/tmpfiles files, then systemd."""
    if os.geteuid() != 0:
        raise InstallError("make install-pi without DESTDIR must run as root (sudo make install-pi)")
    had_user = _user_exists()
    _run("systemd-sysusers", SYSUSERS)
    if not had_user:
        ins.entries[USER] = "u"
        ins.save_manifest()
    _run("systemd-tmpfiles", "--create", TMPFILES)
    if Path("/run/systemd/system").exists():
        _run("systemctl", "daemon-reload")


def uninstall(prefix: str, destdir: str, purge: bool) -> None:
    ins = Installer(prefix, destdir)
    ins.load_manifest()
    if not ins.entries:
        raise InstallError(f"no {ins.staged(ins.lib + '/' + MANIFEST)}: nothing installed there")
    if not destdir and Path("/run/systemd/system").exists() and ins.entries.get(UNIT):
        subprocess.run(["systemctl", "disable", "--now", "dialgate.service"], capture_output=True, check=False)
    spools = [p for p, k in ins.entries.items() if k == "s"]
    if not purge:  # the kept spool remembers which of its parents were ours, for the next install
        for sp in spools:
            mine = [p for p, k in ins.entries.items() if k == "d" and sp.startswith(p + "/")]
            if mine and ins.staged(sp).is_dir():
                ins.staged(sp + "/" + KEPT_PARENTS).write_text("\n".join(sorted(mine)) + "\n")
    # deepest first, so a directory is empty by the time its turn comes
    for path, kind in sorted(ins.entries.items(), key=lambda e: e[0].count("/"), reverse=True):
        p = ins.staged(path)
        if kind == "u":
            continue
        if kind == "s" and not purge:
            continue
        if kind in ("t", "s"):
            shutil.rmtree(p, ignore_errors=True)
        elif kind == "f":
            p.unlink(missing_ok=True)
        elif kind == "d":
            try:
                p.rmdir()
            except OSError:
                pass  # not empty: something of someone else's is in it (or the kept spool)
    if purge and ins.entries.get(USER) == "u" and not destdir and _user_exists():
        _run("userdel", USER)
    if not destdir and Path("/run/systemd/system").exists():
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True, check=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("install", "uninstall"))
    ap.add_argument("--prefix", default="/usr/local")
    ap.add_argument("--destdir", default="", help="stage the install under this root (packaging, tests)")
    ap.add_argument("--config", type=Path, help="site config to install as /etc/dialgate/config.json")
    ap.add_argument("--tls-name", action="append", default=[],
                    help="another DNS name or IP for the LAN certificate (the hostname is always in it)")
    ap.add_argument("--purge", action="store_true", help="uninstall: remove the spool (and the user) too")
    ap.add_argument("--python", default=sys.executable, help="the Python that makes the venv")
    a = ap.parse_args(argv)
    names = [n for arg in a.tls_name for n in arg.replace(",", " ").split()]
    try:
        if a.action == "install":
            ins = install(a.prefix, a.destdir, a.config, names, a.python)
            where = f" under {a.destdir}" if a.destdir else ""
            print(f"dialgate installed{where}: {ins.prefix}/bin/dialgate, config {CONFIG}, unit {UNIT}")
            if ins.entries.get(TLS):
                print(f"  LAN certificate {TLS}/gateway.pem; install {TLS}/ca.pem on the office's PCs once")
            if not a.destdir:
                print("  start it: systemctl enable --now dialgate")
        else:
            uninstall(a.prefix, a.destdir, a.purge)
            print("dialgate uninstalled" + ("" if a.purge else "; the spool is kept (PURGE=1 removes it)"))
    except (InstallError, lan_tls.TlsError) as e:
        print(f"install_pi: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
