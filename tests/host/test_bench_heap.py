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


def test_a_32_bit_micropython_imports_the_same_mpy_files(tmp_path: Path) -> None:
    """host_tools/upy32 (make bench's 32-bit figure): the WebAssembly port loads
    the .mpy files the unix port does, is a 32-bit build (ensure() checks), and
    reports an import cost of the same order: code and names do not halve."""
    import os

    import pytest

    from host_tools import upy32

    why = upy32.ensure()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run this test: {why}")
        pytest.skip(why)
    tree = tmp_path / "mpy"
    build_tree(tree, compiled=True)
    mods = ["limits", "proto", "smtp_addr"]
    heap32, qbytes32, qn32 = bench_heap.import_cost(tree, None, mods, upy32.command)
    heap64, _qbytes64, qn64 = bench_heap.import_cost(tree, None, mods)
    assert qn32 > 50 and qbytes32 > 0, (heap32, qbytes32, qn32)
    # the same names, give or take those each port has built in (the unix port more)
    assert 0.8 * qn64 <= qn32 <= 1.5 * qn64, (qn32, qn64)
    assert 0.5 * heap64 < heap32 < 1.5 * heap64, (heap32, heap64)
