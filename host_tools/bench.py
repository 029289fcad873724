"""`make bench`: run every benchmark (host_tools/bench_*.py) and print its figures.

Benchmarks compare against a peer measured in the same run and print ratios;
they are not tests and assert no timings.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    want = argv if argv is not None else sys.argv[1:]
    if want:
        names = [n for n in names if n in want or n.removeprefix("bench_") in want]
    rc = 0
    for name in names:
        print(f"== {name}", flush=True)
        mod = importlib.import_module(f"host_tools.{name}")
        r = mod.main([])
        rc |= int(r or 0)
    if not names:
        print("no benchmarks found")
    return rc


if __name__ == "__main__":
    sys.exit(main())
