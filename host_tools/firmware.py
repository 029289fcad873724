"""`make firmware BOARD=pico_w MICROPY_DIR=~/src/micropython`: a MicroPython
image with dialgate frozen in, built from your MicroPython source tree with
boards/BOARD/manifest.py (docs/boards.md). `--write-manifests` regenerates the
manifests from deploy.board_modules(), the one list of what a board needs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from host_tools.deploy import FIRMWARE, ROOT, board_modules

HEAD = '''# MicroPython for {board} with dialgate frozen in: make firmware BOARD={board} MICROPY_DIR=...
# (docs/boards.md). Written by `python -m host_tools.firmware --write-manifests` from
# host_tools.deploy.board_modules(); tests/host/test_manifests.py holds them equal.
'''


def manifest_text(board: str) -> str:
    _port, _mboard, _variant, base = FIRMWARE[board]
    files = ",\n".join(f'        "{m}.py"' for m in board_modules())
    return (HEAD.format(board=board) + f'include("{base}")\n\n'
            f'package(\n    "dialgate",\n    files=[\n{files},\n    ],\n    base_path="../../firmware",\n)\n'
            "# main.py stays on the filesystem (make flash copies it): the board boots /main.py.\n")


def build_command(board: str, micropy: Path) -> list[list[str]]:
    port, mboard, variant, _ = FIRMWARE[board]
    manifest = ROOT / "boards" / board / "manifest.py"
    args = [f"BOARD={mboard}", f"FROZEN_MANIFEST={manifest}"] + ([f"BOARD_VARIANT={variant}"] if variant else [])
    pdir = str(micropy / "ports" / port)
    return [["make", "-C", str(micropy / "mpy-cross")], ["make", "-C", pdir, *args, "submodules"],
            ["make", "-C", pdir, *args]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", choices=sorted(FIRMWARE), default="pico_w")
    ap.add_argument("--micropy-dir", type=Path)
    ap.add_argument("--write-manifests", action="store_true")
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    if a.write_manifests:
        for board in FIRMWARE:
            (ROOT / "boards" / board).mkdir(exist_ok=True)
            (ROOT / "boards" / board / "manifest.py").write_text(manifest_text(board))
        return 0
    if not a.micropy_dir or not (a.micropy_dir / "py" / "mpconfig.h").exists():
        print("make firmware needs MICROPY_DIR=PATH, a MicroPython source tree (v1.24 or newer)", file=sys.stderr)
        return 2
    for cmd in build_command(a.board, a.micropy_dir.resolve()):
        print(" ".join(cmd), flush=True)
        if not a.dry_run and subprocess.run(cmd, check=False).returncode != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
