"""`make flash BOARD=pico_w PORT=/dev/ttyACM0`: put dialgate on a MicroPython board.

Compiles firmware/dialgate/*.py to .mpy with mpy-cross (a board imports .mpy
without the compiler's heap peak), then copies with mpremote:

    /main.py                    board entry (boots the gateway)
    /lib/dialgate/*.mpy         the package (and schema.json, the config schema)
    /boards/BOARD.json          the board profile
    /config.json                your config (--config FILE; default: {"profile": BOARD})
    /tls/gateway.pem, .key      the LAN certificate for STARTTLS/STLS (unless the config names one)
    /tls/...                    more files: e.g. the ISP CA bundle for relay.ca_file (--tls DIR), if given

The LAN certificate is made here on the host, never on the board: a local CA
and a server certificate for the config's `hostname`, in
~/.local/share/dialgate/tls/HOSTNAME/ (`--lan-tls DIR`; host_tools/lan_tls.py),
kept for the next flash. Install its ca.pem on the office's PCs once. The CA's
key stays on the host.

`--dry-run` prints the mpremote commands instead of running them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from host_tools.lan_tls import TlsError

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ("rpi", "pico_w", "esp32", "host")


def default_lan_tls() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "dialgate" / "tls"


def stage(board: str, config: Path | None, tls: Path | None, out: Path,
          lan_tls: Path | None = None) -> list[tuple[Path, str]]:
    """Build the files to copy into `out`; returns (local file, remote path) pairs.
    With `lan_tls` (a folder on the host) and no certificate in the config, a LAN
    certificate for the config's hostname is made there (or reused) and configured."""
    from host_tools.upy_test import compile_mpy

    pkg = out / "lib" / "dialgate"
    pkg.mkdir(parents=True)
    files: list[tuple[Path, str]] = []
    for src in sorted((ROOT / "firmware" / "dialgate").glob("*.py")):
        if src.name == "__main__.py":
            continue
        dst = pkg / (src.stem + ".mpy")
        compile_mpy(src, dst, f"dialgate/{src.name}")
        files.append((dst, f":lib/dialgate/{dst.name}"))
    for data in sorted((ROOT / "firmware" / "dialgate").glob("*.json")):  # schema.json
        shutil.copy(data, pkg / data.name)
        files.append((pkg / data.name, f":lib/dialgate/{data.name}"))
    shutil.copy(ROOT / "firmware" / "main.py", out / "main.py")
    files.append((out / "main.py", ":main.py"))
    files.append((ROOT / "boards" / f"{board}.json", f":boards/{board}.json"))
    cfg = out / "config.json"
    if config:
        data = json.loads(config.read_text())
    else:
        data = {"profile": board}
    data.setdefault("profile", board)
    if lan_tls is not None and not data.get("smtp", {}).get("tls_cert"):
        files += _lan_certificate(board, data, lan_tls)
    cfg.write_text(json.dumps(data, indent=1))
    files.append((cfg, ":config.json"))
    if tls:
        for f in sorted(tls.iterdir()):
            if f.is_file():
                files.append((f, f":tls/{f.name}"))
    return files


def _lan_certificate(board: str, data: dict, lan_tls: Path) -> list[tuple[Path, str]]:
    from host_tools import lan_tls as tls_maker

    profile = json.loads((ROOT / "boards" / f"{board}.json").read_text())
    host = data.get("hostname", profile["hostname"])
    cert, key, _ca = tls_maker.ensure(lan_tls / host, [host], data.get("domains", profile["domains"]),
                                      data.get("lan", profile["lan"]))
    smtp = data.setdefault("smtp", {})
    smtp["tls_cert"], smtp["tls_key"] = "/tls/gateway.pem", "/tls/gateway.key"
    return [(cert, ":tls/gateway.pem"), (key, ":tls/gateway.key")]


def commands(port: str, files: list[tuple[Path, str]]) -> list[list[str]]:
    mp = [sys.executable, "-m", "mpremote", "connect", port]
    dirs = sorted({r.rsplit("/", 1)[0] for _, r in files if "/" in r})
    cmds = []
    for d in dirs:  # parents first: ":lib" before ":lib/dialgate"
        cmds.append([*mp, "fs", "mkdir", d])
    for local, remote in files:
        cmds.append([*mp, "fs", "cp", str(local), remote])
    cmds.append([*mp, "reset"])
    return cmds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", choices=BOARDS, default="pico_w")
    ap.add_argument("--port", help="serial port of the board, e.g. /dev/ttyACM0")
    ap.add_argument("--config", type=Path, help="config JSON to install as /config.json")
    ap.add_argument("--tls", type=Path, help="folder of more files for /tls/ (e.g. the ISP CA bundle)")
    ap.add_argument("--lan-tls", type=Path, default=None,
                    help="where the host keeps the LAN CA and certificate (default ~/.local/share/dialgate/tls)")
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    if a.board in ("rpi", "host"):
        print(f"{a.board} runs CPython: run `python3 -m dialgate --config FILE` with firmware/ on PYTHONPATH",
              file=sys.stderr)
        return 2
    if not a.port and not a.dry_run:
        print("make flash needs PORT=/dev/ttyACM0 (or similar)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        try:
            files = stage(a.board, a.config, a.tls, Path(tmp), a.lan_tls or default_lan_tls())
        except TlsError as e:
            print(f"make flash: {e}", file=sys.stderr)
            return 1
        for cmd in commands(a.port or "PORT", files):
            if a.dry_run:
                print(" ".join(cmd[1:]))
                continue
            r = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if r.returncode != 0 and "mkdir" not in cmd:  # mkdir of an existing dir fails harmlessly
                print(f"failed: {' '.join(cmd[1:])}\n{r.stderr}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
