"""`make firmware BOARD=pico_w MICROPY_DIR=~/src/micropython`: a MicroPython
image with dialgate frozen in, built from your MicroPython source tree with
boards/BOARD/manifest.py (docs/boards.md). `--write-manifests` regenerates
boards/dialgate_manifest.py (the one list of modules, from
deploy.board_modules()) and the per-board manifests that include it.

`make firmware BOARD=esp32 ROMFS=1`: instead of freezing, an ESP32 image whose
partition table has a `romfs` partition (boards/esp32/partitions-romfs.csv)
and the ROMFS image to write into it (`mpremote romfs deploy`), built from
the same modules as .mpy files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from host_tools.deploy import FIRMWARE, ROOT, board_modules

SHARED = ROOT / "boards" / "dialgate_manifest.py"
HEAD = '''# MicroPython for {board} with dialgate frozen in: make firmware BOARD={board} MICROPY_DIR=...
# (docs/boards.md). Written by `python -m host_tools.firmware --write-manifests`;
# tests/host/test_manifests.py holds it equal to host_tools.deploy.board_modules().
'''
SHARED_HEAD = '''# The dialgate modules every board freezes (each boards/BOARD/manifest.py includes this).
# Written by `python -m host_tools.firmware --write-manifests` from
# host_tools.deploy.board_modules(); tests/host/test_manifests.py holds them equal.
'''
ROMFS_CSV = ROOT / "boards" / "esp32" / "partitions-romfs.csv"
ROMFS_SUBTYPE = 0x8F  # MicroPython's ROMFS partition: data, subtype 0x8f, label "romfs"
BUILD = ROOT / "build" / "firmware"


def shared_manifest_text() -> str:
    files = ",\n".join(f'        "{m}.py"' for m in board_modules())
    return (SHARED_HEAD + f'package(\n    "dialgate",\n    files=[\n{files},\n    ],\n    base_path="../firmware",\n)\n'
            "# main.py stays on the filesystem (make flash copies it): the board boots /main.py.\n")


def manifest_text(board: str) -> str:
    base = FIRMWARE[board][3]
    return HEAD.format(board=board) + f'include("{base}")\ninclude("../dialgate_manifest.py")\n'


def partitions(path: Path = ROMFS_CSV) -> list[tuple[str, str, str, int, int]]:
    """The partition CSV's rows -> (name, type, subtype, offset, size)."""
    rows = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, ptype, sub, off, size = [f.strip() for f in line.split(",")[:5]]
        rows.append((name, ptype, sub, int(off, 0), int(size, 0)))
    return rows


def romfs_board_dir(board: str, micropy: Path, out: Path) -> Path:
    """A MicroPython board directory (BOARD_DIR=) that is the stock board plus
    the ROMFS partition table and MICROPY_VFS_ROM."""
    _port, mboard, _variant, _base = FIRMWARE[board]
    stock = micropy / "ports" / "esp32" / "boards" / mboard
    d = out / f"DIALGATE_{mboard}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "sdkconfig.romfs").write_text(
        "# dialgate: the partition table with a romfs partition (docs/boards.md)\n"
        "CONFIG_PARTITION_TABLE_CUSTOM=y\n"
        f'CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="{ROMFS_CSV}"\n')
    (d / "mpconfigboard.cmake").write_text(
        f"# dialgate: {mboard} with a ROMFS partition (written by host_tools/firmware.py)\n"
        f'include("{stock}/mpconfigboard.cmake")\n'
        f'list(APPEND SDKCONFIG_DEFAULTS "{d}/sdkconfig.romfs")\n')
    (d / "mpconfigboard.h").write_text(
        f'#include "{stock}/mpconfigboard.h"\n'
        "#ifndef MICROPY_VFS_ROM\n#define MICROPY_VFS_ROM (1)\n#endif\n")
    for extra in ("pins.csv", "board.json"):
        if (stock / extra).exists():
            (d / extra).write_bytes((stock / extra).read_bytes())
    return d


def romfs_image(board: str, out: Path) -> Path:
    """The ROMFS image for the romfs partition: the board's modules as .mpy for
    its architecture under lib/dialgate/, as make flash would copy them. The
    tree stays in out/romfs for `mpremote romfs --no-mpy deploy out/romfs`."""
    import shutil
    import tempfile

    from host_tools.deploy import stage

    tree = out / "romfs"
    if tree.exists():
        shutil.rmtree(tree)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "stage"
        stage(board, None, None, staged, march="xtensawin")  # ESP32 and ESP32-S3
        shutil.copytree(staged / "lib", tree / "lib")
    from host_tools.run_host import build_romfs

    return build_romfs(tree, out / f"dialgate-{board}.romfs")


def build_command(board: str, micropy: Path, romfs_dir: Path | None = None) -> list[list[str]]:
    port, mboard, variant, _ = FIRMWARE[board]
    if romfs_dir is not None:  # the stock frozen modules only: dialgate comes from the ROMFS image
        args = [f"BOARD_DIR={romfs_dir}"]
    else:
        args = [f"BOARD={mboard}", f"FROZEN_MANIFEST={ROOT / 'boards' / board / 'manifest.py'}"]
    args += [f"BOARD_VARIANT={variant}"] if variant else []
    pdir = str(micropy / "ports" / port)
    return [["make", "-C", str(micropy / "mpy-cross")], ["make", "-C", pdir, *args, "submodules"],
            ["make", "-C", pdir, *args]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", choices=sorted(FIRMWARE), default="pico_w")
    ap.add_argument("--micropy-dir", type=Path)
    ap.add_argument("--romfs", action="store_true", help="ESP32 boards: a romfs partition and its image, not frozen")
    ap.add_argument("--write-manifests", action="store_true")
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    if a.write_manifests:
        SHARED.write_text(shared_manifest_text())
        for board in FIRMWARE:
            (ROOT / "boards" / board).mkdir(exist_ok=True)
            (ROOT / "boards" / board / "manifest.py").write_text(manifest_text(board))
        return 0
    if a.romfs and FIRMWARE[a.board][0] != "esp32":
        print(f"make firmware ROMFS=1 is for the ESP32 boards; {a.board} freezes the modules instead", file=sys.stderr)
        return 2
    if not a.micropy_dir or not (a.micropy_dir / "py" / "mpconfig.h").exists():
        print("make firmware needs MICROPY_DIR=PATH, a MicroPython source tree (v1.25 or newer for ROMFS=1, "
              "v1.24 otherwise)", file=sys.stderr)
        return 2
    micropy = a.micropy_dir.resolve()
    board_dir = None
    if a.romfs:
        board_dir = romfs_board_dir(a.board, micropy, BUILD / a.board)
        img = romfs_image(a.board, BUILD / a.board)
        room = [size for name, _t, _s, _o, size in partitions() if name == "romfs"][0]
        print(f"ROMFS image {img} ({img.stat().st_size} of the partition's {room} octets); after flashing the "
              f"firmware: mpremote romfs --no-mpy deploy {img.parent / 'romfs'} (or esptool at the partition's offset)", flush=True)
        if img.stat().st_size > room:
            print(f"the ROMFS image does not fit its partition: grow romfs in {ROMFS_CSV}", file=sys.stderr)
            return 1
    for cmd in build_command(a.board, micropy, board_dir):
        print(" ".join(cmd), flush=True)
        if not a.dry_run and subprocess.run(cmd, check=False).returncode != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
