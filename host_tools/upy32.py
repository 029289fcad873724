"""A 32-bit MicroPython for bench_heap's import costs: the WebAssembly port
(`@micropython/micropython-webassembly-pyscript` from npm, run by Node.js).

The unix port that runs the office day is a 64-bit build: its pointers and
object headers are twice a board's. This one is wasm32 (4-octet pointers, as
on a Pico W or an ESP32) and loads the same .mpy files, so the heap that
importing a set of modules takes here is what it takes on a board running
them from its filesystem. It has no sockets (no office day) and no
`vfs.VfsRom` (no ROMFS figure): bench_heap prints it for the day's peak set.

    python3 -m host_tools.upy32 [MODULE ...]   (default: app)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "host_tools" / "wasm32"  # package.json, its lock, run.mjs
BUILD = ROOT / "build" / "wasm32"  # where npm puts the port (not in git)
FILES = ("package.json", "package-lock.json", "run.mjs")


def ensure() -> str | None:
    """Install Node.js (Debian) and the port (npm ci, pinned by the lock) into
    build/wasm32 if missing or out of date, and check that it is a 32-bit build
    (or the figures mean nothing). None when ready, else why not."""
    from host_tools import pkgs

    pkgs.PROGRAMS.setdefault("nodejs", "node")
    why = pkgs.ensure("nodejs", "npm")
    if why:
        return why
    BUILD.mkdir(parents=True, exist_ok=True)
    stale = any(not (BUILD / f).exists() or (BUILD / f).read_bytes() != (SRC / f).read_bytes() for f in FILES)
    for f in FILES:
        shutil.copy(SRC / f, BUILD / f)
    if stale or not (BUILD / "node_modules").is_dir():
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BUILD, capture_output=True, text=True,
                           timeout=300, check=False)
        if r.returncode != 0:
            return f"npm ci in {BUILD} failed: {(r.stderr or r.stdout).strip()[-300:]}"
    with tempfile.TemporaryDirectory(prefix="dg-upy32-") as tmp:
        probe = Path(tmp) / "bits.py"
        probe.write_text("import sys\nprint('maxsize', sys.maxsize)\n")
        r = subprocess.run(command(probe, []), capture_output=True, text=True, timeout=60, check=False)
    if f"maxsize {2**31 - 1}" not in r.stdout:
        return f"the WebAssembly port is not a 32-bit MicroPython: {(r.stdout + r.stderr).strip()[-200:]}"
    return None


def command(script: Path, args: list[str]) -> list[str]:
    """The command that runs MicroPython `script` with `args` on the 32-bit port
    (files and folders named by absolute paths are copied in: run.mjs)."""
    return ["node", str(BUILD / "run.mjs"), str(script), *args]


def main(argv: list[str] | None = None) -> int:
    from host_tools import bench_heap
    from host_tools.upy_test import build_tree

    mods = (argv if argv is not None else sys.argv[1:]) or ["app"]
    why = ensure()
    if why:
        print(f"upy32: {why}")
        return 1
    with tempfile.TemporaryDirectory(prefix="dg-upy32-tree-") as tmp:
        tree = Path(tmp) / "mpy"
        build_tree(tree, compiled=True)
        heap, qbytes, qn = bench_heap.import_cost(tree, None, mods, command)
    print(f"32-bit MicroPython (wasm32): importing {' '.join(mods)} takes {heap} B of heap, {qn} qstrs in {qbytes} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
