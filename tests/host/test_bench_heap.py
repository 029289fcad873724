"""bench_heap's per-module figures (make bench) over the real import graph.

The office day itself runs only under `make bench` (fixed ports, minutes);
here the part that reads the import graph, which a cycle in it once broke
(compat <-> compat_cpython, once imports under a module-level `if` counted)."""

from __future__ import annotations

from pathlib import Path

from host_tools import bench_heap
from host_tools.upy_test import build_tree


def test_every_module_has_a_heap_cost_after_its_own_imports(tmp_path: Path) -> None:
    tree = tmp_path / "mpy"
    build_tree(tree, compiled=True)
    costs = bench_heap.module_costs(tree, None)
    assert "compat_cpython" not in costs  # CPython's branch: never imported by a board
    for m in ("compat", "app", "smtp_server", "pop3_server", "compat_relay", "session_call"):
        assert costs.get(m, 0) > 512, (m, costs.get(m))
    assert len(costs) >= 60, sorted(costs)
