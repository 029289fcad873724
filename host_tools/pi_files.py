"""The files `make install-pi` writes around the program: the wrappers, the systemd
unit, sysusers.d and tmpfiles.d entries, the pppd peers file, the logrotate file
(host_tools/install_pi.py decides where, docs/install.md says why)."""

from __future__ import annotations

USER = "dialgate"
GROUPS = ("dialout", "dip")  # the serial ports; Debian's pppd is setuid root, mode 4754 root:dip
ETC = "/etc/dialgate"
CONFIG = ETC + "/config.json"
TLS = ETC + "/tls"
UNIT = "/etc/systemd/system/dialgate.service"
SYSUSERS = "/etc/sysusers.d/dialgate.conf"
TMPFILES = "/etc/tmpfiles.d/dialgate.conf"
PEERS = "/etc/ppp/peers/dialgate"
LOGROTATE = "/etc/logrotate.d/dialgate"
LOG_DIR = "/var/log/dialgate"
GATEWAY_LOG = LOG_DIR + "/gateway.log"

def wrapper(lib_rel: str, module: str, default_config: bool) -> str:
    """A relocatable sh wrapper: finds the venv next to itself (so a DESTDIR tree runs as installed)."""
    config = ""
    if default_config:
        config = (f'case " $* " in *" --config "*|*" --config="*) ;; *) set -- --config {CONFIG} "$@" ;; esac\n')
    return ("#!/bin/sh\n# installed by make install-pi (host_tools/install_pi.py)\n"
            'here=$(dirname "$(readlink -f "$0")")\n'
            f"{config}"
            f'exec "$here/{lib_rel}/venv/bin/python" -m {module} "$@"\n')


def unit(bin_dialgate: str, cfg, spool: str) -> str:
    """The systemd unit. NoNewPrivileges= (and everything that implies it for a
    non-root service: seccomp filters, RestrictSUIDSGID=, ...) would keep the
    setuid-root pppd from becoming root, so a `pppd` link gets only the mount
    and device sandbox; other links get all of it."""
    pppd = cfg["link.type"] == "pppd"
    rw = [spool, LOG_DIR, ETC]  # ETC: `config set` rewrites config.json
    dev = []
    port = cfg["modem.port"]
    if port.startswith("/dev/") and cfg["link.type"] != "always-on":
        dev.append(f"DeviceAllow={port} rw")
        driver = port[5:].rstrip("0123456789")
        if driver.startswith("tty") and driver != "tty":  # ttyUSB, ttyACM, ttyAMA, ttyS: a replugged adapter too
            dev.append(f"DeviceAllow=char-{driver} rw")
    if pppd:
        dev.append("DeviceAllow=/dev/ppp rw")
        rw.append("-/etc/ppp")  # usepeerdns: pppd writes /etc/ppp/resolv.conf
    lines = [
        "# installed by make install-pi (host_tools/install_pi.py); docs/install.md",
        "[Unit]",
        "Description=dialgate mail gateway (SMTP/POP3 store-and-forward over dial-up)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={USER}",
        f"Group={USER}",
        "SupplementaryGroups=" + " ".join(GROUPS),
        f"ExecStart={bin_dialgate} --config {CONFIG}",
        "Restart=on-failure",
        "RestartSec=10",
        "# SIGTERM: the gateway hangs up the line before it exits",
        "TimeoutStopSec=30",
        f"StandardOutput=append:{GATEWAY_LOG}",
        "StandardError=journal",
        "UMask=0077",
        "# ports 25, 110 and 587 as a plain user",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ProtectSystem=" + ("full" if pppd else "strict"),
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ProtectControlGroups=yes",
        "ReadWritePaths=" + " ".join(rw),
        "DevicePolicy=closed",
        *dev,
    ]
    if pppd:
        lines += [
            "# pppd is setuid root (Debian: mode 4754 root:dip): NoNewPrivileges=yes, and the",
            "# seccomp-based settings that imply it for a non-root service, would stop it.",
            "NoNewPrivileges=no",
        ]
    else:
        lines += [
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
            "RestrictSUIDSGID=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "LockPersonality=yes",
            "RestrictRealtime=yes",
            "RestrictNamespaces=yes",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "SystemCallArchitectures=native",
            "SystemCallFilter=@system-service",
        ]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def peers(python: str, cfg, spool: str) -> str:
    """pppd's options for `pppd call dialgate` (link.pppd_peer): root's file, so its
    privileged options count; the dialler is the gateway's own connect program."""
    connect = f"{python} -m dialgate.link_pppd connect {spool}/pppd/dial.json"
    lines = [
        "# /etc/ppp/peers/dialgate: installed by make install-pi (host_tools/install_pi.py).",
        "# dialgate runs `pppd call dialgate [user NAME] updetach maxfail 1` for each call: pppd opens",
        "# and locks the modem port and keeps it (and DTR) for the whole call, running dialgate's",
        "# dialler on it as the connect program; `hangup` stops pppd, which drops DTR.",
        cfg["modem.port"],
        str(cfg["modem.baud"]),
        *cfg["link.pppd_options"],
        f'connect "{connect}"',
        "linkname dialgate",
        f"ifname {cfg['link.interface']}",
        "",
    ]
    return "\n".join(lines)


def sysusers(spool: str) -> str:
    return (f"# installed by make install-pi: the user the gateway runs as\n"
            f'u {USER} - "dialgate mail gateway" {spool}\n'
            + "".join(f"m {USER} {g}\n" for g in GROUPS))


def tmpfiles(spool: str, log_dir: str, tls_key: str) -> str:
    lines = ["# installed by make install-pi: owners and modes (applied again at every boot)",
             f"d {spool} 0700 {USER} {USER} -",
             f"d {log_dir} 0750 {USER} {USER} -",
             f"z {ETC} 0750 {USER} {USER} -",
             f"z {CONFIG} 0600 {USER} {USER} -"]
    if tls_key:
        lines.append(f"z {tls_key} 0640 root {USER} -")
    return "\n".join(lines) + "\n"


def logrotate() -> str:
    return (f"# installed by make install-pi: the service's output (every log line). The ring that\n"
            f"# `log N` reads (log.file) bounds itself (log.max_bytes) and is not rotated here.\n"
            f"{GATEWAY_LOG} {{\n"
            "\tweekly\n\trotate 8\n\tcompress\n\tdelaycompress\n\tmissingok\n\tnotifempty\n"
            "\t# systemd holds the file open in append mode: copy, then truncate in place\n"
            "\tcopytruncate\n}\n")
