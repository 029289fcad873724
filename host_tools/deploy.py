"""`make flash BOARD=pico_w PORT=/dev/ttyACM0`: put dialgate on a MicroPython board.

Compiles firmware/dialgate/*.py to .mpy with mpy-cross (a board imports .mpy
without the compiler's heap peak), then copies with mpremote:

    /main.py                    board entry (boots the gateway)
    /lib/dialgate/*.mpy         the package (and schema.json, the config schema)
    /boards/BOARD.json          the board profile
    /config.json                your config (--config FILE; default: {"profile": BOARD})
    /tls/...                    LAN-side certificate and key, ISP CA bundle (--tls DIR), if given

`--dry-run` prints the mpremote commands instead of running them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ("rpi", "pico_w", "esp32", "host")


def stage(board: str, config: Path | None, tls: Path | None, out: Path) -> list[tuple[Path, str]]:
    """Build the files to copy into `out`; returns (local file, remote path) pairs."""
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
    cfg.write_text(json.dumps(data, indent=1))
    files.append((cfg, ":config.json"))
    if tls:
        for f in sorted(tls.iterdir()):
            if f.is_file():
                files.append((f, f":tls/{f.name}"))
    return files


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
    ap.add_argument("--tls", type=Path, help="folder with the LAN certificate/key and the ISP CA bundle")
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
        files = stage(a.board, a.config, a.tls, Path(tmp))
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
